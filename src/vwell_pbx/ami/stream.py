"""``EventStream``: one consumer's bounded, drop-oldest view of the PBX event flow.

The AMI reader pushes every event into each open stream without ever awaiting: a
stream owns a ``deque`` bounded by ``maxsize``; when a slow consumer lets it fill up,
the *oldest* event is discarded and counted in ``dropped`` (recent events matter more
for a telephony dashboard than old ones). Consumers iterate asynchronously::

    async with client.events(maxsize=500) as stream:
        async for event in stream:
            ...

A stream survives reconnects (it simply sees no events while the PBX is away). It
ends when ``close()`` is called, when its ``async with`` block exits, or when the
client is closed; events still queued at that moment are discarded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

from vwell_pbx.protocol import Message


class EventStream:
    """Async iterator over PBX events with its own bounded drop-oldest queue."""

    def __init__(
        self, maxsize: int, *, on_close: Callable[[EventStream], None] | None = None
    ) -> None:
        """A stream holding at most ``maxsize`` events; ``on_close(stream)`` runs once on close."""
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items: deque[Message] = deque(maxlen=maxsize)
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._closed = False
        self._on_close = on_close
        self.dropped = 0
        """Events discarded because the queue was full (oldest first)."""

    @property
    def maxsize(self) -> int:
        """The bound of the queue."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran; iteration then stops."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def push(self, event: Message) -> None:
        """Queue an event (called by the reader; never blocks, drops the oldest if full)."""
        if self._closed:
            return
        if len(self._items) == self._maxsize:
            self.dropped += 1  # deque(maxlen) evicts the oldest on append
        self._items.append(event)
        self._wakeup.set()

    def get_nowait(self) -> Message | None:
        """The oldest queued event, or ``None`` if there is none."""
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Stop the stream: queued events are discarded and iteration ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._wakeup.set()
        if self._on_close is not None:
            self._on_close(self)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._items:
                return self._items.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
