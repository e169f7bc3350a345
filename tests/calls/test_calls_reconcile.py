"""Reconciliation after an AMI (re)connect: live calls rebuilt from the channel list.

The channel lists are real where we have them (transcript 06 asked Asterisk 20 for
``CoreShowChannels`` and ``Status`` in the middle of a call) and written in the old
dialect's ``Status`` layout otherwise.
"""

from __future__ import annotations

from tests.calls.replay import BASE, TRANSCRIPTS, Near, at, feed, load_recording
from vwell_pbx.calls import CallTracker
from vwell_pbx.protocol import Message

TRANSCRIPT06 = load_recording("06", folder=TRANSCRIPTS, conn="conn1")


def items(name: str, action_id: str) -> list[Message]:
    return [m for _, m in TRANSCRIPT06.events if m.name == name and m.action_id == action_id]


CORE_SHOW_CHANNELS = items("CoreShowChannel", "conn1-2")
STATUS = items("Status", "conn1-3")
LISTED_AT = next(t for t, m in TRANSCRIPT06.events if m.name == "CoreShowChannel")


def after_listing() -> list[tuple[float, Message]]:
    return [(t, m) for t, m in TRANSCRIPT06.events if t > LISTED_AT]


def test_the_real_listings_have_the_three_channels_of_the_call() -> None:
    assert [m.get("Channel") for m in CORE_SHOW_CHANNELS] == [
        "SIP/267-00000000",
        "Local/100@DLPN_DialPlan269-00000001;2",
        "Local/100@DLPN_DialPlan269-00000001;1",
    ]
    assert [m.get("Channel") for m in STATUS] == [m.get("Channel") for m in CORE_SHOW_CHANNELS]


def test_a_call_found_talking_by_core_show_channels_is_rebuilt_and_ends_later() -> None:
    tracker = CallTracker(pbx="lab")
    events = list(tracker.reconcile(CORE_SHOW_CHANNELS, BASE + LISTED_AT))
    assert [e.name for e in events] == ["call.answered"]
    call = events[0].call
    assert call.call_id == "1795838923.2"
    assert call.status == "up"
    assert call.channels == ("SIP/267-00000000",)
    assert call.extension == "267"
    assert call.to_number == "267"  # the Local half dials exten 267
    assert call.extensions == frozenset({"267"})
    # Duration: 00:00:02, so the channels were made two seconds before the listing.
    assert call.started_at == at("20.813")
    assert call.answered_at == at("20.813")  # estimated: the called phone's own age
    assert [c.call_id for c in tracker.active()] == ["1795838923.2"]

    rest = feed(tracker, after_listing())
    assert [e.name for e in rest] == ["call.ended"]
    assert rest[0].call.end_reason == "completed"
    assert rest[0].call.talk_seconds == Near(29.5, tolerance=0.1)
    assert tracker.active() == []
    assert tracker.tracked_channels == 0


def test_a_call_found_by_status_items_is_the_same_call() -> None:
    tracker = CallTracker(pbx="lab")
    events = tracker.reconcile(STATUS, BASE + LISTED_AT)
    assert [(e.name, e.call.call_id, e.call.channels) for e in events] == [
        ("call.answered", "1795838923.2", ("SIP/267-00000000",))
    ]


def test_reconciling_a_call_already_known_reports_nothing_new() -> None:
    tracker = CallTracker(pbx="lab")
    before = [(t, m) for t, m in TRANSCRIPT06.events if t <= LISTED_AT]
    assert [e.name for e in feed(tracker, before)] == ["call.ringing", "call.answered"]
    assert list(tracker.reconcile(CORE_SHOW_CHANNELS, BASE + LISTED_AT)) == []
    assert [c.call_id for c in tracker.active()] == ["1795838923.2"]
    assert [e.name for e in feed(tracker, after_listing())] == ["call.ended"]


def test_pbx_restarted_mid_call_the_call_ends_unknown_and_late_events_are_ignored() -> None:
    stream = load_recording("13").events
    talking = next(i for i, (_, m) in enumerate(stream) if m.name == "BridgeEnter") + 2
    tracker = CallTracker(pbx="lab")
    feed(tracker, stream[:talking])
    assert [c.status for c in tracker.active()] == ["up"]
    # After the reconnect the PBX lists no channel at all.
    events = tracker.reconcile([], BASE + 5.0)
    assert [(e.name, e.call.end_reason, e.call.status, e.call.channels) for e in events] == [
        ("call.ended", "unknown", "ended", ())
    ]
    assert events[0].call.ended_at == at("25.000")
    assert tracker.active() == []
    assert tracker.tracked_channels == 0
    # Events about the vanished channels that still arrive start nothing.
    assert feed(tracker, stream[talking:]) == []
    assert tracker.active() == []


def test_a_call_left_with_only_local_channels_is_not_kept_up() -> None:
    tracker = CallTracker(pbx="lab")
    before = [(t, m) for t, m in TRANSCRIPT06.events if t <= LISTED_AT]
    feed(tracker, before)
    only_locals = [m for m in CORE_SHOW_CHANNELS if m.get("Channel", "").startswith("Local/")]
    events = tracker.reconcile(only_locals, BASE + LISTED_AT)
    assert [(e.name, e.call.end_reason) for e in events] == [("call.ended", "unknown")]
    assert tracker.active() == []


def core_show_channel(
    channel: str,
    uniqueid: str,
    linkedid: str,
    state: str,
    *,
    number: str,
    name: str,
    exten: str = "",
    bridge: str = "",
    duration: str = "00:00:03",
) -> Message:
    return Message.from_mapping(
        {
            "Event": "CoreShowChannel",
            "ActionID": "reconnect-1",
            "Channel": channel,
            "ChannelState": {"Ring": "4", "Ringing": "5", "Up": "6"}[state],
            "ChannelStateDesc": state,
            "CallerIDNum": number,
            "CallerIDName": name,
            "ConnectedLineNum": "<unknown>",
            "ConnectedLineName": "<unknown>",
            "Language": "en",
            "AccountCode": "",
            "Context": "DLPN_DialPlan269",
            "Exten": exten,
            "Priority": "1",
            "Uniqueid": uniqueid,
            "Linkedid": linkedid,
            "Application": "Dial" if exten else "AppDial",
            "ApplicationData": "",
            "Duration": duration,
            "BridgeId": bridge,
        }
    )


def test_a_ringing_call_found_after_reconnect_rings_again_for_the_crm() -> None:
    tracker = CallTracker(pbx="lab")
    listing = [
        core_show_channel(
            "SIP/269-00000100", "1.100", "1.100", "Ring", number="269", name="A", exten="267"
        ),
        core_show_channel(
            "SIP/267-00000101", "1.101", "1.100", "Ringing", number="267", name="Ext 267"
        ),
    ]
    events = tracker.reconcile(listing, BASE + 10.0)
    assert [(e.name, e.call.extension, e.call.status) for e in events] == [
        ("call.ringing", "267", "ringing")
    ]
    call = events[0].call
    assert (call.from_number, call.from_name, call.direction) == ("269", "A", "internal")
    assert call.started_at == at("27.000")


def test_a_call_missed_by_the_tracker_during_a_gap_is_caught_up() -> None:
    # Known ringing before the disconnect; answered while we were away.
    stream = load_recording("13").events
    ringing = next(i for i, (_, m) in enumerate(stream) if m.name == "DialState") + 1
    tracker = CallTracker(pbx="lab")
    assert [e.name for e in feed(tracker, stream[:ringing])] == ["call.ringing"]
    listing = [
        core_show_channel(
            "SIP/269-00000043",
            "1796172254.77",
            "1796172254.77",
            "Up",
            number="269",
            name="AMI Lab 269",
            exten="267",
            bridge="b1",
        ),
        core_show_channel(
            "SIP/267-00000044",
            "1796172254.78",
            "1796172254.77",
            "Up",
            number="267",
            name="Ext 267",
            bridge="b1",
        ),
    ]
    events = tracker.reconcile(listing, BASE + 4.0)
    assert [(e.name, e.call.extension, e.call.answered_at) for e in events] == [
        ("call.answered", "267", at("24.000"))
    ]


def test_one_channel_of_a_ring_group_vanishing_leaves_the_call_alive() -> None:
    stream = load_recording("17").events
    both_ring = next(
        i
        for i, (_, m) in enumerate(stream)
        if m.name == "DialState" and m.get("DestChannel") == "SIP/268-0000004d"
    )
    tracker = CallTracker(pbx="lab")
    feed(tracker, stream[: both_ring + 1])
    listing = [
        core_show_channel(
            "SIP/269-0000004b", "1796172301.85", "1796172301.85", "Ring", number="269", name="x"
        ),
        core_show_channel(
            "SIP/268-0000004d", "1796172301.87", "1796172301.85", "Ringing", number="268", name="y"
        ),
    ]
    assert list(tracker.reconcile(listing, BASE + 2.0)) == []
    (call,) = tracker.active()
    assert call.channels == ("SIP/269-0000004b", "SIP/268-0000004d")


def status_1_8(
    channel: str, uniqueid: str, state: str, seconds: int, *, number: str, peer: str = ""
) -> Message:
    """An Asterisk 1.8 ``Status`` item: no Linkedid; the bridged peer by name and id."""
    fields = {
        "Event": "Status",
        "Privilege": "Call",
        "Channel": channel,
        "CallerIDNum": number,
        "CallerIDName": number,
        "ConnectedLineNum": "",
        "ConnectedLineName": "",
        "Accountcode": "",
        "ChannelState": {"Ring": "4", "Up": "6"}[state],
        "ChannelStateDesc": state,
        "Context": "DLPN_DialPlan269",
        "Extension": "",
        "Priority": "1",
        "Seconds": str(seconds),
        "Uniqueid": uniqueid,
        "ActionID": "reconnect-2",
    }
    if peer:
        peer_name, peer_id = peer.split("|")
        fields["BridgedChannel"] = peer_name
        fields["BridgedUniqueid"] = peer_id
    return Message.from_mapping(fields)


def test_old_dialect_status_groups_bridged_peers_into_one_inbound_call() -> None:
    tracker = CallTracker(pbx="mypbx")
    listing = [
        status_1_8(
            "SIP/269-000015bf",
            "1505301525.6255",
            "Up",
            12,
            number="269",
            peer="YSGSM/11-1|1505301525.6254",
        ),
        status_1_8(
            "YSGSM/11-1",
            "1505301525.6254",
            "Up",
            15,
            number="+79787342741",
            peer="SIP/269-000015bf|1505301525.6255",
        ),
    ]
    events = tracker.reconcile(listing, BASE + 30.0)
    assert [e.name for e in events] == ["call.answered"]
    call = events[0].call
    # The oldest channel is the caller: its Uniqueid is the call's id.
    assert call.call_id == "1505301525.6254"
    assert (call.direction, call.from_number, call.trunk) == ("inbound", "89787342741", "YSGSM/11")
    assert (call.extension, call.started_at, call.answered_at) == (
        "269",
        at("35.000"),
        at("38.000"),
    )
    assert set(call.channels) == {"YSGSM/11-1", "SIP/269-000015bf"}
    hangups = [
        Message.build(("Event", "Hangup"), ("Channel", name), ("Uniqueid", uid), ("Cause", "16"))
        for name, uid in (
            ("SIP/269-000015bf", "1505301525.6255"),
            ("YSGSM/11-1", "1505301525.6254"),
        )
    ]
    ended = feed(tracker, [(40.0, hangups[0]), (40.0, hangups[1])])
    assert [(e.name, e.call.end_reason, e.call.talk_seconds) for e in ended] == [
        ("call.ended", "completed", 22.0)
    ]


def core_show_channel_1_8(
    channel: str, uniqueid: str, state: str, application: str, data: str
) -> Message:
    """An Asterisk 1.8 ``CoreShowChannel`` item: no Linkedid; what the channel runs."""
    return Message.from_mapping(
        {
            "Event": "CoreShowChannel",
            "ActionID": "reconnect-3",
            "Channel": channel,
            "UniqueID": uniqueid,
            "Context": "DLPN_DialPlan269",
            "Extension": "267",
            "Priority": "2",
            "ChannelState": {"Ring": "4", "Ringing": "5"}[state],
            "ChannelStateDesc": state,
            "Application": application,
            "ApplicationData": data,
            "CallerIDnum": channel.split("/")[1].split("-", 1)[0],
            "Duration": "00:00:03",
            "AccountCode": "",
            "BridgedChannel": "",
            "BridgedUniqueID": "",
        }
    )


def test_old_dialect_core_show_channels_joins_a_ringing_phone_to_its_dialler() -> None:
    tracker = CallTracker(pbx="mypbx")
    listing = [
        core_show_channel_1_8("SIP/269-00000010", "1.10", "Ring", "Dial", "SIP/267&SIP/268,30"),
        core_show_channel_1_8("SIP/267-00000011", "1.11", "Ringing", "AppDial", "(Outgoing Line)"),
    ]
    events = tracker.reconcile(listing, BASE)
    assert [(e.name, e.call.call_id, e.call.extension) for e in events] == [
        ("call.ringing", "1.10", "267")
    ]
    assert events[0].call.channels == ("SIP/269-00000010", "SIP/267-00000011")
    assert (events[0].call.from_number, events[0].call.to_number) == ("269", "267")


def test_old_dialect_core_show_channels_leaves_an_ambiguous_ringing_phone_alone() -> None:
    # Two callers ring 267 (call waiting): nothing says which ringing channel is whose.
    tracker = CallTracker(pbx="mypbx")
    listing = [
        core_show_channel_1_8("SIP/269-00000010", "1.10", "Ring", "Dial", "SIP/267,30"),
        core_show_channel_1_8("SIP/268-00000012", "1.12", "Ring", "Dial", "SIP/267,30"),
        core_show_channel_1_8("SIP/267-00000011", "1.11", "Ringing", "AppDial", "(Outgoing Line)"),
        core_show_channel_1_8("SIP/267-00000013", "1.13", "Ringing", "AppDial", "(Outgoing Line)"),
    ]
    assert list(tracker.reconcile(listing, BASE)) == []
    assert tracker.active() == []
