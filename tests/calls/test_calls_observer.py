"""``CallTracker.observer(name)``: ``observe`` for the events of one name, for a caller
that routes by name itself (``LiveCalls`` through the AMI client's listeners). Fed the
same streams, a tracker fed that way reports exactly what ``observe`` reports, whether
the event bus published the events first (its fields shared) or not. (``observe``
hands each event to the observer of its name, so what this checks is the routing:
every name, in any case, to its own handler and reader, and nothing else.)"""

from __future__ import annotations

import pytest

from tests.calls.replay import BASE, OLD_DIALECT, RECORDINGS, Stream, load_recording, load_script
from vwell_pbx.calls import CONSUMED_EVENTS, CallEvent, CallTracker
from vwell_pbx.calls.tracker import Observer
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.protocol import Message

STREAMS = [
    *(path.name[:2] for path in sorted(RECORDINGS.glob("*.chunks.jsonl"))),
    *(f"old{path.name[:2]}" for path in sorted(OLD_DIALECT.glob("*.ami"))),
]


def _stream(name: str) -> Stream:
    return load_script(name[3:]) if name.startswith("old") else load_recording(name)


def _copy(message: Message, *, published: bool) -> Message:
    """A fresh message (nothing built on it yet), published on the bus if asked."""
    fresh = Message(headers=message.headers, output=message.output)
    if published:
        BusEvent.from_message(fresh, pbx="lab")
    return fresh


def _routed(tracker: CallTracker, stream: Stream, *, published: bool) -> list[CallEvent]:
    """The stream routed by name as the AMI client routes it to its listeners."""
    observers: dict[str, Observer] = {
        name.casefold(): tracker.observer(name) for name in CONSUMED_EVENTS
    }
    out: list[CallEvent] = []
    for t, message in stream.events:
        observe = observers.get(message.name.casefold())
        if observe is not None:
            out.extend(observe(_copy(message, published=published), BASE + t))
    return out


def _observed(tracker: CallTracker, stream: Stream, *, published: bool) -> list[CallEvent]:
    out: list[CallEvent] = []
    for t, message in stream.events:
        out.extend(tracker.observe(_copy(message, published=published), BASE + t))
    return out


@pytest.mark.parametrize("published", [False, True], ids=["alone", "published"])
@pytest.mark.parametrize("name", STREAMS)
def test_observers_report_what_observe_reports(name: str, published: bool) -> None:
    stream = _stream(name)
    expected = _observed(CallTracker(pbx="lab"), stream, published=published)
    # (22, a click-to-call not announced as ours that never rang anyone, reports none.)
    assert expected or name == "22"
    assert _routed(CallTracker(pbx="lab"), stream, published=published) == expected


def test_an_observer_is_only_for_a_name_the_tracker_reads() -> None:
    tracker = CallTracker(pbx="lab")
    assert tracker.observer("NEWSTATE") is not None  # any case
    with pytest.raises(KeyError):
        tracker.observer("VarSet")
