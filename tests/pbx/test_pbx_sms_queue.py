"""SmsQueue: per-span serialisation, pacing, bounds, failures and shutdown.

Pacing is checked two ways without timing asserts that could flake: with a virtual
clock whose ``sleep`` advances it (exact), and with the real monotonic clock recorded
around each job (the queue waits by that same clock, so the gap is a guarantee).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from vwell_pbx.ami.errors import PbxUnavailable
from vwell_pbx.pbx.errors import SmsQueueFull
from vwell_pbx.pbx.sms import SmsQueue


class VirtualClock:
    """A clock that only moves when the queue sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_jobs_of_one_span_run_in_order_spaced_by_the_interval() -> None:
    clock = VirtualClock()
    queue = SmsQueue(interval=10.0, queue_size=8, clock=clock, sleep=clock.sleep)
    starts: list[tuple[int, float]] = []

    def job(n: int):  # type: ignore[no-untyped-def]
        async def run() -> int:
            starts.append((n, clock()))
            await asyncio.sleep(0)
            return n * 10

        return run

    results = await asyncio.gather(*(queue.run("span 2", job(n)) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert starts == [(0, 100.0), (1, 110.0), (2, 120.0), (3, 130.0), (4, 140.0)]
    assert queue.outstanding("span 2") == 0


async def test_spans_are_paced_independently() -> None:
    clock = VirtualClock()
    queue = SmsQueue(interval=10.0, queue_size=8, clock=clock, sleep=clock.sleep)
    starts: dict[str, list[float]] = {"span 2": [], "span 3": []}

    def job(key: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            starts[key].append(clock())

        return run

    await asyncio.gather(queue.run("span 2", job("span 2")), queue.run("span 3", job("span 3")))
    assert starts == {"span 2": [100.0], "span 3": [100.0]}  # nobody waited for the other


async def test_real_clock_gap_is_at_least_the_interval() -> None:
    interval = 0.05
    recorded: list[tuple[str, float]] = []
    queue = SmsQueue(interval=interval, queue_size=4)

    def job(n: int):  # type: ignore[no-untyped-def]
        async def run() -> int:
            recorded.append(("start", time.monotonic()))
            await asyncio.sleep(0)
            recorded.append(("end", time.monotonic()))
            return n

        return run

    assert await asyncio.gather(*(queue.run("span 2", job(n)) for n in range(3))) == [0, 1, 2]
    kinds = [kind for kind, _ in recorded]
    assert kinds == ["start", "end"] * 3  # never two at once
    for (_, end), (_, start) in zip(recorded[1::2], recorded[2::2], strict=False):
        assert start - end >= interval


async def test_full_queue_refuses_at_once_and_recovers() -> None:
    queue = SmsQueue(interval=0, queue_size=2)
    gate = asyncio.Event()

    async def blocked() -> str:
        await gate.wait()
        return "done"

    first = asyncio.create_task(queue.run("span 2", blocked))
    second = asyncio.create_task(queue.run("span 2", blocked))
    await asyncio.sleep(0)
    assert queue.outstanding("span 2") == 2
    with pytest.raises(SmsQueueFull, match="span 2"):
        await queue.run("span 2", blocked)
    assert await queue.run("span 3", lambda: asyncio.sleep(0, "other")) == "other"
    gate.set()
    assert list(await asyncio.wait_for(asyncio.gather(first, second), 5)) == ["done", "done"]
    assert await queue.run("span 2", blocked) == "done"


async def test_a_failing_job_does_not_break_the_queue() -> None:
    clock = VirtualClock()
    queue = SmsQueue(interval=1.0, queue_size=4, clock=clock, sleep=clock.sleep)

    async def boom() -> None:
        raise RuntimeError("module on fire")

    async def fine() -> str:
        return "ok"

    results = await asyncio.gather(
        queue.run("span 2", boom), queue.run("span 2", fine), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError)
    assert results[1] == "ok"
    assert clock.sleeps == [1.0]  # the failed send still counts for pacing


async def test_a_cancelled_caller_s_job_is_skipped() -> None:
    clock = VirtualClock()
    queue = SmsQueue(interval=1.0, queue_size=4, clock=clock, sleep=clock.sleep)
    ran: list[str] = []
    gate = asyncio.Event()

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> str:
            if name == "first":
                await gate.wait()
            ran.append(name)
            return name

        return run

    first = asyncio.create_task(queue.run("span 2", job("first")))
    second = asyncio.create_task(queue.run("span 2", job("second")))
    third = asyncio.create_task(queue.run("span 2", job("third")))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()
    assert await asyncio.wait_for(first, 5) == "first"
    assert await asyncio.wait_for(third, 5) == "third"
    assert second.cancelled()
    assert ran == ["first", "third"]
    assert queue.outstanding("span 2") == 0


async def test_aclose_fails_everything_outstanding() -> None:
    queue = SmsQueue(interval=0, queue_size=4)
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    running = asyncio.create_task(queue.run("span 2", blocked))
    waiting = asyncio.create_task(queue.run("span 2", blocked))
    await asyncio.sleep(0)
    await queue.aclose()
    for task in (running, waiting):
        with pytest.raises(PbxUnavailable):
            await asyncio.wait_for(task, 5)
    with pytest.raises(PbxUnavailable):
        await queue.run("span 2", blocked)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="interval"):
        SmsQueue(interval=-1)
    with pytest.raises(ValueError, match="queue_size"):
        SmsQueue(queue_size=0)


async def test_aclose_itself_can_be_cancelled() -> None:
    queue = SmsQueue(interval=0, queue_size=4)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # a send whose cleanup takes a while
            raise

    running = asyncio.create_task(queue.run("span 2", slow_to_stop))
    await asyncio.wait_for(started.wait(), 5)
    closing = asyncio.create_task(queue.aclose())
    await asyncio.sleep(0)  # aclose is now waiting for the worker
    closing.cancel()
    release.set()  # the worker ends; then aclose must end cancelled, not normally
    await asyncio.wait({closing}, timeout=5)
    assert closing.cancelled()
    with pytest.raises(PbxUnavailable):
        await asyncio.wait_for(running, 5)
