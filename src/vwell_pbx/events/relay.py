"""``dispatchEvent`` across server instances: each instance's bus, joined by a channel.

Several instances behind a load balancer each have their own bus and their own
subscribers. A client's ``dispatchEvent`` on instance A must also reach the
subscribers connected to B, so A's :class:`EventRelay` sends it over a message
channel that every instance listens to (PostgreSQL's ``LISTEN``/``NOTIFY``, given as
two plain callables, so this layer knows nothing of the database), and B's relay
publishes it on B's bus.

::

    dispatchEvent on A: data = relay.encode(event)   # EventError if too large
                        bus.publish(event)           # A's subscribers
                        relay.forward(data)          # queued, never awaits
    A's sender task:    send([message, ...])         # one transaction per batch
    every instance:     receive(message)             # from the channel's listener
    B (not A):          bus.publish(BusEvent(...))   # B's subscribers, B's event ids

Invariants:

1. Only events a client dispatched travel (``origin: "api"``); PBX events never do:
   every instance has its own AMI connections and sees its PBX's events itself.
2. An event received from another instance is published on the local bus and nowhere
   else: it never goes back to the channel (only ``dispatchEvent`` calls ``forward``),
   so nothing circulates between instances. While it is being published,
   :meth:`EventRelay.is_relayed` is true for it, so the local webhooks skip it (the
   instance the client called delivered it to them already).
3. An instance ignores its own messages by their *origin*, a random token of this run
   (PostgreSQL delivers a notification to every listener, the sender's included).
4. Each instance stamps its own ``eventId`` on what it publishes (ids are per
   instance): a relayed event does not carry the sender's id, which would mean nothing
   to the receiver's clients.
5. Bounds: an event's JSON is at most ``max_event_bytes`` (:meth:`encode` refuses a
   larger one with a clear :class:`~vwell_pbx.events.bus.EventError`, before anything
   is published); at most ``queue_size`` events wait to be sent (past that the newest
   is dropped and counted); a receiver reassembles at most ``MAX_SENDERS`` partial
   events at once, each within ``max_event_bytes``.

A ``NOTIFY`` payload must stay under 8000 bytes, so an event is cut into messages of
at most ``chunk_bytes`` (at UTF-8 character boundaries), sent in one transaction: they
arrive together and in order. Each message is ``v1 ORIGIN SEQ INDEX/COUNT TEXT``.

Delivery to the other instances is *at most once*, like the bus's own: an event is
lost for an instance whose listening connection is down when it is sent (counted as a
gap when that connection comes back), and for all of them when the database cannot
take it (counted as failed). ``dispatchEvent``'s ``delivered`` counts this instance's
connections only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from vwell_pbx.errors import VwellError
from vwell_pbx.events.bus import BusEvent, EventBus, EventError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_EVENT_BYTES",
    "MAX_SENDERS",
    "EventRelay",
    "RelayStats",
    "encode_messages",
]

log = logging.getLogger(__name__)

#: Text of one message at most (the 8000-byte NOTIFY limit, less the header and slack).
DEFAULT_CHUNK_BYTES: Final = 7800
#: ``[instances] max_event_bytes``: a dispatched event's JSON, at most.
DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024
#: Senders whose partly received event a receiver keeps at once.
MAX_SENDERS: Final = 64
#: Events sent in one transaction at most.
BATCH_EVENTS: Final = 64
_VERSION = "v1"
_EVENT_ID_KEY = "eventid"  # lowercased: the receiving bus stamps its own (invariant 4)

#: ``send(messages)``: deliver these messages to every instance, together and in order.
Send = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(slots=True)
class RelayStats:
    """Counters of one relay (``/health`` and ``/metrics``)."""

    #: Events handed to the channel, and events received from other instances.
    sent: int = 0
    received: int = 0
    #: Events not sent: the queue was full, or the channel refused them (database down).
    dropped: int = 0
    failed: int = 0
    #: Messages from other instances that could not be used (malformed, out of order).
    invalid: int = 0
    #: Times listening resumed after a loss: events sent meanwhile were missed here.
    gaps: int = 0


def _split_utf8(data: bytes, size: int) -> list[str]:
    """``data`` (UTF-8) cut into texts of at most ``size`` bytes, never inside a character."""
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start = end
    return parts or [""]


def encode_messages(origin: str, seq: int, data: bytes, chunk_bytes: int) -> list[str]:
    """The messages that carry one event's JSON ``data`` (see the module docstring)."""
    chunks = _split_utf8(data, chunk_bytes)
    count = len(chunks)
    return [f"{_VERSION} {origin} {seq} {i}/{count} {chunk}" for i, chunk in enumerate(chunks)]


class _RelayMessageError(VwellError):
    """A message on the channel that this relay cannot use (internal)."""


@dataclass(slots=True)
class _Partial:
    seq: int
    count: int
    parts: list[str]
    size: int


class EventRelay:
    """One instance's end of the channel; see the module docstring.

    ``send`` delivers messages to every instance (``Database.send`` bound to the
    configured channel); the caller connects the channel's listener to
    :meth:`receive` and :meth:`resumed`, then runs :meth:`run` as a task. ``origin``
    names this run on the channel (default: random).
    """

    def __init__(
        self,
        bus: EventBus,
        send: Send,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        queue_size: int = 1000,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        origin: str | None = None,
    ) -> None:
        if max_event_bytes < 1 or queue_size < 1 or chunk_bytes < 16:
            raise ValueError("max_event_bytes, queue_size and chunk_bytes must be positive")
        self._bus = bus
        self._send = send
        self.max_event_bytes = max_event_bytes
        self.queue_size = queue_size
        self._chunk_bytes = chunk_bytes
        self.origin = origin or secrets.token_hex(8)
        if not self.origin.isalnum():
            raise ValueError("origin must be letters and digits")
        self.stats = RelayStats()
        self._queue: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._seq = 0
        self._partial: collections.OrderedDict[str, _Partial] = collections.OrderedDict()
        self._incoming: BusEvent | None = None
        self._dropping = False
        self._failing = False

    # -- this instance's events -------------------------------------------------------

    def encode(self, event: BusEvent) -> bytes:
        """The JSON that :meth:`forward` sends for ``event``; :class:`EventError` (before
        anything is published) if it is larger than ``max_event_bytes``."""
        fields = {k: v for k, v in event.fields.items() if k.lower() != _EVENT_ID_KEY}
        data = orjson.dumps(fields)
        if len(data) > self.max_event_bytes:
            raise EventError(
                f"event is {len(data)} bytes as JSON; events are delivered to the other "
                f"server instances only up to {self.max_event_bytes} bytes: send a smaller "
                "event (for example an id the receivers look up)"
            )
        return data

    def forward(self, data: bytes) -> bool:
        """Queue an encoded event for the other instances; never awaits. ``False`` (and
        counted) when ``queue_size`` events are already waiting."""
        if len(self._queue) >= self.queue_size:
            self.stats.dropped += 1
            if not self._dropping:  # one line per episode, not per event
                self._dropping = True
                log.warning(
                    "relay: %d events wait to be sent to the other instances; dropping "
                    "events until the database catches up",
                    self.queue_size,
                )
            return False
        self._dropping = False
        self._queue.append(data)
        self._wakeup.set()
        return True

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return len(self._queue)

    async def run(self) -> None:
        """Send queued events for ever (until cancelled), a batch per transaction."""
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._queue.popleft() for _ in range(min(BATCH_EVENTS, len(self._queue)))]
            messages: list[str] = []
            for data in batch:
                self._seq += 1
                messages.extend(encode_messages(self.origin, self._seq, data, self._chunk_bytes))
            try:
                await self._send(messages)
            except VwellError as exc:  # the database layer's errors: down, busy, timeout
                self.stats.failed += len(batch)
                if not self._failing:
                    self._failing = True
                    log.warning("relay: cannot send events to the other instances: %s", exc)
                continue
            except Exception:  # a bug: logged, and the relay goes on with the next batch
                self.stats.failed += len(batch)
                log.exception("relay: sending events to the other instances failed")
                continue
            if self._failing:
                self._failing = False
                log.info("relay: sending events to the other instances again")
            self.stats.sent += len(batch)

    # -- the other instances' events --------------------------------------------------

    def is_relayed(self, event: BusEvent) -> bool:
        """Whether ``event`` is one received from another instance, being published now."""
        return event is self._incoming

    def resumed(self) -> None:
        """The channel's listener is back after a loss: events sent meanwhile are missed."""
        self.stats.gaps += 1
        self._partial.clear()
        log.warning(
            "relay: listening again after a database connection loss; events the other "
            "instances sent meanwhile were not delivered here"
        )

    def receive(self, message: str) -> None:
        """One message from the channel (this instance's own ones are skipped)."""
        try:
            data = self._assemble(message)
            if data is None:
                return
            event = self._decode(data)
        except _RelayMessageError as exc:
            self.stats.invalid += 1
            log.warning("relay: ignored a message from another instance: %s", exc)
            return
        self.stats.received += 1
        self._incoming = event
        try:
            self._bus.publish(event)
        finally:
            self._incoming = None

    def _assemble(self, message: str) -> bytes | None:
        """The whole event once its last message arrived, else ``None``."""
        head = message.split(" ", 4)
        if len(head) != 5 or head[0] != _VERSION:
            raise _RelayMessageError("not a relay message of this version")
        _, origin, seq_text, position, chunk = head
        if origin == self.origin:
            return None  # our own (invariant 3)
        index_text, _, count_text = position.partition("/")
        if not (seq_text.isdigit() and index_text.isdigit() and count_text.isdigit()):
            raise _RelayMessageError("malformed header")
        seq, index, count = int(seq_text), int(index_text), int(count_text)
        if not 0 <= index < count:
            raise _RelayMessageError("malformed header")
        size = len(chunk.encode("utf-8", "surrogatepass"))
        if index == 0:
            partial = _Partial(seq, count, [chunk], size)
        else:
            partial_or_none = self._partial.pop(origin, None)
            if partial_or_none is None or (partial_or_none.seq, partial_or_none.count) != (
                seq,
                count,
            ):
                raise _RelayMessageError("a part of an event whose beginning was missed")
            partial = partial_or_none
            partial.parts.append(chunk)
            partial.size += size
        if partial.size > self.max_event_bytes:
            raise _RelayMessageError(f"an event larger than {self.max_event_bytes} bytes")
        if len(partial.parts) < count:
            self._partial[origin] = partial
            while len(self._partial) > MAX_SENDERS:
                self._partial.popitem(last=False)
            return None
        return "".join(partial.parts).encode("utf-8", "surrogatepass")

    @staticmethod
    def _decode(data: bytes) -> BusEvent:
        try:
            fields = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _RelayMessageError("not JSON") from None
        if not isinstance(fields, dict):
            raise _RelayMessageError("not an object")
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip() or fields.get("origin") != "api":
            raise _RelayMessageError("not a client's event (name, origin)")
        for key in [k for k in fields if k.lower() == _EVENT_ID_KEY]:
            del fields[key]
        return BusEvent(fields=fields, name=name, dispatched=True)
