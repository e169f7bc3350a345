"""Originate, live-call lists, Hangup, Redirect and simulated incoming calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.ami_peer import Connect, RawAmi, keys
from tests.support.simulator import fast_simulator
from tests.support.transcripts import transcript
from tests.support.waiting import until
from vwell_pbx.protocol import AmiParser, Message
from vwell_pbx.simulator import PbxSimulator, SpanState

MODELLED = {
    "Newchannel",
    "Newstate",
    "LocalBridge",
    "DialBegin",
    "DialState",
    "DialEnd",
    "OriginateResponse",
    "BridgeCreate",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "Hangup",
}
UNIQUEID = re.compile(r"^1795838923\.\d+$")
# The example events of the original product's documentation (a Yeastar MyPBX).
ORIGINAL_EVENTS = Path(__file__).resolve().parents[1] / "data" / "seed" / "events.txt"


def original_gsm_call_events() -> list[Message]:
    """The original's example events of the GSM call on YSGSM/11-1, in order."""
    parser = AmiParser(expect_greeting=False)
    # The documentation's last event has no blank line after it.
    parser.receive_data(ORIGINAL_EVENTS.read_bytes() + b"\n")
    events = []
    while isinstance(item := parser.next_event(), Message):
        events.append(item)
    return [event for event in events if event.get("Channel") == "YSGSM/11-1"]


def _originate(
    action_id: str,
    channel: str = "Local/100@DLPN_DialPlan269",
    exten: str = "267",
    *extra: tuple[str, str],
) -> list[tuple[str, str]]:
    return [
        ("Action", "Originate"),
        ("ActionID", action_id),
        ("Channel", channel),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", exten),
        ("Priority", "1"),
        *extra,
    ]


def _is_hangup_of(prefix: str) -> object:
    return lambda m: m.name == "Hangup" and (m.get("Channel") or "").startswith(prefix)


async def test_async_local_originate_event_order_matches_transcript_06(connect: Connect) -> None:
    client = await connect(login=True)
    queued = await client.action(
        *_originate(
            "orig-async-1",
            "Local/100@DLPN_DialPlan269",
            "267",
            ("CallerID", '"AMI Test" <5551000>'),
            ("Timeout", "30000"),
            ("Variable", "FOO=one"),
            ("Variable", "BAR=two"),
            ("Account", "lab-acct"),
            ("Async", "true"),
        )
    )
    assert queued.headers == (
        ("Response", "Success"),
        ("ActionID", "orig-async-1"),
        ("Message", "Originate successfully queued"),
    )
    flow = await client.read_until(_is_hangup_of("SIP/267"))  # type: ignore[arg-type]
    ours = [m.name for m in flow if m.name in MODELLED]
    recorded = [
        m.name
        for conn, direction, m in transcript("06")
        if direction == "S->C" and m.kind.value == "event" and m.name in MODELLED
    ]
    assert ours == recorded

    answer = next(m for m in flow if m.name == "OriginateResponse")
    golden = next(m for _, _, m in transcript("06") if m.name == "OriginateResponse")
    assert keys(answer) == keys(golden)
    assert answer.get("ActionID") == "orig-async-1"
    assert (answer.get("Response"), answer.get("Reason")) == ("Success", "4")
    assert answer.get("Channel", "").endswith(";1")
    assert (answer.get("CallerIDNum"), answer.get("CallerIDName")) == ("5551000", "AMI Test")
    first = next(m for m in flow if m.name == "Newchannel")
    assert keys(first) == keys(next(m for _, _, m in transcript("06") if m.name == "Newchannel"))

    uniqueids = {m.get("Uniqueid") for m in flow if m.name == "Newchannel"}
    assert len(uniqueids) == 3 and all(UNIQUEID.match(u or "") for u in uniqueids)
    assert {m.get("Linkedid") for m in flow if m.name == "Newchannel"} == {answer.get("Uniqueid")}
    varsets = {(m.get("Variable"), m.get("Value")) for m in flow if m.name == "VarSet"}
    assert {("FOO", "one"), ("BAR", "two")} <= varsets


async def test_sync_originate_answers_before_the_events(connect: Connect) -> None:
    client = await connect(login=True)
    client.send(
        ("Action", "Originate"),
        ("ActionID", "sync"),
        ("Channel", "Local/800@DLPN_DialPlan269"),
        ("Application", "Wait"),
        ("Data", "1"),
        ("CallerID", "Sync <1111>"),
    )
    first = await client.next()
    assert first.headers == (
        ("Response", "Success"),
        ("ActionID", "sync"),
        ("Message", "Originate successfully queued"),
    )
    flow = await client.read_until(
        lambda m: m.name == "Hangup" and (m.get("Channel") or "").endswith(";2")
    )
    names = [m.name for m in flow]
    assert names[0] == "Newchannel"
    assert "OriginateResponse" not in names
    assert "DialEnd" in names


@pytest.mark.parametrize(
    ("channel", "reason", "events"),
    [
        ("SIP/100", "0", False),  # unregistered peer, transcript 09
        ("Bogus/123", "0", False),  # unknown technology
        ("Local/900@DLPN_DialPlan269", "5", True),  # busy
        ("SIP/901", "3", True),  # rings, nobody answers
        ("SIP/903", "8", True),
    ],
)  # congestion
async def test_async_originate_failures(
    connect: Connect, channel: str, reason: str, events: bool
) -> None:
    client = await connect(login=True)
    queued = await client.action(*_originate("fail", channel, "800", ("Async", "true")))
    assert queued.get("Message") == "Originate successfully queued"
    flow = await client.read_until(lambda m: m.name == "OriginateResponse")
    answer = flow[-1]
    golden = next(
        m
        for _, _, m in transcript("09")
        if m.name == "OriginateResponse" and m.get("Response") == "Failure"
    )
    assert keys(answer) == keys(golden)
    assert answer.headers[2:] == (
        ("ActionID", "fail"),
        ("Response", "Failure"),
        ("Channel", channel),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "800"),
        ("Reason", reason),
        ("Uniqueid", "<unknown>"),
        ("CallerIDNum", "<unknown>"),
        ("CallerIDName", "<unknown>"),
    )
    assert any(m.name == "Newchannel" for m in flow) is events


@pytest.mark.parametrize(
    ("channel", "name", "reason"),
    [("SIP/269", "OriginateSuccess", "4"), ("SIP/900", "OriginateFailure", "5")],
)
async def test_legacy_originate_events_are_asterisk_14s(
    connect: Connect, channel: str, name: str, reason: str
) -> None:
    async with fast_simulator(
        dialect="yeastar", legacy_originate_events=True, call_hold=0.2
    ) as sim:
        client = await connect(sim, login=True)
        await client.action(
            *_originate("old", channel, "267", ("Async", "yes"), ("CallerID", "<267>"))
        )
        flow = await client.read_until(lambda m: m.name.startswith("Originate"))
        answer = flow[-1]
        # manager.c of Asterisk 1.4 (fast_originate): no Response header, the verdict is
        # in the name, and the deprecated CallerID comes before CallerIDNum.
        assert keys(answer) == [
            "Event",
            "Privilege",
            "ActionID",
            "Channel",
            "Context",
            "Exten",
            "Reason",
            "Uniqueid",
            "CallerID",
            "CallerIDNum",
            "CallerIDName",
        ]
        assert (answer.name, answer.action_id, answer.get("Reason")) == (name, "old", reason)
        assert (answer.get("Channel"), answer.get("CallerID")) == (channel, "267")
        uniqueid = answer.get("Uniqueid") or ""
        assert (uniqueid == "<null>") is (name == "OriginateFailure")
        assert not any(m.name == "OriginateResponse" for m in flow)


async def test_sync_originate_failure_and_validation(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    failed = await client.action(*_originate("s1", "SIP/100", "800"))
    assert failed.headers == (
        ("Response", "Error"),
        ("ActionID", "s1"),
        ("Message", "Originate failed"),
    )
    missing = await client.action(
        ("Action", "Originate"), ("ActionID", "s2"), ("Context", "x"), ("Exten", "1")
    )
    assert missing.get("Message") == "Channel not specified"
    bad = await client.action(
        ("Action", "Originate"),
        ("ActionID", "s3"),
        ("Channel", "SIP/269"),
        ("Exten", "1"),
        ("Priority", "x"),
    )
    assert bad.get("Message") == "Invalid priority"


async def test_unknown_context_when_contexts_configured(connect: Connect) -> None:
    async with fast_simulator(contexts=["DLPN_DialPlan269"], auth_failure_delay=0.01) as sim:
        client = await connect(sim, login=True, events="off")
        answer = await client.action(
            ("Action", "Originate"),
            ("ActionID", "ctx"),
            ("Channel", "Local/800@DLPN_DialPlan269"),
            ("Context", "nosuchcontext"),
            ("Exten", "1"),
            ("Async", "true"),
        )
        assert answer.headers == (
            ("Response", "Error"),
            ("ActionID", "ctx"),
            ("Message", "Extension does not exist."),
        )


async def test_channel_ids_become_uniqueids(connect: Connect) -> None:
    client = await connect(login=True)
    await client.action(
        ("Action", "Originate"),
        ("ActionID", "ids"),
        ("Channel", "Local/800@DLPN_DialPlan269"),
        ("Application", "Echo"),
        ("Async", "true"),
        ("ChannelId", "lab-chan-id-1"),
        ("OtherChannelId", "lab-chan-id-2"),
    )
    answer = await client.event(lambda m: m.name == "OriginateResponse")
    assert answer.get("Uniqueid") == "lab-chan-id-1"
    assert (answer.get("Application"), answer.get("Data")) == ("Echo", "")
    two = await client.event(
        lambda m: m.name == "Newchannel" and m.get("Uniqueid") == "lab-chan-id-2"
    )
    assert two.get("Linkedid") == "lab-chan-id-1"


async def _bridged_call(pbx: PbxSimulator, client: RawAmi, action_id: str) -> list[Message]:
    pbx.engine.hold = 30  # keep the call up while the test looks at it
    client.events.clear()
    await client.action(
        *_originate(
            action_id,
            "Local/100@DLPN_DialPlan269",
            "267",
            ("Variable", "FOO=one,BAR=two"),
            ("CallerID", '"AMI Test" <5551000>'),
            ("Async", "true"),
        )
    )
    await client.event(
        lambda m: m.name == "BridgeEnter" and (m.get("Channel") or "").startswith("Local")
    )
    return list(client.events)


async def test_lists_and_variables_of_a_live_call(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    await _bridged_call(pbx, client, "live")
    assert len(pbx.live_channels) == 3
    one = next(name for name in pbx.live_channels if name.endswith(";1"))
    client.send(("Action", "CoreShowChannels"), ("ActionID", "csc"))
    items = await client.read_until(lambda m: m.name == "CoreShowChannelsComplete")
    assert [m.name for m in items] == ["Success"] + ["CoreShowChannel"] * 3 + [
        "CoreShowChannelsComplete"
    ]
    golden = next(m for _, _, m in transcript("06") if m.name == "CoreShowChannel")
    assert keys(items[1]) == keys(golden)
    assert all(m.action_id == "csc" for m in items)
    assert items[-1].get("ListItems") == "3"

    client.send(
        ("Action", "Status"), ("ActionID", "st"), ("Channel", one), ("Variables", "FOO,BAR")
    )
    status = await client.read_until(lambda m: m.name == "StatusComplete")
    item = status[1]
    assert item.get_all("Variable") == ["FOO=one", "BAR=two"]
    assert item.headers[-1] == ("ActionID", "st")
    golden_status = next(
        m for _, _, m in transcript("06") if m.name == "Status" and "Variable" in m
    )
    assert keys(item) == keys(golden_status)
    getvar = await client.action(
        ("Action", "Getvar"), ("ActionID", "gv"), ("Channel", one), ("Variable", "CALLERID(all)")
    )
    assert getvar.get("Value") == '"AMI Test" <5551000>'
    command = await client.action(
        ("Action", "Command"), ("ActionID", "cmd"), ("Command", "core show channels")
    )
    outputs = command.get_all("Output")
    assert outputs[0].startswith("Channel") and outputs[-3:] == [
        "3 active channels",
        "1 active call",
        "1 call processed",
    ]


async def test_hangup_single_and_by_regex(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    await _bridged_call(pbx, client, "h1")
    sip = next(name for name in pbx.live_channels if name.startswith("SIP/"))
    hung = await client.action(("Action", "Hangup"), ("ActionID", "h"), ("Channel", sip))
    assert hung.get("Message") == "Channel Hungup"
    await client.event(lambda m: m.name == "Hangup" and m.get("Channel") == sip)
    await client.event(lambda m: m.name == "BridgeDestroy")
    assert pbx.live_channels == []
    missing = await client.action(("Action", "Hangup"), ("ActionID", "hm"), ("Channel", sip))
    assert missing.get("Message") == "No such channel"

    await _bridged_call(pbx, client, "h2")
    client.send(
        ("Action", "Hangup"), ("ActionID", "rx"), ("Channel", "/^Local\\/.*$/"), ("Cause", "17")
    )
    listed = await client.read_until(lambda m: m.name == "ChannelsHungupListComplete")
    responses = [m for m in listed if m.action_id == "rx"]
    assert [m.name for m in responses] == [
        "Success",
        "ChannelHungup",
        "ChannelHungup",
        "ChannelsHungupListComplete",
    ]
    assert responses[0].get("Message") == "Channels hung up will follow"
    assert responses[-1].get("ListItems") == "2"
    assert keys(responses[1]) == ["Event", "Channel", "ActionID"]
    busy = await client.event(lambda m: m.name == "Hangup" and m.get("Cause") == "17")
    assert busy.get("Cause-txt") == "User busy"


async def test_redirect_single_dual_and_missing(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    await _bridged_call(pbx, client, "r1")
    sip = next(name for name in pbx.live_channels if name.startswith("SIP/"))
    moved = await client.action(
        ("Action", "Redirect"),
        ("ActionID", "redirect-1"),
        ("Channel", sip),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "700"),
        ("Priority", "1"),
    )
    assert moved.headers == (
        ("Response", "Success"),
        ("ActionID", "redirect-1"),
        ("Message", "Redirect successful"),
    )
    newexten = await client.event(
        lambda m: m.name == "Newexten" and m.get("Channel") == sip and m.get("Exten") == "700"
    )
    assert newexten.get("Context") == "DLPN_DialPlan269"
    left = await client.event(lambda m: m.name == "BridgeLeave" and m.get("Channel") == sip)
    assert left.get("Exten") == "700"  # it leaves the bridge already at its new place
    await client.event(_is_hangup_of("Local"))  # type: ignore[arg-type]

    # 700 is Answer + Wait on the lab PBX (transcript 07, recording 18): it stays there.
    def runs_wait(m: Message) -> bool:
        return m.name == "Newexten" and m.get("Channel") == sip and m.get("Application") == "Wait"

    await client.event(runs_wait)
    assert sip in pbx.live_channels
    assert not any(name.startswith("Local") for name in pbx.live_channels)

    # A phone extension is dialled from there.
    again = await client.action(
        ("Action", "Redirect"),
        ("ActionID", "redirect-2"),
        ("Channel", sip),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "268"),
    )
    assert again.get("Message") == "Redirect successful"
    dialled = await client.event(lambda m: m.name == "DialBegin" and m.get("Channel") == sip)
    assert (dialled.get("DestChannel") or "").startswith("SIP/268-")
    assert dialled.get("Exten") == "268"

    missing = await client.action(
        ("Action", "Redirect"),
        ("ActionID", "redirect-missing"),
        ("Channel", "SIP/267-ffffffff"),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "700"),
    )
    assert missing.headers == (
        ("Response", "Error"),
        ("ActionID", "redirect-missing"),
        ("Message", "Channel does not exist: SIP/267-ffffffff"),
    )

    for name in list(pbx.live_channels):
        await client.action(("Action", "Hangup"), ("ActionID", f"x-{name}"), ("Channel", name))
    await _bridged_call(pbx, client, "r2")
    one = next(name for name in pbx.live_channels if name.endswith(";1"))
    sip = next(name for name in pbx.live_channels if name.startswith("SIP/267"))
    dual = await client.action(
        ("Action", "Redirect"),
        ("ActionID", "redirect-dual"),
        ("Channel", one),
        ("ExtraChannel", sip),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "700"),
        ("ExtraContext", "DLPN_DialPlan269"),
        ("ExtraExten", "701"),
    )
    assert dual.get("Message") == "Dual Redirect successful"
    await client.event(lambda m: m.name == "BridgeDestroy" and True)
    assert one in pbx.live_channels and sip in pbx.live_channels


async def test_incoming_gsm_call_asterisk20(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    name = await pbx.incoming_call("+79787342741", span=11, to="269", hold=0.3)
    assert name == "YSGSM/11-1"
    assert name in pbx.live_channels
    newchannel = await client.event(lambda m: m.name == "Newchannel" and m.get("Channel") == name)
    assert newchannel.get("Context") == "DID_trunk_11"
    assert newchannel.get("CallerIDNum") == "+79787342741"
    dial = await client.event(lambda m: m.name == "DialBegin" and m.get("Channel") == name)
    assert (dial.get("DestChannel") or "").startswith("SIP/269-")
    await client.event(lambda m: m.name == "BridgeEnter" and m.get("Channel") == name)
    await client.event(lambda m: m.name == "Hangup" and m.get("Channel") == name)
    assert pbx.live_channels == []
    names = [m.name for m in client.events if m.get("Channel") == name]
    assert names[:3] == ["Newchannel", "NewCallerid", "Newstate"]


async def test_incoming_call_not_answered(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    name = await pbx.incoming_call(answer=False, hold=0.1)
    ringing = [ch for ch in pbx.live_channels if ch.startswith("SIP/269")]
    assert ringing and name in pbx.live_channels
    end = await client.event(lambda m: m.name == "DialEnd" and m.get("Channel") == name)
    assert end.get("DialStatus") == "CANCEL"


async def test_incoming_call_yeastar_dialect(connect: Connect) -> None:
    async with fast_simulator(dialect="yeastar", auth_failure_delay=0.01) as sim:
        client = await connect(sim, login=True)
        assert client.greeting is not None
        name = await sim.incoming_call("+79787342741", span=11, to="269", hold=0.1)
        assert name == "YSGSM/11-1"
        newchannel_example, dial_example, _ = original_gsm_call_events()
        seed = await client.event(lambda m: m.name == "Newchannel" and m.get("Channel") == name)
        assert keys(seed) == keys(newchannel_example)
        assert keys(seed) == [
            "Event",
            "Privilege",
            "Channel",
            "ChannelState",
            "ChannelStateDesc",
            "CallerIDNum",
            "CallerIDName",
            "AccountCode",
            "Exten",
            "Context",
            "Uniqueid",
        ]
        assert (seed.get("ChannelState"), seed.get("ChannelStateDesc")) == ("1", "Rsrvd")
        assert seed.get("Context") == "DID_trunk_11"
        begin = await client.event(lambda m: m.name == "Dial" and m.get("SubEvent") == "Begin")
        assert keys(begin) == keys(dial_example)
        assert keys(begin) == [
            "Event",
            "Privilege",
            "SubEvent",
            "Channel",
            "Destination",
            "CallerIDNum",
            "CallerIDName",
            "UniqueID",
            "DestUniqueID",
            "Dialstring",
        ]
        assert begin.get("Dialstring") == "269"
        link = await client.event(lambda m: m.name == "Bridge")
        assert (link.get("Bridgestate"), link.get("Channel1")) == ("Link", name)
        unlink = await client.event(
            lambda m: m.name == "Bridge" and m.get("Bridgestate") == "Unlink"
        )
        assert unlink.get("Channel2", "").startswith("SIP/269-")
        await client.event(lambda m: m.name == "Hangup" and m.get("Channel") == name)
        assert not any(
            m.name in ("DialBegin", "BridgeEnter", "SoftHangupRequest") for m in client.events
        )


async def test_extension_behaviours_are_configurable(connect: Connect) -> None:
    async with fast_simulator(extensions={"269": "busy"}) as sim:
        client = await connect(sim, login=True)
        name = await sim.incoming_call(to="269")
        end = await client.event(lambda m: m.name == "DialEnd" and m.get("Channel") == name)
        assert end.get("DialStatus") == "BUSY"
        await client.event(lambda m: m.name == "Hangup" and m.get("Channel") == name)
        sim.extensions["SIP/269"] = sim.extensions["269"].__class__("answer")
        client.events.clear()
        await sim.incoming_call(to="269")
        assert (await client.event(lambda m: m.name == "DialEnd")).get("DialStatus") == "ANSWER"


async def test_background_traffic(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    pbx.spans.append(SpanState(number=3))
    pbx.start_traffic(200)
    await client.event(lambda m: m.name == "BridgeEnter")
    await pbx.stop_traffic()
    calls = {
        m.get("Channel")
        for m in client.events
        if m.name == "Newchannel" and (m.get("Channel") or "").startswith("YSGSM/")
    }
    assert calls
    await until(lambda: not pbx.live_channels, 5)
