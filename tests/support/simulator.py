"""The PBX simulator as the tests run it: fast, and watched.

Every test that starts a ``PbxSimulator`` starts it through :func:`fast_simulator`, so
the delays that stand for a real PBX's slowness are test-sized in one place. What a
test depends on (how long a call lasts, when an unanswered call gives up, a dialect, a
fixed random seed) it passes itself, on top.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from vwell_pbx.ami import AmiClient
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator

#: The simulator's stand-ins for a real PBX's slowness, made small: the pause before a
#: refused login is answered (Asterisk's is about a second), the time between two steps
#: of a call, and the time an SMS takes to be reported.
FAST_SIMULATOR: Final[Mapping[str, float]] = MappingProxyType(
    {"auth_failure_delay": 0.05, "call_step_delay": 0.005, "sms_send_delay": 0.005}
)


def fast_simulator(**options: Any) -> PbxSimulator:
    """A simulator (not started) with :data:`FAST_SIMULATOR`, then ``options``.

    Its AMI login is the simulator's default, ``admin`` / ``admin``, which the test
    configuration (``tests.support.make_config``) uses.
    """
    return PbxSimulator(**{**FAST_SIMULATOR, **options})


class TimedSimulator(PbxSimulator):
    """The simulator, noting when (``time.monotonic``) each action arrived."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**FAST_SIMULATOR, **options})
        self.arrivals: list[tuple[float, Message]] = []

    def _record(self, action: Message) -> None:
        self.arrivals.append((time.monotonic(), action))
        super()._record(action)


def received(sim: PbxSimulator, name: str) -> list[Message]:
    """The actions of that name the simulator received, in order."""
    return [a for a in sim.actions_received if a.name.lower() == name.lower()]


#: A started simulator and an ``AmiClient`` logged in to it (the pbx tests' ``make_pbx``).
Pbx = tuple[TimedSimulator, AmiClient]
PbxFactory = Callable[..., Awaitable[Pbx]]
