"""The tracker's working state: channels and calls as it currently believes them.

Internal to the ``calls`` package; the public face is ``CallTracker`` and the immutable
``CallSnapshot`` it hands out. Invariants kept by the tracker:

1. A live ``Channel`` belongs to exactly one ``Call`` and is listed in that call's
   ``channels``; a channel of an ended call is kept only until its own ``Hangup`` (so
   that late events about it are recognised and ignored), never longer than the LRU
   bound allows.
2. Every call in the tracker's table is not ended; ``ended`` calls are gone from it.
3. A call's ``origin`` is its first non-Local channel on the calling side (the caller,
   or the phone a click-to-call rings first); ``Side.TARGET`` channels are the called
   side; ``Side.UNKNOWN`` channels joined by ``Linkedid`` and were not yet seen dialled.
4. Times are integer epoch milliseconds.
5. An ended call whose channels are all forgotten refers to none of them (``origin``
   is cut, and a forgotten channel's ``left_bridge_peer``): channels point at their
   call, so anything else would be a reference cycle per call, left for the garbage
   collector (``CallTracker._release``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from vwell_pbx.calls.model import EndReason, Transfer
from vwell_pbx.calls.rules import ChannelInfo, ChannelKind

MAX_DESTINATIONS = 32
"""Dial destinations remembered per channel (to find the phone behind a Local half)."""


# Read as globals at every new channel: ``ChannelKind.LOCAL`` costs about 900 CPU
# instructions in Python 3.11 (the enum class's attribute hook), a global about 20.
_LOCAL: Final = ChannelKind.LOCAL
_ZOMBIE: Final = ChannelKind.ZOMBIE
_EXTENSION: Final = ChannelKind.EXTENSION


class Side(Enum):
    """Which side of a call a channel is on."""

    UNKNOWN = "unknown"
    ORIGIN = "origin"
    TARGET = "target"


@dataclass(slots=True, eq=False)
class Channel:
    """One AMI channel as the tracker knows it."""

    uniqueid: str
    name: str
    info: ChannelInfo
    call: Call
    created_ms: int
    side: Side = Side.UNKNOWN
    state: str = "down"
    caller_num: str | None = None
    caller_name: str | None = None
    exten: str = ""
    first_exten: str | None = None  # the exten it was created for: a trunk's DID
    exten_in_bridge: str = ""
    dialled: bool = False
    dialling: bool = False  # old dialects: its Dial application began and has not ended
    ringing: bool = False
    answered_ms: int | None = None
    hangup_requested: bool = False
    bridge: str | None = None
    # Asterisk 1.8: who it talked to before an Unlink, until its next Newexten says
    # where it went (a Redirect); kept even if that peer hangs up meanwhile.
    left_bridge_peer: Channel | None = None
    destinations: list[str] = field(default_factory=list)
    #: A phone, a trunk or another real endpoint (not Local, not a zombie): the
    #: channels a snapshot shows (Local and zombie channels are followed only).
    is_party: bool = field(init=False)
    #: The extension number when this is a local phone.
    extension: str | None = field(init=False)

    # is_party and extension are read for every channel of every snapshot and most
    # events: plain slots, derived from ``info`` whenever it is set (set_info), instead
    # of properties (a Python call each).
    def __post_init__(self) -> None:
        self.set_info(self.info)

    def set_info(self, info: ChannelInfo) -> None:
        """Change what the channel's name tells (a rename), with what follows from it."""
        self.info = info
        kind = info.kind
        self.is_party = kind is not _LOCAL and kind is not _ZOMBIE
        self.extension = info.extension if kind is _EXTENSION else None


@dataclass(slots=True, eq=False)
class Call:
    """One call (a conversation) as the tracker knows it."""

    call_id: str
    started_ms: int
    channels: dict[str, Channel] = field(default_factory=dict)
    visible: bool = False
    announced: bool = False
    ended: bool = False
    ended_ms: int | None = None
    end_reason: EndReason | None = None
    origin: Channel | None = None
    origin_kind: ChannelKind | None = None
    origin_extension: str | None = None
    originate_leg: bool = False
    originated: bool = False
    action_id: str | None = None
    answered_ms: int | None = None
    ring_start_ms: int | None = None
    ring_stop_ms: int | None = None
    from_number: str | None = None
    from_name: str | None = None
    to_number: str | None = None
    to_name: str | None = None
    did: str | None = None
    trunk: str | None = None
    extension: str | None = None
    blind_target: str | None = None
    holders: set[str] = field(default_factory=set)
    transfers: list[Transfer] = field(default_factory=list)
    rang: list[str] = field(default_factory=list)
    # Frozen, and replaced by a new frozenset when it grows (rarely: a new extension
    # joins), so that every call event shares it instead of copying it.
    extensions: frozenset[str] = frozenset()
    outcome: str | None = None
    origin_outcome: str | None = None
    cancelled: bool = False
    had_party: bool = False
    target_trunk: bool = False
    announced_outbound: bool = False

    def parties(self) -> list[Channel]:
        """The live party channels, in the order they joined."""
        return [channel for channel in self.channels.values() if channel.is_party]
