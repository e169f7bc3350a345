"""What the web layer's modules share: their settings, the application's typed state
(aiohttp ``AppKey``s) and the one way they answer with an envelope.

Transport code never writes an ``errCode`` by hand: it raises (or is handed) one of the
API's exceptions and answers with :func:`error_response`, which asks
``Api.error_answer`` for the envelope and ``ErrorCode.http_status`` for the status, so
codes, messages and statuses come from one table (``api.errors``).
"""

from __future__ import annotations

import ipaddress
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from vwell_pbx.api.errors import error_code
from vwell_pbx.api.service import Api
from vwell_pbx.web.instance import InstanceHealth
from vwell_pbx.web.metrics import ServerMetrics

__all__ = [
    "API_KEY",
    "INSTANCE_KEY",
    "JSON",
    "METRICS_KEY",
    "PER_ADDRESS_KEY",
    "SETTINGS_KEY",
    "SOCKETS_KEY",
    "ProxyNetwork",
    "WebSettings",
    "error_response",
    "json_response",
]

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """Transport limits, CORS and proxies; see docs/configuration.md for each bound."""

    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 1024 * 1024
    ws_max_message_bytes: int = 256 * 1024
    json_max_depth: int = 32
    ws_queue_size: int = 1000
    max_subscriptions: int = 100
    max_inflight: int = 32
    max_ws_per_address: int = 200
    ws_heartbeat: float = 30.0
    #: Reverse proxies whose forwarding header tells the real client (``web.peers``).
    trusted_proxies: tuple[ProxyNetwork, ...] = ()
    #: Which header those proxies write: ``X-Forwarded-For`` or RFC 7239 ``Forwarded``.
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page from ``origin`` may call the API."""
        return "*" in self.cors_origins or origin in self.cors_origins


API_KEY = web.AppKey("api", Api)
SETTINGS_KEY = web.AppKey("web_settings", WebSettings)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)
SOCKETS_KEY = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])
"""Open WebSockets, closed with 1001 on shutdown (the set holds no references)."""
INSTANCE_KEY = web.AppKey("instance", InstanceHealth)
"""This instance's database and relay (``/health``, ``/metrics``); absent in bare apps."""
PER_ADDRESS_KEY = web.AppKey("ws_per_address", Counter[str])
"""Open WebSockets and event streams per client address (``limits.max_ws_per_address``)."""

JSON = "application/json"


def json_response(body: Mapping[str, Any], status: int = 200) -> web.Response:
    """A JSON answer (serialised once, with orjson)."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


def error_response(
    request: web.Request, exc: Exception, *, status: int | None = None
) -> web.Response:
    """The error envelope for ``exc`` with ``status``, by default its code's HTTP status.

    ``/api`` passes ``status=200`` (it answers 200 whatever the outcome, as the
    original's clients expect); other endpoints use the code's own status.
    """
    answer = request.app[API_KEY].error_answer(exc)
    response = json_response(answer, error_code(exc).http_status if status is None else status)
    if "retryAfter" in answer:
        response.headers["Retry-After"] = str(max(1, round(answer["retryAfter"])))
    return response
