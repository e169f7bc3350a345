"""EventStream: bounded, drop-oldest, never blocks the producer, closes cleanly."""

from __future__ import annotations

import asyncio

import pytest

from vwell_pbx.ami import EventStream
from vwell_pbx.protocol import Message


def ev(n: int) -> Message:
    return Message.build(("Event", "Tick"), ("N", str(n)))


async def test_drops_oldest_when_full_and_counts() -> None:
    stream = EventStream(3)
    for n in range(10):
        stream.push(ev(n))
    assert stream.dropped == 7
    assert len(stream) == 3
    got = [await anext(stream) for _ in range(3)]
    assert [m.get("N") for m in got] == ["7", "8", "9"]


async def test_iteration_waits_for_push_and_ends_on_close() -> None:
    stream = EventStream(5)
    received: list[str | None] = []
    two = asyncio.Event()

    async def consume() -> None:
        async for message in stream:
            received.append(message.get("N"))
            if len(received) == 2:
                two.set()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    stream.push(ev(1))
    stream.push(ev(2))
    await asyncio.wait_for(two.wait(), 1.0)
    stream.close()
    await asyncio.wait_for(consumer, 1.0)
    assert received == ["1", "2"]
    stream.push(ev(3))  # ignored after close
    assert len(stream) == 0 and stream.closed


async def test_async_with_closes_and_reports_to_owner() -> None:
    closed: list[EventStream] = []
    async with EventStream(2, on_close=closed.append) as stream:
        stream.push(ev(1))
        assert stream.get_nowait() == ev(1)
        assert stream.get_nowait() is None
    assert stream.closed and closed == [stream]
    stream.close()  # idempotent
    assert closed == [stream]


def test_rejects_zero_size() -> None:
    with pytest.raises(ValueError):
        EventStream(0)
