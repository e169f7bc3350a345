"""Channels, bridges, the simulated dialplan and the identifiers the simulated PBX hands out."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncio

    from vwell_pbx.simulator.runs import CallRun

STATE_DOWN = 0
STATE_RSRVD = 1
STATE_RING = 4
STATE_RINGING = 5
STATE_UP = 6
STATE_BUSY = 7

STATE_DESC = {
    STATE_DOWN: "Down",
    STATE_RSRVD: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    STATE_RING: "Ring",
    STATE_RINGING: "Ringing",
    STATE_UP: "Up",
    STATE_BUSY: "Busy",
}

CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}


class ExtensionBehaviour(Enum):
    """What an endpoint does when the PBX rings it."""

    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "noanswer"
    UNREGISTERED = "unregistered"
    CONGESTION = "congestion"


DEFAULT_EXTENSIONS: dict[str, ExtensionBehaviour] = {
    "SIP/100": ExtensionBehaviour.UNREGISTERED,  # as in transcript 09 (peer 100 not registered)
    "900": ExtensionBehaviour.BUSY,  # Local/900 was busy in transcript 09
    "901": ExtensionBehaviour.NO_ANSWER,
    "902": ExtensionBehaviour.UNREGISTERED,
    "903": ExtensionBehaviour.CONGESTION,
}
"""Endpoint behaviours used when none are given; every other extension answers.

Keys are either ``TECH/ext`` (only that technology) or a bare ``ext`` (any
technology); ``TECH/ext`` wins.
"""

DEFAULT_APPLICATIONS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {"100": ("Wait", "15"), "700": ("Wait", "15")}
)
"""Dialplan extensions that answer and run an application instead of ringing a phone.

As on the lab PBX the recordings were made on: ``100`` and ``700`` are
``Answer()`` then ``Wait(15)`` (an IVR stand-in); the channel stays there until it
hangs up or the wait ends."""

DEFAULT_RING_GROUPS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"2000": ("267", "268")}
)
"""Dialplan extensions that ring several phones at once (``Dial(SIP/267&SIP/268,20)``)."""

PICKUP_EXTEN: Final = "*8"
"""The feature code that picks up a phone ringing in the caller's pickup group."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialplan:
    """The simulated dialplan: which extensions are applications, ring groups, phones.

    Any other short numeric extension (five digits at most) is a SIP phone; a longer
    number goes out through the first ready GSM span (``YSGSM/<span>``), or
    ``SIP/trunk`` when no span is ready.
    """

    applications: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: DEFAULT_APPLICATIONS
    )
    ring_groups: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_RING_GROUPS)
    pickup_exten: str = PICKUP_EXTEN


@dataclass(eq=False)
class Channel:
    """One live channel. ``eq=False``: channels compare by identity."""

    name: str
    uniqueid: str
    linkedid: str
    tech: str
    created: float
    state: int = STATE_DOWN
    cid_num: str = ""
    cid_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    account: str = ""
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    application: str = ""
    app_data: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    bridge: Bridge | None = None
    call: Call | None = None
    partner: Channel | None = None  # the other half of a Local pair
    pbx: bool = True
    """Runs a dialplan (a caller, an originated leg, a Local half); a dialled phone does not."""
    dial_status: str | None = None
    """Old dialect: the Dial application is running on this channel and ends with this status."""
    run: CallRun | None = None
    """The scenario run this channel belongs to (its ``wait()`` waits for it to hang up)."""

    @property
    def state_desc(self) -> str:
        """Asterisk's text for the channel state."""
        return STATE_DESC.get(self.state, "Unknown")

    @property
    def peer(self) -> str:
        """The endpoint part of the name: ``267`` for ``SIP/267-0000002a``."""
        resource = self.name.partition("/")[2]
        return resource.rpartition("-")[0] or resource


@dataclass(eq=False)
class Bridge:
    """A bridge; ``members`` in order of entry."""

    uniqueid: str
    members: list[Channel] = field(default_factory=list)
    parties: list[Channel] = field(default_factory=list)  # everyone who ever entered
    linked: bool = False  # old dialect: "Bridge Link" already sent
    unlinked: bool = False  # old dialect: "Bridge Unlink" already sent


@dataclass(eq=False)
class Call:
    """The channels driven by one task (an originate, a scenario, a redirected channel...)."""

    channels: list[Channel] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class IdAllocator:
    """Uniqueids (``epoch.seq``), per-technology channel suffixes and bridge ids."""

    def __init__(self, epoch: int, rng: random.Random) -> None:
        self._epoch = epoch
        self._seq = 0
        self._rng = rng
        self._hex: dict[str, int] = {}
        self._gsm: dict[int, int] = {}

    def uniqueid(self) -> str:
        """The next ``epoch.seq`` id; seq starts at 0 like a freshly started Asterisk."""
        value = f"{self._epoch}.{self._seq}"
        self._seq += 1
        return value

    def hex_suffix(self, tech: str) -> str:
        """``00000000``, ``00000001``... per technology (chan_sip and Local count apart)."""
        count = self._hex.get(tech, 0)
        self._hex[tech] = count + 1
        return f"{count:08x}"

    def short_suffix(self) -> str:
        """Asterisk 1.8's Local channel suffix: four random hex digits (``7f3a``), seeded."""
        return f"{self._rng.getrandbits(16):04x}"

    def gsm_index(self, span: int) -> int:
        """Per-span call counter used in ``YSGSM/<span>-<n>`` names (starts at 1)."""
        count = self._gsm.get(span, 0) + 1
        self._gsm[span] = count
        return count

    def bridge_id(self) -> str:
        """A random (seeded) UUID4 like Asterisk's bridge ids."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def sip_callid(self) -> str:
        """A SIP Call-ID as chan_sip reports it in old-dialect events (seeded)."""
        return f"{self._rng.getrandbits(64):016x}@127.0.0.1"


def parse_callerid(value: str | None) -> tuple[str, str]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name)."""
    if not value:
        return "", ""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        name, _, rest = value.rpartition("<")
        return rest[:-1].strip(), name.strip().strip('"').strip()
    if value.lstrip("+").isdigit():
        return value, ""
    return "", value.strip('"')
