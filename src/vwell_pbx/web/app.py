"""aiohttp routes: ``/api`` over GET, POST and WebSocket, CORS, ``/health``, ``/metrics``.

Transport decoding lives here (query strings, forms, multipart, JSON, WebSocket frames);
everything after the decoded envelope is ``api.service.Api``. ``/api`` always answers
HTTP 200 with the envelope, except a body too large to read (413) or one that cannot be
parsed at all (400), which still carry the envelope.

WebSocket connections (rule 6 of STYLE.md): one ``Subscriber`` per connection holds a
bounded queue of ready-to-send frames, shared by API answers and pushed events; one
sender task drains it. Publishing never waits for a connection: when a queue
overflows, the connection is closed (1008) and counted, and nobody else slows down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import struct
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vwell_pbx import __version__
from vwell_pbx.ami.client import ConnectionStatus
from vwell_pbx.api.envelope import failure, req_id_of
from vwell_pbx.api.forms import FormError, decode_params, json_depth_ok
from vwell_pbx.api.service import Api, Session
from vwell_pbx.events.bus import Subscriber
from vwell_pbx.web import logs
from vwell_pbx.web.console import setup_console
from vwell_pbx.web.metrics import ServerMetrics
from vwell_pbx.web.openapi import setup_openapi
from vwell_pbx.web.sse import setup_event_stream
from vwell_pbx.web.webhooks import webhooks_health

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """Transport limits and CORS; see docs/configuration.md for each bound."""

    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 1024 * 1024
    ws_max_message_bytes: int = 256 * 1024
    json_max_depth: int = 32
    ws_queue_size: int = 1000
    max_subscriptions: int = 100
    max_inflight: int = 32
    max_ws_per_address: int = 200
    ws_heartbeat: float = 30.0

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page from ``origin`` may call the API."""
        return "*" in self.cors_origins or origin in self.cors_origins


API_KEY = web.AppKey("api", Api)
SETTINGS_KEY = web.AppKey("web_settings", WebSettings)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)
SOCKETS_KEY = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])
"""Open WebSockets, closed with 1001 on shutdown (the set holds no references)."""
PER_ADDRESS_KEY = web.AppKey("ws_per_address", Counter[str])

JSON = "application/json"


def build_app(api: Api, settings: WebSettings, metrics: ServerMetrics) -> web.Application:
    """The aiohttp application; the same one is served on the HTTP and WebSocket ports."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[_request_id_middleware, _cors_middleware],
    )
    app[API_KEY] = api
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[SOCKETS_KEY] = weakref.WeakSet()
    app[PER_ADDRESS_KEY] = Counter()
    app.router.add_route("GET", "/api", _api_get)
    app.router.add_route("POST", "/api", _api_post)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    setup_console(app)
    setup_event_stream(
        app, api=api, web_settings=settings, metrics=metrics, per_address=app[PER_ADDRESS_KEY]
    )
    setup_openapi(app)
    app.on_shutdown.append(_close_websockets)
    return app


_RUN_ID = secrets.token_hex(2)
_REQUEST_NUMBERS = itertools.count(1)


def _new_request_id() -> str:
    """A short id for log lines, unique within this run (a counter: cheap)."""
    return f"{_RUN_ID}-{next(_REQUEST_NUMBERS):x}"


@web.middleware
async def _request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every log line written while handling the request carries its id (logs.py)."""
    request_id = _new_request_id()
    logs.request_id.set(request_id)
    response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def _envelope_response(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


def _peer(request: web.Request) -> str:
    return request.remote or "unknown"


# --- CORS ---------------------------------------------------------------------------

_PREFLIGHT_MAX_AGE = "600"


@web.middleware
async def _cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS for browsers on other origins; credentials travel in the body, never cookies."""
    settings = request.app[SETTINGS_KEY]
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and origin is not None:
        if not settings.origin_allowed(origin):
            return web.Response(status=403, text=f"origin {origin} is not allowed\n")
        preflight = web.Response(status=204)
        _add_cors_headers(preflight, origin, settings)
        preflight.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        requested = request.headers.get("Access-Control-Request-Headers")
        preflight.headers["Access-Control-Allow-Headers"] = requested or "Content-Type"
        preflight.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
        return preflight
    response = await handler(request)
    if origin is not None and not response.prepared and settings.origin_allowed(origin):
        _add_cors_headers(response, origin, settings)
    return response


def _add_cors_headers(response: web.StreamResponse, origin: str, settings: WebSettings) -> None:
    response.headers["Access-Control-Allow-Origin"] = (
        "*" if "*" in settings.cors_origins else origin
    )
    response.headers["Vary"] = "Origin"


# --- HTTP /api ----------------------------------------------------------------------


async def _api_get(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    return await _api_get_http(request)


async def _api_get_http(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        envelope = decode_params(list(request.query.items()), max_depth=settings.json_max_depth)
    except FormError as exc:
        return _envelope_response(failure(None, "bad_request", str(exc)))
    return await _answer_http(request, envelope)


async def _api_post(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        envelope = await _decode_post(request, settings)
    except web.HTTPRequestEntityTooLarge:
        return _envelope_response(
            failure(
                None, "bad_request", f"request body is larger than {settings.max_body_bytes} bytes"
            ),
            status=413,
        )
    except FormError as exc:
        return _envelope_response(failure(None, "bad_request", str(exc)))
    return await _answer_http(request, envelope)


async def _answer_http(request: web.Request, envelope: object) -> web.Response:
    session = Session(peer=_peer(request), transport="http")
    return _envelope_response(await request.app[API_KEY].handle(envelope, session))


async def _decode_post(request: web.Request, settings: WebSettings) -> object:
    content_type = request.content_type
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        pairs: list[tuple[str, str]] = []
        for key, value in form.items():
            if not isinstance(value, str):
                raise FormError(f"form field {key!r} must be text, not a file upload")
            pairs.append((key, value))
        return decode_params(
            pairs or list(request.query.items()), max_depth=settings.json_max_depth
        )
    body = await request.read()
    if not body.strip():
        return decode_params(list(request.query.items()), max_depth=settings.json_max_depth)
    return _decode_json(body, settings)


def _decode_json(body: bytes, settings: WebSettings) -> object:
    try:
        envelope: object = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FormError(f"the body is not valid JSON: {exc}") from None
    if not json_depth_ok(envelope, settings.json_max_depth):
        raise FormError(f"JSON nested deeper than {settings.json_max_depth} levels")
    return envelope


# --- WebSocket /api -----------------------------------------------------------------


async def _websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings, metrics = app[SETTINGS_KEY], app[METRICS_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and not settings.origin_allowed(origin):
        return web.Response(status=403, text=f"origin {origin} is not allowed\n")
    peer = _peer(request)
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
            self._api.bus.unsubscribe_all(self._subscriber)
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
            self._reply(
                failure(
                    req_id_of(envelope),
                    "rate_limited",
                    f"at most {self._settings.max_inflight} requests may run at "
                    "once on one connection; wait for answers first",
                )
            )
            return
        task = asyncio.create_task(self._answer(data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: str | bytes) -> None:
        # This task inherited the connection's id; each request gets its own under it.
        logs.request_id.set(f"{logs.request_id.get()}.{next(_REQUEST_NUMBERS):x}")
        try:
            envelope = _decode_json(
                data.encode() if isinstance(data, str) else data, self._settings
            )
        except FormError as exc:
            self._reply(failure(None, "bad_request", str(exc)))
            return
        self._reply(await self._api.handle(envelope, self._session))

    def _reply(self, response: Mapping[str, Any]) -> None:
        self._subscriber.put_nowait_reply(orjson.dumps(response))

    async def _send_loop(self) -> None:
        ws = self._ws
        subscriber = self._subscriber
        while not ws.closed:
            frames = await subscriber.get()
            if len(frames) == 1:
                await ws.send_frame(frames[0], WSMsgType.TEXT)
            elif frames:
                await _send_text_frames(ws, frames)
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
        # A client that stopped reading never completes the closing handshake, and a
        # transport.close() (what aiohttp does when the close times out) waits forever
        # for its full write buffer to drain; is_closing() is then already true. Abort
        # unconditionally so the reader loop ends and everything is released.
        transport = ws._req.transport if ws._req is not None else None
        if transport is not None:
            transport.abort()


def _text_frames(payloads: list[bytes]) -> bytes:
    """Unmasked, unfragmented WebSocket text frames (RFC 6455 5.2) carrying ``payloads``."""
    parts: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        if size < 126:
            parts.append(bytes((0x81, size)))
        elif size < 65536:
            parts.append(struct.pack("!BBH", 0x81, 126, size))
        else:
            parts.append(struct.pack("!BBQ", 0x81, 127, size))
        parts.append(payload)
    return b"".join(parts)


async def _send_text_frames(ws: web.WebSocketResponse, payloads: list[bytes]) -> None:
    """Send several queued messages with one write instead of one write each.

    A busy connection drains dozens of events per wake-up; writing them one frame at a
    time was the largest cost of fan-out (docs/performance.md). aiohttp has no batch
    API, so this writes whole frames to the writer's transport (frames never interleave:
    aiohttp writes each of its own frames, pings and closes included, in one call) and
    waits for the transport to drain as aiohttp's own writer does. Compression is off on
    our WebSockets, so the frames need no per-message state.
    """
    writer = ws._writer
    if writer is None or writer.transport.is_closing():
        raise ConnectionResetError("the WebSocket is closing")
    writer.transport.write(_text_frames(payloads))
    protocol = writer.protocol
    if protocol._paused:
        await protocol._drain_helper()


async def _close_websockets(app: web.Application) -> None:
    """On shutdown every WebSocket gets a close frame (1001 going away)."""
    open_sockets = app[SOCKETS_KEY]
    for ws in open_sockets.copy():
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


# --- /health and /metrics -----------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    pbxs = []
    healthy = True
    for name, link in api.links.items():
        state = link.client.state
        healthy &= state.status is ConnectionStatus.CONNECTED
        pbxs.append(
            {
                "name": name,
                "status": state.status.value,
                "since": state.since,
                "lastError": state.last_error,
                "reconnects": state.reconnects,
            }
        )
    stats = api.bus.stats
    body = {
        "status": "ok" if healthy else "degraded",
        "version": __version__,
        "pbx": pbxs,
        "websockets": len(request.app[SOCKETS_KEY]),
        "events": {
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "subscriptions": stats.subscriptions,
        },
        "webhooks": webhooks_health(request.app),
    }
    return _envelope_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
