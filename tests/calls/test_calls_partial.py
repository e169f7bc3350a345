"""Joining mid-call: every stream fed with its first N events cut off, for every N.

Whatever the cut, the tracker must not raise, must not invent a call (every call it
reports is named by a Linkedid or Uniqueid that is still in the remaining stream), must
report each call's end once and last (``call.missed`` after it), and must hold nothing
once every channel has hung up. This is cacofonisk's ``test_partial`` idea.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.calls.replay import (
    TRANSCRIPTS,
    Stream,
    feed,
    load_recording,
    load_script,
)
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import Message

STREAMS: dict[str, tuple[Stream, int]] = {
    **{f"rec{n}": (load_recording(str(n)), 1) for n in range(13, 24)},
    **{f"old{n:02d}": (load_script(f"{n:02d}"), 1) for n in range(1, 8)},
    "transcript06": (load_recording("06", folder=TRANSCRIPTS, conn="conn1"), 1),
    "transcript07": (load_recording("07", folder=TRANSCRIPTS, conn="conn1"), 1),
    "transcript11": (load_recording("11", folder=TRANSCRIPTS, conn="conn1"), 1),
    # 2,261 messages: every 23rd cut keeps the run short and still crosses every call.
    "transcript10": (load_recording("10", folder=TRANSCRIPTS, conn="conn1"), 23),
}

_ID_KEYS = (
    "Uniqueid",
    "Linkedid",
    "DestUniqueid",
    "DestLinkedid",
    "UniqueID",
    "Uniqueid1",
    "Uniqueid2",
    "TargetUniqueid",
    "TargetLinkedid",
    "DestUniqueID",
    "SrcUniqueID",
)


def ids_in(events: list[tuple[float, Message]]) -> set[str]:
    found: set[str] = set()
    for _, message in events:
        for key in _ID_KEYS:
            value = message.get(key)
            if value:
                found.add(value)
    return found


def check_story(events: list[CallEvent]) -> None:
    """Per call: nothing after its end but its missed calls; one end; missed only after."""
    by_call: dict[str, list[str]] = defaultdict(list)
    for event in events:
        by_call[event.call.call_id].append(event.name)
        assert (event.name in ("call.ended", "call.missed")) == (event.call.status == "ended")
        if event.call.status != "ended":
            assert event.call.channels, f"{event.name} of a live call without channels"
    for call_id, names in by_call.items():
        assert names.count("call.ended") == 1, (call_id, names)
        end = names.index("call.ended")
        assert all(name == "call.missed" for name in names[end + 1 :]), (call_id, names)
        assert "call.missed" not in names[:end], (call_id, names)
        if "call.answered" in names:
            assert "call.missed" not in names


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_cutting_off_the_start_never_breaks_the_tracker(name: str) -> None:
    stream, stride = STREAMS[name]
    full = feed(CallTracker(pbx="lab"), stream.events)
    for cut in range(0, len(stream.events) + 1, stride):
        remaining = stream.events[cut:]
        tracker = CallTracker(pbx="lab")
        events = feed(tracker, remaining)
        if cut == 0:
            assert events == full
        known = ids_in(remaining)
        for event in events:
            assert event.call.call_id in known, f"cut {cut}: invented {event.call.call_id}"
        check_story(events)
        assert tracker.active() == [], f"cut {cut}"
        assert tracker.tracked_calls == 0, f"cut {cut}"
        assert tracker.tracked_channels == 0, f"cut {cut}"


def test_a_cut_in_the_middle_of_a_talk_still_reports_the_call() -> None:
    # Joined after the answer of 269 -> 267 (transcript 13): the bridge shows two phones
    # of one call talking, so the call is reported as answered when we see it, and ends.
    stream = load_recording("13")
    cut = next(i for i, (_, m) in enumerate(stream.events) if m.name == "BridgeEnter")
    events = feed(CallTracker(pbx="lab"), stream.events[cut:])
    assert [e.name for e in events] == ["call.answered", "call.ended"]
    assert events[0].call.answered_at is not None
    assert events[1].call.end_reason == "completed"
    assert events[1].call.call_id == "1796172254.77"
    assert events[0].call.extension == "267"
