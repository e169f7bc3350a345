"""Property tests: whatever the PBX sends, in whatever order, the tracker holds.

- Independent calls interleaved at random give each call the same story as alone.
- Random events built from the names and fields the tracker reads, with garbage values,
  never make it raise, never exceed its bounds, never leave a talking call without a
  channel, and never end a call twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict

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
    ends = Counter(e.call.call_id for e in events if e.name == "call.ended")
    assert all(count == 1 for count in ends.values()), ends
    for event in events:
        as_dict = event.to_dict()
        assert as_dict["name"] == event.name
        assert (event.name in ("call.ended", "call.missed")) == (event.call.status == "ended")
    # Everything gone from the PBX: a reconnect listing nothing ends every call.
    tracker.reconcile([], now + 1)
    assert tracker.active() == []
    assert tracker.tracked_calls == 0
    assert tracker.tracked_channels == 0


def test_the_bounds_evict_the_least_recently_active_call() -> None:
    tracker = CallTracker(pbx="lab", limits=TrackerLimits(max_calls=2, max_channels=100))
    events: list[CallEvent] = []
    # Three inbound GSM calls ring at once (their Hangups will never come).
    for n in range(3):
        for message in (
            Message.build(
                ("Event", "Newchannel"),
                ("Channel", f"YSGSM/1{n}-1"),
                ("ChannelStateDesc", "Ring"),
                ("CallerIDNum", f"+7978000000{n}"),
                ("Exten", "s"),
                ("Uniqueid", f"9.{n}"),
            ),
        ):
            events.extend(tracker.observe(message, BASE + n))
    assert tracker.tracked_calls == 2
    assert tracker.evicted_calls == 1
    assert [c.call_id for c in tracker.active()] == ["9.1", "9.2"]
    # An inbound call is shown from its first ring, so its dropping is reported.
    assert [(e.name, e.call.call_id, e.call.end_reason) for e in events] == [
        ("call.ended", "9.0", "unknown")
    ]
