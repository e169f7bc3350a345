"""aiohttp routes: ``/api`` over GET, POST and WebSocket, CORS, ``/health``, ``/metrics``.

``/health`` answers 200 with ``status: "ok"``, or 503 with ``"degraded"`` when a PBX
is not connected, the database does not answer its probe, or the database's LISTEN
connection is down (``web.instance``).

Transport decoding lives here (query strings, forms, multipart, JSON); everything after
the decoded envelope is ``api.service.Api``. ``/api`` always answers HTTP 200 with the
envelope, except a body too large to read (413), which still carries the envelope.
WebSocket connections are ``web.websocket``; the event stream is ``web.sse``.

Middlewares, outermost first: the client's address behind trusted proxies
(``web.peers``), a request id for log lines (``web.logs``), CORS.

An HTTP client that disconnects cancels its request (the runner is made with
``handler_cancellation=True`` in ``web.server``): a ``send`` waiting for the PBX stops
waiting, and the AMI client forgets the pending action.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vwell_pbx import __version__
from vwell_pbx.ami.client import ConnectionStatus
from vwell_pbx.api.errors import BadRequest
from vwell_pbx.api.forms import FormError, decode_json, decode_params
from vwell_pbx.api.service import Api, Session
from vwell_pbx.web import logs
from vwell_pbx.web.console import setup_console
from vwell_pbx.web.context import (
    API_KEY,
    INSTANCE_KEY,
    METRICS_KEY,
    PER_ADDRESS_KEY,
    SETTINGS_KEY,
    SOCKETS_KEY,
    WebSettings,
    error_response,
    json_response,
)
from vwell_pbx.web.instance import InstanceHealth
from vwell_pbx.web.metrics import ServerMetrics
from vwell_pbx.web.openapi import setup_openapi
from vwell_pbx.web.peers import client_address_middleware
from vwell_pbx.web.sse import StreamSettings, setup_event_stream
from vwell_pbx.web.webhooks import webhooks_health
from vwell_pbx.web.websocket import close_websockets, serve_websocket

__all__ = [
    "API_KEY",
    "METRICS_KEY",
    "PER_ADDRESS_KEY",
    "SETTINGS_KEY",
    "SOCKETS_KEY",
    "WebSettings",
    "build_app",
]

log = logging.getLogger(__name__)


def build_app(
    api: Api,
    settings: WebSettings,
    metrics: ServerMetrics,
    stream_settings: StreamSettings | None = None,
    instance: InstanceHealth | None = None,
) -> web.Application:
    """The aiohttp application; the same one is served on the HTTP and WebSocket ports.

    ``instance`` adds the database and the relay to ``/health`` and ``/metrics``.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[client_address_middleware, _request_id_middleware, _cors_middleware],
    )
    app[API_KEY] = api
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[SOCKETS_KEY] = weakref.WeakSet()
    app[PER_ADDRESS_KEY] = Counter()
    if instance is not None:
        app[INSTANCE_KEY] = instance
        metrics.registry.register(instance.collector())
    app.router.add_route("GET", "/api", _api_get)
    app.router.add_route("POST", "/api", _api_post)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    setup_console(app)
    setup_event_stream(
        app,
        api=api,
        web_settings=settings,
        metrics=metrics,
        per_address=app[PER_ADDRESS_KEY],
        settings=stream_settings,
    )
    setup_openapi(app)
    app.on_shutdown.append(close_websockets)
    return app


@web.middleware
async def _request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every log line written while handling the request carries its id (logs.py)."""
    request_id = logs.new_request_id()
    logs.request_id.set(request_id)
    response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


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
        return await serve_websocket(request)
    settings = request.app[SETTINGS_KEY]
    try:
        envelope = decode_params(list(request.query.items()), max_depth=settings.json_max_depth)
    except FormError as exc:
        return error_response(request, exc, status=200)
    return await _answer_http(request, envelope)


async def _api_post(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        envelope = await _decode_post(request, settings)
    except web.HTTPRequestEntityTooLarge:
        too_large = BadRequest(f"request body is larger than {settings.max_body_bytes} bytes")
        return error_response(request, too_large, status=413)
    except FormError as exc:
        return error_response(request, exc, status=200)
    return await _answer_http(request, envelope)


async def _answer_http(request: web.Request, envelope: object) -> web.Response:
    session = Session(peer=request.remote or "unknown", transport="http")
    return json_response(await request.app[API_KEY].handle(envelope, session))


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
    return decode_json(body, max_depth=settings.json_max_depth)


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
    instance = request.app.get(INSTANCE_KEY)
    if instance is not None:
        body["database"], database_ok = await instance.database()
        body["instance"] = instance.instance()
        if not database_ok:
            healthy = False
            body["status"] = "degraded"
    return json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    instance = request.app.get(INSTANCE_KEY)
    if instance is not None:
        await instance.probe()  # so vwell_storage_up is fresh (bounded, cached 1 s)
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
