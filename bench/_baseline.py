"""The baselines, each a plain asyncio program run in its own process on the server's
core, so that the server and its baseline get the same CPU:

    python -m bench._baseline '{"mode": "fanout", "pbx_port": 5038}'
    python -m bench._baseline '{"mode": "http"}'
    python -m bench._baseline '{"mode": "ping", "pbx_port": 5038, "concurrency": 50,
                                "seconds": 3}'

- ``fanout``: logs in to the AMI feed and serves WebSockets with aiohttp (the same
  WebSocket implementation as the server). A connection's first request says what
  it wants (read once with orjson: an operator's ``CallerIDNum``, or everything).
  Per event it only finds the message boundary and, for a ``Newchannel``, the
  ``CallerIDNum`` bytes, and queues the raw AMI bytes, unchanged, to that operator and
  to every catch-all connection; one sender task per connection writes its queue, as
  the server does.
  No parsing into headers, no JSON, no filters, no auth.
- ``http``: a bare aiohttp handler: ``POST /api`` reads the body and answers a
  constant JSON; ``GET /health`` answers 200.
- ``ping``: ``concurrency`` tasks doing AMI ``Ping`` round trips over one AMI
  connection (as the server multiplexes every user over one), for ``seconds``; prints
  the count and latencies as JSON and exits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from bench.common import announce, percentile

_ANSWER = b'{"err":null,"errCode":null,"reqId":%s,"subscriptionId":"s1"}'


async def _ami_login(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await asyncio.wait_for(reader.readline(), 5)  # banner
    writer.write(
        b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: bench\r\nEvents: on\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer


class _Conn:
    """One WebSocket's outbound queue and the waiter of its sender task."""

    __slots__ = ("queue", "waiter", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        self.queue.append(data)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send_loop(self) -> None:
        ws = self.ws
        loop = asyncio.get_running_loop()
        while not ws.closed:
            if not self.queue:
                self.waiter = loop.create_future()
                await self.waiter
                self.waiter = None
            items, self.queue = self.queue, []
            for item in items:
                await ws.send_frame(item, WSMsgType.TEXT)


class _Operators:
    """Who wants what: connections by the ``CallerIDNum`` they asked for, and the
    connections that asked for everything."""

    __slots__ = ("by_number", "catch_all")

    def __init__(self) -> None:
        self.by_number: dict[bytes, list[_Conn]] = {}
        self.catch_all: list[_Conn] = []

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """One WebSocket: its ``onEvent`` requests say what it wants; every request is
        answered with a constant success."""
        ws = web.WebSocketResponse(compress=False, heartbeat=30.0)
        await ws.prepare(request)
        conn = _Conn(ws)
        sender = asyncio.create_task(conn.send_loop())
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                envelope = orjson.loads(message.data)
                argument = envelope.get("argument", {})
                number = (argument.get("event") or {}).get("CallerIDNum")
                if envelope.get("method") == "onEvent":
                    if number:
                        self.by_number.setdefault(number.encode(), []).append(conn)
                    else:
                        self.catch_all.append(conn)
                conn.put(_ANSWER % orjson.dumps(argument.get("reqId")))
        finally:
            sender.cancel()
        return ws

    async def pump(self, reader: asyncio.StreamReader) -> None:
        """Cut the AMI stream at message boundaries and queue each message, unchanged,
        to every catch-all connection and, for a Newchannel, to the operator whose
        number it carries (what the server's subscriptions ask for)."""
        newchannel = b"Event: Newchannel\r\n"
        marker = b"\r\nCallerIDNum: "
        by_number, catch_all = self.by_number, self.catch_all
        rest = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            buffer = rest + data if rest else data
            position = 0
            while True:
                end = buffer.find(b"\r\n\r\n", position)
                if end < 0:
                    break
                message = buffer[position : end + 4]
                position = end + 4
                at = message.find(marker) if message.startswith(newchannel) else -1
                if at >= 0:
                    at += len(marker)
                    for conn in by_number.get(message[at : message.find(b"\r\n", at)], ()):
                        conn.put(message)
                for conn in catch_all:
                    conn.put(message)
            rest = buffer[position:]


async def fanout(args: dict[str, Any], stop: asyncio.Event) -> None:
    """The fan-out baseline (see the module docstring)."""
    operators = _Operators()
    app = web.Application()
    app.router.add_get("/api", operators.serve)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await _ami_login(int(args["pbx_port"]))
    announce({"ws_url": f"ws://127.0.0.1:{port}/api"})
    pumping = asyncio.create_task(operators.pump(reader))
    await stop.wait()
    pumping.cancel()
    writer.close()
    await runner.cleanup()


async def http(args: dict[str, Any], stop: asyncio.Event) -> None:
    """The bare aiohttp baseline (see the module docstring)."""
    body = (
        b'{"err":null,"errCode":null,"reqId":null,"actionId":null,"event":{"Response":'
        b'"Success","Ping":"Pong","Timestamp":"1700000000.000000"}}'
    )

    async def api(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/api", api)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", int(args.get("port", 0)))
    await site.start()
    port = runner.addresses[0][1]
    announce({"http_url": f"http://127.0.0.1:{port}"})
    await stop.wait()
    await runner.cleanup()


async def ping(args: dict[str, Any], stop: asyncio.Event) -> None:
    """The raw AMI Ping baseline (see the module docstring)."""
    reader, writer = await _ami_login(int(args["pbx_port"]))
    waiting: dict[bytes, asyncio.Future[None]] = {}
    ids = itertools.count(2)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def read() -> None:
        marker = b"ActionID: "
        while True:
            message = await reader.readuntil(b"\r\n\r\n")
            at = message.find(marker)
            if at >= 0:
                action_id = message[at + len(marker) : message.find(b"\r\n", at)]
                future = waiting.pop(action_id, None)
                if future is not None and not future.done():
                    future.set_result(None)

    deadline = loop.time() + float(args["seconds"])

    async def pinger() -> None:
        while loop.time() < deadline:
            action_id = b"%d" % next(ids)
            future = loop.create_future()
            waiting[action_id] = future
            started = time.perf_counter()
            writer.write(b"Action: Ping\r\nActionID: " + action_id + b"\r\n\r\n")
            await asyncio.wait_for(future, 10)
            latencies.append(time.perf_counter() - started)

    reading = asyncio.create_task(read())
    announce({"ready": True})
    started = time.perf_counter()
    await asyncio.gather(*(pinger() for _ in range(int(args["concurrency"]))))
    seconds = time.perf_counter() - started
    reading.cancel()
    writer.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "count": len(latencies),
                "seconds": seconds,
                "p50": percentile(latencies, 0.5),
                "p99": percentile(latencies, 0.99),
            }
        ),
        flush=True,
    )


async def main(args: dict[str, Any]) -> None:
    """Run the mode named in ``args``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    modes = {"fanout": fanout, "http": http, "ping": ping}
    await modes[args["mode"]](args, stop)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
