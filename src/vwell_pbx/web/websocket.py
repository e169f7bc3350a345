"""WebSocket ``/api``: one connection, many concurrent requests, pushed events.

Each connection has one ``Subscriber`` whose bounded queue holds ready-to-send frames,
shared by API answers and pushed events, and one sender task that drains it.
Publishing never waits for a connection: when a queue overflows, the connection is
closed (1008) and counted, and nobody else slows down.

A connection's requests run as tasks of their own (at most ``limits.max_inflight``
at once; past it a request is answered ``rate_limited`` at once), so answers may come
out of order: clients match them by ``reqId``. An answer is queued as soon as its
method returns, so an ``onEvent`` answer (with its replay, for ``since``) comes before
every event published after the subscription. When the connection ends, its running
requests are cancelled and its subscriptions removed, their names kept interesting for
``[events] resume_grace_seconds`` (``EventBus.disconnect``) so that the client can
resume.

aiohttp's private API (batched frame writes, aborting a stuck client) is used only
through ``web.wsframes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from vwell_pbx.api.envelope import req_id_of
from vwell_pbx.api.errors import LimitExceeded
from vwell_pbx.api.forms import FormError, decode_json
from vwell_pbx.api.service import Api, Session
from vwell_pbx.events.bus import Subscriber
from vwell_pbx.web import logs, wsframes
from vwell_pbx.web.context import (
    API_KEY,
    METRICS_KEY,
    PER_ADDRESS_KEY,
    SETTINGS_KEY,
    SOCKETS_KEY,
    WebSettings,
)
from vwell_pbx.web.metrics import ServerMetrics

__all__ = ["close_websockets", "serve_websocket"]

log = logging.getLogger(__name__)


async def serve_websocket(request: web.Request) -> web.StreamResponse:
    """Upgrade ``request`` and serve the connection until it closes."""
    app = request.app
    settings, metrics = app[SETTINGS_KEY], app[METRICS_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and not settings.origin_allowed(origin):
        return web.Response(status=403, text=f"origin {origin} is not allowed\n")
    peer = request.remote or "unknown"
    per_address = app[PER_ADDRESS_KEY]
    if per_address[peer] >= settings.max_ws_per_address:
        return web.Response(
            status=429,
            text="too many WebSocket connections from "
            f"{peer} (at most {settings.max_ws_per_address})\n",
        )
    ws = web.WebSocketResponse(
        max_msg_size=settings.ws_max_message_bytes, heartbeat=settings.ws_heartbeat, compress=False
    )
    per_address[peer] += 1  # reserved before the handshake awaits, so no race past it
    try:
        await ws.prepare(request)
        connection = _Connection(app[API_KEY], settings, metrics, ws, peer)
        app[SOCKETS_KEY].add(ws)
        metrics.websockets.inc()
        try:
            await connection.run()
        finally:
            metrics.websockets.dec()
    finally:
        # Discard at once: the WeakSet alone keeps a closed socket (its _Connection forms
        # a reference cycle) until the garbage collector runs, and /health counts it.
        app[SOCKETS_KEY].discard(ws)
        per_address[peer] -= 1
        if per_address[peer] <= 0:
            del per_address[peer]
    return ws


class _Connection:
    """One WebSocket: a reader that starts request tasks, and one sender task."""

    def __init__(
        self,
        api: Api,
        settings: WebSettings,
        metrics: ServerMetrics,
        ws: web.WebSocketResponse,
        peer: str,
    ) -> None:
        self._api = api
        self._settings = settings
        self._metrics = metrics
        self._ws = ws
        self._subscriber = Subscriber(
            max_queue=settings.ws_queue_size,
            max_subscriptions=settings.max_subscriptions,
            on_overflow=self._overflowed,
        )
        self._session = Session(peer=peer, transport="ws", subscriber=self._subscriber)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropping = False
        self._drop_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        try:
            async for message in self._ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._start_request(message.data)
                elif message.type is WSMsgType.ERROR:
                    log.debug(
                        "websocket from %s failed: %s", self._session.peer, self._ws.exception()
                    )
                    break
        finally:
            # Not just unsubscribed: the names stay wanted for a while, so that the
            # client can resume (onEvent since) with nothing missing.
            self._api.bus.disconnect(self._subscriber)
            for task in list(self._tasks):
                task.cancel()
            sender.cancel()
            await asyncio.gather(sender, *self._tasks, return_exceptions=True)
            if not self._ws.closed:
                await self._ws.close()

    def _start_request(self, data: str | bytes) -> None:
        if len(self._tasks) >= self._settings.max_inflight:
            try:
                envelope: object = orjson.loads(data)
            except orjson.JSONDecodeError:
                envelope = None
            refusal = LimitExceeded(
                f"at most {self._settings.max_inflight} requests may run at once on one "
                "connection; wait for answers first"
            )
            self._reply(self._api.error_answer(refusal, req_id_of(envelope)))
            return
        task = asyncio.create_task(self._answer(data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: str | bytes) -> None:
        # This task inherited the connection's id; each request gets its own under it.
        logs.request_id.set(logs.sub_request_id())
        try:
            envelope = decode_json(
                data.encode() if isinstance(data, str) else data,
                max_depth=self._settings.json_max_depth,
            )
        except FormError as exc:
            self._reply(self._api.error_answer(exc))
            return
        self._reply(await self._api.handle(envelope, self._session))

    def _reply(self, response: Mapping[str, Any]) -> None:
        self._subscriber.put_nowait_reply(orjson.dumps(response))

    async def _send_loop(self) -> None:
        ws = self._ws
        subscriber = self._subscriber
        loop = asyncio.get_running_loop()
        pacer = _WritePacer.of_running_loop()
        busy = 2 * WRITE_INTERVAL
        last_write = -busy
        # Writes everything queued with one transport.write. A connection that wrote
        # less than two intervals ago (a steady stream) then holds further writes until
        # the pacer's next tick (an answer ends the hold at once), so it writes about
        # once per WRITE_INTERVAL however many AMI reads fill its queue meanwhile; one
        # that gets an event now and then writes each at once, with no hold (which
        # would cost it a second wake-up per event). Awaits the transport only when it
        # pushes back; the queue's bound (ws_queue_size) holds throughout.
        while not ws.closed:
            frames = await subscriber.get()
            if frames:
                if wsframes.write_text_frames(ws, frames):
                    await wsframes.drain(ws)
                now = loop.time()
                if now - last_write < busy:
                    pacer.hold(subscriber)
                    await subscriber.hold_writes()
                last_write = now
            elif subscriber.closed:
                return

    def _overflowed(self, _subscriber: Subscriber) -> None:
        """Called synchronously by the bus: never wait here; close in the background."""
        if self._dropping:
            return
        self._dropping = True
        self._metrics.slow_clients.inc()
        log.warning(
            "closing the WebSocket of %s: it did not read %d queued messages",
            self._session.peer,
            self._settings.ws_queue_size,
        )
        self._drop_task = asyncio.get_running_loop().create_task(self._drop())

    async def _drop(self) -> None:
        ws = self._ws
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(
                ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"too slow: event queue overflow"
                ),
                timeout=1.0,
            )
        # A client that stopped reading never completes the closing handshake: abort
        # unconditionally so the reader loop ends and everything is released.
        wsframes.abort(ws)


#: The longest a busy connection that has just written holds its next write, so that
#: what several AMI reads queue for it goes out in one write. Each write costs a wake-up
#: of the connection's sender and a system call, whatever it carries: without the hold,
#: 100 connections fed by a PBX that sends every 2 ms make 50,000 of each per second.
#: Events wait up to this long more; answers are never held.
WRITE_INTERVAL = 0.005


class _WritePacer:
    """One timer for all the senders holding their writes (not one per write): every
    ``interval`` while any holds, it releases them all."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        # Bound: each connection at most once (a set), until the next tick.
        self._holding: set[Subscriber] = set()
        self._timer: asyncio.TimerHandle | None = None

    @staticmethod
    def of_running_loop() -> _WritePacer:
        """The pacer of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        pacer = _PACERS.get(loop)
        if pacer is None:
            pacer = _PACERS[loop] = _WritePacer(WRITE_INTERVAL)
        return pacer

    def hold(self, subscriber: Subscriber) -> None:
        """Release ``subscriber``'s ``hold_writes`` at the next tick."""
        self._holding.add(subscriber)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        holding, self._holding = self._holding, set()
        for subscriber in holding:
            subscriber.release()


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WritePacer] = (
    weakref.WeakKeyDictionary()
)


async def close_websockets(app: web.Application) -> None:
    """On shutdown every WebSocket gets a close frame (1001 going away)."""
    open_sockets = app[SOCKETS_KEY]
    for ws in open_sockets.copy():
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
