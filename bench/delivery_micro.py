"""Micro benchmark of the WebSocket delivery path: CPU per (connection, wake-up).

    PYTHONPATH=.:src .venv/bin/python -m bench.delivery_micro [--connections 100]
        [--batches 1,4,30] [--rounds 2000] [--repeat 3]

What the server spends, per connection, to send what one AMI read published to it:
the sender task woken by the first event queued, ``Subscriber.get``, the framing and
the one ``transport.write`` (``web/websocket.py``'s ``_Connection._send_loop`` with
``web/wsframes.py``), and the queueing itself (``Subscriber.offer``, what
``EventBus.publish`` inlines). This process (pinned to the server's CPU) runs an
aiohttp server whose handler serves each WebSocket with the server's own send loop
(the ``_Connection`` is made without its request side, which this does not use); a
child process on the load CPU opens ``--connections`` WebSockets and reads and
discards everything. Each round offers ``batch`` payloads (JSON of 300-900 bytes, as
the ``ast20`` feed's events are) to every subscriber and yields once, so that every
sender runs, as after one AMI read. The figure is this process's CPU time
(``time.process_time``) per round and connection, the best of ``--repeat`` runs; the
bytes the child received are checked against what was framed. Point ``PYTHONPATH``
at another ``src`` to compare. Nothing is asserted; the figures are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import textwrap
import time

import orjson
from aiohttp import web

from bench.common import LOAD_CPU, SERVER_CPU, pin_self
from vwell_pbx.events import Subscriber
from vwell_pbx.web import websocket

# The child: open the connections, then read and discard until every one is closed;
# print the bytes received after the handshakes.
_SINK = textwrap.dedent(
    """
    import selectors, socket, sys
    port, count = int(sys.argv[1]), int(sys.argv[2])
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"GET /ws HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
            b"Sec-WebSocket-Version: 13\\r\\n\\r\\n"
        )
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            head += sock.recv(1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    print("ready", flush=True)
    total, open_ = 0, count
    buffer = bytearray(1 << 20)
    while open_:
        for key, _ in selector.select():
            try:
                got = key.fileobj.recv_into(buffer)
            except BlockingIOError:
                continue
            if got == 0:
                selector.unregister(key.fileobj)
                open_ -= 1
            total += got
    print(total, flush=True)
    """
)


def _payloads(count: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        size = rng.randrange(300, 900)
        event = {"event": "VarSet", "Channel": f"SIP/269-{index:08x}", "eventId": str(index)}
        body = orjson.dumps(event)
        out.append(body[:-1] + b',"pad":"' + b"x" * max(0, size - len(body) - 9) + b'"}')
    return out


def _framed_size(payload: bytes) -> int:
    size = len(payload)
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


class _Server:
    """The aiohttp server whose connections run the server's send loop."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self.senders: list[asyncio.Task[None]] = []
        #: Writes to the connections' transports (each a system call).
        self.writes = 0
        self.runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        connection = object.__new__(websocket._Connection)
        connection._ws = ws
        connection._subscriber = Subscriber(max_queue=100_000, max_subscriptions=1)
        self.subscribers.append(connection._subscriber)
        transport = ws._writer.transport  # type: ignore[union-attr]
        write = transport.write

        def counted(data: bytes) -> None:
            self.writes += 1
            write(data)

        transport.write = counted  # type: ignore[method-assign]
        sender = asyncio.current_task()
        assert sender is not None
        self.senders.append(sender)
        with contextlib.suppress(asyncio.CancelledError):
            await connection._send_loop()
        return ws

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        app = web.Application()
        app.router.add_get("/ws", self.handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every subscriber, let the senders end, stop listening."""
        for subscriber in self.subscribers:
            subscriber.close()
        await asyncio.gather(*self.senders, return_exceptions=True)
        assert self.runner is not None
        await self.runner.cleanup()


async def _rounds(server: _Server, items: list[bytes], rounds: int, pace: float) -> None:
    """Offer ``items`` to every subscriber ``rounds`` times, ``pace`` s apart (by the
    clock, whatever each round costs; 0: one loop turn each)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    for _ in range(rounds):
        for subscriber in server.subscribers:
            for item in items:
                subscriber.offer(item)
        due += pace
        await asyncio.sleep(max(0.0, due - loop.time()))


async def _run(args: argparse.Namespace) -> None:
    server = _Server()
    port = await server.start()
    sink = await asyncio.create_subprocess_exec(
        "taskset",
        "-c",
        str(LOAD_CPU),
        sys.executable,
        "-c",
        _SINK,
        str(port),
        str(args.connections),
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None
    await asyncio.wait_for(sink.stdout.readline(), 60)
    async with asyncio.timeout(30):
        while len(server.subscribers) < args.connections:  # noqa: ASYNC110  (the handler)
            await asyncio.sleep(0.01)
    payloads = _payloads(max(args.batches))
    connections = len(server.subscribers)
    framed = 0
    print(
        f"{connections} connections, {args.rounds} rounds per run "
        f"({args.pace * 1e3:g} ms apart), best of {args.repeat}; this process's CPU:"
    )
    for batch in args.batches:
        items = payloads[:batch]
        best, best_wall, best_writes = float("inf"), 1.0, 0
        for _ in range(args.repeat):
            writes, wall, started = server.writes, time.perf_counter(), time.process_time()
            await _rounds(server, items, args.rounds, args.pace)
            cpu = time.process_time() - started
            if cpu < best:
                best, best_wall = cpu, time.perf_counter() - wall
                best_writes = server.writes - writes
            framed += args.rounds * connections * sum(map(_framed_size, items))
            await asyncio.sleep(0.2)  # let the child catch up between runs
        per_round = best / args.rounds / connections * 1e6
        print(
            f"  batch {batch:>3}: {per_round:6.2f} µs per round and connection, "
            f"{per_round / batch:5.2f} µs per frame, "
            f"{best_writes / args.rounds / connections:.2f} writes per round and connection, "
            f"{100 * best / best_wall:.0f} % CPU"
        )
    await server.stop()
    received = int((await asyncio.wait_for(sink.stdout.readline(), 60)).strip() or 0)
    await sink.wait()
    framed += 4 * connections  # the close frame (code 1000) each gets at the end
    print(f"child received {received:,} bytes after the handshakes, framed {framed:,}", end="")
    print("" if received == framed else " (MISMATCH: data lost or added)")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--batches", type=lambda text: [int(x) for x in text.split(",")], default=[1, 4, 30]
    )
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between rounds (0: back to back, one loop turn each; 0.002: as the "
        "feeder's ticks)",
    )
    args = parser.parse_args()
    pin_self(SERVER_CPU)
    print(f"vwell_pbx from {os.path.dirname(websocket.__file__)}")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
