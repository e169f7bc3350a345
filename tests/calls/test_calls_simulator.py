"""The simulator's call scenarios, over TCP, fed to the call tracker (both dialects).

Each scenario runs on a real simulator; the product's AMI client captures the stream
and the tracker turns it into call events. The expected lists are those of the real
recordings' tests (``test_calls_recordings.py``) where the scenario is the same: the
same events with the same fields, apart from ids and times (ids are the simulator's
own, known in advance; times are checked against the scenario's timings). Both dialects
must give the ground truth; where Asterisk 1.8's event order makes a field differ
legitimately (a channel already gone when the tracker learns something), the case says
so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from tests.calls.simulated import (
    BASE,
    EPOCH,
    LAB_NAME,
    RING,
    TALK,
    play,
    session,
    track,
    wait_for,
)
from vwell_pbx.calls import CallEvent, CallSnapshot, CallTracker
from vwell_pbx.pbx.dial import DialTemplates, OriginateOutcome, dial
from vwell_pbx.simulator.scenarios import SCENARIOS

DIALECTS = ("asterisk20", "yeastar")
TIMES = ("startedAt", "answeredAt", "endedAt", "ringSeconds", "talkSeconds")
CALL_ID = f"{EPOCH}.0"
CLICK = "click-to-call-267-269"


def sip(index: int, ext: str) -> str:
    """The name of the simulator's ``index``-th SIP channel (a global counter)."""
    return f"SIP/{ext}-{index:08x}"


def phone_name(dialect: str, ext: str) -> str:
    """How each PBX names an extension (the lab's ``Ext 267``, a MyPBX's ``267``)."""
    return f"Ext {ext}" if dialect == "asterisk20" else ext


@dataclass(frozen=True)
class Case:
    """A scenario, its options, the fields every call event shares and the events."""

    scenario: str
    options: dict[str, Any]
    static: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    originate: tuple[str, str, str | None] | None = None
    ring: float = 0.0
    talk: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _internal(**more: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "callId": CALL_ID,
        "pbx": "lab",
        "direction": "internal",
        "fromNumber": "269",
        "fromName": LAB_NAME,
        "toNumber": "267",
        "trunk": None,
        "did": None,
        "originated": False,
        "actionId": None,
    }
    fields.update(more)
    return fields


def _inbound(dialect: str, **more: Any) -> dict[str, Any]:
    fields = _internal(
        direction="inbound",
        fromNumber="89787342741",
        fromName="+79787342741",
        toNumber="269",
        toName=phone_name(dialect, "269"),
        trunk="YSGSM/11",
    )
    fields.update(more)
    return fields


def live(status: str, extension: str, channels: list[str], **more: Any) -> dict[str, Any]:
    """A call event while the call goes on."""
    return {
        "status": status,
        "extension": extension,
        "endReason": None,
        "onHold": status == "held",
        "transfers": [],
        "channels": channels,
        **more,
    }


def over(extension: str, reason: str, **more: Any) -> dict[str, Any]:
    """``call.ended`` / ``call.missed``."""
    return {
        "status": "ended",
        "extension": extension,
        "endReason": reason,
        "onHold": False,
        "transfers": [],
        "channels": [],
        **more,
    }


def cases(dialect: str) -> dict[str, Case]:
    """Every scenario with what the tracker must report for it on ``dialect``."""
    name = phone_name
    d = dialect
    two = [sip(0, "269"), sip(1, "267")]
    three = [*two, sip(2, "268")]
    lab = {"caller_name": LAB_NAME, "ring": RING, "talk": TALK}
    out: dict[str, Case] = {}
    # Recording 13: 269 -> 267, answered, the caller hangs up.
    out["internal-answered"] = Case(
        "internal",
        lab,
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.answered", live("up", "267", two)),
            ("call.ended", over("267", "completed")),
        ],
        ring=RING,
        talk=TALK,
    )
    # Recording 14: the caller gives up while 267 rings: a missed call for 267.
    out["internal-missed"] = Case(
        "internal",
        {**lab, "outcome": "missed"},
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.ended", over("267", "cancelled")),
            ("call.missed", over("267", "cancelled")),
        ],
        ring=RING,
    )
    # Recording 15: busy at once; never rang, no missed call.
    out["internal-busy"] = Case(
        "internal",
        {**lab, "outcome": "busy"},
        _internal(toName=None),
        [("call.ended", over("267", "busy"))],
    )
    # Recording 16: rings until the Dial timeout.
    out["internal-no-answer"] = Case(
        "internal",
        {**lab, "outcome": "no_answer"},
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.ended", over("267", "no_answer")),
            ("call.missed", over("267", "no_answer")),
        ],
        ring=RING,
    )
    # Recording 17: ring group 2000 (267 & 268); 268 answers; 267 answered elsewhere.
    group = _internal(fromName=name(d, "269"), toNumber="2000")
    out["ring-group"] = Case(
        "ring_group",
        {"answer_by": "268", "ring": RING, "talk": TALK},
        group,
        [
            ("call.ringing", live("ringing", "267", three, toName=None)),
            ("call.ringing", live("ringing", "268", three, toName=None)),
            ("call.answered", live("up", "268", three, toName=name(d, "268"))),
            ("call.ended", over("268", "completed", toName=name(d, "268"))),
        ],
        ring=RING,
        talk=TALK,
    )
    # Recording 18: answered, then an AMI Redirect of 269 to 700 (by 267's side). On
    # 1.8 the redirect shows only in 269's next Newexten, after 267 was hung up.
    blind = [{"type": "blind", "by": "267", "to": "700"}]
    moved_on = two if dialect == "asterisk20" else two[:1]
    out["blind-transfer"] = Case(
        "blind_transfer",
        {**lab, "after": TALK},
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.answered", live("up", "267", two)),
            ("call.transferred", live("up", "267", moved_on, transfers=blind)),
            ("call.ended", over("700", "completed", transfers=blind)),
        ],
        ring=RING,
        talk=2 * TALK,
    )
    # Recording 19: 267 transfers 269 to 268 with consultation; one call throughout.
    attended = [{"type": "attended", "by": "267", "to": "268"}]
    consult_events: list[tuple[str, dict[str, Any]]] = [
        ("call.ringing", live("held", "268", three)),
        ("call.answered", live("held", "268", three)),
    ]
    target = sip(2, "268")
    if dialect == "yeastar":
        # The phone consults on a call of its own (SIP/267 -> SIP/268), which the
        # transfer then merges: it ends "transferred" (docs/calls.md).
        target = sip(3, "268")
        consult = {
            "callId": f"{EPOCH}.2",
            "fromNumber": "267",
            "fromName": name(d, "267"),
            "toNumber": "268",
            "toName": name(d, "268"),
            "onHold": False,
        }
        legs = [sip(2, "267"), target]
        consult_events = [
            ("call.ringing", live("ringing", "268", legs, **consult)),
            ("call.answered", live("up", "268", legs, **consult)),
            ("call.ended", over("268", "transferred", **consult)),
        ]
    # On 1.8 the consultation leg is still up when the phone's REFER is reported.
    moved = [*two, target] if dialect == "asterisk20" else [*two, sip(2, "267"), target]
    out["attended-transfer"] = Case(
        "attended_transfer",
        {**lab, "consult_ring": RING, "consult": TALK, "after": TALK},
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.answered", live("up", "267", two)),
            ("call.held", live("held", "267", two)),
            *consult_events,
            ("call.transferred", live("up", "267", moved, transfers=attended)),
            ("call.ended", over("268", "completed", transfers=attended)),
        ],
        ring=RING,
        talk=3 * TALK,
    )
    # Recording 20: held by 267 and resumed; 267 hangs up.
    out["hold"] = Case(
        "hold",
        {**lab, "held": TALK, "after": TALK},
        _internal(toName=name(d, "267")),
        [
            ("call.ringing", live("ringing", "267", two)),
            ("call.answered", live("up", "267", two)),
            ("call.held", live("held", "267", two)),
            ("call.resumed", live("up", "267", two)),
            ("call.ended", over("267", "completed")),
        ],
        ring=RING,
        talk=3 * TALK,
    )
    # Recording 23: 268 picks up the call ringing at 267 with *8.
    out["pickup"] = Case(
        "pickup",
        lab,
        _internal(),
        [
            ("call.ringing", live("ringing", "267", two, toName=name(d, "267"))),
            ("call.answered", live("up", "268", three, toName=name(d, "268"))),
            ("call.ended", over("268", "completed", toName=name(d, "268"))),
        ],
        ring=RING,
        talk=TALK,
    )
    # Recordings 21 and 22: click-to-call 267 -> 269 with the server's dial templates.
    click = _internal(
        fromNumber="267",
        fromName=None,
        toNumber="269",
        originated=True,
        actionId=CLICK,
    )
    legs = [sip(0, "267"), sip(1, "269")]
    clicked = {"origin": "267", "to": "269", "origin_ring": RING, "action_id": CLICK}
    answered_click = [
        ("call.ringing", live("ringing", "269", legs)),
        ("call.answered", live("up", "269", legs)),
        ("call.ended", over("269", "completed")),
    ]
    for form, channel in (("", "SIP/267"), ("-local", "Local/267@DLPN_DialPlan267")):
        local = {"local": True} if form else {}
        announced = (CLICK, channel, "269")
        out[f"click-to-call{form}"] = Case(
            "click_to_call",
            {**clicked, **local, "ring": RING, "talk": TALK},
            {**click, "toName": name(d, "269")},
            answered_click,
            originate=announced,
            ring=RING,
            talk=TALK,
        )
        out[f"click-to-call{form}-busy"] = Case(
            "click_to_call",
            {**clicked, **local, "outcome": "busy"},
            {**click, "toName": None},
            [("call.ended", over("267", "busy"))],
            originate=announced,
        )
        out[f"click-to-call{form}-no-answer"] = Case(
            "click_to_call",
            {**clicked, **local, "outcome": "no_answer"},
            {**click, "toName": None},
            [("call.ended", over("267", "no_answer"))],
            originate=announced,
        )
    # Inbound GSM calls from +79787342741 on span 11 to 269.
    gsm = ["YSGSM/11-1", sip(0, "269")]
    inbound = {"ring": RING, "talk": TALK}
    out["inbound-answered"] = Case(
        "inbound",
        inbound,
        _inbound(d),
        [
            ("call.ringing", live("ringing", "269", gsm)),
            ("call.answered", live("up", "269", gsm)),
            ("call.ended", over("269", "completed")),
        ],
        ring=RING,
        talk=TALK,
    )
    out["inbound-missed"] = Case(
        "inbound",
        {**inbound, "outcome": "missed"},
        _inbound(d),
        [
            ("call.ringing", live("ringing", "269", gsm)),
            ("call.ended", over("269", "cancelled")),
            ("call.missed", over("269", "cancelled")),
        ],
        ring=RING,
    )
    out["inbound-busy"] = Case(
        "inbound",
        {**inbound, "outcome": "busy"},
        _inbound(d, toName=None),
        [("call.ended", over("269", "busy"))],
    )
    out["inbound-no-answer"] = Case(
        "inbound",
        {**inbound, "outcome": "no_answer"},
        _inbound(d),
        [
            ("call.ringing", live("ringing", "269", gsm)),
            ("call.ended", over("269", "no_answer")),
            ("call.missed", over("269", "no_answer")),
        ],
        ring=RING,
    )
    return out


def _without_times(event: CallEvent) -> dict[str, Any]:
    data = event.to_dict()
    for key in TIMES:
        data.pop(key)
    data["transfers"] = [
        {k: v for k, v in transfer.items() if k != "at"} for transfer in data["transfers"]
    ]
    return data


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


SLACK = 2.0
"""Upper bound on how much later than planned a step may happen on a loaded machine."""

IDS = [(dialect, case) for dialect in DIALECTS for case in cases(dialect)]


@pytest.mark.parametrize(("dialect", "case"), IDS, ids=[f"{d}-{c}" for d, c in IDS])
async def test_scenario_gives_the_recorded_call_events(dialect: str, case: str) -> None:
    spec = cases(dialect)[case]
    run, events = await play(spec.scenario, dialect, **spec.options)
    tracker, got = track(events, originate=spec.originate)
    want = [{**spec.static, **fields, "name": name} for name, fields in spec.events]
    assert [e.name for e in got] == [w["name"] for w in want]
    for number, (event, wanted) in enumerate(zip(got, want, strict=True)):
        assert _without_times(event) == wanted, f"event {number} ({wanted['name']})"
    assert tracker.active() == []
    assert run.linkedid == CALL_ID
    if not got:
        return
    last = got[-1].call
    started, answered, ended = (
        _moment(last.to_dict()[key]) for key in ("startedAt", "answeredAt", "endedAt")
    )
    assert started is not None and ended is not None and started <= ended
    if answered is not None:
        assert started <= answered <= ended
    # The scenario's timings: a phone rang ``ring`` seconds, they talked ``talk``. The
    # seconds come from arrival times, and the simulator runs on this test's loop: a
    # stall longer than a step (tens of milliseconds, common on a loaded CI core) delays
    # the arrival of one step and the sending of the next alike, so both arrive together
    # and a span can shrink to nothing. Only the upper bound survives a stall; the
    # seconds must still never be negative, nor exceed the call's own life.
    life = (ended - started).total_seconds()
    assert 0 <= last.ring_seconds <= min(spec.ring + SLACK, life + 0.001)
    assert 0 <= last.talk_seconds <= min(spec.talk + SLACK, life + 0.001)


def _expected(dialect: str, case: str, **static: Any) -> list[dict[str, Any]]:
    spec = cases(dialect)[case]
    return [{**spec.static, **static, **fields, "name": name} for name, fields in spec.events]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_ami_redirect_of_a_live_call_is_the_recorded_blind_transfer(dialect: str) -> None:
    async with session(dialect) as captured:
        run = await captured.sim.scenario("internal", caller_name=LAB_NAME, ring=RING, talk=30.0)
        assert await run.until("answered", timeout=5)
        redirect = await captured.client.send_action(
            [
                ("Action", "Redirect"),
                ("Channel", run.channels[0]),
                ("Context", "DLPN_DialPlan269"),
                ("Exten", "700"),
                ("Priority", "1"),
            ],
            timeout=5,
        )
        assert redirect.response.get("Message") == "Redirect successful"
        events = await captured.finish(run)
    tracker, got = track(events)
    assert [_without_times(e) for e in got] == _expected(dialect, "blind-transfer")
    assert tracker.active() == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_atxfer_action_is_the_recorded_attended_transfer(dialect: str) -> None:
    async with session(dialect) as captured:
        run = await captured.sim.scenario("internal", caller_name=LAB_NAME, ring=RING, talk=30.0)
        assert await run.until("answered", timeout=5)
        answer = await captured.client.send_action(
            [
                ("Action", "Atxfer"),
                ("Channel", run.channels[1]),
                ("Exten", "268"),
                ("Context", "DLPN_DialPlan269"),
            ],
            timeout=5,
        )
        assert answer.response.get("Message") == "Atxfer successfully queued"
        events = await captured.finish(run)
    tracker, got = track(events)
    assert [_without_times(e) for e in got] == _expected(dialect, "attended-transfer")
    assert tracker.active() == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_servers_dial_makes_the_recorded_click_to_call(dialect: str) -> None:
    # The product's own dial() with its default (Yeastar) templates: SIP/{from},
    # DLPN_DialPlan{from}, Exten {to}, CallerID {to}, Async.
    async with session(dialect) as captured:
        result = await dial(
            captured.client,
            DialTemplates(),
            from_="267",
            to="269",
            timeout_ms=30_000,
            wait=True,
            wait_timeout=5,
            action_timeout=5,
        )
        assert result.outcome is OriginateOutcome.ANSWERED
        assert result.event is not None and result.event.action_id == result.action_id
        assert result.uniqueid == CALL_ID
        await wait_for(lambda: {CALL_ID, f"{EPOCH}.1"} <= captured.hung_up(), 5)
        events = list(captured.events)
    tracker, got = track(events, originate=(result.action_id, "SIP/267", "269"))
    assert [_without_times(e) for e in got] == _expected(
        dialect, "click-to-call", actionId=result.action_id
    )
    assert tracker.call_id_for_action(result.action_id) == CALL_ID
    assert tracker.active() == []


@pytest.mark.parametrize(
    ("dialect", "listing"), [("asterisk20", "CoreShowChannels"), ("yeastar", "Status")]
)
async def test_a_tracker_joining_mid_call_rebuilds_it_from_the_channel_list(
    dialect: str, listing: str
) -> None:
    async with session(dialect) as captured:
        run = await captured.sim.scenario("inbound", ring=RING, talk=30.0)
        assert await run.until("answered", timeout=5)
        answer = await captured.client.send_action([("Action", listing)], timeout=5)
        joined = len(captured.events)
        await captured.client.send_action(
            [("Action", "Hangup"), ("Channel", run.channels[0])], timeout=5
        )
        events = await captured.finish(run)
    items = [m for m in answer.events if m.name in ("CoreShowChannel", "Status")]
    assert [m.get("Channel") for m in items] == ["YSGSM/11-1", sip(0, "269")]
    tracker = CallTracker(pbx="lab")
    rebuilt = tracker.reconcile(items, BASE)
    assert [(e.name, e.call.call_id, e.call.extension) for e in rebuilt] == [
        ("call.answered", CALL_ID, "269")
    ]
    assert rebuilt[0].call.channels == ("YSGSM/11-1", sip(0, "269"))
    assert rebuilt[0].call.direction == "inbound"
    later = [e for t, m in events[joined:] for e in tracker.observe(m, BASE + t)]
    assert [(e.name, e.call.end_reason) for e in later] == [("call.ended", "completed")]
    assert tracker.active() == []


RINGING_AT_RECONNECT = {
    # scenario: (options, the phones ringing, who answers, the call's channels)
    "internal": ({"caller_name": LAB_NAME}, ["267"], "267", [sip(0, "269"), sip(1, "267")]),
    "inbound": ({}, ["269"], "269", ["YSGSM/11-1", sip(0, "269")]),
    "ring_group": (
        {"answer_by": "268"},
        ["267", "268"],
        "268",
        [sip(0, "269"), sip(1, "267"), sip(2, "268")],
    ),
}


async def _joined_while_ringing(
    dialect: str, listing: str, scenario: str
) -> tuple[CallTracker, list[CallEvent], list[CallSnapshot], list[CallEvent]]:
    """Play ``scenario``; while its phones ring, a fresh tracker reads the channel list
    (``listing``) and then follows the stream: the tracker, its events from the list,
    its active calls then, and its events after."""
    options = RINGING_AT_RECONNECT[scenario][0]
    async with session(dialect) as captured:
        # The phones ring a second: time enough to read the list before the answer.
        run = await captured.sim.scenario(scenario, ring=1.0, talk=TALK, **options)
        assert await run.until("ringing", timeout=5)
        answer = await captured.client.send_action([("Action", listing)], timeout=5)
        joined = len(captured.events)
        events = await captured.finish(run)
    items = [m for m in answer.events if m.name in ("CoreShowChannel", "Status")]
    tracker = CallTracker(pbx="lab")
    rebuilt = list(tracker.reconcile(items, BASE))
    active = tracker.active(BASE)
    later = [e for t, m in events[joined:] for e in tracker.observe(m, BASE + t)]
    return tracker, rebuilt, active, later


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", sorted(RINGING_AT_RECONNECT))
async def test_a_call_ringing_at_reconnect_is_rebuilt_from_core_show_channels(
    dialect: str, scenario: str
) -> None:
    # Asterisk 12+ links the phones by Linkedid; 1.8 only by the caller's Dial data
    # (SIP/267&SIP/268,30) naming the device of each AppDial channel.
    _, ringing, answerer, channels = RINGING_AT_RECONNECT[scenario]
    tracker, rebuilt, active, later = await _joined_while_ringing(
        dialect, "CoreShowChannels", scenario
    )
    assert [(e.name, e.call.call_id, e.call.extension) for e in rebuilt] == [
        ("call.ringing", CALL_ID, extension) for extension in ringing
    ]
    assert rebuilt[-1].call.channels == tuple(channels)
    assert [(c.call_id, c.status) for c in active] == [(CALL_ID, "ringing")]
    assert [(e.name, e.call.call_id, e.call.extension, e.call.end_reason) for e in later] == [
        ("call.answered", CALL_ID, answerer, None),
        ("call.ended", CALL_ID, answerer, "completed"),
    ]
    assert tracker.active() == []


@pytest.mark.parametrize("scenario", ["internal", "inbound"])
async def test_a_status_list_cannot_say_whom_a_ringing_phone_rings(scenario: str) -> None:
    # Asterisk 1.8's Status names no Dial and no peer of a ringing phone (docs/calls.md,
    # limits): no call.ringing is sent from it; the answer (Link) joins them again.
    _, _, answerer, channels = RINGING_AT_RECONNECT[scenario]
    tracker, rebuilt, active, later = await _joined_while_ringing("yeastar", "Status", scenario)
    assert rebuilt == []
    listed = [(c.call_id, c.channels) for c in active]
    # An inbound trunk leg is a call to show by itself: listed without its phone.
    assert listed == ([(CALL_ID, ("YSGSM/11-1",))] if scenario == "inbound" else [])
    assert [(e.name, e.call.call_id, e.call.extension, e.call.end_reason) for e in later] == [
        ("call.answered", CALL_ID, answerer, None),
        ("call.ended", CALL_ID, answerer, "completed"),
    ]
    assert later[0].call.channels == tuple(channels)
    assert tracker.active() == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_background_traffic_is_a_mix_of_calls_that_all_end(dialect: str) -> None:
    async with session(dialect) as captured:
        rng = random.Random(0)  # 40 draws of this seed pick every kind of call
        runs = [captured.sim.scenarios.traffic_call(rng, TALK) for _ in range(40)]
        assert {run.scenario for run in runs} == set(SCENARIOS)
        for run in runs:
            await run.wait(10)
        await wait_for(lambda: {u for run in runs for u in run.uniqueids} <= captured.hung_up(), 5)
        events = list(captured.events)
    tracker, got = track(events)
    names = {e.name for e in got}
    assert {"call.ringing", "call.answered", "call.held", "call.transferred"} <= names
    assert {"call.missed", "call.ended"} <= names
    ended = [e.call.call_id for e in got if e.name == "call.ended"]
    assert len(ended) == len(set(ended)) == len({e.call.call_id for e in got})
    assert tracker.active() == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_originate_of_a_local_channel_into_the_dialplan_is_transcript_06(
    dialect: str,
) -> None:
    # Channel Local/100@DLPN_DialPlan269 (100 answers and waits), then exten 267.
    async with session(dialect) as captured:
        answer = await captured.client.send_action(
            [
                ("Action", "Originate"),
                ("Channel", "Local/100@DLPN_DialPlan269"),
                ("Context", "DLPN_DialPlan269"),
                ("Exten", "267"),
                ("Priority", "1"),
                ("CallerID", '"AMI Test" <5551000>'),
                ("Async", "true"),
            ],
            timeout=5,
        )
        assert answer.response.get("Message") == "Originate successfully queued"
        phone = sip(0, "267")
        await wait_for(lambda: f"{EPOCH}.2" in captured.hung_up(), 5)
        events = list(captured.events)
    response = next(m for _, m in events if m.name == "OriginateResponse")
    assert (response.action_id, response.get("Reason")) == (answer.action_id, "4")
    tracker, got = track(events, originate=(answer.action_id, "Local/100@DLPN_DialPlan269", None))
    assert [(e.name, e.call.extension, e.call.channels) for e in got] == [
        ("call.ringing", "267", (phone,)),
        ("call.answered", "267", (phone,)),
        ("call.ended", "267", ()),
    ]
    assert {(e.call.call_id, e.call.from_number, e.call.action_id) for e in got} == {
        (CALL_ID, "5551000", answer.action_id)
    }
    assert tracker.active() == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_transfer_to_a_busy_phone_returns_the_call_to_the_transferer(
    dialect: str,
) -> None:
    async with session(dialect, extensions={"268": "busy"}) as captured:
        run = await captured.sim.scenario(
            "attended_transfer", caller_name=LAB_NAME, ring=RING, talk=TALK, after=30.0
        )
        assert await run.until("transferred", timeout=5)

        def resumed() -> bool:
            return any(
                m.name == "Unhold" or (m.name == "Hold" and m.get("Status") == "Off")
                for _, m in captured.events
            )

        await wait_for(resumed, 5)
        assert captured.sim.live_channels == [sip(0, "269"), sip(1, "267")]
        await captured.client.send_action(
            [("Action", "Hangup"), ("Channel", sip(0, "269"))], timeout=5
        )
        events = await captured.finish(run)
    tracker, got = track(events)
    mine = [(e.name, e.call.extension, e.call.status) for e in got if e.call.call_id == CALL_ID]
    assert mine == [
        ("call.ringing", "267", "ringing"),
        ("call.answered", "267", "up"),
        ("call.held", "267", "held"),
        ("call.resumed", "267", "up"),
        ("call.ended", "267", "ended"),
    ]
    assert got[-1].call.end_reason == "completed" and not got[-1].call.transfers
    assert tracker.active() == []
