"""The simulator's call scenarios against the real recordings, event for event.

Asterisk 20: for each of the eleven recordings (``tests/data/ami/calls``) the matching
scenario must give the same events in the same order (dialplan chatter aside), each
with the recorded header set, and the same values where they mean something: which
channel (by its role: the first channel of the call, the second...), its state, caller
and connected numbers, extension, Uniqueid/Linkedid relations, bridges, Hangup causes
and DialStatus values. Where Asterisk's threads raced during a recording (two orders of
the same events are both real), ``RACES`` says which events swapped.

Yeastar (Asterisk 1.8): the scenarios are compared with the hand-written old-dialect
streams (``tests/data/ami/calls/old_dialect``): the same events and headers, with the
differences Asterisk 1.8's code makes, listed in ``OLD_DIALECT_DIFFERENCES``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.replay import load_recording, load_script
from tests.calls.simulated import LAB_NAME, RING, TALK, play, session
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator

NOISE = frozenset(
    {
        "VarSet",
        "Newexten",
        "RTCPSent",
        "RTCPReceived",
        "DeviceStateChange",
        "SuccessfulAuth",
        "FullyBooted",
    }
)
"""Dialplan chatter and what a lab PBX adds around a call (media reports, devices)."""

ROLE_KEYS = ("Channel", "DestChannel", "TargetChannel", "LocalOneChannel", "LocalTwoChannel")
ID_KEYS = (
    "Uniqueid",
    "Linkedid",
    "DestUniqueid",
    "DestLinkedid",
    "TargetUniqueid",
    "TargetLinkedid",
    "LocalOneUniqueid",
    "LocalOneLinkedid",
    "LocalTwoUniqueid",
    "LocalTwoLinkedid",
    "TransfereeUniqueid",
    "TransferTargetUniqueid",
    "OrigTransfererUniqueid",
)
BRIDGE_KEYS = (
    "BridgeUniqueid",
    "ToBridgeUniqueid",
    "FromBridgeUniqueid",
    "OrigBridgeUniqueid",
    "SecondBridgeUniqueid",
    "DestBridgeUniqueid",
)
VALUE_KEYS = (
    "ChannelStateDesc",
    "DestChannelStateDesc",
    "CallerIDNum",
    "ConnectedLineNum",
    "DestCallerIDNum",
    "Exten",
    "DialStatus",
    "DialString",
    "Cause",
    "BridgeNumChannels",
    "Result",
    "Digit",
)

LAB = {"caller_name": LAB_NAME, "ring": RING, "talk": TALK}
CLICK = {"origin": "267", "to": "269", "context": "DLPN_DialPlan269", "action_id": "click"}
RECORDED: dict[str, tuple[str, dict[str, Any]]] = {
    "13": ("internal", LAB),
    "14": ("internal", {**LAB, "outcome": "missed"}),
    "15": ("internal", {**LAB, "outcome": "busy"}),
    "16": ("internal", {**LAB, "outcome": "no_answer"}),
    "17": ("ring_group", {"answer_by": "268", "ring": RING, "talk": TALK}),
    "18": ("blind_transfer", {**LAB, "after": TALK}),
    "19": ("attended_transfer", {**LAB, "consult_ring": RING, "consult": TALK, "after": TALK}),
    "20": ("hold", {**LAB, "held": TALK, "after": TALK}),
    "21": ("click_to_call", {**CLICK, "origin_ring": RING, "ring": RING, "talk": TALK}),
    "22": ("click_to_call", {**CLICK, "outcome": "busy"}),
    "23": ("pickup", LAB),
}
"""Recording -> the scenario that replays it, with the lab's numbers and names."""

RACES: dict[str, list[tuple[tuple[str, str], tuple[str, str]]]] = {
    # The callee's bridge thread left before the caller's own hangup was reported;
    # recordings 13 and 23 show the order the simulator uses.
    "17": [(("BridgeLeave", "C3"), ("Hangup", "C1"))],
    # 267's Ringing overtook the DialBegin; recordings 13-20 show it after.
    "23": [(("Newstate", "C2"), ("NewConnectedLine", "C1"))],
}
"""Recording -> [(event moved, event it is moved after)] to get the simulator's order;
events named by (name, role of their Channel)."""

RACED_VALUES: dict[str, list[tuple[tuple[str, str], str, str]]] = {
    # ...and so the DialBegin's snapshot of 267 already said Ringing.
    "23": [(("DialBegin", "C1"), "DestChannelStateDesc", "Down")],
}
"""Recording -> [(event, header, value it has in the simulator's order)]."""


def _comparable(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.kind.value == "event" and m.name not in NOISE]


def _normalise(messages: list[Message]) -> list[tuple[Any, ...]]:
    """Each event as (name, header keys, meaningful values) with ids replaced by roles."""
    roles: dict[str, str] = {}

    def role(prefix: str, value: str | None) -> str | None:
        if value is None or value in ("", "<unknown>"):
            return value
        base = value.removesuffix("<ZOMBIE>")
        if base not in roles:
            roles[base] = f"{prefix}{sum(1 for r in roles.values() if r[0] == prefix) + 1}"
        return roles[base]

    out: list[tuple[Any, ...]] = []
    for message in messages:
        values: list[tuple[str, str | None]] = []
        for key in ROLE_KEYS:
            values.append((key, role("C", message.get(key))))
        for key in ID_KEYS:
            values.append((key, role("U", message.get(key))))
        for key in BRIDGE_KEYS:
            values.append((key, role("B", message.get(key))))
        values += [(key, message.get(key)) for key in VALUE_KEYS]
        keys = tuple(key for key, _ in message.headers)
        out.append((message.name, keys, tuple(v for v in values if v[1] is not None)))
    return out


def _apply_races(rec: str, events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def find(name: str, channel_role: str) -> int:
        return next(
            i for i, e in enumerate(events) if e[0] == name and ("Channel", channel_role) in e[2]
        )

    for moved, after in RACES.get(rec, []):
        event = events.pop(find(*moved))
        events.insert(find(*after) + 1, event)
    for which, key, value in RACED_VALUES.get(rec, []):
        index = find(*which)
        name, keys, values = events[index]
        events[index] = (name, keys, tuple((k, value if k == key else v) for k, v in values))
    return events


@pytest.mark.parametrize("rec", sorted(RECORDED))
async def test_asterisk20_scenario_is_the_recording_event_for_event(rec: str) -> None:
    scenario, options = RECORDED[rec]
    _, captured = await play(scenario, "asterisk20", **options)
    ours = _normalise(_comparable([m for _, m in captured]))
    recorded = _comparable([m for _, m in load_recording(rec).events])
    theirs = _apply_races(rec, _normalise(recorded))
    assert [e[0] for e in ours] == [e[0] for e in theirs]
    for number, (mine, real) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == real, f"event {number} ({real[0]})"


def test_every_recording_is_replayed_by_a_scenario() -> None:
    assert sorted(RECORDED) == [str(n) for n in range(13, 24)]


OLD_DIALECT_DIFFERENCES = {
    "Newstate": {"ConnectedLineNum", "ConnectedLineName"},
    "Hangup": {"ConnectedLineNum", "ConnectedLineName"},
}
"""Headers Asterisk 1.8 sends that the hand-written streams leave out (1.8's Newstate
and Hangup carry the connected line)."""

OLD_DIALECT: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    # The Dial End of an answered call comes when Dial returns, after the bridge (1.8's
    # app_dial.c sends it at ``out:``); the hand-written stream has it at the answer.
    # 1.8 sends no NewCallerid for the GSM channel there.
    "01": (
        "inbound",
        {"ring": RING, "talk": TALK},
        [
            "Newchannel",
            "Newstate",
            "Newchannel",
            "Dial",
            "Newstate",
            "Newstate",
            "Newstate",
            "Bridge",
            "Bridge",
            "Hangup",
            "Dial",
            "Hangup",
        ],
    ),
    # Dial returns after hanging up the phones it rang: Hangup, then Dial End CANCEL.
    "02": (
        "inbound",
        {"ring": RING, "outcome": "missed"},
        ["Newchannel", "Newstate", "Newchannel", "Dial", "Newstate", "Hangup", "Dial", "Hangup"],
    ),
    "03": (
        "inbound",
        {"outcome": "busy"},
        ["Newchannel", "Newstate", "Newchannel", "Dial", "Hangup", "Dial", "Hangup"],
    ),
    "04": (
        "hold",
        {"ring": RING, "talk": TALK, "held": TALK, "after": TALK},
        [
            "Newchannel",
            "Newstate",
            "Newchannel",
            "Dial",
            "Newstate",
            "Newstate",
            "Newstate",
            "Bridge",
            "Hold",
            "Hold",
            "Bridge",
            "Hangup",
            "Dial",
            "Hangup",
        ],
    ),
}
"""Hand-written stream -> the scenario, and the event names Asterisk 1.8 really sends."""


@pytest.mark.parametrize("script", sorted(OLD_DIALECT))
async def test_yeastar_scenario_has_the_old_dialect_shape(script: str) -> None:
    scenario, options, names = OLD_DIALECT[script]
    _, captured = await play(scenario, "yeastar", **options)
    ours = _comparable([m for _, m in captured])
    assert [m.name for m in ours] == names
    written = _comparable([m for _, m in load_script(script).events])
    shapes = {(m.name, m.get("SubEvent")): set(dict(m.headers)) for m in written}
    for message in ours:
        kind = (message.name, message.get("SubEvent"))
        extra = OLD_DIALECT_DIFFERENCES.get(message.name, set())
        assert set(dict(message.headers)) == shapes[kind] | extra, message


async def test_a_run_knows_its_channels_and_stages() -> None:
    async with session() as captured:
        run = await captured.sim.scenario("internal", outcome="busy")
        assert run.channels[:2] == ["SIP/269-00000000", "SIP/267-00000001"]
        assert not await run.until("ringing", timeout=5)  # a busy phone never rings
        await run.wait(5)
        assert run.done and not run.reached("answered")
        assert captured.sim.live_channels == []


async def test_scenario_arguments_are_checked() -> None:
    async with PbxSimulator() as sim:
        with pytest.raises(ValueError, match="unknown scenario 'parking'"):
            await sim.scenario("parking")
        with pytest.raises(ValueError, match="answer_by '300' is not one of"):
            await sim.scenario("ring_group", answer_by="300")
        with pytest.raises(ValueError, match="ring group '5000' has no members"):
            await sim.scenario("ring_group", group="5000")
        with pytest.raises(ValueError, match="outcome must be one of"):
            await sim.scenario("internal", outcome="lost")
        assert sim.live_channels == []


async def test_waiting_for_a_run_is_bounded() -> None:
    async with session() as captured:
        run = await captured.sim.scenario("internal", ring=RING, talk=30.0)
        with pytest.raises(TimeoutError):
            await run.wait(0.05)
        await captured.client.send_action(
            [("Action", "Hangup"), ("Channel", run.channels[0])], timeout=5
        )
        await run.wait(5)
        assert captured.sim.live_channels == []


async def test_yeastar_status_lists_dialplan_and_dialled_channels_as_asterisk_18() -> None:
    async with session("yeastar") as captured:
        run = await captured.sim.scenario("inbound", ring=RING, talk=30.0)
        assert await run.until("answered", timeout=5)
        listed = await captured.client.send_action([("Action", "Status")], timeout=5)
        await captured.client.send_action(
            [("Action", "Hangup"), ("Channel", run.channels[0])], timeout=5
        )
        await run.wait(5)
    gsm, phone = listed.events
    head = ["Event", "Privilege", "Channel", "CallerIDNum", "CallerIDName"]
    head += ["ConnectedLineNum", "ConnectedLineName"]
    bridged = ["BridgedChannel", "BridgedUniqueid", "Uniqueid", "ActionID"]
    assert [k for k, _ in gsm.headers] == [
        *head,
        "Accountcode",
        "ChannelState",
        "ChannelStateDesc",
        "Context",
        "Extension",
        "Priority",
        "Seconds",
        *bridged,
    ]
    assert [k for k, _ in phone.headers] == [*head, "Account", "State", *bridged]
    assert (gsm.get("Extension"), gsm.get("BridgedChannel")) == ("269", phone.get("Channel"))
    assert (phone.get("State"), phone.get("BridgedUniqueid")) == ("Up", gsm.get("Uniqueid"))
    assert listed.complete is not None and listed.complete.get("Items") == "2"


async def test_a_run_is_over_when_the_simulator_stops() -> None:
    sim = PbxSimulator(call_step_delay=0.01)
    await sim.start()
    run = await sim.scenario("hold", ring=0.01, talk=30.0)
    assert await run.until("answered", timeout=5)
    await sim.stop()
    await run.wait(1)
    assert run.done and sim.live_channels == []


async def test_yeastar_redirect_of_a_dialled_phone_is_an_async_goto_masquerade() -> None:
    async with session("yeastar") as captured:
        run = await captured.sim.scenario("inbound", ring=RING, talk=30.0)
        assert await run.until("answered", timeout=5)
        phone = run.channels[1]
        moved = await captured.client.send_action(
            [
                ("Action", "Redirect"),
                ("Channel", phone),
                ("Context", "DLPN_DialPlan269"),
                ("Exten", "700"),
                ("Priority", "1"),
            ],
            timeout=5,
        )
        assert moved.response.get("Message") == "Redirect successful"
        events = await captured.finish(run)
    tail = [m for _, m in events if m.name not in NOISE][-10:]
    zombie = f"AsyncGoto/{phone}<ZOMBIE>"
    assert [(m.name, m.get("Channel") or m.get("Clone")) for m in tail] == [
        ("Newchannel", f"AsyncGoto/{phone}"),
        ("Masquerade", phone),
        ("Rename", phone),
        ("Rename", f"AsyncGoto/{phone}"),
        ("Rename", f"{phone}<MASQ>"),
        ("Bridge", None),
        ("Hangup", zombie),
        ("Dial", "YSGSM/11-1"),
        ("Hangup", "YSGSM/11-1"),
        ("Hangup", phone),
    ]
    unlink = next(m for m in tail if m.name == "Bridge")
    assert (unlink.get("Bridgestate"), unlink.get("Channel2")) == ("Unlink", zombie)
    stolen = next(m for m in tail if m.name == "Newchannel")
    last = tail[-1]
    assert (last.get("Channel"), last.get("Uniqueid")) == (phone, stolen.get("Uniqueid"))
    waits = [m for _, m in events if m.name == "Newexten" and m.get("Extension") == "700"]
    assert [m.get("Application") for m in waits] == ["Answer", "Wait"]
