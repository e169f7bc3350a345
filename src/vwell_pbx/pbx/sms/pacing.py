"""Pacing: the in-memory queue that spaces the SMS of one GSM span (or dongle).

A GSM module sends about one SMS per 10 s per port. ``SmsQueue`` serialises the sends
of one *lane* (a span, a device, or ``span auto`` when the span is found per send) and
starts each at least ``interval`` seconds after the previous one *finished* (its AMI
answer arrived). Waiting for a delivery report happens outside the queue, so it does not
hold the span. Each lane holds at most ``queue_size`` jobs (waiting or in progress);
one more raises ``SmsQueueFull`` at once. A job that fails does not stop its lane.
Time spent in the queue is bounded by ``queue_size * interval`` plus the jobs' own
timeouts.

This is one scheduler among possible ones: the queue knows nothing about SMS, it runs
``job()`` callables in turn. ``PacedSmsBackend.send`` puts a backend's ``submit`` in it;
a durable outbox would pace with its own (shared) state and call ``submit`` itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from vwell_pbx.ami.errors import PbxUnavailable
from vwell_pbx.futures import fail_quietly
from vwell_pbx.pbx.errors import SmsQueueFull

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_INTERVAL: Final = 10.0
"""Seconds between the end of one send on a span and the start of the next."""

DEFAULT_QUEUE_SIZE: Final = 16
"""Jobs one lane may hold, waiting or running."""


@dataclass(eq=False)
class _Lane:
    jobs: deque[tuple[Callable[[], Awaitable[object]], asyncio.Future[object]]] = field(
        default_factory=deque
    )
    busy: int = 0  # jobs accepted and not yet finished (waiting or running)
    last_done: float | None = None
    worker: asyncio.Task[None] | None = None


class SmsQueue:
    """Serialises jobs per key (span or device) and spaces them ``interval`` seconds apart.

    Invariants: at most one job of a key runs at a time; jobs of a key run in the order
    they were submitted; a job starts no earlier than ``interval`` (by ``clock``) after
    the previous job of its key finished; at most ``queue_size`` jobs of a key are
    outstanding. A job whose caller was cancelled before it started is skipped. Workers
    exist only while a key has jobs; ``aclose`` stops them, and every job not finished
    fails with ``PbxUnavailable`` (as does ``run`` afterwards).
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval < 0:
            raise ValueError("sms.interval must not be negative")
        if queue_size < 1:
            raise ValueError("sms.queue_size must be at least 1")
        self.interval = interval
        self.queue_size = queue_size
        self._clock = clock
        self._sleep = sleep
        self._lanes: dict[str, _Lane] = {}
        self._closed = False

    def outstanding(self, key: str) -> int:
        """How many jobs of ``key`` are waiting or running."""
        lane = self._lanes.get(key)
        return 0 if lane is None else lane.busy

    async def run(self, key: str, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` in ``key``'s turn and return (or raise) what it does.

        Raises ``SmsQueueFull`` at once when ``queue_size`` jobs of ``key`` are
        outstanding.
        """
        if self._closed:
            raise PbxUnavailable("the SMS queue is shut down")
        lane = self._lanes.setdefault(key, _Lane())
        if lane.busy >= self.queue_size:
            raise SmsQueueFull(
                f"the SMS queue for {key} is full ({self.queue_size} messages waiting); "
                "try again later"
            )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        lane.jobs.append((job, future))
        lane.busy += 1
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._drain(key, lane), name=f"sms-queue {key}")
        # The worker resolves the future with job()'s own value, so this cast is exact.
        return await future  # type: ignore[return-value]

    async def _drain(self, key: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                job, future = lane.jobs[0]
                if not future.done():
                    await self._wait_turn(lane)
                lane.jobs.popleft()
                try:
                    if future.done():  # the caller gave up while waiting
                        continue
                    try:
                        value = await job()
                    except asyncio.CancelledError:
                        # Shutting down: never leave the caller hanging.
                        fail_quietly(
                            future, PbxUnavailable("the SMS queue was shut down while sending")
                        )
                        raise
                    except BaseException as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(value)
                    lane.last_done = self._clock()
                finally:
                    lane.busy -= 1
        finally:
            lane.worker = None
            for _, future in lane.jobs:
                fail_quietly(future, PbxUnavailable("the SMS queue was shut down before this SMS"))
            lane.busy -= len(lane.jobs)
            lane.jobs.clear()

    async def _wait_turn(self, lane: _Lane) -> None:
        if lane.last_done is None:
            return
        deadline = lane.last_done + self.interval
        # Loop: a timer may fire a little early by the clock it is measured with.
        while (remaining := deadline - self._clock()) > 0:
            await self._sleep(remaining)

    async def aclose(self) -> None:
        """Cancel every worker and every queued job; later ``run`` calls fail."""
        self._closed = True
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        try:
            # gather(), not "suppress(CancelledError): await worker", which would also
            # swallow a cancellation of aclose() itself.
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            # A worker cancelled before it first ran never reached its cleanup: do it here.
            for lane in self._lanes.values():
                for _, future in lane.jobs:
                    fail_quietly(
                        future, PbxUnavailable("the SMS queue was shut down before this SMS")
                    )
                lane.busy -= len(lane.jobs)
                lane.jobs.clear()
