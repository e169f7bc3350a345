"""``CallRun``: one scenario started on the simulator, its channels and its end."""

from __future__ import annotations

import asyncio
from typing import Final, Literal

Stage = Literal["created", "ringing", "answered", "held", "transferred"]
"""Points a scenario passes: its first channel exists, a phone rings, a phone answers,
the call is held, the call is being moved (a transfer starts)."""

MAX_RUN_CHANNELS: Final = 64
"""Channel names a run remembers (a scenario makes a handful; a bound all the same)."""


class CallRun:
    """A call scenario running on the simulated PBX.

    ``channels`` and ``uniqueids`` list every channel the scenario made, in the order
    the PBX announced them (``Newchannel``); the first one is the caller, whose
    Uniqueid is the call's ``Linkedid`` on Asterisk 12+. ``wait()`` returns once every
    channel of the run has hung up and nothing more is scheduled for it (a channel the
    scenario moved elsewhere, by a transfer or a redirect, still counts).
    """

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.channels: list[str] = []
        self.uniqueids: list[str] = []
        self._live = 0
        self._tasks = 0
        self._finished = asyncio.Event()
        self._stages: dict[str, asyncio.Event] = {}

    @property
    def linkedid(self) -> str | None:
        """The Uniqueid of the run's first channel (``None`` before it exists)."""
        return self.uniqueids[0] if self.uniqueids else None

    @property
    def done(self) -> bool:
        """Every channel hung up and no step of the scenario is left."""
        return self._finished.is_set()

    async def wait(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a documented bound
        """Wait until the scenario is over; ``TimeoutError`` after ``timeout`` seconds."""
        await asyncio.wait_for(self._finished.wait(), timeout)

    def reached(self, stage: Stage) -> bool:
        """Whether the scenario has passed ``stage``."""
        event = self._stages.get(stage)
        return event is not None and event.is_set()

    async def until(self, stage: Stage, timeout: float = 30.0) -> bool:  # noqa: ASYNC109
        """Wait until the scenario passes ``stage`` (``True``) or ends without it
        (``False``); ``TimeoutError`` after ``timeout`` seconds."""
        event = self._stages.setdefault(stage, asyncio.Event())
        if not event.is_set() and not self.done:
            waiters = [
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(self._finished.wait()),
            ]
            try:
                finished, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if not finished:
                raise TimeoutError(f"{self.scenario}: {stage} not reached in {timeout} s")
        return event.is_set()

    # -- called by the call engine and the scenarios ----------------------------------

    def mark(self, stage: Stage) -> None:
        """The scenario passed ``stage``."""
        self._stages.setdefault(stage, asyncio.Event()).set()

    def channel_created(self, name: str, uniqueid: str) -> None:
        """A channel of this run was announced."""
        if len(self.channels) < MAX_RUN_CHANNELS:
            self.channels.append(name)
            self.uniqueids.append(uniqueid)
        self._live += 1
        self.mark("created")

    def channel_gone(self) -> None:
        """A channel of this run hung up."""
        self._live = max(0, self._live - 1)
        self._settle()

    def task_started(self, task: asyncio.Task[None]) -> None:
        """A step of this run is scheduled; the run is not over before it ends."""
        self._tasks += 1
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks = max(0, self._tasks - 1)
        self._settle()

    def _settle(self) -> None:
        if self._live == 0 and self._tasks == 0:
            self._finished.set()

    def __repr__(self) -> str:
        return f"CallRun({self.scenario!r}, channels={self.channels!r}, done={self.done})"
