"""``GET /api/events``: PBX events as Server-Sent Events, for clients that only speak HTTP.

One stream is one ``onEvent`` subscription. The request carries what an ``onEvent``
envelope would: credentials and ``name`` and/or ``event`` (the filter object), in
``fb64json`` (an envelope; ``method`` is ignored), or in bracket query parameters
(``argument[name]=Newchannel`` or plain ``name=Newchannel``), with the credentials
optionally in the headers ``X-Vwell-Login``, ``X-Vwell-Login2`` (percent-encoded UTF-8
allowed) and ``X-Vwell-Sha1``. The request runs through ``Api.handle`` as an
``onEvent`` call on a session of transport ``"sse"``, so authentication, the role's
method permission, the per-user rate and the role's event guard are exactly those of
a WebSocket.

Wire format (decided here, documented in docs/api.md and docs/operations.md):

- The stream opens with ``retry: <ms>`` and the comment ``: subscribed <id>``.
- Each event is ``id: <eventId>`` then ``data: <JSON>`` (the very bytes a WebSocket gets)
  and a blank line. There is no ``event:`` line, so a browser's
  ``EventSource.onmessage`` receives every event; the JSON's ``name`` says which.
- ``: ping`` comments every ``heartbeat`` seconds (``[event_stream]
  heartbeat_seconds``) keep proxies from timing out and find closed connections (a
  write to a gone client fails).
- Errors before the stream starts answer the usual JSON envelope, with the HTTP status
  of its ``errCode`` (``ErrorCode.http_status``: 400 ``bad_request``, 401
  ``auth_failed``, 403 ``forbidden``, 429 ``rate_limited``, ...) since an
  ``EventSource`` cannot read a body anyway; scripts can.

Ids and replay: each ``data:`` line is preceded by ``id: <eventId>``, the event's own
``eventId`` (the bus's, the same ids a WebSocket's ``since`` takes; opaque strings).
A client that reconnects with ``Last-Event-ID`` (``EventSource`` does this by itself;
``?lastEventId=`` or ``?since=`` work too) has it passed to ``onEvent`` as ``since``:
the stream first sends the buffered events after it that match its filter and role
(the bus's replay buffer, shared with WebSocket resumes), then the live ones, never
one twice. When ``onEvent`` reports a gap (the id is of another run, or the buffer no
longer covers it), the stream says so in a ``: replay incomplete`` comment before the
replay. What earlier releases sent as ids (plain numbers) and anything else that is
not an event id is never an error here: it is a gap with nothing replayed.

Bounds: the same per-connection queue as a WebSocket (``limits.ws_queue_size``; a
stream that falls further behind is closed and counted in
``vwell_slow_clients_dropped``), one subscription per stream, and streams count
toward ``limits.max_ws_per_address``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from prometheus_client import Gauge

from vwell_pbx.api.errors import ErrorCode, Forbidden, LimitExceeded
from vwell_pbx.api.forms import FormError, decode_params
from vwell_pbx.api.service import Api, Session
from vwell_pbx.events.bus import Subscriber, event_id_of
from vwell_pbx.events.ids import MAX_EVENT_ID_LENGTH, EventIdError, parse_event_id
from vwell_pbx.web.context import WebSettings, error_response, json_response
from vwell_pbx.web.metrics import ServerMetrics

__all__ = [
    "STREAMS_KEY",
    "EventStreams",
    "StreamSettings",
    "setup_event_stream",
]

log = logging.getLogger(__name__)

#: Credential headers, for clients that would rather not put them in the URL.
CREDENTIAL_HEADERS = (
    ("login", "X-Vwell-Login"),
    ("login2", "X-Vwell-Login2"),
    ("sha1", "X-Vwell-Sha1"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """Event stream timing."""

    #: Seconds between ``: ping`` comments on an idle stream.
    heartbeat: float = 15.0
    #: The ``retry:`` hint sent to browsers: ms before ``EventSource`` reconnects.
    retry_ms: int = 3000

    def __post_init__(self) -> None:
        if self.heartbeat <= 0 or self.retry_ms < 0:
            raise ValueError("heartbeat must be > 0 and retry_ms >= 0")


@dataclass(frozen=True, slots=True)
class _Resume:
    """What a reconnecting stream asked for: ``since`` for ``onEvent`` (``None`` when
    the id it sent is no event id), and the id as sent, for the gap comment."""

    since: str | None
    sent: str


class EventStreams:
    """The event-stream endpoint's state: settings, the replay buffer, open streams."""

    def __init__(
        self,
        api: Api,
        web_settings: WebSettings,
        metrics: ServerMetrics,
        per_address: collections.Counter[str],
        settings: StreamSettings,
    ) -> None:
        self.api = api
        self.web_settings = web_settings
        self.metrics = metrics
        self.settings = settings
        self._per_address = per_address
        self._open: set[_Stream] = set()
        self.gauge = Gauge(
            "vwell_event_streams", "Open event streams (GET /api/events)", registry=metrics.registry
        )

    @property
    def open_streams(self) -> int:
        """How many streams are open now."""
        return len(self._open)

    async def close_all(self, _app: web.Application | None = None) -> None:
        """End every stream (server shutdown)."""
        for stream in list(self._open):
            stream.end()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/events``."""
        web_settings = self.web_settings
        peer = request.remote or "unknown"
        try:
            origin = request.headers.get("Origin")
            if origin is not None and not web_settings.origin_allowed(origin):
                raise Forbidden(f"origin {origin} is not allowed")
            if self._per_address[peer] >= web_settings.max_ws_per_address:
                raise LimitExceeded(
                    "too many WebSocket and event-stream connections "
                    f"from {peer} (at most {web_settings.max_ws_per_address})"
                )
            argument = _argument(request, web_settings.json_max_depth)
            resume = _resume(request, argument)
        except (Forbidden, LimitExceeded, FormError) as exc:
            return error_response(request, exc)
        if resume is not None and resume.since is not None:
            argument["since"] = resume.since
        stream = _Stream(self, request, peer)
        # Counted before the first await, so that concurrent requests from one address
        # cannot all pass the bound while their credentials are being checked.
        self._per_address[peer] += 1
        try:
            answer = await self.api.handle(
                {"method": "onEvent", "argument": argument}, stream.session
            )
            if answer["errCode"] is not None:
                response = json_response(answer, ErrorCode(answer["errCode"]).http_status)
                if "retryAfter" in answer:
                    response.headers["Retry-After"] = str(max(1, round(answer["retryAfter"])))
                return response
            self._open.add(stream)
            self.gauge.inc()
            try:
                return await stream.run(answer, resume)
            finally:
                self.gauge.dec()
                self._open.discard(stream)
        finally:
            # Also when the client went away (cancelled) while it was being authorised.
            # Disconnected, not just unsubscribed: EventSource comes back by itself.
            self.api.bus.disconnect(stream.subscriber)
            self._per_address[peer] -= 1
            if self._per_address[peer] <= 0:
                del self._per_address[peer]


class _Stream:
    """One open event stream: its subscriber, its session, and the writer loop."""

    def __init__(self, streams: EventStreams, request: web.Request, peer: str) -> None:
        self._streams = streams
        self._request = request
        self.subscriber = Subscriber(
            max_queue=streams.web_settings.ws_queue_size,
            max_subscriptions=1,
            on_overflow=self._overflowed,
        )
        self.session = Session(peer=peer, transport="sse", subscriber=self.subscriber)
        self._response: web.StreamResponse | None = None

    def end(self) -> None:
        """Stop the stream: the writer loop drains what is queued and returns."""
        self.subscriber.close()

    async def run(self, answer: Mapping[str, Any], resume: _Resume | None) -> web.StreamResponse:
        """Send the head, the replay (``answer`` is onEvent's), then live events until
        the end."""
        settings = self._streams.settings
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        origin = self._request.headers.get("Origin")
        if origin is not None:
            cors = self._streams.web_settings.cors_origins
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in cors else origin
            response.headers["Vary"] = "Origin"
        self._response = response
        with contextlib.suppress(ConnectionError):
            await response.prepare(self._request)
            head = bytearray(
                f"retry: {settings.retry_ms}\n: subscribed {answer['subscriptionId']}\n\n".encode()
            )
            if resume is not None:
                head += _replayed(answer, resume)
            await response.write(bytes(head))
            await self._pump(settings.heartbeat)
        return response

    async def _pump(self, heartbeat: float) -> None:
        subscriber = self.subscriber
        request = self._request
        while True:
            items = await subscriber.get(timeout=heartbeat)
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            if not items:
                if subscriber.closed:
                    return
                await self._write(b": ping\n\n")
                continue
            await self._write(b"".join(_frame(data) for data in items))
            if subscriber.closed and not subscriber.queued:
                return

    async def _write(self, data: bytes) -> None:
        assert self._response is not None
        await self._response.write(data)

    def _overflowed(self, _subscriber: Subscriber) -> None:
        """Called by the bus (synchronously): never wait here. Drop the connection."""
        self._streams.metrics.slow_clients.inc()
        log.warning(
            "closing the event stream of %s: it did not read %d queued events",
            self.session.peer,
            self._streams.web_settings.ws_queue_size,
        )
        self.subscriber.close()
        transport = self._request.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _frame(payload: bytes) -> bytes:
    # orjson never writes a newline, so the JSON is always a single data line; the id
    # is the event's own eventId (letters, digits and "-": nothing to escape).
    event_id = event_id_of(payload)
    if event_id is None:
        return b"data: " + payload + b"\n\n"
    return b"id: " + event_id.encode() + b"\ndata: " + payload + b"\n\n"


def _replayed(answer: Mapping[str, Any], resume: _Resume) -> bytes:
    """The gap comment, if any, and the frames of the events onEvent replayed."""
    out = bytearray()
    if resume.since is None or answer.get("gap"):
        out += (
            ": replay incomplete: events after "
            f"{resume.sent[:MAX_EVENT_ID_LENGTH]!r} may be missing\n\n"
        ).encode()
    for fragment in answer.get("events", ()):
        # onEvent embeds each event's JSON as an orjson.Fragment; dumping a fragment
        # gives back exactly its bytes.
        out += _frame(orjson.dumps(fragment))
    return bytes(out)


def _argument(request: web.Request, max_depth: int) -> dict[str, Any]:
    """The ``onEvent`` argument from the query (``fb64json`` or brackets) and headers."""
    envelope = decode_params(list(request.query.items()), max_depth=max_depth)
    if not isinstance(envelope, Mapping):
        raise FormError(
            'fb64json must be a JSON object like {"argument": {"login": ..., "name": "Newchannel"}}'
        )
    inner = envelope.get("argument")
    if inner is not None and not isinstance(inner, Mapping):
        raise FormError("argument must be an object")
    argument: dict[str, Any] = dict(inner or {})
    for key, value in envelope.items():  # plain ?name=...&login=... work too
        if key not in ("method", "argument"):
            argument.setdefault(key, value)
    for key, header in CREDENTIAL_HEADERS:
        given = request.headers.get(header)
        if given is not None and key not in argument:
            try:
                argument[key] = unquote(given, errors="strict")
            except UnicodeDecodeError:
                raise FormError(f"header {header} is not percent-encoded UTF-8") from None
    return argument


def _resume(request: web.Request, argument: dict[str, Any]) -> _Resume | None:
    """The id a reconnecting client sent: ``Last-Event-ID``, else ``?lastEventId=`` or
    ``?since=``; the query keys are taken out of ``argument`` either way (the header
    wins: ``EventSource`` sends it with the URL it was first given)."""
    query = argument.pop("lastEventId", None)
    since = argument.pop("since", None)
    raw: object = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = query if query is not None else since
    if raw is None or not isinstance(raw, str | int) or not str(raw).strip():
        return None
    text = str(raw).strip()
    try:
        parse_event_id(text)
    except EventIdError:
        return _Resume(since=None, sent=text)  # an id of an earlier release, or garbage
    return _Resume(since=text, sent=text)


STREAMS_KEY = web.AppKey("event_streams", EventStreams)


def setup_event_stream(
    app: web.Application,
    *,
    api: Api,
    web_settings: WebSettings,
    metrics: ServerMetrics,
    per_address: collections.Counter[str],
    settings: StreamSettings | None = None,
) -> EventStreams:
    """Add ``GET /api/events`` to ``app``; streams end when the app shuts down."""
    streams = EventStreams(api, web_settings, metrics, per_address, settings or StreamSettings())
    app[STREAMS_KEY] = streams
    app.router.add_get("/api/events", streams.handle)
    app.on_shutdown.append(streams.close_all)
    return streams
