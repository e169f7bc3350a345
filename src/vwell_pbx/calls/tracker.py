"""The call tracker: AMI events in, call events out (sans-IO).

``CallTracker.observe(event, now)`` takes one PBX event and the wall-clock time it
arrived (epoch seconds, a float as ``time.time()`` gives) and returns the call events it
caused, in order; it never reads a clock, never does I/O and never raises on anything a
PBX sends. Both AMI dialects are read: Asterisk 1.4/1.8 and Yeastar MyPBX (``Dial`` with
``SubEvent``, ``Link``/``Unlink``/``Bridge``, ``Masquerade``/``Rename``, no ``Linkedid``)
and Asterisk 12+ (``DialBegin``/``DialState``/``DialEnd``, ``BridgeEnter``/``BridgeLeave``,
transfer events, ``Linkedid``). ``docs/calls.md`` explains every rule; the short form:

- A channel belongs to one call: by ``Linkedid`` when the PBX has one, else the call of
  the channel that dialled it (or of its Local twin). The call's id is the ``Linkedid``
  or the first channel's ``Uniqueid`` and never changes; when two calls become one (a
  transfer between two calls, a queue member linked to a caller) the older survives and
  the other ends with ``endReason: transferred`` if anything was reported about it.
- The caller's side (*origin*) and the called side (*target*) are told apart by who
  dialled whom; ringing and answering count only on the target side, so that the
  phone a click-to-call rings first is not "a call ringing" and its pick-up is not the
  answer (``OriginateResponse`` Reason 4 is not the call's answer either).
- A call is reported (appears in ``active()``, emits events) once it has a dialled
  party, an inbound trunk leg, or is a click-to-call of our own ``dial``; a lone phone
  talking to the dialplan (voicemail, ``*8``, an echo test) is not a call to report.
- Calls end when their last party hangs up (an unanswered one waits for an old
  dialect's ``Dial End`` still due: it says why), once: exactly one ``call.ended`` per
  call id, and an ended call id is never reopened. Bounded state: at most
  ``TrackerLimits.max_calls`` calls and ``max_channels`` channels; past a bound the
  least recently active one is dropped (a call so dropped ends with
  ``endReason: unknown``), so lost ``Hangup`` events cannot grow memory, and
  ``reconcile`` after a reconnect ends the calls whose channels are gone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import ClassVar, Final

from vwell_pbx.calls.model import (
    CALL_MESSAGE,
    CallEvent,
    CallEventName,
    CallSnapshot,
    CallStatus,
    Direction,
    EndReason,
    JsonValue,
    Transfer,
    TransferType,
    call_event,
    iso_ms,
    snapshot_of,
    to_ms,
)
from vwell_pbx.calls.rules import CallRules, ChannelKind
from vwell_pbx.calls.state import MAX_DESTINATIONS, Call, Channel, Side
from vwell_pbx.protocol import Message

__all__ = ["CONSUMED_EVENTS", "CallTracker", "Observer", "TrackerLimits"]

# Enum members as module constants, for the paths run at every event: in Python 3.11
# reading ``Side.ORIGIN`` goes through the enum class's attribute hook (about 900 CPU
# instructions, against 20 for a global), and the tracker compares sides and kinds
# several times per event.
_ORIGIN_SIDE: Final = Side.ORIGIN
_TARGET_SIDE: Final = Side.TARGET
_UNKNOWN_SIDE: Final = Side.UNKNOWN
_TRUNK: Final = ChannelKind.TRUNK
_EXTENSION: Final = ChannelKind.EXTENSION
_LOCAL: Final = ChannelKind.LOCAL
_ZOMBIE: Final = ChannelKind.ZOMBIE


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerLimits:
    """The tracker's bounds; ``ValueError`` names a bad one.

    - ``max_calls``: live calls kept; a new call past it drops the least recently
      active call (it ends with ``endReason: unknown``).
    - ``max_channels``: channels kept (live ones, plus those of just-ended calls until
      their ``Hangup``); past it the least recently seen channel is forgotten.
    - ``max_transfers``: transfers kept per call (the oldest are dropped).
    - ``max_rang``: extensions remembered per call as having rung (for ``call.missed``).
    - ``max_pending_originates``: click-to-calls awaiting their channel (``expect_originate``).
    - ``originate_ttl``: seconds an ``expect_originate`` entry waits for its call.
    - ``max_recent_ids``: ended call ids, hung-up channel ids and merged call ids
      remembered, so that a late event about them is ignored instead of starting a call.
    """

    max_calls: int = 2_000
    max_channels: int = 10_000
    max_transfers: int = 16
    max_rang: int = 64
    max_pending_originates: int = 1_000
    originate_ttl: float = 900.0
    max_recent_ids: int = 4_096

    def __post_init__(self) -> None:
        for name in (
            "max_calls",
            "max_channels",
            "max_transfers",
            "max_rang",
            "max_pending_originates",
            "max_recent_ids",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"calls.{name} must be a whole number of at least 1")
        if not self.originate_ttl > 0:
            raise ValueError("calls.originate_ttl must be a positive number of seconds")


CONSUMED_EVENTS: Final = frozenset(
    {
        # channel life and state (both dialects)
        "Newchannel",
        "Newstate",
        "NewCallerid",
        "NewConnectedLine",
        "Newexten",
        "Rename",
        "Masquerade",
        "HangupRequest",
        "SoftHangupRequest",
        "Hangup",
        # dialling
        "Dial",
        "DialBegin",
        "DialState",
        "DialEnd",
        "AgentCalled",
        "Join",
        "QueueCallerJoin",
        "Pickup",
        # bridging
        "BridgeEnter",
        "BridgeLeave",
        "BridgeMerge",
        "Bridge",
        "Link",
        "Unlink",
        # hold and transfers
        "Hold",
        "Unhold",
        "AttendedTransfer",
        "BlindTransfer",
        "Transfer",
        # click-to-call outcomes
        "OriginateResponse",
        "OriginateSuccess",
        "OriginateFailure",
    }
)
"""AMI event names ``observe`` reads (as Asterisk spells them; matching is also
case-insensitive). Any other event is skipped at the cost of one dict lookup, so a
caller may also filter with this set before calling ``observe``."""

Fields = Mapping[str, str]
"""An event's headers as the tracker reads them: ``fields.get("Uniqueid")`` is what
``Message.get("Uniqueid")`` gives (the first header of that name in any case), for
every spelling its reader reads (``_READ_KEYS`` or fewer). See ``CallTracker._fields``."""

_EMPTY: Final[tuple[CallEvent, ...]] = ()
#: ``CALL_MESSAGE`` with each field's usual value, which ``_message`` then leaves as
#: it is when the call has it: ``None``, but ``False`` for the two flags.
_MESSAGE: Final[dict[str, JsonValue]] = {**CALL_MESSAGE, "onHold": False, "originated": False}
_ROUND: Final = float.__round__  # round(x) for a float x, without the look-up (observe)
_Handler = Callable[[Fields], None]

Observer = Callable[[Message, float], Sequence[CallEvent]]
"""``CallTracker.observe`` for the events of one name (``CallTracker.observer``)."""


def _unseen(event: Message, now: float) -> Sequence[CallEvent]:
    """Marks an event name not looked up yet (never called)."""
    raise AssertionError("a marker, never called")


_MAX_DISPATCH_NAMES: Final = 512  # AMI has a few hundred event names; junk stops here
_END_REASONS: Final[dict[str, EndReason]] = {
    "cancel": "cancelled",
    "noanswer": "no_answer",
    "busy": "busy",
    "congestion": "failed",
    "chanunavail": "failed",
    "dontcall": "failed",
    "torture": "failed",
    "invalidargs": "failed",
    "answered_elsewhere": "answered_elsewhere",
}
# Q.931 hangup causes that say why a leg ended unanswered.
_CAUSE_OUTCOMES: Final[dict[int, str]] = {
    17: "busy",  # user busy
    18: "noanswer",  # no user responding
    19: "noanswer",  # no answer
    21: "busy",  # call rejected (declined): the callee refused, as busy does
    26: "answered_elsewhere",  # non-selected user clearing
    34: "congestion",
    38: "congestion",
}
_MISSED_REASONS: Final = frozenset({"no_answer", "cancelled", "busy", "failed"})
# Dialplan extensions that are not a destination (hangup, invalid, timeout handlers).
_NOT_DESTINATIONS: Final = frozenset({"", "s", "h", "i", "t", "T", "e", "o", "a", "failed"})
_RINGING_DIAL_STATES: Final = frozenset({"ringing", "progress", "proceeding"})
# Words the PBX sends in a few spellings that the tracker reads lower-cased (channel
# states, Dial SubEvent, Bridgestate): ``raw.strip().lower()`` of the usual ones, looked
# up (two method calls and a new string fewer at most events); others are worked out.
_LOWERED: Final[dict[str, str]] = {
    word: word.lower()
    for word in (
        *("Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy"),
        *("Dialing Offhook", "Pre-ring", "Unknown"),
        *("Begin", "End", "Link", "Unlink"),
    )
}
# Events whose channel's extension may come as ``Extension`` (_update).
_EXTENSION_EVENTS: Final = frozenset({"Status", "Newexten", "CoreShowChannel"})
_ORIGINATE_FAILED_GRACE_MS: Final = 5_000
_NOT_MADE: Final = (1 << 62, 0)


@dataclass(slots=True)
class _PendingOriginate:
    channel: str  # the Originate's Channel, lower-cased (``sip/267``)
    to_number: str | None
    expires_ms: int
    call_id: str | None = None
    # When the Originate was written (None: not told). A call that started before it
    # is another AMI client's (another instance's click-to-call of the same phone).
    sent_ms: int | None = None

    def could_have_made(self, call: Call) -> bool:
        """Whether this Originate could have made ``call`` (it did not start earlier)."""
        return self.sent_ms is None or call.started_ms >= self.sent_ms


@dataclass(frozen=True, slots=True)
class _ChannelHeaders:
    """The headers that describe one channel in an event, for one prefix: ``Channel``,
    ``DestChannel``, ``TargetChannel``, ... Spelled once here rather than concatenated
    for every event (the tracker reads several of them in each event it handles)."""

    channel: str
    uniqueid: str
    linkedid: str
    caller_num: str
    caller_id: str
    caller_name: str
    exten: str
    state_desc: str
    state: str

    @classmethod
    def of(cls, prefix: str) -> _ChannelHeaders:
        """The header names with ``prefix`` (``""`` for the event's own channel)."""
        return cls(
            channel=prefix + "Channel",
            uniqueid=prefix + "Uniqueid",
            linkedid=prefix + "Linkedid",
            caller_num=prefix + "CallerIDNum",
            caller_id=prefix + "CallerID",
            caller_name=prefix + "CallerIDName",
            exten=prefix + "Exten",
            state_desc=prefix + "ChannelStateDesc",
            state=prefix + "State",
        )


_OWN: Final = _ChannelHeaders.of("")  # the event's channel (the caller in a Dial event)
_DEST: Final = _ChannelHeaders.of("Dest")  # the dialled channel (DialBegin, ...)
_TARGET: Final = _ChannelHeaders.of("Target")  # the picked-up channel (Pickup)

# Every header name the tracker reads, spelled as it reads them (a test checks this
# list against the code). An event's fields answer exactly these spellings whatever
# case the PBX used; a spelling missing here would be found only when spelled alike.
_READ_KEYS: Final = frozenset(
    {
        *(
            key
            for headers in (_OWN, _DEST, _TARGET)
            for key in (
                headers.channel,
                headers.uniqueid,
                headers.linkedid,
                headers.caller_num,
                headers.caller_id,
                headers.caller_name,
                headers.exten,
                headers.state_desc,
                headers.state,
            )
        ),
        *(
            prefix + key
            for prefix in (
                "OrigTransferer",
                "SecondTransferer",
                "Transferee",
                "TransferTarget",
                "Transferer",
            )
            for key in ("Uniqueid", "Channel")
        ),
        "ActionID",
        "Application",
        "ApplicationData",
        "BridgeID",
        "BridgeId",
        "BridgeUniqueid",
        "BridgedChannel",
        "BridgedUniqueid",
        "Bridgestate",
        "Cause",
        "Channel1",
        "Channel2",
        "ChannelCalling",
        "Clone",
        "ConnectedLineName",
        "Data",
        "DestUniqueID",
        "Destination",
        "DestinationChannel",
        "DialStatus",
        "DialString",
        "Dialstring",
        "Duration",
        "Extension",
        "FromBridgeUniqueid",
        "Link",
        "Newname",
        "Oldname",
        "Original",
        "Queue",
        "Result",
        "Seconds",
        "Source",
        "SrcUniqueID",
        "Status",
        "SubEvent",
        "ToBridgeUniqueid",
        "TransferExten",
        "TransferTargetCallerIDNum",
        "TransferType",
        "UniqueID",
        "Uniqueid1",
        "Uniqueid2",
    }
)


# Second spellings of names also read as spelled otherwise, and the handlers that read
# them (through _DIAL_READS; the channel list reads them too, through every name in
# _READ_KEYS). The other handlers' fields leave them out, so that a layout spelled as
# usual needs no copy of a header under another spelling: it can be read through the
# bus's fields of the event (see CallTracker._fields). A test checks who reads them.
_SECOND_SPELLINGS: Final = frozenset({"UniqueID", "DestUniqueID", "Dialstring", "BridgeId"})
# What an old dialect's Dial handler reads (``_on_dial_old``, with ``_update`` of the
# calling channel), spelled as Asterisk 1.4/1.8 and Yeastar spell them. Its own reader,
# rather than every name in _READ_KEYS: with both ``UniqueID`` and ``Uniqueid`` read, no
# layout spells every read name as read, so each Dial got a dict of its own (about 650
# CPU instructions per header); with these, the usual layout is read through the bus's
# fields of the event. A layout spelled otherwise (``Uniqueid``) gets a copy under this
# spelling, as any reader's does. A test checks that the handler reads only these.
_DIAL_READS: Final = frozenset(
    {
        "SubEvent",
        "Channel",
        "Source",
        "UniqueID",
        "SrcUniqueID",
        "DialStatus",
        "Destination",
        "DestUniqueID",
        "Dialstring",
        *(_OWN.caller_num, _OWN.caller_id, _OWN.caller_name, _OWN.exten, "Extension"),
        *(_OWN.state_desc, _OWN.state),
    }
)
# The events whose handlers read second spellings, each with its own reader.
_SPELLED_READS: Final[dict[str, frozenset[str]]] = {"Dial": _DIAL_READS}
_SECOND_SPELLING_EVENTS: Final = frozenset(_SPELLED_READS)


def _spellings(keys: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Lowercased header name -> the tracker's spellings of it among ``keys``."""
    spellings: dict[str, tuple[str, ...]] = {}
    for key in sorted(keys):
        spellings[key.lower()] = (*spellings.get(key.lower(), ()), key)
    return spellings


# Events whose handlers read only a few headers (and make no channel's state from the
# event): their fields hold only these, as a dict costs about 650 CPU instructions per
# entry to build. A test checks each handler against its list.
_FEW_READS: Final[dict[str, frozenset[str]]] = {
    "Newexten": frozenset({"Uniqueid", "Exten", "Extension"}),
    "HangupRequest": frozenset({"Uniqueid", "Channel"}),
    "SoftHangupRequest": frozenset({"Uniqueid", "Channel"}),
    "Hangup": frozenset({"Uniqueid", "Channel", "Cause"}),
    "BridgeLeave": frozenset({"Uniqueid", "Channel", "Exten"}),
}
# Header layouts (the shared index of Message.header_index) -> how to pick the tracker's
# fields from the headers (_Plan); emptied when full, since a peer may send any names.
_MAX_NUMBERS: Final = 4096  # raw numbers remembered (CallTracker._number)
_UNKNOWN_NUMBER: Final = "\0not looked up"  # a marker: never a normalised number
_MAX_LAYOUTS: Final = 1024  # a PBX sends a few hundred layouts; junk stops here
# Layouts remembered per event name for messages nobody indexed: a name may come in a
# few (an old dialect's Dial Begin and End, a DialState of a Local channel and a phone).
_LAYOUTS_PER_NAME: Final = 4


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def _linkedid(item: Fields) -> str:
    return (item.get("Linkedid") or "").strip()


def _made(uniqueid: str) -> tuple[int, int]:
    """When Asterisk made a Uniqueid, for ordering: ``1796172254.12`` -> ``(1796172254,
    12)``; one of another form (a system name prefix, a test's own) sorts last."""
    epoch, _, sequence = uniqueid.rpartition(".")
    if epoch.isascii() and epoch.isdigit() and sequence.isascii() and sequence.isdigit():
        return int(epoch), int(sequence)
    return _NOT_MADE


def _application(item: Fields) -> str:
    return (item.get("Application") or "").strip().lower()


def _device(channel_name: str) -> str:
    """``SIP/267-0000002a`` -> ``sip/267``; ``Local/267@ctx-8a1c;1`` -> ``local/267@ctx``:
    the endpoint a channel was made for, as a dial string names it."""
    return channel_name.rsplit("-", 1)[0].lower() if "-" in channel_name else channel_name.lower()


def _dialled_devices(app_data: str | None) -> set[str]:
    """The endpoints a ``Dial`` application's data rings: ``SIP/267&SIP/268,30`` ->
    ``{sip/267, sip/268}`` (``SIP/trunk/8978...`` -> ``sip/trunk``)."""
    if not app_data:
        return set()
    targets = app_data.split(",", 1)[0].split("&")
    devices = set()
    for target in targets[:MAX_DESTINATIONS]:
        parts = target.strip().split("/")
        if len(parts) >= 2 and parts[0] and parts[1]:
            devices.add(f"{parts[0]}/{parts[1]}".lower())
    return devices


def _duration_ms(item: Fields) -> int:
    """A channel's age from ``Duration: HH:MM:SS`` (CoreShowChannel) or ``Seconds``."""
    seconds = _int(item.get("Seconds"))
    if seconds is not None:
        return seconds * 1000
    raw = (item.get("Duration") or "").strip()
    parts = raw.split(":")
    if len(parts) == 3:
        numbers = [_int(part) for part in parts]
        if all(number is not None for number in numbers):
            hours, minutes, secs = (number or 0 for number in numbers)
            return ((hours * 60 + minutes) * 60 + secs) * 1000
    return 0


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one header layout: ``pick(headers)`` gives the ``(name, value)``
    headers the tracker reads (the first of each name in any case), and ``copies`` the
    ``(spelling, as spelled here)`` pairs for the tracker's spellings that this layout
    spells otherwise (usually none). ``index`` is the layout's shared index, kept so
    that its ``id`` (the key it is remembered by) cannot name another while kept."""

    index: Mapping[str, int]
    names: tuple[str, ...]  # the layout: the header names in order
    pick: Callable[[tuple[tuple[str, str], ...]], tuple[tuple[str, str], ...]] | None
    copies: tuple[tuple[str, str], ...]
    # Whether a message's shared_fields answer every name read as Message.get does:
    # each read name the layout has is spelled as read and comes once in any case.
    shared: bool


def _plan(
    index: Mapping[str, int],
    headers: tuple[tuple[str, str], ...],
    spellings: Mapping[str, tuple[str, ...]],
) -> _Plan:
    """The plan of the layout of ``headers``, whose ``header_index`` is ``index``, for
    reading the header names of ``spellings`` (see ``_spellings``)."""
    positions = sorted({index[lower] for lower in spellings if lower in index})
    copies = tuple(
        (spelling, headers[position][0])
        for position in positions
        for spelling in spellings[headers[position][0].lower()]
        if spelling != headers[position][0]
    )
    names = tuple(map(_first, headers))
    lowered = [name.lower() for name in names]
    shared = not copies and all(lowered.count(names[at].lower()) == 1 for at in positions)
    if not positions:
        return _Plan(index=index, names=names, pick=None, copies=copies, shared=shared)
    # itemgetter of one position gives the item itself, of two a tuple: the same
    # header twice then makes the same one-entry dict.
    pick = itemgetter(*positions) if len(positions) > 1 else itemgetter(*positions, *positions)
    return _Plan(index=index, names=names, pick=pick, copies=copies, shared=shared)


_first = itemgetter(0)


class _Reader:
    """How the tracker reads the headers of some events (``CallTracker._fields``): the
    header names it reads and the plans of the layouts seen so far."""

    __slots__ = ("plans", "recent", "spellings")

    def __init__(self, keys: Iterable[str]) -> None:
        self.spellings = _spellings(keys)
        self.plans: dict[int, _Plan] = {}  # by id() of the layout's shared index
        # event name as spelled -> its latest layouts, newest first
        self.recent: dict[str, list[_Plan]] = {}


_Route = tuple[_Handler, _Reader]


class CallTracker:
    """Correlates one PBX's AMI events into calls; see the module docstring.

    ``pbx`` is the PBX's configured name (the call object's ``pbx``); ``rules`` say
    which channels are trunks and extensions and how numbers are normalised;
    ``limits`` bound the memory. Not thread-safe: feed it from one task.
    """

    CONSUMED_EVENTS: ClassVar[frozenset[str]] = CONSUMED_EVENTS

    def __init__(
        self,
        *,
        pbx: str = "default",
        rules: CallRules | None = None,
        limits: TrackerLimits | None = None,
    ) -> None:
        self.pbx = pbx
        self._rules = rules if rules is not None else CallRules()
        self._limits = limits if limits is not None else TrackerLimits()
        self._calls: OrderedDict[str, Call] = OrderedDict()  # live calls, LRU first
        self._channels: OrderedDict[str, Channel] = OrderedDict()  # by Uniqueid, LRU first
        self._by_name: dict[str, Channel] = {}
        self._bridges: dict[str, set[str]] = {}
        self._aliases: OrderedDict[str, str] = OrderedDict()  # merged call id -> survivor
        self._ended: OrderedDict[str, None] = OrderedDict()  # recently ended call ids
        self._hung: OrderedDict[str, None] = OrderedDict()  # recently hung-up Uniqueids
        self._pending: OrderedDict[str, _PendingOriginate] = OrderedDict()
        self._originated: OrderedDict[str, str] = OrderedDict()  # ActionID -> callId
        self._out: list[CallEvent] = []
        self._now = 0
        self._event_name = ""  # of the event being handled (``_update`` reads it)
        self._all_reads = _Reader(_READ_KEYS)
        self._numbers: dict[str, str | None] = {}  # raw -> CallRules.number(raw)
        # Bounds read at every new channel, call or Hangup (one attribute look-up each).
        self._max_calls = self._limits.max_calls
        self._max_channels = self._limits.max_channels
        self._max_recent_ids = self._limits.max_recent_ids
        self.evicted_calls = 0
        """Calls dropped because ``max_calls`` or ``max_channels`` was reached."""
        handlers: dict[str, _Handler] = {
            "Newchannel": self._on_channel_event,
            "Newstate": self._on_channel_event,
            "NewCallerid": self._on_new_callerid,
            "NewConnectedLine": self._on_new_connected_line,
            "Newexten": self._on_newexten,
            "Rename": self._on_rename,
            "Masquerade": self._on_masquerade,
            "HangupRequest": self._on_hangup_request,
            "SoftHangupRequest": self._on_hangup_request,
            "Hangup": self._on_hangup,
            "Dial": self._on_dial_old,
            "DialBegin": self._on_dial_begin,
            "DialState": self._on_dial_state,
            "DialEnd": self._on_dial_end,
            "AgentCalled": self._on_agent_called,
            "Join": self._on_queue_join,
            "QueueCallerJoin": self._on_queue_join,
            "Pickup": self._on_pickup,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BridgeMerge": self._on_bridge_merge,
            "Bridge": self._on_bridge_old,
            "Link": self._on_link,
            "Unlink": self._on_unlink,
            "Hold": self._on_hold,
            "Unhold": self._on_unhold,
            "AttendedTransfer": self._on_attended_transfer,
            "BlindTransfer": self._on_blind_transfer,
            "Transfer": self._on_transfer_old,
            "OriginateResponse": self._on_originate_response,
            "OriginateSuccess": self._on_originate_response,
            "OriginateFailure": self._on_originate_response,
        }
        assert set(handlers) == CONSUMED_EVENTS
        usual_reads = _Reader(_READ_KEYS - _SECOND_SPELLINGS)
        routes: dict[str, _Route] = {
            name: (
                handler,
                _Reader(_FEW_READS[name])
                if name in _FEW_READS
                else _Reader(_SPELLED_READS[name])
                if name in _SPELLED_READS
                else usual_reads,
            )
            for name, handler in handlers.items()
        }
        self._routes_folded = {name.lower(): route for name, route in routes.items()}
        # Event name as spelled on the wire -> its observer, or None for a name to
        # skip; learnt as names arrive, bounded by _MAX_DISPATCH_NAMES.
        self._dispatch: dict[str, Observer | None] = {
            name: self.observer(name) for name in handlers
        }

    # -- public interface -------------------------------------------------------------

    @property
    def tracked_calls(self) -> int:
        """Calls held in memory (reported or not yet), at most ``max_calls``."""
        return len(self._calls)

    @property
    def tracked_channels(self) -> int:
        """Channels held in memory, at most ``max_channels``."""
        return len(self._channels)

    @staticmethod
    def consumes(event_name: str) -> bool:
        """Does ``observe`` do anything with events of this name? (A cheap pre-filter.)"""
        return event_name in CONSUMED_EVENTS or event_name.lower() in _CONSUMED_FOLDED

    def observe(self, event: Message, now: float) -> Sequence[CallEvent]:
        """Feed one PBX event that arrived at ``now`` (epoch seconds); get call events.

        Never raises for any event content; unknown events return ``()`` at once.
        """
        name = event.headers[0][1]
        observer = self._dispatch.get(name, _unseen)
        if observer is _unseen:
            observer = self.observer(name) if name.lower() in self._routes_folded else None
            if len(self._dispatch) < _MAX_DISPATCH_NAMES:
                self._dispatch[name] = observer  # remember skipped names too: one lookup
        if observer is None:
            return _EMPTY
        return observer(event, now)

    def observer(self, event_name: str) -> Observer:
        """``observe`` for the events named ``event_name`` only (a name of
        ``CONSUMED_EVENTS``, in any case; ``KeyError`` for another).

        For a caller that routes events by name itself, as the AMI client does for its
        listeners (``LiveCalls`` adds one per name): ``observe`` looks the event's name
        up at every event, this once. Fed the same events, both give the same call
        events; they may be mixed.
        """
        handler, reader = self._routes_folded[event_name.lower()]

        # The event path of the tracker: one Python call per event from the AMI client
        # (through LiveCalls) to the handler, without the look-ups observe makes.
        def observe_named(event: Message, now: float) -> Sequence[CallEvent]:
            # to_ms(now) without its call; and round(x) looks float.__round__ up at
            # every call (about 1,000 CPU instructions), which costs a third of that
            # called directly. ``* 1000.0``: a float even when ``now`` is an int.
            self._now = _ROUND(now * 1000.0)
            self._event_name = event.headers[0][1]  # as spelled (``_update`` reads it)
            # _fields(event, reader) in its usual case, written out (a Python call less
            # per event): the bus published the event and shared its fields, and this
            # layout is read as spelled. A plan keeps its index alive, so the plan found
            # by the id of the event's index is that index's (id(None) names no plan).
            plan = reader.plans.get(id(event.header_index_if_built()))
            if plan is not None and plan.shared and (shared := event.shared_fields()) is not None:
                handler(shared)  # type: ignore[arg-type]
            else:
                handler(self._fields(event, reader))
            if not self._out:
                return _EMPTY
            out, self._out = self._out, []
            return out

        return observe_named

    def active(self, now: float | None = None) -> list[CallSnapshot]:
        """The live calls worth reporting, oldest first.

        Their ``ringSeconds``/``talkSeconds`` count up to ``now`` (default: the time of
        the last event observed).
        """
        if now is not None:
            self._now = to_ms(now)
        calls = [call for call in self._calls.values() if call.visible]
        calls.sort(key=lambda call: call.started_ms)
        return [self._snapshot(call, self._current_extension(call)) for call in calls]

    def get(self, call_id: str) -> CallSnapshot | None:
        """The live call with this id (or an id merged into it), if it is reported."""
        call = self._calls.get(self._resolve(call_id))
        if call is None or not call.visible:
            return None
        return self._snapshot(call, self._current_extension(call))

    def call_id_of_channel(self, uniqueid: str) -> str | None:
        """The id of the live call a channel (by ``Uniqueid``) belongs to, if reported."""
        channel = self._channels.get(uniqueid)
        if channel is None or channel.call.ended or not channel.call.visible:
            return None
        return channel.call.call_id

    def call_id_for_action(self, action_id: str) -> str | None:
        """The call a click-to-call (``expect_originate``'s ActionID) became, if known."""
        call_id = self._originated.get(action_id)
        if call_id is None:
            pending = self._pending.get(action_id)
            call_id = pending.call_id if pending is not None else None
        return None if call_id is None else self._resolve(call_id)

    def expect_originate(
        self,
        action_id: str,
        channel: str,
        now: float,
        *,
        to_number: str | None = None,
        sent: float | None = None,
    ) -> None:
        """Announce a click-to-call: an ``Originate`` of ``channel`` with ``action_id``.

        The call it makes then carries ``originated: true`` and this ``actionId``. The
        call is recognised by its first channel's name (``SIP/267`` matches
        ``SIP/267-00000055``; ``Local/267@ctx`` matches its ``;1`` half) or, failing
        that, by the ``OriginateResponse`` with this ActionID. Call it as soon as the
        ActionID is known; if the channel already appeared, it is matched at once.
        ``to_number`` (normalised) is the number the call goes to, shown as
        ``toNumber`` even when it never gets that far. ``sent`` (the clock of ``now``)
        is when the Originate was written: a call that started before it is not this
        Originate's, however its channel is named (another AMI client, such as another
        server instance, may click-to-call the same phone). Bounded by
        ``max_pending_originates`` and ``originate_ttl``.
        """
        self._now = to_ms(now)
        self._expire_pending()
        entry = _PendingOriginate(
            channel=channel.strip().lower(),
            to_number=to_number,
            expires_ms=self._now + round(self._limits.originate_ttl * 1000),
            sent_ms=None if sent is None else to_ms(sent),
        )
        self._pending[action_id] = entry
        self._pending.move_to_end(action_id)
        while len(self._pending) > self._limits.max_pending_originates:
            self._pending.popitem(last=False)
        for call in list(self._calls.values()):
            if (
                call.originate_leg
                and not call.originated
                and not call.ended
                and entry.could_have_made(call)
            ):
                first = next(iter(call.channels.values()), None)
                if first is not None and self._channel_matches(entry.channel, first.name):
                    self._mark_originated(call, action_id, entry)
                    break

    def reconcile(self, channels: Iterable[Message], now: float) -> Sequence[CallEvent]:
        """Rebuild the live calls from the PBX's channel list after an AMI (re)connect.

        ``channels`` are the items of ``CoreShowChannels`` (Asterisk 12+) or ``Status``
        (older dialects): one event per live channel. Calls whose channels are gone end
        with ``endReason: unknown``; channels not known yet are learnt and grouped into
        calls (by ``Linkedid``, else by bridged peer and Local twin), and a call found
        ringing or talking is reported with ``call.ringing``/``call.answered``. The
        answer time of such a call is estimated from its called party's age.
        """
        self._now = to_ms(now)
        items: list[tuple[str, str, Fields, str]] = []
        for message in channels:
            item = self._fields(message)
            name = (item.get("Channel") or "").strip()
            if not name:
                continue
            uniqueid = (item.get("Uniqueid") or "").strip() or name
            items.append((uniqueid, name, item, message.name))
        live = {uniqueid for uniqueid, *_ in items}
        # A call that a listed channel names by Linkedid goes on: its channels that are
        # gone are dropped only after the list is learnt, so that it never ends (and
        # could never be reported again) just because its listed channels are new to us.
        named = {self._resolve(linkedid) for linkedid in (_linkedid(item) for *_, item, _ in items)}
        named.discard("")
        later: list[Channel] = []
        for gone in [ch for ch in self._channels.values() if ch.uniqueid not in live]:
            if gone.call.call_id in named:
                later.append(gone)
            else:
                self._drop(gone)
        listed: list[tuple[Channel, Fields]] = []
        learnt: list[tuple[Channel, Fields]] = []
        for uniqueid, name, item, event_name in items:
            self._event_name = event_name  # for _update
            known = self._channels.get(uniqueid)
            if known is not None:
                if not known.call.ended:
                    self._update(known, item, _OWN)
                    listed.append((known, item))
                continue
            self._hung.pop(uniqueid, None)  # it is alive after all
            channel = self._learn(name, uniqueid, _linkedid(item) or None)
            if channel is None:
                continue
            channel.created_ms = self._now - _duration_ms(item)
            channel.call.started_ms = min(channel.call.started_ms, channel.created_ms)
            self._update(channel, item, _OWN, react=False)
            learnt.append((channel, item))
        for gone in later:
            self._drop(gone)
        self._group_learnt(learnt, [*listed, *learnt])
        out, self._out = self._out, []
        return out

    def _fields(self, message: Message, reader: _Reader | None = None) -> Fields:
        """An event's headers for reading (see ``Fields``), built once per event: those
        ``reader`` reads (by default every name in ``_READ_KEYS``).

        ``Message.get`` costs about 1,900 CPU instructions per look-up, and the tracker
        reads 2 to 12 headers of each event it handles. Instead, once per header layout
        (``Message.header_index``, shared by every message with the same header names,
        and usually already built by the channel registry), the positions of the
        headers the tracker reads are worked out (``_plan``: the first of each name in
        any case, as ``Message.get`` finds it); each event then costs one
        ``itemgetter`` over those positions and a dict of them (C speed), plus a copy
        under the tracker's spelling for a name the PBX spells otherwise (``UniqueID``
        for ``Uniqueid``). When the event bus published the event, the index is its
        layout's, handed on by the bus, and so are the bus's fields of the event (a dict
        of all its headers, ``Message.shared_fields``): where the layout spells every
        name ``reader`` reads as the tracker does and has each once (``_Plan.shared``),
        those are the fields, and no dict is built.
        """
        if reader is None:
            reader = self._all_reads
        headers = message.headers
        index = message.header_index_if_built()  # built when the bus published it
        plan: _Plan | None
        if index is None:
            # Nobody else read this message (the channel registry reads a few kinds):
            # building its index would hash every header name, new strings in every
            # message. The layout is usually one of the last few seen under this event
            # name, which comparing the names tells for a fraction of that.
            names = tuple(map(_first, headers))
            recent = reader.recent.get(headers[0][1])
            if recent is not None and recent[0].names == names:
                plan = recent[0]  # the usual case, without a call
            else:
                plan = self._recent_plan(reader, message, names)
        else:
            plan = reader.plans.get(id(index))
            if plan is None or plan.index is not index:
                plan = self._plan_of(reader, index, headers)
            # The event bus's fields of this event: a dict of all its headers, made
            # anyway. Their values are strings; names the bus added to them (name,
            # pbx, eventId) are never read here.
            shared = message.shared_fields()
            if shared is not None:
                if plan.shared:
                    return shared  # type: ignore[return-value]
                # The bus shares no layout that has a name twice in any case, so only
                # the tracker's spellings of some names are missing (``UniqueID`` for
                # ``Uniqueid`` in an old dialect's Dial): a copy of its fields (one C
                # call) plus those, rather than a dict built entry by entry (about
                # 7,500 CPU instructions for a Dial, against 3,200).
                copied: dict[str, object] = dict(shared)
                for spelling, spelled in plan.copies:
                    copied[spelling] = copied[spelled]
                return copied  # type: ignore[return-value]
        pick = plan.pick
        fields: dict[str, str] = {} if pick is None else dict(pick(headers))
        for spelling, spelled in plan.copies:
            fields[spelling] = fields[spelled]
        return fields

    def _recent_plan(self, reader: _Reader, message: Message, names: tuple[str, ...]) -> _Plan:
        """The plan of a message nobody indexed, whose header names are ``names``: one
        of the layouts last seen under its event name (newest first), else made from
        its index."""
        headers = message.headers
        recent = reader.recent.get(headers[0][1])
        if recent is not None:
            for plan in recent:
                if plan.names == names:
                    recent.remove(plan)
                    recent.insert(0, plan)
                    return plan
        else:
            if len(reader.recent) >= _MAX_LAYOUTS:
                reader.recent.clear()
            recent = reader.recent[headers[0][1]] = []
        plan = self._plan_of(reader, message.header_index(), headers)
        recent.insert(0, plan)
        del recent[_LAYOUTS_PER_NAME:]
        return plan

    @staticmethod
    def _plan_of(
        reader: _Reader, index: Mapping[str, int], headers: tuple[tuple[str, str], ...]
    ) -> _Plan:
        """The plan of the layout whose shared index is ``index``, made once."""
        plan = reader.plans.get(id(index))
        if plan is None or plan.index is not index:
            plan = _plan(index, headers, reader.spellings)
            if len(reader.plans) >= _MAX_LAYOUTS:
                reader.plans.clear()
            reader.plans[id(index)] = plan
        return plan

    def _number(self, raw: str | None) -> str | None:
        """``CallRules.number(raw)``, remembered: a call's numbers are normalised again
        at most of its events (caller ID, DID, dialled extension), each time through
        two regular expressions. Bounded: emptied when full."""
        if raw is None:
            return None
        number = self._numbers.get(raw, _UNKNOWN_NUMBER)
        if number is _UNKNOWN_NUMBER:
            number = self._rules.number(raw)
            if len(self._numbers) >= _MAX_NUMBERS:
                self._numbers.clear()
            self._numbers[raw] = number
        return number

    # -- channel bookkeeping ----------------------------------------------------------

    def _resolve(self, call_id: str) -> str:
        """Follow merges: the id of the call that ``call_id`` became part of."""
        for _ in range(8):  # merges chain rarely; the bound keeps a cycle harmless
            target = self._aliases.get(call_id)
            if target is None:
                return call_id
            call_id = target
        return call_id

    def _remember(self, table: OrderedDict[str, None], key: str) -> None:
        if key in table:
            table.move_to_end(key)
            return
        table[key] = None  # a new key goes last: nothing to move
        if len(table) > self._max_recent_ids:  # (it grows by one at a time)
            table.popitem(False)  # the oldest (positional: no keyword parsing)

    def _new_call(self, call_id: str) -> Call:
        call = Call(call_id, self._now)  # positional: keywords cost 1,200 instructions
        self._calls[call_id] = call
        while len(self._calls) > self._max_calls:
            _, oldest = next(iter(self._calls.items()))
            self.evicted_calls += 1
            self._end(oldest, "unknown", drop_channels=True)
        return call

    def _known(self, event: Fields) -> Channel | None:
        """The channel an event names, if the tracker knows it (never learns one)."""
        uniqueid = event.get("Uniqueid")
        if uniqueid:
            channel = self._channels.get(uniqueid)
            if channel is not None:
                self._touch(channel)
                return channel
            if uniqueid in self._hung:
                return None
        name = event.get("Channel")
        if name:
            channel = self._by_name.get(name)
            if channel is not None and (not uniqueid or channel.uniqueid == name):
                self._touch(channel)
                return channel
        return None

    def _touch(self, channel: Channel) -> None:
        self._channels.move_to_end(channel.uniqueid)
        call = channel.call
        if not call.ended:
            # A live call is in the table (invariant 2 the other way round): no look-up
            # before the move, only a guard that costs nothing unless it is needed
            # (contextlib.suppress would cost a context manager per event).
            try:  # noqa: SIM105
                self._calls.move_to_end(call.call_id)
            except KeyError:
                pass

    def _from_event(self, event: Fields, headers: _ChannelHeaders = _OWN) -> Channel | None:
        """The channel an event describes, learnt if new, with its state brought up to date."""
        channel = self._channel_of(event, headers)
        if channel is not None and not channel.call.ended:
            self._update(channel, event, headers)
        return channel

    def _channel_of(self, event: Fields, headers: _ChannelHeaders) -> Channel | None:
        """``_learn`` for the channel an event names. Its Linkedid is read only for a
        channel new to the tracker: nearly every event is about a known one."""
        name = event.get(headers.channel)
        if not name:
            return None
        uniqueid = event.get(headers.uniqueid)
        channel = self._existing(name, uniqueid)
        if channel is None and not self._hung_up(uniqueid):
            channel = self._create(name, uniqueid, event.get(headers.linkedid))
        return channel

    def _learn(self, name: str, uniqueid: str | None, linkedid: str | None) -> Channel | None:
        """Find or create the record of a channel; ``None`` for one we must not learn."""
        channel = self._existing(name, uniqueid)
        if channel is None and not self._hung_up(uniqueid):
            channel = self._create(name, uniqueid, linkedid)
        return channel

    def _create(self, name: str, uniqueid: str | None, linkedid: str | None) -> Channel | None:
        """A new channel's record, in the call it belongs to; ``None`` for one we must
        not learn (a zombie, news about an ended call)."""
        uniqueid = uniqueid or name  # Asterisk 1.4 leaves Uniqueid out of a few events
        info = self._rules.classify(name)
        if info.kind is _ZOMBIE:
            return None
        partner = None  # a Local half's twin, if known (a method call saved for others)
        if info.local_pair is not None:
            partner = self._local_partner(name, info.local_pair, info.local_half)
        placed = self._call_for(uniqueid, linkedid, partner)
        if placed is None:
            return None
        call, first = placed
        channel = Channel(uniqueid, name, info, call, self._now)  # positional: see _new_call
        self._place(channel, partner, first)  # positional: see _new_call
        self._register(channel)
        return channel

    def _existing(self, name: str, uniqueid: str | None) -> Channel | None:
        """The record already kept for a channel (touched), by Uniqueid, or by name
        when the event has none."""
        channel = self._channels.get(uniqueid) if uniqueid else self._by_name.get(name)
        if channel is not None:
            self._touch(channel)
        return channel

    def _hung_up(self, uniqueid: str | None) -> bool:
        """A Uniqueid that hung up: no new record is ever made for it."""
        return bool(uniqueid) and uniqueid in self._hung

    def _call_for(
        self, uniqueid: str, linkedid: str | None, partner: Channel | None
    ) -> tuple[Call, bool] | None:
        """The call a new channel belongs to, and whether it is that call's first
        channel; ``None`` for news about a call that is over.

        An ended call is never reopened, not even by a channel list: its ``call.ended``
        was its last word (exactly one per call), and a call id names one call.
        """
        # _resolve only for an id that was merged: a method call saved for the others.
        if linkedid:
            call_id = self._resolve(linkedid) if linkedid in self._aliases else linkedid
            if call_id in self._ended:
                return None
            call = self._calls.get(call_id)
            if call is None:
                call = self._new_call(call_id)
            return call, linkedid == uniqueid
        if partner is not None and not partner.call.ended:
            return partner.call, False
        call_id = self._resolve(uniqueid) if uniqueid in self._aliases else uniqueid
        if call_id in self._ended:
            return None
        known = self._calls.get(call_id)
        if known is not None:
            # The channel whose Uniqueid names a call (its Linkedid) is that call's first.
            return known, True
        return self._new_call(uniqueid), True

    @staticmethod
    def _place(channel: Channel, partner: Channel | None, first: bool) -> None:
        """Set a new channel's side of its call (a Local pair's halves share one)."""
        call = channel.call
        if channel.info.kind is not _LOCAL:
            if first:
                channel.side = _ORIGIN_SIDE
            return
        if first:
            channel.side = _ORIGIN_SIDE
            call.originate_leg = True  # a Local half that opens a call: an Originate
            if partner is not None and partner.call is call:
                partner.side = _ORIGIN_SIDE
        elif partner is not None and partner.call is call:
            channel.side = partner.side
        else:
            channel.side = _TARGET_SIDE  # made inside a call (a consultation) by a feature

    def _register(self, channel: Channel) -> None:
        """Index a new channel, note what it tells its call, and keep the bound."""
        call = channel.call
        call.channels[channel.uniqueid] = channel
        self._channels[channel.uniqueid] = channel
        self._by_name[channel.name] = channel
        if channel.is_party:
            call.had_party = True
            if channel.extension is not None and channel.extension not in call.extensions:
                call.extensions |= {channel.extension}  # a frozenset (see Call)
            if channel.side is _ORIGIN_SIDE and call.origin is None:
                self._set_origin(call, channel)
        while len(self._channels) > self._max_channels:
            _, oldest = next(iter(self._channels.items()))
            if oldest is channel:
                break
            self._drop(oldest, evicted=True)

    def _local_partner(self, name: str, pair: str | None, half: int) -> Channel | None:
        if pair is None:
            return None
        twin = name[:-1] + ("2" if half == 1 else "1")
        return self._by_name.get(twin)

    def _update(
        self, channel: Channel, event: Fields, headers: _ChannelHeaders, *, react: bool = True
    ) -> None:
        """Copy state, caller ID and extension from an event's channel fields."""
        number = event.get(headers.caller_num)
        if number is None:
            number = event.get(headers.caller_id)
        name = event.get(headers.caller_name)
        if (number is not None and number != channel.caller_num) or (
            name is not None and name != channel.caller_name
        ):
            if number is not None:
                channel.caller_num = number
            if name is not None:
                channel.caller_name = name
            call = channel.call
            # (_refresh_from does nothing for a hidden call: a method call saved.)
            if call.visible and (
                channel is call.origin or (call.origin is None and channel.side is _ORIGIN_SIDE)
            ):
                self._refresh_from(call)
        exten = event.get(headers.exten)
        if exten is None and self._event_name in _EXTENSION_EVENTS:
            exten = event.get("Extension")
        if exten is not None:
            channel.exten = exten
            if channel.first_exten is None:
                channel.first_exten = exten
                if channel is channel.call.origin and channel.info.kind is _TRUNK:
                    channel.call.did = channel.call.did or self._number(exten)
        raw_state = event.get(headers.state_desc) or event.get(headers.state)
        if raw_state:
            state = _LOWERED.get(raw_state) or raw_state.strip().lower()
            if state != channel.state:
                channel.state = state
                if react:
                    self._on_state(channel)

    def _forget(self, channel: Channel) -> None:
        """Remove a channel from the indexes (it hung up or is dropped)."""
        self._channels.pop(channel.uniqueid, None)
        if self._by_name.get(channel.name) is channel:
            del self._by_name[channel.name]
        if channel.bridge is not None:
            self._leave_bridge(channel)
        self._remember(self._hung, channel.uniqueid)
        channel.left_bridge_peer = None  # read on its own next events only: none will come
        call = channel.call
        if call.ended:
            call.channels.pop(channel.uniqueid, None)
            self._release(call)

    @staticmethod
    def _release(call: Call) -> None:
        """Drop an ended call's references to its channels once the last is forgotten.

        A channel points at its call (``channel.call``) and the call at its first
        channel (``origin``), and two old-dialect channels that were bridged at each
        other (``left_bridge_peer``, cleared by ``_forget``): reference cycles, which
        reference counting never frees.
        Left in place, every call would wait for the garbage collector, and at thousands
        of events a second those collections are the server's longest stalls
        (docs/performance.md). An ended call with no channel left is reachable from
        nothing the tracker still reads, so cutting ``origin`` frees it at once.
        """
        if call.ended and not call.channels:
            call.origin = None

    def _drop(self, channel: Channel, *, evicted: bool = False) -> None:
        """Forget a channel that vanished without a Hangup (reconcile or a bound)."""
        self._forget(channel)
        call = channel.call
        call.channels.pop(channel.uniqueid, None)
        if channel.uniqueid in call.holders:  # a frozenset: rebuilt only when it changes
            call.holders -= {channel.uniqueid}
        if call.ended:
            return
        if not call.channels or (call.had_party and not call.parties()):
            if evicted:
                self.evicted_calls += 1
            self._end(call, "unknown", drop_channels=True)

    # -- who the call is about --------------------------------------------------------

    def _set_origin(self, call: Call, channel: Channel) -> None:
        call.origin = channel
        call.origin_kind = channel.info.kind
        call.origin_extension = channel.extension
        if channel.info.kind is _TRUNK:
            call.trunk = call.trunk or channel.info.trunk
            if call.did is None:
                call.did = self._number(channel.first_exten)
        if call.visible:  # (_refresh_from does nothing for a hidden call: a call saved)
            self._refresh_from(call)

    def _refresh_from(self, call: Call) -> bool:
        """Recompute ``fromNumber``/``fromName``; True when they changed.

        Only for a call that is reported: they are read only in its snapshots, and most
        hidden calls never are (an old dialect's dialled channel has a call of its own
        until the Dial merges it; a phone talking to the dialplan). ``_show`` works them
        out when a call turns reportable, from the same state.
        """
        if not call.visible:
            return False
        before = (call.from_number, call.from_name)
        origin = call.origin
        if origin is not None and call.originate_leg and origin.extension is not None:
            # The phone a click-to-call rings first shows the callee's number as its
            # caller ID; the call is *from* that phone's extension.
            call.from_number, call.from_name = origin.extension, None
        elif origin is not None:
            call.from_number = self._number(origin.caller_num)
            call.from_name = self._rules.name(origin.caller_name)
        else:
            first = next(iter(call.channels.values()), None)
            if first is not None and first.side is _ORIGIN_SIDE:
                call.from_number = self._number(first.caller_num)
                call.from_name = self._rules.name(first.caller_name)
        return before != (call.from_number, call.from_name)

    def _own_name(self, channel: Channel) -> str | None:
        """A phone's own caller name, or ``None`` when its caller ID is someone else's.

        Old dialects give a dialled channel the caller's ID, so a name is trusted only
        when the caller ID number is the phone's own extension.
        """
        if channel.extension is None or self._number(channel.caller_num) != channel.extension:
            return None
        return self._rules.name(channel.caller_name)

    def _origin_extension(self, call: Call) -> str | None:
        return call.origin_extension if call.origin_kind is _EXTENSION else None

    def _current_extension(self, call: Call) -> str | None:
        """The extension the call is about now: where a blind transfer sent it, who
        talks on the called side (the latest to answer), who rang last, or the caller."""
        if call.blind_target is not None:
            return call.blind_target
        talking: Channel | None = None
        for channel in call.channels.values():
            if (
                channel.side is _TARGET_SIDE
                and channel.answered_ms is not None
                and channel.extension is not None
                and (talking is None or channel.answered_ms >= (talking.answered_ms or 0))
            ):
                talking = channel
        if talking is not None:
            return talking.extension
        if call.extension is not None:
            return call.extension
        return self._origin_extension(call)

    # -- reporting --------------------------------------------------------------------

    def _show(self, call: Call) -> None:
        """Make a call reportable, with who it is from (see ``_refresh_from``)."""
        if not call.visible:
            call.visible = True
            self._refresh_from(call)

    def _emit(self, call: Call, name: CallEventName, extension: str | None) -> None:
        if not call.visible:
            return
        message = self._message(call, extension)
        message["name"] = name
        self._out.append(call_event(name, message, call.extensions))
        call.announced = True

    def _snapshot(self, call: Call, extension: str | None) -> CallSnapshot:
        return snapshot_of(self._message(call, extension), call.extensions)

    def _message(self, call: Call, extension: str | None) -> dict[str, JsonValue]:
        """The call as the pushed message holds it (``CALL_MESSAGE``), but ``name``.

        Call events are built this way, straight into the dict the bus sends (a
        template copy, then each value in place of its placeholder), because that
        dict is what nearly every call event is for; a ``CallSnapshot`` is made from it
        only when one is asked for (``active``, ``get``, ``CallEvent.call``).
        """
        # Written out, without a helper for the direction and without bool() or max():
        # each such call costs about 1,000 CPU instructions, for every call event.
        now = call.ended_ms if call.ended_ms is not None else self._now
        answered_ms = call.answered_ms
        on_hold = not call.ended and len(call.holders) > 0
        status: CallStatus = (
            "ended"
            if call.ended
            else "ringing"
            if answered_ms is None
            else "held"
            if on_hold
            else "up"
        )
        origin_kind = call.origin_kind
        direction: Direction = (
            "inbound"
            if origin_kind is _TRUNK
            else "outbound"
            if call.target_trunk
            else "internal"
            if origin_kind is _EXTENSION
            else "unknown"
        )
        ring_start_ms = call.ring_start_ms
        if ring_start_ms is None:
            ring_ms = 0
        elif answered_ms is not None:
            ring_ms = answered_ms - ring_start_ms
        else:
            stop = call.ring_stop_ms if call.ring_stop_ms is not None else now
            ring_ms = stop - ring_start_ms
        talk_ms = 0 if answered_ms is None else now - answered_ms
        transfers = call.transfers
        # A copy of _MESSAGE, which holds the usual value of each field (None, or
        # False): where a field is often at it, it is tested and not written again. A
        # dict store costs about 270 CPU instructions, a test about 30, and most call
        # events leave six or so fields as they are (no DID, no called name, no action
        # id, not originated, not held, not yet ended).
        message = _MESSAGE.copy()
        message["callId"] = call.call_id
        message["pbx"] = self.pbx
        message["status"] = status
        message["direction"] = direction
        message["fromNumber"] = call.from_number
        message["fromName"] = call.from_name
        message["toNumber"] = call.to_number
        if call.to_name is not None:
            message["toName"] = call.to_name
        message["extension"] = extension
        message["trunk"] = call.trunk
        if call.did is not None:
            message["did"] = call.did
        message["startedAt"] = iso_ms(call.started_ms)
        message["answeredAt"] = None if answered_ms is None else iso_ms(answered_ms)
        if call.ended_ms is not None:
            message["endedAt"] = iso_ms(call.ended_ms)
        message["ringSeconds"] = ring_ms / 1000 if ring_ms > 0 else 0.0
        message["talkSeconds"] = talk_ms / 1000 if talk_ms > 0 else 0.0
        if call.end_reason is not None:
            message["endReason"] = call.end_reason
        if on_hold:
            message["onHold"] = True
        message["transfers"] = [transfer.to_dict() for transfer in transfers] if transfers else []
        # A loop, not a list comprehension: in Python 3.11 that is a function call of
        # its own (about 900 CPU instructions more for a call's two or three channels).
        channels: list[JsonValue] = []
        for channel in call.channels.values():
            if channel.is_party:
                channels.append(channel.name)
        message["channels"] = channels
        if call.originated:
            message["originated"] = True
        if call.action_id is not None:
            message["actionId"] = call.action_id
        return message

    # -- what happens to legs ---------------------------------------------------------

    def _make_target(self, channel: Channel) -> None:
        """Put a channel on the called side; a party there makes the call reportable."""
        call = channel.call
        channel.side = _TARGET_SIDE
        if channel.info.local_pair is not None:  # a Local half: its twin goes along
            partner = self._local_partner(
                channel.name, channel.info.local_pair, channel.info.local_half
            )
            if partner is not None and partner.call is call:
                partner.side = _TARGET_SIDE
        if not channel.is_party:
            return
        self._show(call)
        if channel.info.kind is _TRUNK:
            call.target_trunk = True
            call.trunk = call.trunk or channel.info.trunk
        if channel.extension is not None and call.answered_ms is None and call.extension is None:
            call.extension = channel.extension

    def _on_state(self, channel: Channel) -> None:
        call = channel.call
        if call.ended or not channel.is_party:
            return
        state = channel.state
        if channel.side is _TARGET_SIDE:
            if state == "ringing":
                self._ringing(channel)
            elif state == "up":
                self._answered(channel)
            elif state == "busy" and call.answered_ms is None:
                call.outcome = "busy"
        elif channel.side is _ORIGIN_SIDE and channel is call.origin:
            if channel.info.kind is _TRUNK and state != "down":
                if not call.originate_leg:
                    self._show(call)  # an inbound call: reported from its first ring
            elif (
                state in ("ringing", "up")
                and not channel.dialled
                and not call.target_trunk
                and not any(ch.side is _TARGET_SIDE for ch in call.channels.values())
            ):
                # A phone rung without anyone dialling it: the first leg of an Originate.
                if not call.originate_leg:
                    call.originate_leg = True
                    self._refresh_from(call)
                self._match_pending(call, channel.name)

    def _ringing(self, channel: Channel) -> None:
        if channel.ringing or channel.answered_ms is not None:
            return
        call = channel.call
        channel.ringing = True
        if call.answered_ms is None:
            if call.ring_start_ms is None:
                call.ring_start_ms = self._now
            call.ring_stop_ms = None
        extension = channel.extension
        if extension is not None:
            if extension not in call.rang and len(call.rang) < self._limits.max_rang:
                call.rang += (extension,)
            if call.answered_ms is None:
                call.extension = extension
                if call.to_name is None and extension == call.to_number:
                    call.to_name = self._own_name(channel)
            self._emit(call, "call.ringing", extension)
        elif not call.announced_outbound and call.answered_ms is None:
            call.announced_outbound = True  # an outside line: announced once, for the caller
            self._emit(call, "call.ringing", self._origin_extension(call))

    def _answered(self, channel: Channel, at_ms: int | None = None) -> None:
        if channel.answered_ms is not None:
            return
        call = channel.call
        at = self._now if at_ms is None else at_ms
        channel.answered_ms = at
        channel.ringing = False
        if call.answered_ms is None:
            call.answered_ms = at
            if call.ring_start_ms is None or call.ring_start_ms > at:
                call.ring_start_ms = at
            if channel.extension is not None:
                call.to_name = self._own_name(channel)
        extension = channel.extension
        if extension is not None:
            call.extension = extension
            call.blind_target = None
        else:
            extension = self._origin_extension(call)
        self._emit(call, "call.answered", extension)

    def _stop_ringing(self, channel: Channel) -> None:
        if not channel.ringing:
            return
        channel.ringing = False
        call = channel.call
        if call.answered_ms is None and not any(
            ch.ringing for ch in call.channels.values() if ch is not channel
        ):
            call.ring_stop_ms = self._now

    def _dial(self, source: Channel, dest: Channel, dialstring: str | None) -> None:
        """``source`` dialled ``dest``: one call; ``dest`` on the called side."""
        if source is dest or source.call.ended or dest.call.ended:
            return
        call = source.call
        to_origin = self._rings_origin(source)
        side = _ORIGIN_SIDE if to_origin else _TARGET_SIDE
        merged = dest.call is not call
        if merged:
            self._merge(call, dest.call, moved_side=side)
        dest.dialled = True
        if len(source.destinations) < MAX_DESTINATIONS:
            source.destinations += (dest.uniqueid,)
        if to_origin:
            dest.side = _ORIGIN_SIDE
            if dest.is_party and call.origin is None:
                self._set_origin(call, dest)
            twin = self._local_partner(source.name, source.info.local_pair, 2)
            self._match_pending(call, twin.name if twin is not None else source.name)
            self._on_state(dest)
            return
        if call.to_number is None:
            call.to_number = (
                call.did
                or self._number(source.exten)
                or self._dialled_number(dialstring)
                or dest.extension
            )
        if not (merged and dest.is_party):  # else the merge did it (_resettle)
            self._make_target(dest)
        if dest.is_party and dest.info.kind is not _EXTENSION:
            self._ringing(dest)  # an outside line counts as ringing from the dial on
        self._on_state(dest)

    @staticmethod
    def _rings_origin(source: Channel) -> bool:
        """Whether what ``source`` dials is on the calling side: a Local ``;2`` half on
        the calling side rings the click-to-call's own phone (an Originate through
        ``Local/ext@context``), which is the caller, not a callee."""
        return (
            source.info.kind is _LOCAL
            and source.info.local_half == 2
            and source.side is _ORIGIN_SIDE
        )

    def _dialled_number(self, dialstring: str | None) -> str | None:
        if not dialstring:
            return None
        target = dialstring.split(",", 1)[0].split("&", 1)[0]
        target = target.rsplit("/", 1)[-1].split("@", 1)[0]
        return self._number(target)

    def _dial_end(self, dest: Channel, status: str) -> None:
        call = dest.call
        if call.ended:
            return
        status = status.strip().lower()
        if status == "answer":
            if dest.side is _TARGET_SIDE and dest.is_party:
                self._answered(dest)
            return
        self._stop_ringing(dest)
        if call.answered_ms is not None or status not in _END_REASONS:
            return
        if dest.side is _TARGET_SIDE:
            call.outcome = status
        elif dest.side is _ORIGIN_SIDE and call.originate_leg:
            call.origin_outcome = status

    # -- calls becoming one -----------------------------------------------------------

    def _merge(self, into: Call, other: Call, *, moved_side: Side | None = None) -> None:
        """Move every channel of ``other`` into ``into``; ``other`` ends."""
        if into is other or other.ended:
            return
        moved = other.channels  # kept as it is: ``other`` gets a new, empty dict
        for uniqueid, channel in moved.items():
            channel.call = into
            into.channels[uniqueid] = channel
        other.channels = {}
        self._absorb(into, other)
        self._calls.pop(other.call_id, None)
        self._aliases[other.call_id] = into.call_id
        if len(self._aliases) > self._max_recent_ids:  # (it grows by one at a time)
            self._aliases.popitem(False)
        if other.announced:
            self._end(other, "transferred")
        else:
            other.ended = True
        for channel in moved.values():
            self._resettle(into, channel, moved_side)

    def _absorb(self, into: Call, other: Call) -> None:
        """What ``other`` knew that ``into`` keeps once they are one call."""
        # Frozensets (see Call): a union is a new one, made only when there is news.
        if not other.extensions <= into.extensions:
            into.extensions |= other.extensions
        into.had_party = into.had_party or other.had_party
        if other.holders:
            into.holders |= other.holders
        for extension in other.rang:
            if extension not in into.rang and len(into.rang) < self._limits.max_rang:
                into.rang += (extension,)
        if other.originated and not into.originated:
            into.originated, into.action_id = True, other.action_id
        if other.visible:
            self._show(into)

    def _resettle(self, into: Call, channel: Channel, moved_side: Side | None) -> None:
        """Give a channel moved into ``into`` its side there (the caller's side stays
        with the call it joins, unless the merge says otherwise)."""
        if moved_side is not None:
            channel.side = moved_side
        elif channel.side is not _TARGET_SIDE and into.origin is not None:
            channel.side = _TARGET_SIDE
        if channel.side is _TARGET_SIDE and channel.is_party:
            self._make_target(channel)
        elif channel.side is _ORIGIN_SIDE and channel.is_party and into.origin is None:
            self._set_origin(into, channel)

    def _merge_older(self, one: Call, two: Call) -> Call:
        """Merge two calls, the older surviving; return the survivor.

        Calls learnt from a channel list know their age to the second only, so a tie
        goes to the call whose id Asterisk made first (``<epoch>.<sequence>``).
        """
        if one is two:
            return one
        if (two.started_ms, _made(two.call_id)) < (one.started_ms, _made(one.call_id)):
            one, two = two, one
        self._merge(one, two)
        return one

    # -- ending -----------------------------------------------------------------------

    def _end_reason(self, call: Call) -> EndReason:
        if call.answered_ms is not None:
            return "completed"
        if call.outcome is not None:
            return _END_REASONS.get(call.outcome, "cancelled")
        if call.cancelled:
            return "cancelled"
        if call.originate_leg and call.origin_outcome is not None:
            return _END_REASONS.get(call.origin_outcome, "failed")
        return "cancelled"

    def _end(
        self, call: Call, reason: EndReason | None = None, *, drop_channels: bool = False
    ) -> None:
        if call.ended:
            return
        call.ended = True
        call.ended_ms = self._now
        call.end_reason = reason if reason is not None else self._end_reason(call)
        self._calls.pop(call.call_id, None)
        self._remember(self._ended, call.call_id)
        if drop_channels:
            for channel in list(call.channels.values()):
                self._forget(channel)
            call.channels = {}
        if call.holders:
            call.holders = frozenset()
        if call.visible:
            self._emit(call, "call.ended", self._current_extension(call))
            if call.answered_ms is None and call.end_reason in _MISSED_REASONS:
                for missed in call.rang:
                    self._emit(call, "call.missed", missed)
        self._release(call)

    def _hangup(self, channel: Channel, cause: str | None) -> None:
        """``channel`` hung up; ``cause`` is the Hangup's ``Cause``."""
        self._forget(channel)
        call = channel.call
        if call.ended:
            return
        call.channels.pop(channel.uniqueid, None)
        if channel.uniqueid in call.holders:  # a frozenset: rebuilt only when it changes
            call.holders -= {channel.uniqueid}
        if channel.is_party and call.answered_ms is None:
            self._left_unanswered(call, channel, cause)
        if channel.ringing:  # (_stop_ringing clears it; a method call saved otherwise)
            self._stop_ringing(channel)
        if self._nobody_left(call):
            self._end(call)

    def _left_unanswered(self, call: Call, channel: Channel, cause: str | None) -> None:
        """What a party's hang-up before the call was answered tells: why it failed.
        The ``Cause`` is parsed only here (most hang-ups end an answered call)."""
        code = _int(cause)
        outcome = _CAUSE_OUTCOMES.get(code) if code is not None else None
        if channel.side is _TARGET_SIDE:
            if outcome is not None and call.outcome is None and channel.dialled:
                call.outcome = outcome
        elif channel.side is _ORIGIN_SIDE and channel is call.origin:
            if not call.originate_leg and self._lone_unrung(call, channel):
                # Asterisk 1.8 names no Originate's phone that fails before ringing
                # (no DialBegin without a caller): a phone that hangs up untouched,
                # the only channel of its call, is the leg of a pending click-to-call
                # of the same phone, if there is one.
                self._match_pending(call, channel.name)
            if call.originate_leg:
                if call.origin_outcome is None and outcome is not None:
                    call.origin_outcome = outcome
                if channel.state == "down" and not call.originated:
                    self._match_pending(call, channel.name)
            elif any(ch.side is _TARGET_SIDE for ch in call.channels.values()):
                call.cancelled = True  # the caller gave up while the call was offered

    @staticmethod
    def _nobody_left(call: Call) -> bool:
        """Whether a live call is over: no channel left, or no party left (Local channels
        left over do not keep it alive), except that an unanswered call waits for an
        old-dialect ``Dial End`` still due on one of its channels: it says why the call
        failed (a Local half's Dial reports ``NOANSWER`` after its phone hung up)."""
        if not call.channels:
            return True
        if not call.had_party:
            return False
        for channel in call.channels.values():  # call.parties(), without making the list
            if channel.is_party:
                return False
        return call.answered_ms is not None or not any(ch.dialling for ch in call.channels.values())

    # -- transfers --------------------------------------------------------------------

    def _party_behind(self, channel: Channel | None) -> Channel | None:
        """The phone or line a channel stands for: itself, or what its Local twin dialled."""
        for _ in range(4):  # Local chains are short; the bound keeps a loop harmless
            if channel is None or channel.is_party:
                return channel
            if channel.info.kind is not _LOCAL:
                return None
            twin = self._local_partner(
                channel.name, channel.info.local_pair, channel.info.local_half
            )
            if twin is None:
                return None
            found = None
            for uniqueid in reversed(twin.destinations):
                found = self._channels.get(uniqueid)
                if found is not None:
                    break
            channel = found
        return None

    def _who(self, channel: Channel | None) -> str | None:
        if channel is None:
            return None
        if channel.extension is not None:
            return channel.extension
        return self._number(channel.caller_num)

    def _transfer(
        self,
        call: Call,
        kind: TransferType,
        by: Channel | None,
        to: str | None,
        *,
        leaving: Iterable[Channel | None] = (),
        target: Channel | None = None,
    ) -> None:
        if call.ended:
            return
        by_who = self._who(by)
        at = iso_ms(self._now)
        last = call.transfers[-1] if call.transfers else None
        if last is not None and (last.type, last.by, last.to) == (kind, by_who, to):
            return  # the same transfer seen twice (heuristic and event)
        transfer = Transfer(type=kind, by=by_who, to=to, at=at)
        call.transfers = (*call.transfers, transfer)[-self._limits.max_transfers :]
        for channel in (by, *leaving):
            if channel is not None:
                call.holders -= {channel.uniqueid}
        if kind == "blind":
            call.blind_target = to
        else:
            call.blind_target = None
            if target is not None and target.extension is not None:
                call.extension = target.extension  # who the caller talks to from now on
        self._emit(call, "call.transferred", by_who if by_who else self._current_extension(call))

    def _destination(self, exten: str) -> str:
        return self._number(exten) or exten[:32]

    def _maybe_redirected(self, channel: Channel, peer: Channel | None) -> None:
        """A party left its bridge alive, at another extension: an AMI Redirect.

        ``peer`` is a channel it talked to (a party, or the Local half standing for one);
        that party is who moved it (``by``), typically an operator using ``redirect``.
        """
        call = channel.call
        if (
            peer is None
            or call.ended
            or peer.call is not call
            or not channel.is_party
            or channel.hangup_requested
            or call.answered_ms is None
            or channel.exten in _NOT_DESTINATIONS
            or channel.exten == channel.exten_in_bridge
        ):
            return
        by = peer if peer.is_party else self._party_behind(peer)
        self._transfer(call, "blind", by, self._destination(channel.exten), leaving=(peer,))

    # -- click-to-call ----------------------------------------------------------------

    @staticmethod
    def _channel_matches(wanted: str, name: str) -> bool:
        name = name.lower()
        return name == wanted or name.startswith(wanted + "-")

    def _expire_pending(self) -> None:
        for action_id, entry in list(self._pending.items()):
            if entry.expires_ms <= self._now:
                del self._pending[action_id]

    @staticmethod
    def _lone_unrung(call: Call, channel: Channel) -> bool:
        """``channel`` is all its call ever was: nobody dialled it, nothing else joined,
        and it never left ``Down`` (what an Originate's failed first leg looks like)."""
        return (
            channel.state == "down"
            and not channel.dialled
            and not channel.destinations
            and not call.target_trunk
            and all(ch is channel for ch in call.channels.values())
        )

    def _match_pending(self, call: Call, name: str) -> None:
        if call.originated or not self._pending:
            return
        self._expire_pending()
        for action_id, entry in self._pending.items():
            if (
                entry.call_id is None
                and entry.could_have_made(call)
                and self._channel_matches(entry.channel, name)
            ):
                self._mark_originated(call, action_id, entry)
                return

    def _mark_originated(self, call: Call, action_id: str, entry: _PendingOriginate) -> None:
        entry.call_id = call.call_id
        call.originated = True
        call.action_id = action_id
        call.originate_leg = True
        if call.to_number is None and entry.to_number:
            call.to_number = entry.to_number
        self._originated[action_id] = call.call_id
        while len(self._originated) > self._limits.max_pending_originates:
            self._originated.popitem(last=False)
        self._refresh_from(call)
        self._show(call)

    # -- event handlers ---------------------------------------------------------------

    def _on_channel_event(self, event: Fields) -> None:
        # Newchannel and Newstate, a third of an old dialect's events: _from_event,
        # _channel_of and _existing written out (three method calls fewer per event).
        name = event.get("Channel")
        if not name:
            return
        uniqueid = event.get("Uniqueid")
        channel = self._channels.get(uniqueid) if uniqueid else self._by_name.get(name)
        if channel is not None:
            self._touch(channel)
        elif uniqueid and uniqueid in self._hung:
            return
        else:
            channel = self._create(name, uniqueid, event.get("Linkedid"))
            if channel is None:
                return
        if not channel.call.ended:
            self._update(channel, event, _OWN)

    def _on_new_callerid(self, event: Fields) -> None:
        channel = self._channel_of(event, _OWN)
        if channel is None or channel.call.ended:
            return
        call = channel.call
        before = (call.from_number, call.from_name)
        self._update(channel, event, _OWN)
        if call.announced and not call.ended and before != (call.from_number, call.from_name):
            self._emit(call, "call.updated", self._current_extension(call))

    def _on_new_connected_line(self, event: Fields) -> None:
        channel = self._from_event(event)
        if channel is None or channel.call.ended:
            return
        call = channel.call
        # After an outside line answered, a new connected line on the caller's channel is
        # the far end changing who we talk to (a transfer on the carrier's side).
        if channel is call.origin and call.answered_ms is not None and call.target_trunk:
            name = self._rules.name(event.get("ConnectedLineName"))
            if name is not None and name != call.to_name:
                call.to_name = name
                self._emit(call, "call.updated", self._current_extension(call))

    def _on_newexten(self, event: Fields) -> None:
        uniqueid = event.get("Uniqueid")
        channel = self._channels.get(uniqueid) if uniqueid else None
        if channel is None:
            return
        exten = event.get("Exten")
        if exten is None:
            exten = event.get("Extension")
        if exten is None:
            return
        # The first Newexten after an Unlink says where the channel went: the next step
        # of its own extension (the Dial returned: a hang-up), or elsewhere (a Redirect;
        # by then Asterisk 1.8 has usually hung up the peer already).
        peer, channel.left_bridge_peer = channel.left_bridge_peer, None
        channel.exten = exten
        if peer is not None:
            self._maybe_redirected(channel, peer)

    def _on_rename(self, event: Fields) -> None:
        old = event.get("Channel") or event.get("Oldname")
        new = event.get("Newname")
        uniqueid = event.get("Uniqueid")
        channel = self._channels.get(uniqueid) if uniqueid else None
        if channel is None and old:
            channel = self._by_name.get(old)
        if channel is None or not new:
            return
        if self._by_name.get(channel.name) is channel:
            del self._by_name[channel.name]
        channel.name = new
        self._by_name[new] = channel
        info = self._rules.classify(new)
        if info == channel.info:
            return
        channel.set_info(info)
        call = channel.call
        if channel.is_party:
            call.had_party = True
            if channel.extension is not None and channel.extension not in call.extensions:
                call.extensions |= {channel.extension}  # a new frozenset (Call.extensions)
        else:
            call.holders -= {channel.uniqueid}
            self._stop_ringing(channel)
            if not call.ended and call.had_party and not call.parties():
                self._end(call)  # its last phone became a masquerade's leftover

    def _on_masquerade(self, event: Fields) -> None:
        clone = self._by_name.get(event.get("Clone") or "")
        original = self._by_name.get(event.get("Original") or "")
        if clone is None or original is None:
            return
        if not clone.call.ended and not original.call.ended:
            self._merge_older(clone.call, original.call)

    def _on_hangup_request(self, event: Fields) -> None:
        channel = self._known(event)
        if channel is not None:
            channel.hangup_requested = True

    def _on_hangup(self, event: Fields) -> None:
        channel = self._known(event)
        if channel is not None:
            self._hangup(channel, event.get("Cause"))

    def _on_dial_begin(self, event: Fields) -> None:
        dest = self._from_event(event, _DEST)
        if dest is None or dest.call.ended:
            return
        source = self._from_event(event)
        if source is not None:
            self._dial(source, dest, event.get("DialString"))
            return
        # No calling channel: the PBX itself dials, i.e. an Originate's first leg.
        call = dest.call
        if dest.side is _ORIGIN_SIDE and not any(
            ch.side is _TARGET_SIDE for ch in call.channels.values()
        ):
            if not call.originate_leg:
                call.originate_leg = True
                self._refresh_from(call)
            self._match_pending(call, dest.name)

    def _on_dial_state(self, event: Fields) -> None:
        dest = self._from_event(event, _DEST)
        if dest is None or dest.call.ended:
            return
        source = self._from_event(event)
        if source is not None and not dest.dialled:
            self._dial(source, dest, None)  # joined mid-call: the DialBegin was missed
        status = (event.get("DialStatus") or "").strip().lower()
        if (
            dest.side is _TARGET_SIDE
            and dest.is_party
            and status in _RINGING_DIAL_STATES
            and (status == "ringing" or dest.info.kind is not _EXTENSION)
        ):
            self._ringing(dest)

    def _on_dial_end(self, event: Fields) -> None:
        dest = self._from_event(event, _DEST)
        if dest is None or dest.call.ended:
            return
        source = self._from_event(event)
        if source is not None and not dest.dialled:
            self._dial(source, dest, None)  # joined mid-call: the DialBegin was missed
        self._dial_end(dest, event.get("DialStatus") or "")

    def _on_dial_old(self, event: Fields) -> None:
        """Asterisk 1.4/1.8 ``Dial``: ``SubEvent: Begin`` (or none, 1.4) and ``End``."""
        raw_sub = event.get("SubEvent") or "begin"
        sub = _LOWERED.get(raw_sub) or raw_sub.strip().lower()
        source_name = event.get("Channel") or event.get("Source")
        source_id = event.get("UniqueID") or event.get("SrcUniqueID")
        if not source_name:
            return
        if sub == "end":
            source = self._channels.get(source_id or "") or self._by_name.get(source_name)
            if source is not None and not source.call.ended:
                self._dial_returned(source, event.get("DialStatus") or "")
            return
        source = self._learn(source_name, source_id, None)
        dest_name = event.get("Destination")
        if source is None or not dest_name:
            return
        self._update(source, event, _OWN)
        dest = self._learn(dest_name, event.get("DestUniqueID"), None)
        if dest is not None:
            source.dialling = True
            self._dial(source, dest, event.get("Dialstring"))

    def _dial_returned(self, source: Channel, status: str) -> None:
        """Old dialects' ``Dial End``: the Dial application on ``source`` returned.

        Asterisk 1.8 hangs up the phones it rang *before* it reports how the Dial went
        (a timeout: the callee's ``Hangup`` 16, then ``DialStatus: NOANSWER``), so the
        status is the call's outcome even when no destination is left to carry it.
        """
        source.dialling = False
        call = source.call
        # A loop, not a comprehension over a generator: two function calls fewer.
        waiting: list[Channel] = []
        for uniqueid in source.destinations:
            dest = self._channels.get(uniqueid)
            if dest is not None and dest.answered_ms is None:
                waiting.append(dest)
        for dest in waiting:
            self._dial_end(dest, status)
        if call.ended:
            return
        status = status.strip().lower()
        if not waiting and call.answered_ms is None and status in _END_REASONS:
            if self._rings_origin(source):
                if call.originate_leg:
                    call.origin_outcome = status
            else:
                call.outcome = status
        if self._nobody_left(call):
            self._end(call)  # it waited for this Dial End (see _hangup)

    def _on_agent_called(self, event: Fields) -> None:
        """A queue rings a member: a dial from the caller (Asterisk 1.8 has no Dial here)."""
        source = self._channels.get(event.get("Uniqueid") or "") or self._by_name.get(
            event.get("ChannelCalling") or event.get("Channel") or ""
        )
        dest = self._channels.get(event.get("DestUniqueid") or "") or self._by_name.get(
            event.get("DestinationChannel") or event.get("DestChannel") or ""
        )
        if source is not None and dest is not None:
            self._dial(source, dest, None)

    def _on_queue_join(self, event: Fields) -> None:
        channel = self._from_event(event)
        if channel is None or channel.call.ended or channel.side is not _ORIGIN_SIDE:
            return
        call = channel.call
        self._show(call)  # a caller waiting in a queue is a call to show
        if call.to_number is None:
            call.to_number = self._number(event.get("Queue"))

    def _on_pickup(self, event: Fields) -> None:
        picker = self._from_event(event)
        target = self._from_event(event, _TARGET)
        if picker is None or target is None or target.call.ended or picker.call.ended:
            return
        call = target.call
        if picker.call is not call:
            self._merge(call, picker.call, moved_side=_TARGET_SIDE)
        picker.dialled = True
        self._make_target(picker)
        self._on_state(picker)

    def _enter_bridge(self, channel: Channel, bridge_id: str) -> None:
        if channel.bridge is not None and channel.bridge != bridge_id:
            self._leave_bridge(channel)
        channel.bridge = bridge_id
        channel.exten_in_bridge = channel.exten
        channel.left_bridge_peer = None
        members = self._bridges.get(bridge_id)
        if members is None:  # the first in the bridge: nobody to merge with or talk to
            self._bridges[bridge_id] = {channel.uniqueid}
            return
        members.add(channel.uniqueid)
        for uniqueid in list(members):
            other = self._channels.get(uniqueid)
            if other is None or other is channel or other.call is channel.call:
                continue
            if other.call.ended or channel.call.ended:
                continue
            self._merge_older(channel.call, other.call)
        call = channel.call
        if not call.ended and call.answered_ms is None and channel.is_party:
            self._answered_in_bridge(call, members)

    def _answered_in_bridge(self, call: Call, members: set[str]) -> None:
        """Two parties of a call in one bridge talk to each other: the call is answered,
        even if we never saw who answered (joined mid-call, a queue on an old PBX)."""
        # A loop, not a comprehension over a generator: two function calls fewer.
        parties: list[Channel] = []
        for uniqueid in members:
            party = self._channels.get(uniqueid)
            if party is not None and party.is_party and party.call is call:
                parties.append(party)
        if len(parties) < 2:
            return
        for party in parties:
            if party.side is not _ORIGIN_SIDE:
                self._make_target(party)
        for party in parties:
            if party.side is _TARGET_SIDE:
                self._answered(party)
                break

    def _leave_bridge(self, channel: Channel) -> set[str] | None:
        """Take a channel out of its bridge; return the Uniqueids still in it (None:
        nobody). Most callers ignore them: no list of their channels is made here."""
        bridge_id, channel.bridge = channel.bridge, None
        if bridge_id is None:
            return None
        members = self._bridges.get(bridge_id)
        if members is None:
            return None
        members.discard(channel.uniqueid)
        if not members:
            del self._bridges[bridge_id]
            return None
        return members

    def _on_bridge_enter(self, event: Fields) -> None:
        channel = self._from_event(event)
        bridge_id = event.get("BridgeUniqueid")
        if channel is not None and bridge_id and not channel.call.ended:
            self._enter_bridge(channel, bridge_id)

    def _on_bridge_leave(self, event: Fields) -> None:
        channel = self._known(event)
        if channel is None:
            return
        exten = event.get("Exten")
        if exten is not None:
            channel.exten = exten
        members = self._leave_bridge(channel) or ()
        remaining = [ch for ch in (self._channels.get(uid) for uid in members) if ch is not None]
        peers = [ch for ch in remaining if ch.call is channel.call]
        peer = next((ch for ch in peers if ch.is_party), peers[0] if peers else None)
        self._maybe_redirected(channel, peer)

    def _on_bridge_merge(self, event: Fields) -> None:
        source = self._bridges.get(event.get("FromBridgeUniqueid") or "")
        target = event.get("ToBridgeUniqueid")
        if source is None or not target:
            return
        for uniqueid in list(source):
            channel = self._channels.get(uniqueid)
            if channel is not None and not channel.call.ended:
                self._enter_bridge(channel, target)

    def _link_pair(self, event: Fields) -> tuple[Channel, Channel] | None:
        first = self._learn(event.get("Channel1") or "", event.get("Uniqueid1"), None)
        second = self._learn(event.get("Channel2") or "", event.get("Uniqueid2"), None)
        if first is None or second is None or first is second:
            return None
        return first, second

    def _on_link(self, event: Fields) -> None:
        if not event.get("Channel1") or not event.get("Channel2"):
            return
        pair = self._link_pair(event)
        if pair is None:
            return
        first, second = pair
        if first.call.ended or second.call.ended:
            return
        bridge_id = "link:" + min(first.uniqueid, second.uniqueid)
        self._enter_bridge(first, bridge_id)
        self._enter_bridge(second, bridge_id)

    def _on_unlink(self, event: Fields) -> None:
        first = self._channels.get(event.get("Uniqueid1") or "") or self._by_name.get(
            event.get("Channel1") or ""
        )
        second = self._channels.get(event.get("Uniqueid2") or "") or self._by_name.get(
            event.get("Channel2") or ""
        )
        for channel, peer in ((first, second), (second, first)):
            if channel is not None:
                self._leave_bridge(channel)
                # Old dialects say where a redirected channel went only in its next
                # Newexten; remember who it talked to until then.
                channel.left_bridge_peer = peer

    def _on_bridge_old(self, event: Fields) -> None:
        raw_state = event.get("Bridgestate") or ""
        state = _LOWERED.get(raw_state) or raw_state.strip().lower()
        if state == "link":
            self._on_link(event)
        elif state == "unlink":
            self._on_unlink(event)

    def _hold(self, channel: Channel, on: bool) -> None:
        call = channel.call
        if call.ended or call.answered_ms is None or not channel.is_party:
            return
        was_held = bool(call.holders)
        if on:
            call.holders |= {channel.uniqueid}
        else:
            call.holders -= {channel.uniqueid}
        if was_held == bool(call.holders):
            return
        extension = channel.extension or self._current_extension(call)
        self._emit(call, "call.held" if on else "call.resumed", extension)

    def _on_hold(self, event: Fields) -> None:
        channel = self._from_event(event)
        if channel is None:
            return
        status = (event.get("Status") or "on").strip().lower()
        self._hold(channel, status not in ("off", "0", "false", "no"))

    def _on_unhold(self, event: Fields) -> None:
        channel = self._from_event(event)
        if channel is not None:
            self._hold(channel, False)

    def _by_id_or_name(self, event: Fields, prefix: str) -> Channel | None:
        channel = self._channels.get(event.get(prefix + "Uniqueid") or "")
        if channel is None:
            channel = self._by_name.get(event.get(prefix + "Channel") or "")
        return channel

    def _on_attended_transfer(self, event: Fields) -> None:
        if (event.get("Result") or "").strip().lower() != "success":
            return
        transferer = self._by_id_or_name(event, "OrigTransferer")
        second = self._by_id_or_name(event, "SecondTransferer")
        transferee = self._by_id_or_name(event, "Transferee")
        target = self._by_id_or_name(event, "TransferTarget")
        home = transferee or transferer
        if home is None or home.call.ended:
            return
        call = home.call
        far = target if target is not None else second
        if far is not None and far.call is not call and not far.call.ended:
            self._merge(call, far.call)
        party = self._party_behind(target)
        to = self._who(party)
        if to is None:
            to = self._number(event.get("TransferTargetCallerIDNum"))
        self._transfer(call, "attended", transferer, to, leaving=(second,), target=party)

    def _on_blind_transfer(self, event: Fields) -> None:
        if (event.get("Result") or "").strip().lower() != "success":
            return
        transferer = self._by_id_or_name(event, "Transferer")
        transferee = self._by_id_or_name(event, "Transferee")
        home = transferee or transferer
        exten = event.get("Extension") or ""
        if home is None or home.call.ended or not exten:
            return
        self._transfer(home.call, "blind", transferer, self._destination(exten))

    def _on_transfer_old(self, event: Fields) -> None:
        """Asterisk 1.8 ``Transfer`` (a SIP phone's REFER): blind or attended."""
        transferer = self._known(event)
        if transferer is None or transferer.call.ended:
            return
        kind = (event.get("TransferType") or "").strip().lower()
        call = transferer.call
        if kind == "attended":
            other = self._by_id_or_name(event, "Target")
            if other is None or other.call.ended:
                return
            consult = other.call
            target = next(
                (ch for ch in consult.parties() if ch is not other),
                None,
            )
            if consult is not call:
                self._merge(call, consult)
            self._transfer(
                call, "attended", transferer, self._who(target), leaving=(other,), target=target
            )
        elif kind == "blind":
            exten = event.get("TransferExten") or ""
            if exten:
                self._transfer(call, "blind", transferer, self._destination(exten))

    def _on_originate_response(self, event: Fields) -> None:
        action_id = event.get("ActionID")
        entry = self._pending.get(action_id) if action_id else None
        if entry is None or action_id is None:
            return
        uniqueid = (event.get("Uniqueid") or "").strip()
        channel = self._channels.get(uniqueid) if uniqueid else None
        if channel is None:
            # A failed Originate reports "<unknown>": look for its leg by name.
            for call in filter(entry.could_have_made, self._calls.values()):
                first = next(iter(call.channels.values()), None)
                if (
                    first is not None
                    and not call.originated
                    and (call.originate_leg or self._lone_unrung(call, first))
                    and self._channel_matches(entry.channel, first.name)
                ):
                    channel = first
                    break
        if channel is not None and not channel.call.ended:
            call = channel.call
            if entry.call_id is None and not call.originated:
                self._mark_originated(call, action_id, entry)
            if call.action_id == action_id and call.to_number is None:
                call.to_number = self._number(event.get("Exten"))
        if entry.call_id is not None:
            del self._pending[action_id]
        else:
            # Its channel may still hang up right after this answer; then give up.
            entry.expires_ms = min(entry.expires_ms, self._now + _ORIGINATE_FAILED_GRACE_MS)

    # -- reconciliation ---------------------------------------------------------------

    def _group_learnt(
        self, learnt: list[tuple[Channel, Fields]], listed: list[tuple[Channel, Fields]]
    ) -> None:
        """Settle calls made of channels learnt from a channel list (``listed``: every
        live channel of the list with its item, ``learnt``: those new to the tracker).

        Nobody is seen dialling anybody in a list, so the sides come from what is left:
        the channel whose Uniqueid is the Linkedid (or, without Linkedid, the oldest) is
        the caller; a phone bridged with the ``;2`` half of a click-to-call's Local
        channel is the phone it rang first; a dialled phone not yet bridged is matched
        to the channel whose ``Dial`` names it (old dialects, see ``_link_dialled``);
        every other phone is on the called side.
        """
        self._link_dialled(learnt, listed)
        bridges = self._learnt_bridges(learnt)
        for members in bridges.values():
            self._settle_click_to_call(members)
        calls = {ch.call.call_id: ch.call for ch, _ in learnt if not ch.call.ended}
        for call in calls.values():
            self._settle_caller(call)
        for channel, _ in learnt:
            if not channel.call.ended and channel.is_party:
                self._report_learnt(channel)
        for bridge_id, members in bridges.items():
            for channel in members:
                if not channel.call.ended:
                    self._enter_bridge(channel, bridge_id)

    def _link_dialled(
        self, learnt: list[tuple[Channel, Fields]], listed: list[tuple[Channel, Fields]]
    ) -> None:
        """Old dialects: join a dialled channel that rings to the call of its caller.

        Without ``Linkedid`` only ``CoreShowChannels`` says who rings whom: the caller
        runs ``Application: Dial`` with the dial string (``SIP/267&SIP/268,30``), and a
        channel the Dial application made runs ``AppDial`` (``(Outgoing Line)``). A new,
        unbridged ``AppDial`` channel is dialled by the listed caller whose dial string
        names its device (``SIP/267`` for ``SIP/267-0000002a``), when exactly one caller
        names that device and exactly one such channel is of it; anything ambiguous
        (two calls waiting on one phone) is left for its later events to settle.
        """
        callers: dict[str, list[Channel]] = {}
        for channel, item in listed:
            if _application(item) == "dial" and not channel.call.ended:
                for device in _dialled_devices(item.get("ApplicationData") or item.get("Data")):
                    callers.setdefault(device, []).append(channel)
        if not callers:
            return
        callees: dict[str, list[Channel]] = {}
        for channel, item in learnt:
            if (
                _application(item) == "appdial"
                and not _linkedid(item)
                and self._listed_peer(channel, item) is None
                and not (item.get("BridgedChannel") or item.get("Link"))
            ):
                callees.setdefault(_device(channel.name), []).append(channel)
        for device, found in callees.items():
            dialling = callers.get(device, [])
            if len(dialling) == 1 and len(found) == 1:
                self._dial(dialling[0], found[0], None)

    def _learnt_bridges(self, learnt: list[tuple[Channel, Fields]]) -> dict[str, list[Channel]]:
        """Bridge id -> the listed channels in it; calls of bridged peers are merged."""
        bridges: dict[str, list[Channel]] = {}
        for channel, item in learnt:
            peer = self._listed_peer(channel, item)
            if peer is not None and not peer.call.ended and not channel.call.ended:
                self._merge_older(channel.call, peer.call)
            bridge_id = item.get("BridgeId") or item.get("BridgeID")
            if not bridge_id and peer is not None:
                bridge_id = "link:" + min(channel.uniqueid, peer.uniqueid)
            if bridge_id:
                bridges.setdefault(bridge_id, []).append(channel)
        return bridges

    def _settle_click_to_call(self, members: list[Channel]) -> None:
        """A phone bridged with a click-to-call's Local ``;2`` half is the one it rang first."""
        if not any(
            ch.info.kind is _LOCAL and ch.info.local_half == 2 and ch.side is _ORIGIN_SIDE
            for ch in members
        ):
            return
        for ch in members:
            if ch.is_party and ch.side is _UNKNOWN_SIDE:
                ch.side = _ORIGIN_SIDE
                if ch.call.origin is None:
                    self._set_origin(ch.call, ch)

    def _settle_caller(self, call: Call) -> None:
        """Without a known caller, the oldest phone is; the dialled number is the first
        channel's exten (a click-to-call's Local ;1 half runs the number it connects to)."""
        if not any(ch.side is _ORIGIN_SIDE for ch in call.channels.values()):
            parties = sorted(call.parties(), key=lambda ch: ch.created_ms)
            if parties:
                parties[0].side = _ORIGIN_SIDE
                self._set_origin(call, parties[0])
        if call.to_number is None:
            first = call.channels.get(call.call_id) or call.origin
            call.to_number = self._number(first.exten) if first is not None else None

    def _report_learnt(self, channel: Channel) -> None:
        """Report a listed phone as what its state says: ringing or talking."""
        call = channel.call
        if channel.side is _UNKNOWN_SIDE:
            self._make_target(channel)
            if call.to_number is None:
                call.to_number = channel.extension
        if channel.side is _TARGET_SIDE:
            if channel.state == "up":
                self._answered(channel, at_ms=max(channel.created_ms, call.started_ms))
            elif channel.state == "ringing":
                self._ringing(channel)
        else:
            self._on_state(channel)

    def _listed_peer(self, channel: Channel, item: Fields) -> Channel | None:
        """The bridged peer an old-dialect ``Status`` item names, if known."""
        peer_id = item.get("BridgedUniqueid")
        peer = self._channels.get(peer_id) if peer_id else None
        if peer is None:
            peer = self._by_name.get(item.get("BridgedChannel") or item.get("Link") or "")
        return peer if peer is not channel else None


_CONSUMED_FOLDED: Final = frozenset(name.lower() for name in CONSUMED_EVENTS)
