"""The replay buffer: the newest published events, kept for clients that come back.

One buffer per bus, fed by :meth:`EventBus.publish` with every event it publishes, read
by ``onEvent``/``onceEvent`` with ``since`` (WebSocket) and by ``Last-Event-ID`` (the
event stream). It holds the :class:`BusEvent` objects themselves, so a replay is
matched by the same filters and the same permission guards as live delivery, and sends
the very bytes live subscribers got.

Bounds: at most ``max_events`` events and at most ``max_bytes`` bytes of their JSON
(``[events] replay_size`` and ``replay_bytes``); whichever is reached first evicts the
oldest. An event larger than ``max_bytes`` on its own is not kept at all. The bytes
are what clients are sent, so ``max_bytes`` also bounds one replay; the Python objects
behind an event (its fields dict, their strings, the matching caches) cost about 2 KB
more for a typical PBX event of 300 bytes of JSON (measured, docs/architecture.md), so
memory is about ``max_events`` x 2 KB plus the JSON.

Invariants:

1. Held events are in publish order: their ``seq`` strictly increases.
2. After every :meth:`record`, ``len(self) <= max_events`` and
   ``self.bytes <= max_bytes``.
3. ``evicted_through`` is the highest ``seq`` recorded but no longer held (0 if none);
   every recorded event above it is held. So a client whose last event was ``seq``
   missed nothing the buffer lost exactly when ``evicted_through <= seq``.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vwell_pbx.events.bus import BusEvent

__all__ = ["DEFAULT_REPLAY_BYTES", "DEFAULT_REPLAY_SIZE", "ReplayBuffer"]

#: ``[events] replay_size``: events kept for resuming.
DEFAULT_REPLAY_SIZE = 5000
#: ``[events] replay_bytes``: bytes of their JSON, at most (4 MiB).
DEFAULT_REPLAY_BYTES = 4 * 1024 * 1024


class ReplayBuffer:
    """The newest published events within a count and a byte bound (module docstring)."""

    __slots__ = ("_events", "bytes", "evicted_through", "max_bytes", "max_events")

    def __init__(
        self, *, max_events: int = DEFAULT_REPLAY_SIZE, max_bytes: int = DEFAULT_REPLAY_BYTES
    ) -> None:
        """Make an empty buffer; both bounds must be at least 1."""
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be at least 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: collections.deque[BusEvent] = collections.deque()
        #: Bytes of JSON held now.
        self.bytes = 0
        #: The newest ``seq`` that was recorded and is no longer held (invariant 3).
        self.evicted_through = 0

    def __len__(self) -> int:
        return len(self._events)

    def record(self, event: BusEvent) -> None:
        """Keep ``event`` (stamped by the bus: ``seq`` above every held one), evicting
        the oldest past either bound."""
        # The bus serialised the event before recording it: its cached JSON is read
        # directly, since payload() is a Python call (several hundred CPU
        # instructions) and this runs twice per published event (it and the evicted).
        payload = event._payload
        size = len(payload if payload is not None else event.payload())
        if size > self.max_bytes:
            self.evicted_through = event.seq  # never held: as good as evicted at once
            return
        events = self._events
        events.append(event)
        self.bytes += size
        while len(events) > self.max_events or self.bytes > self.max_bytes:
            old = events.popleft()
            self.bytes -= len(old._payload or b"")  # set by the time it was held
            self.evicted_through = old.seq

    def after(self, seq: int) -> list[BusEvent]:
        """The held events with a ``seq`` above ``seq``, oldest first.

        Walks from the newest end, so a client that was away briefly costs what it
        missed, not the whole buffer.
        """
        found: list[BusEvent] = []
        for event in reversed(self._events):
            if event.seq <= seq:
                break
            found.append(event)
        found.reverse()
        return found

    def covers(self, seq: int) -> bool:
        """Whether every recorded event after ``seq`` is still held (invariant 3)."""
        return self.evicted_through <= seq
