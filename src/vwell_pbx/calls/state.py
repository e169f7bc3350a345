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

from dataclasses import dataclass
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
_NOBODY: Final[frozenset[str]] = frozenset()


class Side(Enum):
    """Which side of a call a channel is on."""

    UNKNOWN = "unknown"
    ORIGIN = "origin"
    TARGET = "target"


_UNKNOWN_SIDE: Final = Side.UNKNOWN


# Channel and Call are made at every new channel (and on an old dialect's dialled
# channel, a call of its own until the Dial merges it), so their __init__ is written out
# rather than generated: the dataclass's keyword defaults, a __post_init__ and a
# container per list or set field cost about 8,000 CPU instructions each. Containers
# that most calls never fill (holders, transfers) and small ones are immutable and
# shared while empty (``()``, ``frozenset()``), rebound to a new one when they change;
# a snapshot then takes them as they are instead of copying them.


@dataclass(slots=True, eq=False, init=False)
class Channel:
    """One AMI channel as the tracker knows it (the defaults are in ``__init__``)."""

    uniqueid: str
    name: str
    info: ChannelInfo
    call: Call
    created_ms: int
    side: Side  # UNKNOWN
    state: str  # "down"
    caller_num: str | None
    caller_name: str | None
    exten: str  # ""
    first_exten: str | None  # the exten it was created for: a trunk's DID
    exten_in_bridge: str  # ""
    dialled: bool
    dialling: bool  # old dialects: its Dial application began and has not ended
    ringing: bool
    answered_ms: int | None
    hangup_requested: bool
    bridge: str | None
    # Asterisk 1.8: who it talked to before an Unlink, until its next Newexten says
    # where it went (a Redirect); kept even if that peer hangs up meanwhile.
    left_bridge_peer: Channel | None
    #: Uniqueids it dialled, oldest first, at most MAX_DESTINATIONS.
    destinations: tuple[str, ...]
    #: A phone, a trunk or another real endpoint (not Local, not a zombie): the
    #: channels a snapshot shows (Local and zombie channels are followed only).
    is_party: bool
    #: The extension number when this is a local phone.
    extension: str | None

    def __init__(
        self, uniqueid: str, name: str, info: ChannelInfo, call: Call, created_ms: int
    ) -> None:
        self.uniqueid = uniqueid
        self.name = name
        self.call = call
        self.created_ms = created_ms
        self.side = _UNKNOWN_SIDE
        self.state = "down"
        self.caller_num = self.caller_name = None
        self.exten = self.exten_in_bridge = ""
        self.first_exten = None
        self.dialled = self.dialling = self.ringing = self.hangup_requested = False
        self.answered_ms = None
        self.bridge = None
        self.left_bridge_peer = None
        self.destinations = ()
        self.set_info(info)

    # is_party and extension are read for every channel of every snapshot and most
    # events: plain slots, derived from ``info`` whenever it is set (set_info), instead
    # of properties (a Python call each).
    def set_info(self, info: ChannelInfo) -> None:
        """Change what the channel's name tells (a rename), with what follows from it."""
        self.info = info
        kind = info.kind
        self.is_party = kind is not _LOCAL and kind is not _ZOMBIE
        self.extension = info.extension if kind is _EXTENSION else None


@dataclass(slots=True, eq=False, init=False)
class Call:
    """One call (a conversation) as the tracker knows it (the defaults are in
    ``__init__``: ``None``, ``False``, empty)."""

    call_id: str
    started_ms: int
    channels: dict[str, Channel]
    visible: bool
    announced: bool
    ended: bool
    ended_ms: int | None
    end_reason: EndReason | None
    origin: Channel | None
    origin_kind: ChannelKind | None
    origin_extension: str | None
    originate_leg: bool
    originated: bool
    action_id: str | None
    answered_ms: int | None
    ring_start_ms: int | None
    ring_stop_ms: int | None
    from_number: str | None
    from_name: str | None
    to_number: str | None
    to_name: str | None
    did: str | None
    trunk: str | None
    extension: str | None
    blind_target: str | None
    #: Uniqueids of its parties on hold.
    holders: frozenset[str]
    #: Its transfers, oldest first, at most ``TrackerLimits.max_transfers``.
    transfers: tuple[Transfer, ...]
    #: Extensions that rang, in order, at most ``TrackerLimits.max_rang``.
    rang: tuple[str, ...]
    extensions: frozenset[str]
    outcome: str | None
    origin_outcome: str | None
    cancelled: bool
    had_party: bool
    target_trunk: bool
    announced_outbound: bool

    def __init__(self, call_id: str, started_ms: int) -> None:
        self.call_id = call_id
        self.started_ms = started_ms
        self.channels = {}
        self.visible = self.announced = self.ended = self.cancelled = False
        self.originate_leg = self.originated = self.had_party = False
        self.target_trunk = self.announced_outbound = False
        self.ended_ms = self.answered_ms = self.ring_start_ms = self.ring_stop_ms = None
        self.end_reason = self.outcome = self.origin_outcome = None
        self.origin = self.origin_kind = self.origin_extension = self.action_id = None
        self.from_number = self.from_name = self.to_number = self.to_name = None
        self.did = self.trunk = self.extension = self.blind_target = None
        self.holders = self.extensions = _NOBODY
        self.transfers = ()
        self.rang = ()

    def parties(self) -> list[Channel]:
        """The live party channels, in the order they joined."""
        return [channel for channel in self.channels.values() if channel.is_party]
