"""AMI messages as immutable values.

An AMI message is an ordered list of ``Key: Value`` headers. Keys are compared
case-insensitively (Asterisk spells ``Uniqueid`` and ``UniqueID`` both ways), a key may
repeat (``Variable`` in ``Status``, ``UserEvent`` headers) and order is kept. A message
is an *event* when its first header is ``Event``, a *response* when it is ``Response``
and an *action* when it is ``Action``; ``OriginateResponse`` is an event that also
carries a ``Response`` header, so the kind is decided by the first header only.

``Response: Follows`` answers (Asterisk <= 13 ``Command``) carry raw text lines that are
not headers; they are kept in ``output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter

Headers = tuple[tuple[str, str], ...]


class MessageKind(Enum):
    """What a message is, decided by its first header."""

    EVENT = "event"
    RESPONSE = "response"
    ACTION = "action"
    OTHER = "other"


_KINDS = {
    "event": MessageKind.EVENT,
    "response": MessageKind.RESPONSE,
    "action": MessageKind.ACTION,
}
_KINDS_SPELLED = {
    "Event": MessageKind.EVENT,
    "Response": MessageKind.RESPONSE,
    "Action": MessageKind.ACTION,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The banner line an AMI server sends first: ``Asterisk Call Manager/9.0.0``."""

    line: str

    @property
    def version(self) -> str:
        """The protocol version after the slash, or ``""`` if there is none."""
        _, _, version = self.line.partition("/")
        return version.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingAction:
    """What a client sent that is no action: a stray blank line, or headers without one.

    Only a parser in the server role returns it. ``headers`` is empty for a blank line
    that ends no message, else the message's headers, none of them a non-blank
    ``Action``. Asterisk answers each with ``Response: Error`` and ``Message: Missing
    action in request`` (with the ``ActionID``, if the message had one) and reads on.
    """

    headers: Headers = ()

    @property
    def action_id(self) -> str | None:
        """The first ``ActionID`` value without leading blanks (as Asterisk reads it), or
        ``None`` if there is none or it is blank."""
        for key, value in self.headers:
            if key.lower() == "actionid":
                return value.lstrip(" \t") or None
        return None


def action_name(message: Message) -> str | None:
    """The action a client's message asks for, as Asterisk finds it; ``None`` if none.

    The first ``Action`` header (any case, anywhere in the message) whose value is not
    blank, without surrounding blanks.
    """
    for key, value in message.headers:
        if key.lower() == "action" and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One AMI message: ordered headers plus, for ``Response: Follows``, raw output lines.

    Invariants: ``headers`` is not empty; no key or value contains LF; keys are kept as
    the peer spelled them. A parsed key or value may hold a lone CR (one not before an
    LF is data, as in Asterisk's own reader); the encoder refuses any CR.
    """

    headers: Headers
    output: tuple[str, ...] | None = None
    # Header name -> position of its first occurrence (see _index_of); looked up on the
    # first get/in, not per message: most events on the wire (VarSet floods) are never
    # looked into. Shared by every message with the same header names: never change it.
    _index: Mapping[str, int] | None = field(
        init=False, repr=False, compare=False, hash=False, default=None
    )
    # A mapping of the headers a reader made and shared (see adopt_header_index).
    _fields: Mapping[str, object] | None = field(
        init=False, repr=False, compare=False, hash=False, default=None
    )

    def __post_init__(self) -> None:
        if not self.headers:
            raise ValueError("an AMI message has at least one header")

    def _build_index(self) -> Mapping[str, int]:
        index = _index_of(self.headers)
        _set_index(self, index)
        return index

    @classmethod
    def build(cls, *pairs: tuple[str, str], output: Iterable[str] | None = None) -> Message:
        """Make a message from ``(key, value)`` pairs (a convenience for tests and tools)."""
        return cls(headers=tuple(pairs), output=None if output is None else tuple(output))

    @classmethod
    def from_mapping(cls, fields: Mapping[str, str | list[str]]) -> Message:
        """Make a message from a mapping; a list value becomes a repeated header."""
        pairs: list[tuple[str, str]] = []
        for key, value in fields.items():
            if isinstance(value, list):
                pairs.extend((key, item) for item in value)
            else:
                pairs.append((key, value))
        return cls(headers=tuple(pairs))

    @property
    def kind(self) -> MessageKind:
        """Event, response or action, from the first header's key."""
        key = self.headers[0][0]
        kind = _KINDS_SPELLED.get(key)  # as Asterisk spells it: no lower() needed
        return kind if kind is not None else _KINDS.get(key.lower(), MessageKind.OTHER)

    @property
    def name(self) -> str:
        """The value of the first header: the event name, response status or action."""
        return self.headers[0][1]

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header, wherever it stands, or ``None``."""
        return self.get("ActionID")

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (case-insensitive), or ``default``."""
        index = self._index
        if index is None:
            index = self._build_index()
        position = index.get(key)
        if position is None:
            position = index.get(key.lower())
            if position is None:
                return default
        return self.headers[position][1]

    def header_index(self) -> Mapping[str, int]:
        """The index ``get`` reads: each header name, lowercased and as first spelled,
        -> the position of its first header in any case. Built on the first call and
        shared by every message with the same header names in the same order, so a
        reader may remember what it worked out for one layout by this object (it is
        never changed; do not change it)."""
        index = self._index
        if index is None:
            index = self._build_index()
        return index

    def header_index_if_built(self) -> Mapping[str, int] | None:
        """``header_index()`` if some reader already had it built, else ``None`` (for a
        reader that can tell the layout more cheaply than by building the index)."""
        return self._index

    def adopt_header_index(
        self, index: Mapping[str, int], fields: Mapping[str, object] | None = None
    ) -> None:
        """Take ``index`` as this message's ``header_index`` and ``fields`` as its
        ``shared_fields``, each unless it has one already.

        ``index`` must be the ``header_index()`` of a message with the same header
        names in the same order, and ``fields`` a mapping in which each header's name as
        spelled gives that header's value, no header name repeating in any case; it may
        hold other entries, under names the caller reserves for itself (the caller
        vouches for all this, and never changes those entries). For a reader that tells
        header layouts apart and builds such a mapping anyway: the event bus does both
        for every event it publishes, so that the readers after it (the channel
        registry, the call tracker) need neither gather the header names again (about
        600 CPU instructions per header) nor build a mapping of their own.
        """
        if self._index is None:
            _set_index(self, index)
        if self._fields is None:
            _set_fields(self, fields)

    def shared_fields(self) -> Mapping[str, object] | None:
        """The mapping handed on with ``adopt_header_index``, or ``None``: each header's
        name as spelled gives its value (no header name repeats in any case), and names
        the reader that made it reserved (the event bus: ``name``, ``pbx``,
        ``eventId``) give what that reader put there. Never change it."""
        return self._fields

    def get_many(self, *keys: str) -> tuple[str | None, ...]:
        """The first value of each of ``keys`` (case-insensitive), ``None`` for a key the
        message does not have, in the order asked: one call instead of one ``get`` per
        header, for code that reads several headers of every event::

            channel, uniqueid, state = message.get_many("Channel", "Uniqueid", "ChannelState")
        """
        index = self._index
        if index is None:
            index = self._build_index()
        headers = self.headers
        values: list[str | None] = []
        for key in keys:
            position = index.get(key)
            if position is None:
                position = index.get(key.lower())
                if position is None:
                    values.append(None)
                    continue
            values.append(headers[position][1])
        return tuple(values)

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` (case-insensitive), in order."""
        wanted = key.lower()
        return [value for k, value in self.headers if k.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        index = self._index
        if index is None:
            index = self._build_index()
        return key.lower() in index

    def to_dict(self) -> dict[str, str | list[str]]:
        """Headers as a dict keyed as the peer spelled them; a repeated key becomes a list.

        Keys that differ only in case are merged under the first spelling.
        """
        result: dict[str, str | list[str]] = {}
        spelling: dict[str, str] = {}
        for key, value in self.headers:
            canonical = spelling.setdefault(key.lower(), key)
            current = result.get(canonical)
            if current is None:
                result[canonical] = value
            elif isinstance(current, list):
                current.append(value)
            else:
                result[canonical] = [current, value]
        return result


_new_object = object.__new__
_set_headers = Message.__dict__["headers"].__set__
_set_output = Message.__dict__["output"].__set__
_set_index = Message.__dict__["_index"].__set__
_set_fields = Message.__dict__["_fields"].__set__

# Messages of one kind from one PBX have the same header names in the same order, so
# their index is made once per layout and shared (the index of a message is never
# changed). Bounded: emptied when full, since a peer may send any names.
_LAYOUT_CACHE_SIZE = 4096
_layouts: dict[tuple[str, ...], dict[str, int]] = {}
_first = itemgetter(0)


def _index_of(headers: Headers) -> dict[str, int]:
    """Header name -> position of the first header with that name in any case.

    Every lowercased name is a key, and so is the spelling of each name's first
    occurrence (``Uniqueid`` as well as ``uniqueid``), so that ``get("Uniqueid")``
    needs no ``lower()`` when the peer spells it that way. A spelling that is not the
    first occurrence's is not a key (its lowercased form leads to the first one).
    """
    names = tuple(map(_first, headers))
    index = _layouts.get(names)
    if index is None:
        index = {}
        for position, name in enumerate(names):
            index.setdefault(name.lower(), position)
        for position, name in enumerate(names):
            if index[name.lower()] == position:
                index.setdefault(name, position)
        if len(_layouts) >= _LAYOUT_CACHE_SIZE:
            _layouts.clear()
        _layouts[names] = index
    return index


def trusted_message(headers: Headers) -> Message:
    """``Message(headers=headers)`` for the parser, without the dataclass's frozen
    ``__init__`` (four guarded attribute stores and ``__post_init__``): about half the
    cost, paid for every message on the wire. ``headers`` must not be empty."""
    message: Message = _new_object(Message)
    _set_headers(message, headers)
    _set_output(message, None)
    _set_index(message, None)
    _set_fields(message, None)
    return message
