"""The tracker reads an event's headers through its own per-event fields (built once,
not one ``Message.get`` per header): they must answer exactly as ``Message.get`` does,
whatever case the PBX spells a header in and however often it repeats one, for every
header name the tracker reads; and every name the tracker's code reads must be listed.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vwell_pbx.calls import tracker as tracker_module
from vwell_pbx.calls.rules import CallRules
from vwell_pbx.calls.tracker import _READ_KEYS, CallTracker
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
