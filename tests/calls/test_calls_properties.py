"""Property tests: whatever the PBX sends, in whatever order, the tracker holds.

- Independent calls interleaved at random give each call the same story as alone.
- Random events built from the names and fields the tracker reads, with garbage values,
  never make it raise, never exceed its bounds, never leave a talking call without a
  channel, and never end a call twice: exactly one ``call.ended`` per call id, ever
  (the final reconnect included), and nothing but ``call.missed`` after it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.calls.replay import BASE, feed, load_recording
from vwell_pbx.calls import CONSUMED_EVENTS, CallEvent, CallTracker, TrackerLimits
from vwell_pbx.protocol import Message

RECORDINGS = {str(n): load_recording(str(n)).events for n in range(13, 24)}
ALONE = {
    name: [(e.call.call_id, e.name) for e in feed(CallTracker(pbx="lab"), events)]
    for name, events in RECORDINGS.items()
}


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[list[str], list[tuple[float, Message]]]:
    """Two to four recordings merged in a random order, each keeping its own order."""
    names = draw(st.lists(st.sampled_from(sorted(RECORDINGS)), min_size=2, max_size=4, unique=True))
    queues = [list(RECORDINGS[name]) for name in names]
    merged: list[tuple[float, Message]] = []
    clock = 0.0
    while any(queues):
        pick = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        run = draw(st.integers(min_value=1, max_value=12))
        for _ in range(run):
            if not queues[pick]:
                break
            _, message = queues[pick].pop(0)
            clock += 0.01
            merged.append((clock, message))
    return names, merged


def stories(events: list[CallEvent]) -> dict[str, list[str]]:
    by_call: dict[str, list[str]] = defaultdict(list)
    for event in events:
        by_call[event.call.call_id].append(event.name)
    return dict(by_call)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleavings())
def test_interleaved_calls_keep_their_own_stories(
    case: tuple[list[str], list[tuple[float, Message]]],
) -> None:
    names, merged = case
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, merged)
    expected: dict[str, list[str]] = defaultdict(list)
    for name in names:
        for call_id, event_name in ALONE[name]:
            expected[call_id].append(event_name)
    assert stories(events) == dict(expected)
    assert tracker.active() == []
    assert tracker.tracked_channels == 0


CHANNELS = [
    "SIP/269-00000001",
    "SIP/267-00000002",
    "SIP/268-00000003",
    "YSGSM/11-1",
    "SIP/trunk-00000004",
    "Local/100@ctx-00000001;1",
    "Local/100@ctx-00000001;2",
    "Local/267@ctx-8a1c,1",
    "Local/267@ctx-8a1c,2",
    "SIP/267-00000002<ZOMBIE>",
    "DAHDI/1-1",
    "",
    "no slash",
]
IDS = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "", "<unknown>"]
STATES = ["Down", "Rsrvd", "Ring", "Ringing", "Up", "Busy", "Dialing Offhook", "", "weird"]
WORDS = ["ANSWER", "CANCEL", "BUSY", "NOANSWER", "CHANUNAVAIL", "Success", "Failure", "On", "Off"]
WORDS += ["Link", "Unlink", "Begin", "End", "Blind", "Attended", "Bridge", "700", "s", "", "x"]
NUMBERS = ["269", "+79787342741", "<unknown>", "", "anonymous", "8 (978) 734-27-41", "*8"]

_FIELDS = {
    "channel": [
        "Channel",
        "DestChannel",
        "TargetChannel",
        "Channel1",
        "Channel2",
        "Destination",
        "Source",
        "Clone",
        "Original",
        "Newname",
        "Oldname",
        "ChannelCalling",
        "DestinationChannel",
        "TransfereeChannel",
        "TransferTargetChannel",
        "OrigTransfererChannel",
        "SecondTransfererChannel",
        "TransfererChannel",
        "LocalOneChannel",
        "LocalTwoChannel",
    ],
    "id": [
        "Uniqueid",
        "Linkedid",
        "DestUniqueid",
        "DestLinkedid",
        "TargetUniqueid",
        "TargetLinkedid",
        "UniqueID",
        "DestUniqueID",
        "SrcUniqueID",
        "Uniqueid1",
        "Uniqueid2",
        "TransfereeUniqueid",
        "TransferTargetUniqueid",
        "OrigTransfererUniqueid",
        "SecondTransfererUniqueid",
        "TransfererUniqueid",
        "BridgeUniqueid",
        "FromBridgeUniqueid",
        "ToBridgeUniqueid",
        "ActionID",
    ],
    "state": ["ChannelStateDesc", "DestChannelStateDesc", "TargetChannelStateDesc", "State"],
    "word": [
        "DialStatus",
        "SubEvent",
        "Bridgestate",
        "Status",
        "Result",
        "Response",
        "TransferType",
        "DestType",
        "Exten",
        "Extension",
        "DestExten",
        "TransferExten",
        "Queue",
        "Reason",
        "Cause",
        "DialString",
        "Dialstring",
    ],
    "number": ["CallerIDNum", "CallerIDName", "DestCallerIDNum", "ConnectedLineName", "CallerID"],
}
_VALUES = {"channel": CHANNELS, "id": IDS, "state": STATES, "word": WORDS, "number": NUMBERS}
KEYS = [(key, kind) for kind, keys in _FIELDS.items() for key in keys]
_ALPHABET = "SIPLocal/@;,-<>0123456789. "


_PREFIXES = ["", "Dest", "Target", "Transferee", "TransferTarget", "OrigTransferer", "Transferer"]


@st.composite
def garbage_event(draw: st.DrawFn) -> Message:
    """A consumed (or not) event name with channel snapshots that mostly hang together
    (a channel keeps its Uniqueid, Linkedids come from a few calls) plus random fields."""
    name = draw(st.sampled_from([*sorted(CONSUMED_EVENTS), "VarSet", "Cdr", "dialbegin"]))
    pairs = [("Event", name)]
    for prefix in draw(st.lists(st.sampled_from(_PREFIXES), max_size=3, unique=True)):
        index = draw(st.integers(min_value=0, max_value=len(CHANNELS) - 1))
        pairs.append((prefix + "Channel", CHANNELS[index]))
        if draw(st.integers(min_value=0, max_value=5)):
            pairs.append((prefix + "Uniqueid", f"1.{index}"))
        if draw(st.booleans()):
            pairs.append((prefix + "Linkedid", f"1.{draw(st.integers(0, 3))}"))
        if draw(st.booleans()):
            pairs.append((prefix + "ChannelStateDesc", draw(st.sampled_from(STATES))))
    if draw(st.booleans()):
        for side in "12":
            index = draw(st.integers(min_value=0, max_value=len(CHANNELS) - 1))
            pairs.append(("Channel" + side, CHANNELS[index]))
            pairs.append(("Uniqueid" + side, f"1.{index}"))
    for key, kind in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        value = draw(st.one_of(st.sampled_from(_VALUES[kind]), st.text(_ALPHABET, max_size=10)))
        pairs.append((key, value))
    return Message(headers=tuple(pairs))


@st.composite
def garbage_script(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Events, with now and then a click-to-call announcement or a reconnect listing."""
    steps: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        roll = draw(st.integers(min_value=0, max_value=19))
        if roll == 0:
            steps.append(("expect", draw(st.sampled_from(CHANNELS))))
        elif roll == 1:
            listing = draw(st.lists(garbage_event(), max_size=5))
            steps.append(("reconcile", listing))
        else:
            steps.append(("event", draw(garbage_event())))
    return steps


LIMITS = TrackerLimits(
    max_calls=3, max_channels=5, max_transfers=2, max_rang=2, max_pending_originates=2
)


@pytest.mark.slow  # 80 long random scripts: about 20 s, most of it drawing the data
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage_script())
def test_garbage_never_raises_and_keeps_the_bounds(steps: list[tuple[str, object]]) -> None:
    tracker = CallTracker(pbx="fuzz", limits=LIMITS)
    events: list[CallEvent] = []
    now = BASE
    for number, (kind, payload) in enumerate(steps):
        now += 0.5
        if kind == "expect":
            assert isinstance(payload, str)
            tracker.expect_originate(f"a{number}", payload, now, to_number="269")
        elif kind == "reconcile":
            assert isinstance(payload, list)
            events.extend(tracker.reconcile(payload, now))
        else:
            assert isinstance(payload, Message)
            events.extend(tracker.observe(payload, now))
        assert tracker.tracked_calls <= LIMITS.max_calls
        assert tracker.tracked_channels <= LIMITS.max_channels
        for call in tracker.active():
            assert call.status != "ended"
            if call.status in ("up", "held"):
                assert call.channels, "a talking call without a channel"
            assert len(call.transfers) <= LIMITS.max_transfers
    # Everything gone from the PBX: a reconnect listing nothing ends every call.
    events.extend(tracker.reconcile([], now + 1))
    assert tracker.active() == []
    assert tracker.tracked_calls == 0
    assert tracker.tracked_channels == 0
    assert_one_end_per_call(events)
    for event in events:
        as_dict = event.to_dict()
        assert as_dict["name"] == event.name
        assert (event.name in ("call.ended", "call.missed")) == (event.call.status == "ended")


def assert_one_end_per_call(events: list[CallEvent]) -> None:
    """Exactly one ``call.ended`` for every call id that was reported, and after it
    only that call's ``call.missed``: an ended call id is never reported again."""
    ends = Counter(e.call.call_id for e in events if e.name == "call.ended")
    assert ends.keys() == {e.call.call_id for e in events}, "a reported call never ended"
    assert all(count == 1 for count in ends.values()), ends
    ended: set[str] = set()
    for event in events:
        if event.call.call_id in ended:
            assert event.name == "call.missed", (event.name, event.call.call_id)
        if event.name == "call.ended":
            ended.add(event.call.call_id)


def test_a_reconnect_never_reopens_a_call_it_ended() -> None:
    """The case Hypothesis found: a call known by Linkedid only, whose channels a
    channel list names anew (one by Linkedid, one whose Uniqueid is the call's id),
    ended twice, once per reconnect."""
    tracker = CallTracker(pbx="fuzz", limits=LIMITS)
    events = list(
        tracker.observe(
            Message.build(
                ("Event", "DialBegin"),
                ("Channel", "SIP/267-00000002"),
                ("DestChannel", "SIP/267-00000002"),
                ("TargetChannel", "SIP/269-00000001"),
                ("Uniqueid", "1.1"),
                ("Linkedid", "1.0"),
            ),
            BASE,
        )
    )
    listing = [
        Message.build(("Event", "Status"), ("Channel", "SIP/269-00000001"), ("Linkedid", "1.0")),
        Message.build(("Event", "Status"), ("Channel", "SIP/269-00000001"), ("Uniqueid", "1.0")),
    ]
    events.extend(tracker.reconcile(listing, BASE + 1))
    tracker.expect_originate("a2", "SIP/269-00000001", BASE + 2, to_number="269")
    tracker.expect_originate("a3", "SIP/269-00000001", BASE + 3, to_number="269")
    events.extend(tracker.reconcile([], BASE + 4))
    assert [(e.name, e.call.call_id, e.call.end_reason) for e in events] == [
        ("call.ended", "1.0", "unknown")
    ]
    assert_one_end_per_call(events)
    assert tracker.tracked_calls == tracker.tracked_channels == 0


def test_a_reconnect_does_not_reopen_an_ended_call_whose_phones_are_listed() -> None:
    """An Asterisk 12+ call ended for the tracker (recording 13 played to its end); a
    channel list then names two phones talking with that call's Linkedid (events were
    lost): the call is not reported again under its id, and nothing ends twice."""
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, load_recording("13").events)
    assert events[-1].name == "call.ended"
    call_id = events[-1].call.call_id
    listing = [
        Message.build(
            ("Event", "CoreShowChannel"),
            ("Channel", channel),
            ("ChannelStateDesc", "Up"),
            ("Uniqueid", uniqueid),
            ("Linkedid", call_id),
            ("BridgeId", "b-1"),
        )
        for channel, uniqueid in (("SIP/268-00000098", "9.8"), ("SIP/267-00000099", "9.9"))
    ]
    assert tracker.reconcile(listing, BASE + 100) == []
    assert tracker.active() == []
    events.extend(tracker.reconcile([], BASE + 101))
    assert_one_end_per_call(events)
