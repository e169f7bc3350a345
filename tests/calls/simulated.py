"""Playing the PBX simulator's call scenarios and capturing what an AMI client sees.

The simulator is a real AMI server on loopback; the stream is read by the product's own
``AmiClient`` (a listener notes each event with its arrival time), exactly what the
server's tracker would be fed. Timings are hundredths of a second; ids are deterministic
(fixed Uniqueid epoch, seeded randomness), so channel names and Uniqueids are known in
advance: the first channel of a fresh simulator is ``SIP/269-00000000`` with Uniqueid
``EPOCH.0``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from vwell_pbx.ami import AmiClient
from vwell_pbx.ami.client import AmiSettings
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.simulator.runs import CallRun

EPOCH = 1796172254
"""The simulator's Uniqueid epoch in these tests (Uniqueids are ``EPOCH.<seq>``)."""

STEP = 0.01
RING = 0.05
TALK = 0.08
"""Seconds: a step of a call, a phone ringing, a conversation (scenario defaults here)."""

LAB_NAME = "AMI Lab 269"
"""The caller name the lab's dialplan sets for 269 (``Set(CALLERID(name)=...)``)."""

NOISE = frozenset({"VarSet", "Newexten"})
"""Dialplan chatter a structural comparison leaves out (the recordings have far more)."""


@dataclass
class Session:
    """A simulator, a logged-in client and the events it received (arrival time, event)."""

    sim: PbxSimulator
    client: AmiClient
    events: list[tuple[float, Message]] = field(default_factory=list)

    def names(self) -> list[str]:
        """Event names received so far, in order."""
        return [message.name for _, message in self.events]

    def hung_up(self) -> set[str]:
        """Uniqueids whose ``Hangup`` arrived."""
        return {
            message.get("Uniqueid") or "" for _, message in self.events if message.name == "Hangup"
        }

    async def finish(self, run: CallRun, limit: float = 10.0) -> list[tuple[float, Message]]:
        """Wait (at most ``limit`` seconds each) for ``run`` to end and for its last
        ``Hangup`` to reach the client; return the events (the run's and any other)."""
        await run.wait(limit)
        await wait_for(lambda: set(run.uniqueids) <= self.hung_up(), limit)
        return list(self.events)


async def wait_for(condition: Callable[[], bool], limit: float) -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def session(dialect: str = "asterisk20", **options: Any) -> AsyncIterator[Session]:
    """A fresh simulator (fast timings, fixed ids) and a client listening to it."""
    settings: dict[str, Any] = {
        "dialect": dialect,
        "call_step_delay": STEP,
        "call_ring": RING,
        "call_hold": TALK,
        "no_answer_after": RING,
        "auth_failure_delay": 0.01,
        "rng": random.Random(7),
        "uniqueid_epoch": EPOCH,
    }
    settings.update(options)
    async with PbxSimulator(**settings) as sim:
        client = AmiClient(
            AmiSettings(host="127.0.0.1", port=sim.port, username="admin", secret="admin")
        )
        captured = Session(sim=sim, client=client)
        started = time.monotonic()
        client.add_listener(
            lambda message: captured.events.append((time.monotonic() - started, message))
        )
        await client.start()
        try:
            await client.wait_connected(5)
            yield captured
        finally:
            await client.close()


async def play(
    name: str, dialect: str = "asterisk20", **options: Any
) -> tuple[CallRun, list[tuple[float, Message]]]:
    """Run scenario ``name`` on a fresh simulator; its run and the events a client saw."""
    async with session(dialect) as captured:
        run = await captured.sim.scenario(name, **options)
        return run, await captured.finish(run)


BASE = 1_700_000_000.0


def track(
    events: list[tuple[float, Message]],
    *,
    originate: tuple[str, str, str | None] | None = None,
) -> tuple[CallTracker, list[CallEvent]]:
    """Feed a captured stream to a fresh tracker (``originate``: the click-to-call the
    server announced, ``(action_id, channel, to)``); its call events in order."""
    tracker = CallTracker(pbx="lab")
    if originate is not None:
        action_id, channel, to = originate
        tracker.expect_originate(action_id, channel, BASE, to_number=to)
    out: list[CallEvent] = []
    for arrived, message in events:
        out.extend(tracker.observe(message, BASE + arrived))
    return tracker, out
