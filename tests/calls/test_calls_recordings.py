"""Replay of the eleven real Asterisk 20 call recordings (cacofonisk style).

Each recording opens with a GROUND TRUTH note; the expected lists below are written from
it: which events, in which order, with every field of the call object. Times are the
recorded arrival times (``at("21.118")`` is 1.118 s into the recording); ring and talk
seconds the note gives are checked within rounding (``Near``), the others exactly.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.replay import (
    BASE,
    CALL_FIELDS,
    TRANSCRIPTS,
    Near,
    at,
    feed,
    load_recording,
)
from vwell_pbx.calls import CallTracker

NONE_YET = {"answeredAt": None, "endedAt": None, "endReason": None}


def internal(call_id: str, started: str, **more: Any) -> dict[str, Any]:
    """The fields that stay the same through a lab call from 269 (``AMI Lab 269``) to 267."""
    fields: dict[str, Any] = {
        "callId": call_id,
        "pbx": "lab",
        "direction": "internal",
        "fromNumber": "269",
        "fromName": "AMI Lab 269",
        "toNumber": "267",
        "trunk": None,
        "did": None,
        "startedAt": at(started),
        "originated": False,
        "actionId": None,
    }
    fields.update(more)
    return fields


def ringing(**more: Any) -> dict[str, Any]:
    return {
        "status": "ringing",
        **NONE_YET,
        "ringSeconds": 0.0,
        "talkSeconds": 0.0,
        "onHold": False,
        "transfers": [],
        **more,
    }


def ended(**more: Any) -> dict[str, Any]:
    return {"status": "ended", "onHold": False, "channels": [], **more}


SIP269, SIP267 = "SIP/269-00000043", "SIP/267-00000044"

SCENARIOS: dict[str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]] = {
    # 269 -> 267, rang 2.0 s, answered, talked 3.0 s, the caller hung up.
    "13": (
        internal("1796172254.77", "21.118", toName="Ext 267"),
        [
            ("call.ringing", ringing(extension="267", channels=[SIP269, SIP267])),
            (
                "call.answered",
                {
                    "status": "up",
                    "extension": "267",
                    "answeredAt": at("23.126"),
                    "endedAt": None,
                    "endReason": None,
                    "ringSeconds": Near(2.0),
                    "talkSeconds": 0.0,
                    "onHold": False,
                    "transfers": [],
                    "channels": [SIP269, SIP267],
                },
            ),
            (
                "call.ended",
                ended(
                    extension="267",
                    answeredAt=at("23.126"),
                    endedAt=at("26.138"),
                    ringSeconds=Near(2.0),
                    talkSeconds=Near(3.0),
                    endReason="completed",
                    transfers=[],
                ),
            ),
        ],
    ),
    # 269 -> 267, rang 5.0 s, the caller cancelled: a missed call for 267.
    "14": (
        internal("1796172263.79", "21.123", toName="Ext 267"),
        [
            (
                "call.ringing",
                ringing(extension="267", channels=["SIP/269-00000045", "SIP/267-00000046"]),
            ),
            (
                "call.ended",
                ended(
                    extension="267",
                    answeredAt=None,
                    endedAt=at("26.132"),
                    ringSeconds=Near(5.0),
                    talkSeconds=0.0,
                    endReason="cancelled",
                    transfers=[],
                ),
            ),
            (
                "call.missed",
                ended(
                    extension="267",
                    answeredAt=None,
                    endedAt=at("26.132"),
                    ringSeconds=Near(5.0),
                    talkSeconds=0.0,
                    endReason="cancelled",
                    transfers=[],
                ),
            ),
        ],
    ),
    # 269 -> 267, busy at once: never rang, so no ringing and no missed call.
    "15": (
        internal("1796172272.81", "21.120", toName=None),
        [
            (
                "call.ended",
                ended(
                    extension="267",
                    answeredAt=None,
                    endedAt=at("21.123"),
                    ringSeconds=0.0,
                    talkSeconds=0.0,
                    endReason="busy",
                    transfers=[],
                ),
            ),
        ],
    ),
    # 269 -> 267, rang 20.0 s until the Dial timeout: no answer, missed for 267.
    "16": (
        internal("1796172277.83", "21.120", toName="Ext 267"),
        [
            (
                "call.ringing",
                ringing(extension="267", channels=["SIP/269-00000049", "SIP/267-0000004a"]),
            ),
            (
                "call.ended",
                ended(
                    extension="267",
                    answeredAt=None,
                    endedAt=at("41.127"),
                    ringSeconds=Near(20.0),
                    talkSeconds=0.0,
                    endReason="no_answer",
                    transfers=[],
                ),
            ),
            (
                "call.missed",
                ended(
                    extension="267",
                    answeredAt=None,
                    endedAt=at("41.127"),
                    ringSeconds=Near(20.0),
                    talkSeconds=0.0,
                    endReason="no_answer",
                    transfers=[],
                ),
            ),
        ],
    ),
    # 269 -> ring group 2000 (267 & 268); 268 answered after 2.5 s, talked 3.0 s.
    # 267 was answered elsewhere: no call.missed for it.
    "17": (
        internal("1796172301.85", "21.121", fromName="Ext 269", toNumber="2000"),
        [
            (
                "call.ringing",
                ringing(
                    extension="267",
                    toName=None,
                    channels=["SIP/269-0000004b", "SIP/267-0000004c", "SIP/268-0000004d"],
                ),
            ),
            (
                "call.ringing",
                ringing(
                    extension="268",
                    toName=None,
                    ringSeconds=Near(0.0),
                    channels=["SIP/269-0000004b", "SIP/267-0000004c", "SIP/268-0000004d"],
                ),
            ),
            (
                "call.answered",
                {
                    "status": "up",
                    "extension": "268",
                    "toName": "Ext 268",
                    "answeredAt": at("23.634"),
                    "endedAt": None,
                    "endReason": None,
                    "ringSeconds": Near(2.5),
                    "talkSeconds": 0.0,
                    "onHold": False,
                    "transfers": [],
                    "channels": ["SIP/269-0000004b", "SIP/267-0000004c", "SIP/268-0000004d"],
                },
            ),
            (
                "call.ended",
                ended(
                    extension="268",
                    toName="Ext 268",
                    answeredAt=at("23.634"),
                    endedAt=at("26.645"),
                    ringSeconds=Near(2.5),
                    talkSeconds=Near(3.0),
                    endReason="completed",
                    transfers=[],
                ),
            ),
        ],
    ),
}

_REDIRECT = [{"type": "blind", "by": "267", "to": "700", "at": at("25.934")}]
SCENARIOS["18"] = (
    # 269 -> 267, rang 1.5 s, talked 3.0 s; AMI Redirect of 269 to 700 (by 267's side);
    # 267 left; 269 hung up 10.0 s after the answer.
    internal("1796172311.88", "21.419", toName="Ext 267"),
    [
        (
            "call.ringing",
            ringing(extension="267", channels=["SIP/269-0000004e", "SIP/267-0000004f"]),
        ),
        (
            "call.answered",
            {
                "status": "up",
                "extension": "267",
                **NONE_YET,
                "answeredAt": at("22.927"),
                "ringSeconds": Near(1.5),
                "talkSeconds": 0.0,
                "onHold": False,
                "transfers": [],
                "channels": ["SIP/269-0000004e", "SIP/267-0000004f"],
            },
        ),
        (
            "call.transferred",
            {
                "status": "up",
                "extension": "267",
                **NONE_YET,
                "answeredAt": at("22.927"),
                "ringSeconds": Near(1.5),
                "talkSeconds": Near(3.0),
                "onHold": False,
                "transfers": _REDIRECT,
                "channels": ["SIP/269-0000004e", "SIP/267-0000004f"],
            },
        ),
        (
            "call.ended",
            ended(
                extension="700",
                answeredAt=at("22.927"),
                endedAt=at("32.937"),
                ringSeconds=Near(1.5),
                talkSeconds=Near(10.0),
                endReason="completed",
                transfers=_REDIRECT,
            ),
        ),
    ],
)

_ATXFER = [{"type": "attended", "by": "267", "to": "268", "at": at("33.943")}]
_CH19 = ["SIP/269-00000050", "SIP/267-00000051"]
_CH19_ALL = [*_CH19, "SIP/268-00000052"]


def _up19(**more: Any) -> dict[str, Any]:
    return {
        **NONE_YET,
        "answeredAt": at("22.937"),
        "ringSeconds": Near(1.5),
        "transfers": [],
        **more,
    }


SCENARIOS["19"] = (
    # 269 -> 267, answered after 1.5 s, talked 2.3 s; 267 held 269 and consulted 268
    # (rang 2.0 s, answered), then hung up: attended transfer by 267 to 268; 269 and 268
    # talked until 269 hung up 17.0 s after the first answer. One call throughout.
    internal("1796172327.90", "21.424", toName="Ext 267"),
    [
        ("call.ringing", ringing(extension="267", channels=_CH19)),
        (
            "call.answered",
            _up19(status="up", extension="267", talkSeconds=0.0, onHold=False, channels=_CH19),
        ),
        (
            "call.held",
            _up19(
                status="held", extension="267", talkSeconds=Near(2.3), onHold=True, channels=_CH19
            ),
        ),
        (
            "call.ringing",
            _up19(
                status="held", extension="268", talkSeconds=5.452, onHold=True, channels=_CH19_ALL
            ),
        ),
        (
            "call.answered",
            _up19(
                status="held", extension="268", talkSeconds=7.456, onHold=True, channels=_CH19_ALL
            ),
        ),
        (
            "call.transferred",
            _up19(
                status="up",
                extension="267",
                talkSeconds=11.006,
                onHold=False,
                transfers=_ATXFER,
                channels=_CH19_ALL,
            ),
        ),
        (
            "call.ended",
            ended(
                extension="268",
                answeredAt=at("22.937"),
                endedAt=at("39.950"),
                ringSeconds=Near(1.5),
                talkSeconds=Near(17.0),
                endReason="completed",
                transfers=_ATXFER,
            ),
        ),
    ],
)

_CH20 = ["SIP/269-00000053", "SIP/267-00000054"]
SCENARIOS["20"] = (
    # 269 -> 267, answered after 1.5 s; 2.0 s later held by 267 for 4.0 s, resumed;
    # 267 hung up 8.0 s after the answer.
    internal("1796172349.95", "21.120", toName="Ext 267"),
    [
        ("call.ringing", ringing(extension="267", channels=_CH20)),
        (
            "call.answered",
            {
                "status": "up",
                "extension": "267",
                **NONE_YET,
                "answeredAt": at("22.628"),
                "ringSeconds": Near(1.5),
                "talkSeconds": 0.0,
                "onHold": False,
                "transfers": [],
                "channels": _CH20,
            },
        ),
        (
            "call.held",
            {
                "status": "held",
                "extension": "267",
                **NONE_YET,
                "answeredAt": at("22.628"),
                "ringSeconds": Near(1.5),
                "talkSeconds": Near(2.0),
                "onHold": True,
                "transfers": [],
                "channels": _CH20,
            },
        ),
        (
            "call.resumed",
            {
                "status": "up",
                "extension": "267",
                **NONE_YET,
                "answeredAt": at("22.628"),
                "ringSeconds": Near(1.5),
                "talkSeconds": Near(6.0),  # 2.0 s of talk + 4.0 s on hold
                "onHold": False,
                "transfers": [],
                "channels": _CH20,
            },
        ),
        (
            "call.ended",
            ended(
                extension="267",
                answeredAt=at("22.628"),
                endedAt=at("30.656"),
                ringSeconds=Near(1.5),
                talkSeconds=Near(8.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)

_CLICK = "click-to-call-267-269"
_CH21 = ["SIP/267-00000055", "SIP/269-00000056"]
SCENARIOS["21"] = (
    # Click-to-call 267 -> 269: 267 rang first (not reported: it is the caller's own
    # phone), then 269 rang 2.0 s, answered, talked 3.0 s, hung up.
    internal(
        "1796172363.97",
        "21.314",
        fromNumber="267",
        fromName=None,
        toNumber="269",
        toName="Ext 269",
        originated=True,
        actionId=_CLICK,
    ),
    [
        ("call.ringing", ringing(extension="269", channels=_CH21)),
        (
            "call.answered",
            {
                "status": "up",
                "extension": "269",
                **NONE_YET,
                "answeredAt": at("24.832"),
                "ringSeconds": Near(2.0),
                "talkSeconds": 0.0,
                "onHold": False,
                "transfers": [],
                "channels": _CH21,
            },
        ),
        (
            "call.ended",
            ended(
                extension="269",
                answeredAt=at("24.832"),
                endedAt=at("27.843"),
                ringSeconds=Near(2.0),
                talkSeconds=Near(3.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)
SCENARIOS["22"] = (
    # Click-to-call 267 -> 269: 267 busy at once; 269 never called.
    internal(
        "1796172374.99",
        "21.310",
        fromNumber="267",
        fromName=None,
        toNumber="269",
        toName=None,
        originated=True,
        actionId=_CLICK + "-busy",
    ),
    [
        (
            "call.ended",
            ended(
                extension="267",
                answeredAt=None,
                endedAt=at("21.312"),
                ringSeconds=0.0,
                talkSeconds=0.0,
                endReason="busy",
                transfers=[],
            ),
        ),
    ],
)
SCENARIOS["23"] = (
    # 269 -> 267 rang 3.6 s; 268 picked it up with *8 and talked 3.0 s; one call.
    internal("1796172378.100", "21.124"),
    [
        (
            "call.ringing",
            ringing(
                extension="267", toName="Ext 267", channels=["SIP/269-00000058", "SIP/267-00000059"]
            ),
        ),
        (
            "call.answered",
            {
                "status": "up",
                "extension": "268",
                "toName": "Ext 268",
                **NONE_YET,
                "answeredAt": at("24.745"),
                "ringSeconds": Near(3.6),
                "talkSeconds": 0.0,
                "onHold": False,
                "transfers": [],
                "channels": ["SIP/269-00000058", "SIP/267-00000059", "SIP/268-0000005a"],
            },
        ),
        (
            "call.ended",
            ended(
                extension="268",
                toName="Ext 268",
                answeredAt=at("24.745"),
                endedAt=at("27.753"),
                ringSeconds=Near(3.6),
                talkSeconds=Near(3.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)

ORIGINATES = {
    "21": (_CLICK, "SIP/267", "269"),
    "22": (_CLICK + "-busy", "SIP/267", "269"),
}
"""What the server tells the tracker before writing each click-to-call's Originate."""

EXTENSIONS = {
    "13": {"269", "267"},
    "14": {"269", "267"},
    "15": {"269", "267"},
    "16": {"269", "267"},
    "17": {"269", "267", "268"},
    "18": {"269", "267"},
    "19": {"269", "267", "268"},
    "20": {"269", "267"},
    "21": {"267", "269"},
    "22": {"267"},
    "23": {"269", "267", "268"},
}


def replay(name: str, *, announce: bool = True) -> tuple[CallTracker, list[Any]]:
    tracker = CallTracker(pbx="lab")
    if announce and name in ORIGINATES:
        action_id, channel, to = ORIGINATES[name]
        tracker.expect_originate(action_id, channel, BASE, to_number=to)
    return tracker, feed(tracker, load_recording(name).events)


def test_every_recording_has_a_ground_truth_and_an_expectation() -> None:
    for name in SCENARIOS:
        assert load_recording(name).ground_truth.startswith("GROUND TRUTH: ")
    assert sorted(SCENARIOS) == [str(n) for n in range(13, 24)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recording_gives_exactly_the_expected_call_events(name: str) -> None:
    static, expected = SCENARIOS[name]
    tracker, events = replay(name)
    got = [event.to_dict() for event in events]
    want = [{**static, **fields, "name": event_name} for event_name, fields in expected]
    assert [g["name"] for g in got] == [w["name"] for w in want]
    for number, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"event {number} ({w['name']})"
        assert list(g) == [*CALL_FIELDS, "name"]
    assert tracker.active() == []
    assert set(events[-1].call.extensions) == EXTENSIONS[name]


def test_without_our_dial_the_answered_click_to_call_is_the_same_call_not_originated() -> None:
    _static, expected = SCENARIOS["21"]
    _, events = replay("21", announce=False)
    assert [e.name for e in events] == [name for name, _ in expected]
    assert all(not e.call.originated and e.call.action_id is None for e in events)
    assert all(e.call.from_number == "267" and e.call.to_number == "269" for e in events)


def test_a_click_to_call_that_is_not_ours_and_never_rang_anyone_is_not_reported() -> None:
    _, events = replay("22", announce=False)
    assert events == []


def test_a_click_to_call_announced_after_its_channel_appeared_is_still_marked() -> None:
    stream = load_recording("21").events
    # The server learns its ActionID only after the PBX accepted the action, when the
    # first leg may already exist: announce it just before 269 is dialled.
    split = next(i for i, (_, m) in enumerate(stream) if m.name == "DialBegin" and m.get("Channel"))
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, stream[:split])
    tracker.expect_originate(_CLICK, "SIP/267", BASE + stream[split][0], to_number="269")
    assert tracker.call_id_for_action(_CLICK) == "1796172363.97"
    events += feed(tracker, stream[split:])
    assert [e.name for e in events] == ["call.ringing", "call.answered", "call.ended"]
    assert all(e.call.originated and e.call.action_id == _CLICK for e in events)


@pytest.mark.parametrize("ours", [False, True])
def test_a_click_to_call_is_never_a_call_that_began_before_it_was_written(ours: bool) -> None:
    # Another AMI client (another server instance) clicked 267 -> 269 and its call is
    # live when this server writes an Originate of the same phone: that call is not
    # this Originate's, however its channel is named. Written before it began, it is.
    stream = load_recording("21").events
    split = next(i for i, (_, m) in enumerate(stream) if m.name == "DialBegin" and m.get("Channel"))
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, stream[:split])
    now = BASE + stream[split][0]
    sent = BASE + stream[0][0] - 0.001 if ours else now
    tracker.expect_originate("another-click", "SIP/267", now, to_number="269", sent=sent)
    events += feed(tracker, stream[split:])
    assert [e.name for e in events] == ["call.ringing", "call.answered", "call.ended"]
    assert all(e.call.originated is ours for e in events)
    assert all(e.call.action_id == ("another-click" if ours else None) for e in events)
    assert tracker.call_id_for_action("another-click") == ("1796172363.97" if ours else None)


def test_live_calls_while_a_recording_plays() -> None:
    tracker = CallTracker(pbx="lab")
    seen: list[tuple[str, list[str]]] = []
    for t, message in load_recording("19").events:
        tracker.observe(message, BASE + t)
        live = tracker.active()
        assert len(live) <= 1
        if live and (not seen or seen[-1][0] != live[0].status):
            seen.append((live[0].status, list(live[0].channels)))
        for call in live:
            assert call.channels, "a live call always has a channel"
            assert tracker.get(call.call_id) == call
    assert [status for status, _ in seen] == ["ringing", "up", "held", "up"]
    assert tracker.active() == []


def test_talk_seconds_of_a_live_call_count_up_to_now() -> None:
    tracker = CallTracker(pbx="lab")
    stream = load_recording("13").events
    answered = next(
        i
        for i, (_, m) in enumerate(stream)
        if m.name == "Newstate" and m.get("Channel") == SIP267 and m.get("ChannelStateDesc") == "Up"
    )
    feed(tracker, stream[: answered + 1])
    (call,) = tracker.active(BASE + 4.126)
    assert call.status == "up"
    assert call.talk_seconds == 1.0
    assert call.ring_seconds == Near(2.0)


def test_protocol_transcript_11_local_channel_optimised_away_mid_call() -> None:
    # Three calls by 269: to 100 (the dialplan answers, nobody else: not a call to
    # report), to 267, to 1267 = Dial(Local/267) whose Local pair drops out mid-call;
    # then an Originate of SIP/267 into the dialplan (not ours, reaches nobody).
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, load_recording("11", folder=TRANSCRIPTS, conn="conn1").events)
    summary = [
        (e.name, e.call.call_id, e.call.to_number, e.call.extension, list(e.call.channels))
        for e in events
    ]
    assert summary == [
        ("call.ringing", "1795839043.108", "267", "267", ["SIP/269-00000016", "SIP/267-00000017"]),
        ("call.answered", "1795839043.108", "267", "267", ["SIP/269-00000016", "SIP/267-00000017"]),
        ("call.ended", "1795839043.108", "267", "267", []),
        ("call.ringing", "1795839052.110", "1267", "267", ["SIP/269-00000018", "SIP/267-00000019"]),
        (
            "call.answered",
            "1795839052.110",
            "1267",
            "267",
            ["SIP/269-00000018", "SIP/267-00000019"],
        ),
        ("call.ended", "1795839052.110", "1267", "267", []),
    ]
    assert [e.call.end_reason for e in events if e.name == "call.ended"] == ["completed"] * 2
    assert tracker.active() == []


def test_protocol_transcript_07_redirect_of_the_called_phone() -> None:
    # Originate Local/100 -> 267; Redirect of SIP/267 to 700: a blind transfer whose
    # "by" is unknown (the other side is the dialplan); then a dual Redirect.
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, load_recording("07", folder=TRANSCRIPTS, conn="conn1").events)
    assert [e.name for e in events] == [
        "call.ringing",
        "call.answered",
        "call.transferred",
        "call.ended",
    ] * 2
    first = events[2].call.to_dict()
    assert first["transfers"] == [{"type": "blind", "by": None, "to": "700", "at": at("22.815")}]
    assert first["fromNumber"] == "5552000"
    assert first["fromName"] == "AMI Lab 5552000"
    assert first["direction"] == "unknown"  # the caller is the dialplan, not a phone or line
    assert tracker.active() == []


def test_protocol_transcript_10_busy_traffic_leaves_nothing_behind() -> None:
    # 40 s of concurrent Originates, Redirects and Hangups on a real Asterisk.
    tracker = CallTracker(pbx="lab")
    events = feed(tracker, load_recording("10", folder=TRANSCRIPTS, conn="conn1").events)
    started = {e.call.call_id for e in events}
    ended_calls = [e.call.call_id for e in events if e.name == "call.ended"]
    assert sorted(ended_calls) == sorted(started)
    assert len(ended_calls) == len(set(ended_calls))
    assert tracker.active() == []
    assert tracker.evicted_calls == 0


def test_protocol_transcript_06_click_to_call_through_a_local_channel() -> None:
    # Originate Channel=Local/100@DLPN_DialPlan269 (its ;2 half runs Wait: nobody), then
    # exten 267 from the ;1 half: 267 rings and answers; the Originate's ActionID marks it.
    stream = load_recording("06", folder=TRANSCRIPTS, conn="conn1").events
    tracker = CallTracker(pbx="lab")
    tracker.expect_originate("orig-async-1", "Local/100@DLPN_DialPlan269", BASE)
    events = feed(tracker, stream)
    assert [(e.name, e.call.extension) for e in events] == [
        ("call.ringing", "267"),
        ("call.answered", "267"),
        ("call.ended", "267"),
    ]
    assert {(e.call.originated, e.call.action_id, e.call.call_id) for e in events} == {
        (True, "orig-async-1", "1795838923.2")
    }
    assert tracker.call_id_for_action("orig-async-1") == "1795838923.2"
    end = events[-1].call
    assert (end.from_number, end.to_number, end.channels) == ("5551000", "267", ())
