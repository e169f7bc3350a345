"""The call object and the call events, as clients see them.

A ``CallSnapshot`` is an immutable picture of one call at one moment; ``to_dict`` gives
the JSON-ready object with exactly the fields of the public call model (camelCase,
flat, so that event filters can match any field). A ``CallEvent`` pairs an event name
(``call.ringing``, ...) with the snapshot taken when it happened.

Times are kept as integer milliseconds since the Unix epoch and shown as ISO 8601 UTC
with milliseconds (``2023-11-14T22:13:21.122Z``); durations are seconds with
millisecond precision, computed from the same rounded times, so that
``talkSeconds == endedAt - answeredAt`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, Literal, cast

CallStatus = Literal["ringing", "up", "held", "ended"]
Direction = Literal["inbound", "outbound", "internal", "unknown"]
EndReason = Literal[
    "completed",
    "no_answer",
    "busy",
    "cancelled",
    "failed",
    "answered_elsewhere",
    "transferred",
    "unknown",
]
TransferType = Literal["blind", "attended"]
CallEventName = Literal[
    "call.ringing",
    "call.answered",
    "call.held",
    "call.resumed",
    "call.transferred",
    "call.updated",
    "call.ended",
    "call.missed",
]

CALL_EVENT_NAMES: Final[tuple[CallEventName, ...]] = (
    "call.ringing",
    "call.answered",
    "call.held",
    "call.resumed",
    "call.transferred",
    "call.updated",
    "call.ended",
    "call.missed",
)
"""Every event name the tracker emits, in the order the documentation lists them."""

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@lru_cache(maxsize=4096)  # a call shows the same few times in every snapshot
def iso_ms(epoch_ms: int) -> str:
    """``1700000001122`` -> ``"2023-11-14T22:13:21.122Z"`` (UTC, milliseconds)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_iso_seconds(seconds)}.{millis:03d}Z"


# Formatting a datetime costs several microseconds, and a busy PBX's events crowd into
# the same few seconds, so each second is formatted once and its milliseconds appended.
@lru_cache(maxsize=256)
def _iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def to_ms(now: float) -> int:
    """Epoch seconds (a float, as ``time.time()`` gives) to integer milliseconds."""
    return round(now * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """One transfer of a call: who moved it (``by``), where (``to``), when (``at``)."""

    type: TransferType
    by: str | None
    to: str | None
    at: str

    def to_dict(self) -> dict[str, JsonValue]:
        """``{type, by, to, at}``."""
        return {"type": self.type, "by": self.by, "to": self.to, "at": self.at}


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSnapshot:
    """A call as it was when an event happened (see ``docs/calls.md`` for every field).

    ``extensions`` is not part of the public object: it is the set of local extensions
    (device extensions such as ``269``) that took part in the call so far, which the
    server uses to show operators only the calls of their own extensions.
    """

    call_id: str
    pbx: str
    status: CallStatus
    direction: Direction
    from_number: str | None
    from_name: str | None
    to_number: str | None
    to_name: str | None
    extension: str | None
    trunk: str | None
    did: str | None
    started_at: str
    answered_at: str | None
    ended_at: str | None
    ring_seconds: float
    talk_seconds: float
    end_reason: EndReason | None
    on_hold: bool
    transfers: tuple[Transfer, ...]
    channels: tuple[str, ...]
    originated: bool
    action_id: str | None
    extensions: frozenset[str]

    def to_dict(self) -> dict[str, JsonValue]:
        """The public call object: camelCase keys, JSON types only."""
        return self._fill(_CALL_OBJECT.copy())

    def _fill(self, message: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # ``message`` is a copy of a template that already holds every key, in the
        # documented order: copying it is one memory copy, and each value then
        # replaces a placeholder, where a dict display of 22 keys would insert and
        # resize key by key (about a third more CPU instructions).
        message["callId"] = self.call_id
        message["pbx"] = self.pbx
        message["status"] = self.status
        message["direction"] = self.direction
        message["fromNumber"] = self.from_number
        message["fromName"] = self.from_name
        message["toNumber"] = self.to_number
        message["toName"] = self.to_name
        message["extension"] = self.extension
        message["trunk"] = self.trunk
        message["did"] = self.did
        message["startedAt"] = self.started_at
        message["answeredAt"] = self.answered_at
        message["endedAt"] = self.ended_at
        message["ringSeconds"] = self.ring_seconds
        message["talkSeconds"] = self.talk_seconds
        message["endReason"] = self.end_reason
        message["onHold"] = self.on_hold
        transfers = self.transfers
        message["transfers"] = [transfer.to_dict() for transfer in transfers] if transfers else []
        message["channels"] = list(self.channels)
        message["originated"] = self.originated
        message["actionId"] = self.action_id
        return message


#: The call object's keys in order (``CallSnapshot.to_dict`` fills a copy).
CALL_OBJECT_KEYS: Final[tuple[str, ...]] = (
    "callId",
    "pbx",
    "status",
    "direction",
    "fromNumber",
    "fromName",
    "toNumber",
    "toName",
    "extension",
    "trunk",
    "did",
    "startedAt",
    "answeredAt",
    "endedAt",
    "ringSeconds",
    "talkSeconds",
    "endReason",
    "onHold",
    "transfers",
    "channels",
    "originated",
    "actionId",
)
_CALL_OBJECT: Final[dict[str, JsonValue]] = dict.fromkeys(CALL_OBJECT_KEYS)
CALL_MESSAGE: Final[dict[str, JsonValue]] = dict.fromkeys((*CALL_OBJECT_KEYS, "name"))
"""A call event's message with every value ``None``, its keys in order (the call
object's, then ``name``): the tracker fills a copy of it (``call_event``); never
change it."""


class SnapshotDraft:
    """A ``CallSnapshot`` being filled in (``snapshot_of``: the tracker's snapshots).

    A frozen dataclass sets each of its 23 fields through ``object.__setattr__`` (its
    own ``__setattr__`` refuses), which made building one snapshot about 38,000 CPU
    instructions, when the tracker still made one per call event. A draft has the very same
    slots, written directly; ``freeze()`` then turns it, in place, into a
    ``CallSnapshot`` (``__class__`` assignment between two classes of identical slot
    layout), which is from then on as immutable, equal, hashable and printable as one
    made by ``CallSnapshot(...)``. Every field must be set before ``freeze()``; the
    draft must not be used after it.
    """

    __slots__ = CallSnapshot.__slots__

    call_id: str
    pbx: str
    status: CallStatus
    direction: Direction
    from_number: str | None
    from_name: str | None
    to_number: str | None
    to_name: str | None
    extension: str | None
    trunk: str | None
    did: str | None
    started_at: str
    answered_at: str | None
    ended_at: str | None
    ring_seconds: float
    talk_seconds: float
    end_reason: EndReason | None
    on_hold: bool
    transfers: tuple[Transfer, ...]
    channels: tuple[str, ...]
    originated: bool
    action_id: str | None
    extensions: frozenset[str]

    def freeze(self) -> CallSnapshot:
        """This draft, now a ``CallSnapshot`` (the same object)."""
        self.__class__ = CallSnapshot  # type: ignore[assignment]
        return self  # type: ignore[return-value]  # (no cast(): a call per snapshot)


# A field added to one class and not the other would leave a slot unset: the two must
# list the same fields in the same order (the slots are shared, the annotations not).
if tuple(SnapshotDraft.__annotations__) != CallSnapshot.__slots__:  # pragma: no cover
    raise TypeError("SnapshotDraft must declare exactly CallSnapshot's fields, in order")


#: (attribute, key) of the call object's fields that a snapshot holds as they are in
#: the object (``transfers`` and ``channels`` are JSON lists there, tuples here).
_PLAIN_FIELDS: Final[tuple[tuple[str, str], ...]] = tuple(
    (attribute, key)
    for attribute, key in zip(CallSnapshot.__slots__[:-1], CALL_OBJECT_KEYS, strict=True)
    if key not in ("transfers", "channels")
)


def snapshot_of(message: Mapping[str, JsonValue], extensions: frozenset[str]) -> CallSnapshot:
    """The ``CallSnapshot`` of a call object (or of a call event's message: its
    ``name`` is ignored), as ``to_dict`` would give it back. Not for the hot path."""
    draft = SnapshotDraft()
    for attribute, key in _PLAIN_FIELDS:
        setattr(draft, attribute, message[key])
    transfers = cast("list[dict[str, str | None]]", message["transfers"])
    draft.transfers = tuple(Transfer(**transfer) for transfer in transfers)  # type: ignore[arg-type]
    draft.channels = tuple(cast("list[str]", message["channels"]))
    draft.extensions = extensions
    return draft.freeze()


class CallEvent:
    """One thing that happened to a call: its name and the call right after it.

    Immutable, equal, hashable and printable as a frozen dataclass of ``name`` and
    ``call`` would be (``CallEvent(name=..., call=...)`` makes one), but for the
    ``eventId`` the server's publish appends to ``message`` (see there; ``call`` and
    the hash do not change with it). The tracker makes
    them with ``call_event``, from the pushed message itself, because what a call event
    is for, nearly always, is that message (``to_dict``, the bus's fields): building a
    ``CallSnapshot`` first and the message from it doubled the tracker's work per event.
    ``call``, the snapshot, is made from the message the first time it is read (the
    history writer, for an ended call; tests) and kept.
    """

    __slots__ = ("_call", "extensions", "message", "name")

    name: CallEventName
    #: The local extensions the call involved so far (``CallSnapshot.extensions``).
    extensions: frozenset[str]
    #: The pushed message: the call object plus ``name``. Shared, so never change it
    #: (nor its lists); ``to_dict()`` gives a copy. The server hands this very dict to
    #: the event bus (``api.calls.call_bus_event``), whose publish appends ``eventId``
    #: as its last key: the one change ever made to it, after which the message (and
    #: ``to_dict()``) holds exactly what subscribers were sent.
    message: dict[str, JsonValue]
    _call: CallSnapshot | None

    def __init__(self, *, name: CallEventName, call: CallSnapshot) -> None:
        message = call._fill(CALL_MESSAGE.copy())
        message["name"] = name
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "extensions", call.extensions)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "_call", call)

    @property
    def call(self) -> CallSnapshot:
        """The call right after the event."""
        call = self._call
        if call is None:
            call = snapshot_of(self.message, self.extensions)
            object.__setattr__(self, "_call", call)
        return call

    def to_dict(self) -> dict[str, JsonValue]:
        """The pushed message: the call object plus ``name`` (and ``eventId`` once the
        server published it, see ``message``).

        A new dict each time, whose ``transfers`` and ``channels`` lists are the
        event's own: they must not be changed (the bus never changes a value).
        """
        return self.message.copy()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallEvent):
            return NotImplemented
        return self.message == other.message and self.extensions == other.extensions

    def __hash__(self) -> int:
        return hash((self.name, self.call))

    def __repr__(self) -> str:
        return f"CallEvent(name={self.name!r}, call={self.call!r})"


class _CallEventDraft:
    """A ``CallEvent`` being made (``call_event``): the same slots, written directly."""

    __slots__ = CallEvent.__slots__

    name: CallEventName
    extensions: frozenset[str]
    message: dict[str, JsonValue]
    _call: CallSnapshot | None


def call_event(
    name: CallEventName, message: dict[str, JsonValue], extensions: frozenset[str]
) -> CallEvent:
    """The tracker's call event, made from its pushed message (hot path).

    ``message`` is a copy of ``CALL_MESSAGE`` with every field filled in, ``name``
    included; from now on it belongs to the event and must not be changed. The slots
    are written on a draft of identical layout that then becomes a ``CallEvent`` in
    place (as ``SnapshotDraft.freeze`` does): ``CallEvent.__setattr__`` refuses.
    """
    draft = _CallEventDraft()
    draft.name = name
    draft.extensions = extensions
    draft.message = message
    draft._call = None
    draft.__class__ = CallEvent  # type: ignore[assignment]
    return draft  # type: ignore[return-value]  # (no cast(): a call per event)
