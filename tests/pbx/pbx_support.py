"""Helpers for the pbx integration tests (a uniquely named module: test files import it,
which they cannot do with ``conftest``, of which the tree has several)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from vwell_pbx.ami import AmiClient
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator

FAST = {
    "username": "admin",
    "secret": "admin",
    "auth_failure_delay": 0.05,
    "call_step_delay": 0.005,
    "call_hold": 5.0,
    "no_answer_after": 0.05,
    "sms_send_delay": 0.005,
}


class TimedSimulator(PbxSimulator):
    """The simulator, noting when (``time.monotonic``) each action arrived."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[tuple[float, Message]] = []

    def _record(self, action: Message) -> None:
        self.arrivals.append((time.monotonic(), action))
        super()._record(action)


Pbx = tuple[TimedSimulator, AmiClient]
PbxFactory = Callable[..., Awaitable[Pbx]]


def received(sim: PbxSimulator, name: str) -> list[Message]:
    """The actions of that name the simulator received, in order."""
    return [a for a in sim.actions_received if a.name.lower() == name.lower()]
