"""What the AMI feeder sends: realistic call event runs, or the old Newchannel-only feed.

A PBX does not send a stream of ``Newchannel`` events. Every call is a run of
``Newchannel``, ``VarSet`` (in floods), ``Newstate``, ``Newexten``, ``DialBegin``,
``DialState``, ``DialEnd``, ``BridgeCreate``/``Enter``/``Leave``/``Destroy``,
``HangupRequest``, ``SoftHangupRequest``, ``Hangup``, ``NewCallerid``, ... of 10-25
headers each, and only a few of them match any subscriber. The feeds here replay such
runs with the shapes of real recordings:

- ``ast20``: the eleven calls recorded on a real Asterisk 20 (``tests/data/ami/calls``:
  answered, missed, busy, no answer, ring group, blind and attended transfer, hold,
  click-to-call answered and busy, pickup), every event the listening AMI connection
  received (the login's ``FullyBooted``/``SuccessfulAuth`` left out), in order. About
  1 event in 33 is a ``Newchannel``; 55 % are ``VarSet``.
- ``yeastar``: the seven calls written in the Yeastar MyPBX / Asterisk 1.8 dialect
  (``tests/data/ami/calls/old_dialect``: ``Dial`` with ``SubEvent``, ``Bridge``,
  ``Link``/``Unlink``, no ``Linkedid``). About 1 event in 6 is a ``Newchannel``, as
  in the feed of the issue's independent run, with the shorter events of that dialect.
- ``newchannel``: the old feed, one ``Newchannel`` of a GSM trunk after another.

**Every call is distinct.** A call's template is its events with every identifier
turned into a slot: ``Uniqueid``-like values (``1796172327.90``), channel suffixes
(``SIP/269-00000050``, ``Local/268@ctx-00000005;1``, 1.4's ``-7f3a``), bridge UUIDs,
and the caller-ID numbers of the call's parties (every ``*CallerIDNum`` /
``*ConnectedLineNum`` / ``CallerID`` value equal to one of them). The k-th call the
feeder sends fills them with identifiers of its own, so the call tracker sees a new
call each time, and its parties' numbers become operators' numbers, so each
``Newchannel`` with a number is for exactly one operator (each filtered on
``Newchannel`` + own ``CallerIDNum``) and the catch-all subscribers see everything.
Calls follow one another (they do not interleave), at whatever rate the step asks.

**Latency.** Each event ends with a ``Timestamp`` header (as ``timestampevents = yes``
gives, though Asterisk puts it after ``Privilege``) that the feeder fills with the send
time of its batch; receivers compute the delivery latency from it.

**What must arrive.** ``take`` says, for the events it returns, how many deliveries the
subscribers must receive: one per catch-all subscriber per event, plus one when the
event is a ``Newchannel`` whose ``CallerIDNum`` is an operator's. (The supervisors'
role sees every event of these feeds; none is a security event.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.calls.replay import OLD_DIALECT, RECORDINGS, load_recording, load_script
from vwell_pbx.protocol import Message

__all__ = ["FEEDS", "CallFeed", "Feed", "NewchannelFeed", "make_feed", "operator_number"]

#: Feed names, in the order the report shows them.
FEEDS = ("ast20", "yeastar", "newchannel")

#: Events of the login, not of a call: left out of the recorded streams.
_NOT_CALL_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth", "Success", "Goodbye"})

# Identifiers, in the order they are looked for in a header value.
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_UNIQUEID = re.compile(r"\b\d{10}\.\d+\b")
# A channel's suffix: SIP/269-00000050, Local/268@ctx-00000005;1, 1.4's Local/...-7f3a,1.
_CHANNEL_SUFFIX = re.compile(r"(?<=-)(?:[0-9a-f]{8}|[0-9a-f]{4})(?=[;,<]|$)")


def operator_number(index: int) -> str:
    """The phone number operator ``index`` watches for."""
    return f"+7978{index:07d}"


def _is_number_key(key: str) -> bool:
    lowered = key.lower()
    return lowered.endswith(("calleridnum", "connectedlinenum")) or lowered == "callerid"


@dataclass(frozen=True, slots=True)
class _CallTemplate:
    """One recorded call with its identifiers as ``%s`` slots.

    ``events[i]`` is ``bytes % values`` ready, where ``values`` are made from the
    slot kinds in ``slots[i]`` (``("uid", j)``, ``("hex8", j)``, ...): the call's j-th
    distinct identifier of that kind. ``operator_hit[i]``: the event is a
    ``Newchannel`` whose ``CallerIDNum`` is one of the call's numbers.
    """

    name: str
    events: tuple[bytes, ...]
    slots: tuple[tuple[tuple[str, int], ...], ...]
    operator_hit: tuple[bool, ...]
    numbers: int
    #: Every distinct slot of the call.
    keys: frozenset[tuple[str, int]]


def _template(name: str, messages: Sequence[Message]) -> _CallTemplate:
    numbers: list[str] = []
    for message in messages:
        if message.name == "Newchannel":
            number = (message.get("CallerIDNum") or "").strip()
            if number and not number.startswith("<") and number not in numbers:
                numbers.append(number)
    seen: dict[tuple[str, str], int] = {}

    def slot(kind: str, token: str, out: list[tuple[str, int]]) -> str:
        index = seen.setdefault((kind, token), sum(1 for k, _ in seen if k == kind))
        out.append((kind, index))
        return "%s"

    events: list[bytes] = []
    slots: list[tuple[tuple[str, int], ...]] = []
    hits: list[bool] = []
    for message in messages:
        event_slots: list[tuple[str, int]] = []
        lines: list[str] = []
        hit = False
        for key, raw in message.headers:
            value = raw.replace("%", "%%")
            if _is_number_key(key) and raw in numbers:
                value = slot("number", raw, event_slots)
                hit = hit or (message.name == "Newchannel" and key.lower() == "calleridnum")
            else:
                # One pass per kind; tokens are replaced left to right, so the slots
                # of one value are in the order the values are given to ``%``.
                value = _slots_in(value, event_slots, slot)
            lines.append(f"{key}: {value}\r\n")
        lines.append("Timestamp: ")
        events.append("".join(lines).encode())
        slots.append(tuple(event_slots))
        hits.append(hit)
    keys = frozenset(key for event_slots in slots for key in event_slots)
    return _CallTemplate(name, tuple(events), tuple(slots), tuple(hits), len(numbers), keys)


def _slots_in(value: str, out: list[tuple[str, int]], slot: object) -> str:
    """``value`` with each identifier replaced by ``%s`` (its slot appended to ``out``)."""
    assert callable(slot)
    found: list[tuple[int, int, str]] = []
    for kind, pattern in (("uuid", _UUID), ("uid", _UNIQUEID), ("chan", _CHANNEL_SUFFIX)):
        for match in pattern.finditer(value):
            if any(start < match.end() and match.start() < end for start, end, _ in found):
                continue
            kind_here = kind if kind != "chan" else f"hex{len(match.group())}"
            found.append((match.start(), match.end(), kind_here))
    if not found:
        return value
    found.sort()
    parts: list[str] = []
    position = 0
    for start, end, kind in found:
        parts.append(value[position:start])
        parts.append(slot(kind, value[start:end], out))
        position = end
    parts.append(value[position:])
    return "".join(parts)


class Feed:
    """A sequence of events for the feeder (see the module docstring)."""

    name = ""
    #: A short description for the report.
    label = ""

    def take(self, count: int) -> tuple[list[bytes], int]:
        """The next ``count`` events (each up to its ``Timestamp`` value) and how many
        deliveries of them the subscribers must receive."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """What the feed is made of, for the report."""
        raise NotImplementedError


class CallFeed(Feed):
    """Recorded calls one after another, each with identifiers of its own."""

    def __init__(
        self, name: str, calls: Sequence[_CallTemplate], *, operators: int, catch_all: int
    ) -> None:
        self.name = name
        self._calls = list(calls)
        self._operators = operators
        self._catch_all = catch_all
        self._count = 0  # calls started so far
        self._events: list[bytes] = []
        self._hits: tuple[bool, ...] = ()
        self._position = 0
        total = sum(len(call.events) for call in self._calls)
        every = [event for call in self._calls for event in call.events]
        newchannels = sum(event.startswith(b"Event: Newchannel\r") for event in every)
        headers = sum(event.count(b"\r\n") for call in self._calls for event in call.events)
        self._stats = {
            "calls": len(self._calls),
            "events": total,
            "newchannel_share": newchannels / total,
            "headers_per_event": headers / total + 1,  # + the Timestamp
            "bytes_per_event": sum(len(e) + 20 for c in self._calls for e in c.events) / total,
        }
        self.label = (
            f"{name}: {len(self._calls)} calls, {total} events, 1 in "
            f"{total / max(1, newchannels):.0f} a Newchannel, "
            f"{self._stats['headers_per_event']:.1f} headers per event"
        )

    def describe(self) -> dict[str, object]:
        return dict(self._stats)

    def _number(self, index: int) -> bytes:
        if self._operators:
            return operator_number(index % self._operators).encode()
        return operator_number(10_000 + index % 100).encode()  # nobody's: broadcast

    def _next_call(self) -> None:
        call = self._calls[self._count % len(self._calls)]
        k = self._count
        self._count += 1
        base = k * max(1, call.numbers)
        makers = {
            "uid": lambda j: b"17%08d.%d" % (k % 100_000_000, j),
            "hex8": lambda j: b"%08x" % ((k * 64 + j) % 0xFFFFFFFF),
            "hex4": lambda j: b"%04x" % ((k * 8 + j) % 0xFFFF),
            "uuid": lambda j: b"%08x-0000-4000-8000-%012x" % (k % 0xFFFFFFFF, j),
            "number": lambda j: self._number(base + j),
        }
        # Each distinct identifier of the call is made once; events only pick them.
        values = {key: makers[key[0]](key[1]) for key in call.keys}
        pick = values.__getitem__
        self._events = [
            template % tuple(map(pick, slots)) if slots else template
            for template, slots in zip(call.events, call.slots, strict=True)
        ]
        self._hits = call.operator_hit if self._operators else ()
        self._position = 0

    def take(self, count: int) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        expected = count * self._catch_all
        while len(out) < count:
            if self._position >= len(self._events):
                self._next_call()
            end = min(len(self._events), self._position + count - len(out))
            out.extend(self._events[self._position : end])
            if self._hits:
                expected += sum(self._hits[self._position : end])
            self._position = end
        return out, expected


def newchannel_head(number: str, seq: int) -> bytes:
    """A Newchannel event as a Yeastar GSM trunk sends it, up to its Timestamp value."""
    return (
        "Event: Newchannel\r\nPrivilege: call,all\r\n"
        f"Channel: YSGSM/11-{seq % 9}\r\nChannelState: 1\r\nChannelStateDesc: Rsrvd\r\n"
        f"CallerIDNum: {number}\r\nCallerIDName: {number}\r\nAccountCode: \r\n"
        "Exten: s\r\nContext: DID_trunk_11\r\n"
        f"Uniqueid: 1505301523.{6253 + seq}\r\nTimestamp: "
    ).encode()


class NewchannelFeed(Feed):
    """The old feed: Newchannel events of a GSM trunk, one operator's number each, round
    robin (for broadcast, numbers nobody filters on); the same 1,000 channels again and
    again, so the call tracker only updates channels it knows."""

    name = "newchannel"

    def __init__(self, *, operators: int, catch_all: int) -> None:
        if operators:
            self._heads = [newchannel_head(operator_number(i), i) for i in range(operators)]
        else:
            self._heads = [newchannel_head(operator_number(10_000 + i), i) for i in range(100)]
        self._per_event = catch_all + (1 if operators else 0)
        self._seq = 0
        self.label = "newchannel: Newchannel events only, 12 headers each"

    def describe(self) -> dict[str, object]:
        return {"newchannel_share": 1.0, "headers_per_event": 12}

    def take(self, count: int) -> tuple[list[bytes], int]:
        heads = self._heads
        size = len(heads)
        start = self._seq
        self._seq += count
        return [heads[seq % size] for seq in range(start, start + count)], count * self._per_event


def _load_ast20() -> list[_CallTemplate]:
    calls = []
    for path in sorted(RECORDINGS.glob("*.chunks.jsonl")):
        stream = load_recording(path.name.split("_")[0])
        messages = [m for _, m in stream.events if m.name not in _NOT_CALL_EVENTS]
        calls.append(_template(stream.name, messages))
    return calls


def _load_yeastar() -> list[_CallTemplate]:
    calls = []
    for path in sorted(OLD_DIALECT.glob("*.ami")):
        stream = load_script(path.name.split("_")[0])
        calls.append(_template(stream.name, [m for _, m in stream.events]))
    return calls


_LOADED: dict[str, list[_CallTemplate]] = {}


def make_feed(name: str, *, operators: int, catch_all: int) -> Feed:
    """A fresh feed by name (``FEEDS``) for ``operators`` filtered subscribers (0 for
    broadcast) and ``catch_all`` subscribers of every event."""
    if name == "newchannel":
        return NewchannelFeed(operators=operators, catch_all=catch_all)
    if name not in _LOADED:
        _LOADED[name] = {"ast20": _load_ast20, "yeastar": _load_yeastar}[name]()
    return CallFeed(name, _LOADED[name], operators=operators, catch_all=catch_all)


def data_folders() -> tuple[Path, Path]:
    """Where the recordings come from (for the report)."""
    return RECORDINGS, OLD_DIALECT
