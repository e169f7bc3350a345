"""Replay of the hand-written Asterisk 1.4/1.8 (Yeastar MyPBX) streams.

Same kind of assertion as the real recordings: the exact ordered call events with every
field, written from each file's GROUND TRUTH comment. These dialects have no Linkedid,
so every correlation comes from Dial, Bridge/Link and the Local channel pairs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.replay import BASE, CALL_FIELDS, OLD_DIALECT, Near, at, feed, load_script
from vwell_pbx.calls import CallTracker

GSM = "YSGSM/11-1"


def gsm_inbound(call_id: str, **more: Any) -> dict[str, Any]:
    """An inbound GSM call from +79787342741 (shown normalised: +7 becomes 8) to 269."""
    fields: dict[str, Any] = {
        "callId": call_id,
        "pbx": "mypbx",
        "direction": "inbound",
        "fromNumber": "89787342741",
        "fromName": "+79787342741",
        "toNumber": "269",
        "toName": "269",
        "trunk": "YSGSM/11",
        "did": None,
        "startedAt": at("20.000"),
        "originated": False,
        "actionId": None,
    }
    fields.update(more)
    return fields


def live(status: str, **more: Any) -> dict[str, Any]:
    return {
        "status": status,
        "endedAt": None,
        "endReason": None,
        "onHold": False,
        "transfers": [],
        **more,
    }


def ended(**more: Any) -> dict[str, Any]:
    return {"status": "ended", "onHold": False, "channels": [], **more}


SCENARIOS: dict[str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]] = {
    "01": (
        gsm_inbound("1505301525.6254"),
        [
            (
                "call.ringing",
                live(
                    "ringing",
                    extension="269",
                    answeredAt=None,
                    ringSeconds=0.0,
                    talkSeconds=0.0,
                    channels=[GSM, "SIP/269-000015bf"],
                ),
            ),
            (
                "call.answered",
                live(
                    "up",
                    extension="269",
                    answeredAt=at("24.030"),
                    ringSeconds=Near(4.0),
                    talkSeconds=0.0,
                    channels=[GSM, "SIP/269-000015bf"],
                ),
            ),
            (
                "call.ended",
                ended(
                    extension="269",
                    answeredAt=at("24.030"),
                    endedAt=at("44.040"),
                    ringSeconds=Near(4.0),
                    talkSeconds=Near(20.0),
                    endReason="completed",
                    transfers=[],
                ),
            ),
        ],
    ),
    "02": (
        gsm_inbound("1505302000.6300"),
        [
            (
                "call.ringing",
                live(
                    "ringing",
                    extension="269",
                    answeredAt=None,
                    ringSeconds=0.0,
                    talkSeconds=0.0,
                    channels=[GSM, "SIP/269-000015c4"],
                ),
            ),
            *[
                (
                    name,
                    ended(
                        extension="269",
                        answeredAt=None,
                        endedAt=at("35.030"),
                        ringSeconds=Near(15.0),
                        talkSeconds=0.0,
                        endReason="cancelled",
                        transfers=[],
                    ),
                )
                for name in ("call.ended", "call.missed")
            ],
        ],
    ),
    "03": (
        gsm_inbound("1505303000.6400", toName=None),
        [
            (
                "call.ended",
                ended(
                    extension="269",
                    answeredAt=None,
                    endedAt=at("20.060"),
                    ringSeconds=0.0,
                    talkSeconds=0.0,
                    endReason="busy",
                    transfers=[],
                ),
            ),
        ],
    ),
}

_CH04 = ["SIP/269-0000153c", "SIP/267-0000153d"]
SCENARIOS["04"] = (
    {
        "callId": "1505296320.6111",
        "pbx": "mypbx",
        "direction": "internal",
        "fromNumber": "269",
        "fromName": "269",
        "toNumber": "267",
        "toName": "267",
        "trunk": None,
        "did": None,
        "startedAt": at("20.000"),
        "originated": False,
        "actionId": None,
    },
    [
        (
            "call.ringing",
            live(
                "ringing",
                extension="267",
                answeredAt=None,
                ringSeconds=0.0,
                talkSeconds=0.0,
                channels=_CH04,
            ),
        ),
        (
            "call.answered",
            live(
                "up",
                extension="267",
                answeredAt=at("22.010"),
                ringSeconds=Near(2.0),
                talkSeconds=0.0,
                channels=_CH04,
            ),
        ),
        (
            "call.held",
            live(
                "held",
                extension="267",
                answeredAt=at("22.010"),
                ringSeconds=Near(2.0),
                talkSeconds=Near(5.0),
                channels=_CH04,
            )
            | {"onHold": True},
        ),
        (
            "call.resumed",
            live(
                "up",
                extension="267",
                answeredAt=at("22.010"),
                ringSeconds=Near(2.0),
                talkSeconds=Near(8.0),
                channels=_CH04,
            ),
        ),
        (
            "call.ended",
            ended(
                extension="267",
                answeredAt=at("22.010"),
                endedAt=at("34.020"),
                ringSeconds=Near(2.0),
                talkSeconds=Near(12.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)

_CH05 = ["SIP/267-00001600", "YSGSM/11-2"]
SCENARIOS["05"] = (
    {
        "callId": "1505310000.7000",
        "pbx": "mypbx",
        "direction": "outbound",
        "fromNumber": "267",
        "fromName": None,
        "toNumber": "89787342741",
        "toName": None,
        "trunk": "YSGSM/11",
        "did": None,
        "startedAt": at("20.000"),
        "originated": True,
        "actionId": "vwell-dial-1",
    },
    [
        # The outside line is announced once, for the extension that makes the call.
        (
            "call.ringing",
            live(
                "ringing",
                extension="267",
                answeredAt=None,
                ringSeconds=0.0,
                talkSeconds=0.0,
                channels=_CH05,
            ),
        ),
        (
            "call.answered",
            live(
                "up",
                extension="267",
                answeredAt=at("29.020"),
                ringSeconds=Near(6.0),
                talkSeconds=0.0,
                channels=_CH05,
            ),
        ),
        (
            "call.ended",
            ended(
                extension="267",
                answeredAt=at("29.020"),
                endedAt=at("59.030"),
                ringSeconds=Near(6.0),
                talkSeconds=Near(30.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)

_CH06 = ["SIP/267-0a1b2c3d", "SIP/269-0a1b2c3e"]
SCENARIOS["06"] = (
    {
        "callId": "1505290000.100",
        "pbx": "mypbx",
        "direction": "internal",
        "fromNumber": "267",
        "fromName": None,
        "toNumber": "269",
        "toName": None,
        "trunk": None,
        "did": None,
        "startedAt": at("20.000"),
        "originated": True,
        "actionId": "vwell-dial-2",
    },
    [
        (
            "call.ringing",
            live(
                "ringing",
                extension="269",
                answeredAt=None,
                ringSeconds=0.0,
                talkSeconds=0.0,
                channels=_CH06,
            ),
        ),
        (
            "call.answered",
            live(
                "up",
                extension="269",
                answeredAt=at("25.020"),
                ringSeconds=Near(3.0),
                talkSeconds=0.0,
                channels=_CH06,
            ),
        ),
        (
            "call.ended",
            ended(
                extension="269",
                answeredAt=at("25.020"),
                endedAt=at("35.030"),
                ringSeconds=Near(3.0),
                talkSeconds=Near(10.0),
                endReason="completed",
                transfers=[],
            ),
        ),
    ],
)

_CH07 = [GSM, "SIP/269-000015d0"]
_REDIRECT07 = [{"type": "blind", "by": "269", "to": "700", "at": at("31.010")}]
SCENARIOS["07"] = (
    gsm_inbound("1505304000.6500"),
    [
        (
            "call.ringing",
            live(
                "ringing",
                extension="269",
                answeredAt=None,
                ringSeconds=0.0,
                talkSeconds=0.0,
                channels=_CH07,
            ),
        ),
        (
            "call.answered",
            live(
                "up",
                extension="269",
                answeredAt=at("23.010"),
                ringSeconds=Near(3.0),
                talkSeconds=0.0,
                channels=_CH07,
            ),
        ),
        (
            "call.transferred",
            live(
                "up",
                extension="269",
                answeredAt=at("23.010"),
                ringSeconds=Near(3.0),
                talkSeconds=Near(8.0),
                channels=_CH07,
            )
            | {"transfers": _REDIRECT07},
        ),
        (
            "call.ended",
            ended(
                extension="700",
                answeredAt=at("23.010"),
                endedAt=at("36.010"),
                ringSeconds=Near(3.0),
                talkSeconds=Near(13.0),
                endReason="completed",
                transfers=_REDIRECT07,
            ),
        ),
    ],
)

ORIGINATES = {
    "05": ("vwell-dial-1", "Local/267@DLPN_DialPlan267", "89787342741"),
    "06": ("vwell-dial-2", "Local/267@DLPN_DialPlan267", "269"),
}


def replay(name: str, *, announce: bool = True) -> tuple[CallTracker, list[Any]]:
    tracker = CallTracker(pbx="mypbx")
    if announce and name in ORIGINATES:
        action_id, channel, to = ORIGINATES[name]
        tracker.expect_originate(action_id, channel, BASE, to_number=to)
    return tracker, feed(tracker, load_script(name).events)


def test_every_script_has_a_ground_truth_and_an_expectation() -> None:
    files = sorted(path.name[:2] for path in OLD_DIALECT.glob("*.ami"))
    assert files == sorted(SCENARIOS)
    for name in files:
        stream = load_script(name)
        assert stream.ground_truth.startswith("GROUND TRUTH: ")
        assert stream.events, name
        # The old dialect: no Linkedid anywhere.
        assert all("Linkedid" not in message for _, message in stream.events)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_script_gives_exactly_the_expected_call_events(name: str) -> None:
    static, expected = SCENARIOS[name]
    tracker, events = replay(name)
    got = [event.to_dict() for event in events]
    want = [{**static, **fields, "name": event_name} for event_name, fields in expected]
    assert [g["name"] for g in got] == [w["name"] for w in want]
    for number, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"event {number} ({w['name']})"
        assert list(g) == [*CALL_FIELDS, "name"]
    assert tracker.active() == []


def test_gsm_call_involves_only_the_local_extension() -> None:
    _, events = replay("01")
    assert events[-1].call.extensions == frozenset({"269"})


def test_click_to_call_through_local_is_outbound_even_when_not_ours() -> None:
    _, events = replay("05", announce=False)
    assert [e.name for e in events] == ["call.ringing", "call.answered", "call.ended"]
    assert {(e.call.direction, e.call.from_number, e.call.originated) for e in events} == {
        ("outbound", "267", False)
    }
