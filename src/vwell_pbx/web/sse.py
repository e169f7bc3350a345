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
- Each event is ``id: <n>`` then ``data: <JSON>`` (the very bytes a WebSocket gets)
  and a blank line. There is no ``event:`` line, so a browser's
  ``EventSource.onmessage`` receives every event; the JSON's ``name`` says which.
- ``: ping`` comments every ``heartbeat`` seconds (``[event_stream]
  heartbeat_seconds``) keep proxies from timing out and find closed connections (a
  write to a gone client fails).
- Errors before the stream starts answer the usual JSON envelope, with the HTTP status
  of its ``errCode`` (``ErrorCode.http_status``: 400 ``bad_request``, 401
  ``auth_failed``, 403 ``forbidden``, 429 ``rate_limited``, ...) since an
  ``EventSource`` cannot read a body anyway; scripts can.

Ids and replay: every event published on the bus gets the next number of a counter
(monotonic within one server run), and the last ``replay_size`` events
(``[event_stream] replay_size``) are kept in a ring buffer (:class:`ReplayBuffer`).
A client that reconnects with ``Last-Event-ID`` (``EventSource`` does this by itself;
``?lastEventId=`` works too) first receives the buffered events after that id that
match its filter and role, then the live ones, never one twice. Recording starts when
the first stream opens (until then the bus may skip events nobody wants); an id older
than the buffer gives what is left and a ``: replay incomplete`` comment; an id newer
than any (a previous run) replays the whole buffer.

Bounds: the same per-connection queue as a WebSocket (``limits.ws_queue_size``; a
stream that falls further behind is closed and counted in
``vwell_slow_clients_dropped``), one subscription per stream, and streams count
toward ``limits.max_ws_per_address``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from prometheus_client import Gauge

from vwell_pbx.api.errors import ErrorCode, Forbidden, LimitExceeded
from vwell_pbx.api.forms import FormError, decode_params
from vwell_pbx.api.service import Api, Session
from vwell_pbx.events.bus import BusEvent, Subscriber
from vwell_pbx.events.filters import EventFilter
from vwell_pbx.web.context import WebSettings, error_response, json_response
from vwell_pbx.web.metrics import ServerMetrics

__all__ = [
    "STREAMS_KEY",
    "EventStreams",
    "ReplayBuffer",
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
    """Event stream timing and the replay bound."""

    #: Seconds between ``: ping`` comments on an idle stream.
    heartbeat: float = 15.0
    #: Events kept for ``Last-Event-ID`` replay (the ring buffer's size).
    replay_size: int = 1000
    #: The ``retry:`` hint sent to browsers: ms before ``EventSource`` reconnects.
    retry_ms: int = 3000

    def __post_init__(self) -> None:
        if self.heartbeat <= 0 or self.replay_size < 1 or self.retry_ms < 0:
            raise ValueError("heartbeat must be > 0, replay_size >= 1, retry_ms >= 0")


class ReplayBuffer:
    """The last ``size`` events with their ids, for ``Last-Event-ID``.

    Invariants: ids are consecutive integers from 1 in publish order; the buffer holds
    the newest ``size`` of them; ``id_of(payload)`` finds a buffered event by the very
    ``bytes`` object the bus queued for subscribers (each event is serialised once and
    the buffer keeps it alive, so the identity cannot be reused while it is indexed).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.newest = 0
        self._events: collections.deque[tuple[int, BusEvent]] = collections.deque()
        self._ids: dict[int, int] = {}

    def record(self, event: BusEvent) -> int:
        """Give ``event`` the next id and keep it, evicting the oldest past ``size``."""
        self.newest += 1
        if len(self._events) >= self.size:
            _old_id, old = self._events.popleft()
            self._ids.pop(id(old.payload()), None)
        self._events.append((self.newest, event))
        self._ids[id(event.payload())] = self.newest
        return self.newest

    def id_of(self, payload: bytes) -> int | None:
        """The id of the buffered event whose payload is ``payload`` (identity)."""
        return self._ids.get(id(payload))

    def after(self, last_id: int) -> tuple[list[tuple[int, BusEvent]], bool]:
        """Events with an id above ``last_id``, and whether some were already evicted.

        An id above the newest comes from an earlier run of the server: everything
        buffered is new to that client.
        """
        events = list(self._events)
        if last_id > self.newest:
            return events, bool(events) and events[0][0] > 1
        complete = not events or events[0][0] <= last_id + 1
        return [(n, e) for n, e in events if n > last_id], not complete


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
        self._replay: ReplayBuffer | None = None
        self._stop_recording: Callable[[], None] | None = None
        self._open: set[_Stream] = set()
        self.gauge = Gauge(
            "vwell_event_streams", "Open event streams (GET /api/events)", registry=metrics.registry
        )

    @property
    def replay(self) -> ReplayBuffer:
        """The replay buffer; recording starts on first use (see the module docstring)."""
        if self._replay is None:
            self._replay = ReplayBuffer(self.settings.replay_size)
            self._stop_recording = self.api.bus.listen(
                EventFilter.from_spec(None), self._replay.record
            )
        return self._replay

    @property
    def open_streams(self) -> int:
        """How many streams are open now."""
        return len(self._open)

    async def close_all(self, _app: web.Application | None = None) -> None:
        """End every stream (server shutdown) and stop recording."""
        for stream in list(self._open):
            stream.end()
        if self._stop_recording is not None:
            self._stop_recording()
            self._stop_recording = None

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
            last_id = _last_event_id(request, argument)
        except (Forbidden, LimitExceeded, FormError) as exc:
            return error_response(request, exc)
        replay = self.replay  # recording must start before the subscription exists
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
                return await stream.run(str(answer["subscriptionId"]), replay, last_id)
            finally:
                self.gauge.dec()
                self._open.discard(stream)
        finally:
            # Also when the client went away (cancelled) while it was being authorised.
            self.api.bus.unsubscribe_all(stream.subscriber)
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
        self._last_sent = 0
        self._response: web.StreamResponse | None = None

    def end(self) -> None:
        """Stop the stream: the writer loop drains what is queued and returns."""
        self.subscriber.close()

    async def run(
        self, subscription_id: str, replay: ReplayBuffer, last_id: int | None
    ) -> web.StreamResponse:
        """Send the head, the replay (with ``last_id``), then live events until the end."""
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
            head = f"retry: {settings.retry_ms}\n: subscribed {subscription_id}\n\n".encode()
            if last_id is not None:
                head += self._replayed(replay, last_id)
            await response.write(head)
            await self._pump(replay, settings.heartbeat)
        return response

    def _replayed(self, replay: ReplayBuffer, last_id: int) -> bytes:
        events, incomplete = replay.after(last_id)
        out = bytearray()
        if incomplete:
            out += (
                f": replay incomplete: some events after {last_id} are no longer buffered\n\n"
            ).encode()
        filters = [flt for _sid, flt, _once in self._streams.api.bus.subscriptions(self.subscriber)]
        guard = self.subscriber.guard
        for number, event in events:
            if any(f.matches(event) for f in filters) and (guard is None or guard(event)):
                out += _frame(number, event.payload())
        self._last_sent = max(self._last_sent, events[-1][0] if events else 0)
        return bytes(out)

    async def _pump(self, replay: ReplayBuffer, heartbeat: float) -> None:
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
            await self._write(b"".join(self._frames(items, replay)))
            if subscriber.closed and not subscriber.queued:
                return

    def _frames(self, items: Iterable[bytes], replay: ReplayBuffer) -> Iterable[bytes]:
        for data in items:
            number = replay.id_of(data)
            if number is None:
                # Evicted from the buffer before this slow reader got to it: no id.
                yield b"data: " + data + b"\n\n"
            elif number > self._last_sent:
                self._last_sent = number
                yield _frame(number, data)

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


def _frame(number: int, payload: bytes) -> bytes:
    # orjson never writes a newline, so the JSON is always a single data line.
    return b"id: %d\ndata: %s\n\n" % (number, payload)


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


def _last_event_id(request: web.Request, argument: Mapping[str, Any]) -> int | None:
    raw: str | None = request.headers.get("Last-Event-ID")
    if raw is None:
        query = argument.get("lastEventId")
        raw = None if query is None else str(query)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise FormError(
            "Last-Event-ID must be an event id received from this stream "
            f"(a number), got {raw[:40]!r}"
        ) from None
    if value < 0:
        raise FormError("Last-Event-ID must not be negative")
    return value


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
