"""The tracker reads an event's headers through per-event fields (its own, built once,
or the event bus's, not one ``Message.get`` per header): they must answer exactly as
``Message.get`` does, whatever case the PBX spells a header in and however often it
repeats one, for every header name the tracker reads; and every name the tracker's code
reads must be listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.calls.replay import BASE, OLD_DIALECT, load_script
from vwell_pbx.calls import tracker as tracker_module
from vwell_pbx.calls.rules import CallRules
from vwell_pbx.calls.tracker import _READ_KEYS, CallTracker
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.protocol import Message

SOURCE = Path(tracker_module.__file__).read_text()


def test_every_header_the_tracker_reads_is_in_its_list() -> None:
    literals = set(re.findall(r'(?:event|item)\.get\("([A-Za-z0-9]+)"', SOURCE))
    prefixes = set(re.findall(r'_by_id_or_name\(event, "([A-Za-z]+)"\)', SOURCE))
    assert literals, "the pattern no longer finds the tracker's look-ups"
    assert prefixes
    read = literals | {prefix + key for prefix in prefixes for key in ("Uniqueid", "Channel")}
    assert read - _READ_KEYS == set()
    # Look-ups through a name built at run time would escape the scan above.
    assert not re.search(r'(?:event|item)\.get\((?!"|headers\.|prefix \+ ")', SOURCE)


def _spellings(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from([key, key.lower(), key.upper(), key.swapcase()])


@st.composite
def headers(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    keys = draw(st.lists(st.sampled_from([*sorted(_READ_KEYS), "VarSet", "Privilege"])))
    pairs = [("Event", draw(st.sampled_from(["Newstate", "Hangup", "Dial"])))]
    for key in keys:
        pairs.append((draw(_spellings(key)), draw(st.sampled_from(["1.1", "", "SIP/269-1"]))))
    return tuple(pairs)


@settings(max_examples=300)
@given(headers())
def test_fields_answer_as_message_get_does(pairs: tuple[tuple[str, str], ...]) -> None:
    tracker = CallTracker(pbx="lab")
    message = Message(headers=pairs)
    indexed = Message(headers=pairs)
    indexed.header_index()  # as when another reader (the channel registry) read it first
    # Fresh, again through the layout remembered under the event name, then through the
    # index another reader built, and through a tracker that saw other layouts of the
    # same event names before.
    for fresh in (Message(headers=pairs), Message(headers=pairs), indexed, None):
        fields = (
            _SEEN_MANY._fields(Message(headers=pairs)) if fresh is None else tracker._fields(fresh)
        )
        for key in _READ_KEYS:
            assert fields.get(key) == message.get(key), key


# Shared by the examples on purpose: its remembered layouts are other examples'.
_SEEN_MANY = CallTracker(pbx="lab")


@given(st.lists(st.sampled_from(["+7 978 000-00-01", "269", " 270 ", "s", "unknown", "", "x"])))
def test_remembered_numbers_are_what_the_rules_say(raws: list[str]) -> None:
    tracker = CallTracker(pbx="lab")
    rules = CallRules()
    for raw in [*raws, *raws]:  # the second time from memory
        assert tracker._number(raw) == rules.number(raw)
    assert tracker._number(None) is None


def test_remembered_numbers_are_bounded() -> None:
    tracker = CallTracker(pbx="lab")
    for n in range(tracker_module._MAX_NUMBERS + 10):
        assert tracker._number(str(n)) == str(n)
    assert len(tracker._numbers) <= tracker_module._MAX_NUMBERS


@st.composite
def routed_headers(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    names = sorted(tracker_module.CONSUMED_EVENTS)
    keys = draw(st.lists(st.sampled_from([*sorted(_READ_KEYS), "Privilege", "name", "pbx"])))
    pairs = [("Event", draw(st.sampled_from(names)))]
    for key in keys:
        pairs.append((draw(_spellings(key)), draw(st.sampled_from(["1.1", "", "SIP/269-1"]))))
    return tuple(pairs)


@settings(max_examples=300)
@given(st.lists(routed_headers(), min_size=1, max_size=6))
def test_fields_through_the_bus_answer_as_message_get_does(
    layouts: list[tuple[tuple[str, str], ...]],
) -> None:
    # Published first, as the server does: the bus hands on its fields of the event
    # when no two header names differ only in case, and the tracker reads them when
    # its reader's names are spelled as in the message and come once.
    tracker = CallTracker(pbx="lab")
    for pairs in [*layouts, *layouts]:  # new layouts, then remembered ones
        published = Message(headers=pairs)
        BusEvent.from_message(published, pbx="office")
        _, reader = tracker._routes_folded[pairs[0][1].lower()]
        fields = tracker._fields(published, reader)
        message = Message(headers=pairs)
        for spellings in reader.spellings.values():
            for key in spellings:
                assert fields.get(key) == message.get(key), key


def test_second_spellings_are_read_only_by_their_handlers() -> None:
    # The other handlers' fields leave them out (see _SECOND_SPELLINGS).
    readers = {"_learnt_bridges"}  # the channel list, read through every name
    for event_name in tracker_module._SECOND_SPELLING_EVENTS:
        handler, _ = CallTracker(pbx="lab")._routes_folded[event_name.lower()]
        readers.add(handler.__name__)
    function = ""
    found = set()
    for line in SOURCE.splitlines():
        if match := re.match(r"\s*def (\w+)\(", line):
            function = match.group(1)
        for spelling in tracker_module._SECOND_SPELLINGS:
            if f'.get("{spelling}")' in line:
                assert function in readers, (spelling, function)
                found.add(spelling)
    assert found == tracker_module._SECOND_SPELLINGS


def test_the_bus_fields_are_read_when_spelled_as_the_tracker_reads() -> None:
    tracker = CallTracker(pbx="lab")
    usual = (("Event", "Newstate"), ("Channel", "SIP/1-1"), ("Uniqueid", "1.1"))
    other = (("Event", "Newstate"), ("Channel", "SIP/1-1"), ("UniqueID", "1.1"))
    for pairs, shared in ((usual, True), (other, False)):
        message = Message(headers=pairs)
        BusEvent.from_message(message)
        fields = tracker._fields(message, tracker._routes_folded["newstate"][1])
        assert (fields is message.shared_fields()) is shared
        assert fields.get("Uniqueid") == "1.1"


def test_the_tracker_reads_none_of_the_names_the_bus_adds() -> None:
    # The bus's fields hold name, pbx and eventId besides the headers (shared_fields).
    assert {key.lower() for key in _READ_KEYS}.isdisjoint({"name", "pbx", "eventid"})


class _Reads(dict[str, str]):
    """Fields that note every name read through them in ``read``."""

    def __init__(self, fields: Mapping[str, str], read: set[str]) -> None:
        super().__init__(fields)
        self.read = read

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def test_an_old_dialect_dial_reads_only_its_list() -> None:
    # Dial has a reader of its own (_DIAL_READS): a name read beyond it would be None.
    tracker = CallTracker(pbx="lab")
    fields = tracker._fields
    read: set[str] = set()

    def noting(message: Message, reader: object = None) -> Mapping[str, str]:
        found = fields(message, reader)  # type: ignore[arg-type]
        return _Reads(found, read) if message.name == "Dial" else found

    tracker._fields = noting  # type: ignore[assignment,method-assign]
    dials = 0
    for path in sorted(OLD_DIALECT.glob("*.ami")):
        for t, message in load_script(path.name[:2]).events:
            dials += message.name == "Dial"
            tracker.observe(message, BASE + t)
    assert dials > 10
    assert read
    assert read <= tracker_module._DIAL_READS, read - tracker_module._DIAL_READS
    assert tracker_module._DIAL_READS <= _READ_KEYS


def test_a_yeastar_dial_is_read_through_the_bus_fields() -> None:
    # Spelled as the reader reads (UniqueID, DestUniqueID): no dict of its own.
    tracker = CallTracker(pbx="lab")
    _, reader = tracker._routes_folded["dial"]
    read = 0
    for path in sorted(OLD_DIALECT.glob("*.ami")):
        for _, message in load_script(path.name[:2]).events:
            if message.name == "Dial" and message.get("UniqueID") is not None:
                BusEvent.from_message(message, pbx="office")
                assert tracker._fields(message, reader) is message.shared_fields()
                read += 1
    assert read > 10
