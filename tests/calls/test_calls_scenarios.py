"""The cases that break naive trackers, as short scripted streams.

The real recordings cover one call each; these put calls together (call waiting, a
transfer between two calls, a queue, an outside line) in Asterisk 12+ shapes copied
from the recordings (every channel event carries the full channel snapshot), and a
few Asterisk 1.8 ones (pickup by masquerade, a SIP phone's ``Transfer``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.calls.replay import BASE, feed
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import Message

Pairs = list[tuple[str, str]]


@dataclass
class Chan:
    """One channel of a scripted Asterisk 12+ stream."""

    name: str
    uniqueid: str
    linkedid: str
    number: str
    cname: str

    def snap(self, state: str, exten: str = "", prefix: str = "") -> Pairs:
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelStateDesc", state),
            (prefix + "CallerIDNum", self.number),
            (prefix + "CallerIDName", self.cname),
            (prefix + "Context", "from-office"),
            (prefix + "Exten", exten),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]


def ev(name: str, *groups: Pairs, **fields: str) -> Message:
    pairs: Pairs = [("Event", name), ("Privilege", "call,all")]
    for group in groups:
        pairs.extend(group)
    pairs.extend(fields.items())
    return Message(headers=tuple(pairs))


def call_of(caller: Chan, callee: Chan, exten: str, t: float, answer_after: float) -> list:
    """A caller dials a phone that rings and answers: the 12+ events up to the bridge."""
    bridge = f"bridge-{caller.uniqueid}"
    ring, up = t + 0.01, t + answer_after
    return [
        (t, ev("Newchannel", caller.snap("Ring", exten))),
        (t, ev("Newchannel", callee.snap("Down"))),
        (t, ev("DialBegin", caller.snap("Ring", exten), callee.snap("Down", prefix="Dest"))),
        (ring, ev("Newstate", callee.snap("Ringing"))),
        (up, ev("Newstate", callee.snap("Up"))),
        (
            up,
            ev(
                "DialEnd",
                caller.snap("Ring", exten),
                callee.snap("Up", prefix="Dest"),
                DialStatus="ANSWER",
            ),
        ),
        (up, ev("Newstate", caller.snap("Up", exten))),
        (up, ev("BridgeEnter", callee.snap("Up"), BridgeUniqueid=bridge)),
        (up, ev("BridgeEnter", caller.snap("Up", exten), BridgeUniqueid=bridge)),
    ]


def hangup(chan: Chan, t: float, state: str = "Up", cause: str = "16") -> list:
    return [
        (t, ev("HangupRequest", chan.snap(state), Cause=cause)),
        (t, ev("Hangup", chan.snap(state), Cause=cause)),
    ]


def names(events: list[CallEvent]) -> list[tuple[str, str, str | None]]:
    return [(e.call.call_id, e.name, e.call.extension) for e in events]


def test_call_waiting_two_calls_on_one_extension_stay_apart() -> None:
    # 269 talks to 267 (call A); a GSM caller rings 267's second line (call B); 267 puts
    # A on hold, answers B, ends B, takes A back.
    a_caller = Chan("SIP/269-00000001", "5.1", "5.1", "269", "Reception")
    a_phone = Chan("SIP/267-00000002", "5.2", "5.1", "267", "Sales")
    b_caller = Chan("YSGSM/11-1", "5.3", "5.3", "+79787342741", "+79787342741")
    b_phone = Chan("SIP/267-00000003", "5.4", "5.3", "267", "Sales")
    stream = [
        *call_of(a_caller, a_phone, "267", 0.0, 2.0),
        *call_of(b_caller, b_phone, "s", 5.0, 3.0)[:4],  # B rings 267 while A talks
        (6.0, ev("Hold", a_phone.snap("Up"))),
        *call_of(b_caller, b_phone, "s", 5.0, 3.0)[4:],
        *hangup(b_caller, 20.0),
        *hangup(b_phone, 20.0),
        (21.0, ev("Unhold", a_phone.snap("Up"))),
        *hangup(a_phone, 30.0),
        *hangup(a_caller, 30.0),
    ]
    tracker = CallTracker(pbx="office")
    events = []
    live_during_b: list[set[str]] = []
    for t, message in stream:
        events.extend(tracker.observe(message, BASE + t))
        live_during_b.append({c.call_id for c in tracker.active()})
    assert names(events) == [
        ("5.1", "call.ringing", "267"),
        ("5.1", "call.answered", "267"),
        ("5.3", "call.ringing", "267"),
        ("5.1", "call.held", "267"),
        ("5.3", "call.answered", "267"),
        ("5.3", "call.ended", "267"),
        ("5.1", "call.resumed", "267"),
        ("5.1", "call.ended", "267"),
    ]
    assert {"5.1", "5.3"} in live_during_b
    b = [e.call for e in events if e.call.call_id == "5.3"]
    assert {(c.direction, c.from_number, c.to_number) for c in b} == {
        ("inbound", "89787342741", "267")
    }
    assert b[-1].channels == () and b[-1].end_reason == "completed"
    assert b[-1].extensions == frozenset({"267"})
    a_end = events[-1].call
    assert (a_end.talk_seconds, a_end.on_hold, a_end.end_reason) == (28.0, False, "completed")


def test_attended_transfer_between_two_calls_keeps_the_callers_call() -> None:
    # An outside caller talks to 269 (call A); 269 holds and calls 268 on a second line
    # (call B); 269 completes the transfer: A goes on with 268, B ends as transferred.
    caller = Chan("PJSIP/trunk-00000010", "6.1", "6.1", "+74951234567", "ACME")
    first = Chan("SIP/269-00000011", "6.2", "6.1", "269", "Reception")
    second = Chan("SIP/269-00000012", "6.3", "6.3", "269", "Reception")
    target = Chan("SIP/268-00000013", "6.4", "6.3", "268", "Director")
    stream = [
        *call_of(caller, first, "74957654321", 0.0, 3.0),
        (5.0, ev("Hold", first.snap("Up"))),
        *call_of(second, target, "268", 6.0, 2.0),
        *hangup(first, 12.0)[:1],
        (12.0, ev("BridgeLeave", first.snap("Up"), BridgeUniqueid="bridge-6.1")),
        (12.0, ev("BridgeLeave", target.snap("Up"), BridgeUniqueid="bridge-6.3")),
        (12.0, ev("BridgeEnter", target.snap("Up"), BridgeUniqueid="bridge-6.1")),
        (
            12.0,
            ev(
                "AttendedTransfer",
                Result="Success",
                OrigTransfererChannel=first.name,
                OrigTransfererUniqueid=first.uniqueid,
                SecondTransfererChannel=second.name,
                SecondTransfererUniqueid=second.uniqueid,
                TransfereeChannel=caller.name,
                TransfereeUniqueid=caller.uniqueid,
                TransferTargetChannel=target.name,
                TransferTargetUniqueid=target.uniqueid,
                DestType="Bridge",
                DestBridgeUniqueid="bridge-6.1",
            ),
        ),
        (12.0, ev("Hangup", first.snap("Up"), Cause="16")),
        *hangup(second, 12.0),
        *hangup(target, 40.0),
        *hangup(caller, 40.0),
    ]
    tracker = CallTracker(pbx="office")
    events = feed(tracker, stream)
    assert names(events) == [
        ("6.1", "call.ringing", "269"),
        ("6.1", "call.answered", "269"),
        ("6.1", "call.held", "269"),
        ("6.3", "call.ringing", "268"),
        ("6.3", "call.answered", "268"),
        ("6.3", "call.ended", "268"),
        ("6.1", "call.transferred", "269"),
        ("6.1", "call.ended", "268"),
    ]
    consult_end = events[5].call
    assert (consult_end.end_reason, consult_end.direction) == ("transferred", "internal")
    moved = events[6].call
    assert moved.to_dict()["transfers"] == [
        {"type": "attended", "by": "269", "to": "268", "at": "2023-11-14T22:13:32.000Z"}
    ]
    assert (moved.status, moved.on_hold) == ("up", False)
    end = events[-1].call
    assert (end.direction, end.from_number, end.from_name, end.to_number, end.did) == (
        "inbound",
        "84951234567",
        "ACME",
        "74957654321",
        "74957654321",
    )
    assert (end.trunk, end.end_reason, end.talk_seconds) == ("PJSIP/trunk", "completed", 37.0)
    assert end.extensions == frozenset({"269", "268"})
    assert tracker.get("6.3") is None  # the consultation's id is the caller's call now
    assert tracker.active() == []


def test_blind_transfer_by_a_phone_is_reported_once_and_the_target_rings() -> None:
    caller = Chan("PJSIP/trunk-00000020", "7.1", "7.1", "+79787342741", "")
    agent = Chan("SIP/269-00000021", "7.2", "7.1", "269", "Reception")
    target = Chan("SIP/268-00000022", "7.3", "7.1", "268", "Director")
    stream = [
        *call_of(caller, agent, "s", 0.0, 2.0),
        (
            10.0,
            ev(
                "BlindTransfer",
                Result="Success",
                TransfererChannel=agent.name,
                TransfererUniqueid=agent.uniqueid,
                TransfereeChannel=caller.name,
                TransfereeUniqueid=caller.uniqueid,
                Extension="268",
                Context="from-office",
                IsExternal="No",
            ),
        ),
        # The caller leaves the bridge alive, at another extension: also what a
        # Redirect looks like, so the tracker must not report the transfer twice.
        (10.0, ev("BridgeLeave", caller.snap("Up", "268"), BridgeUniqueid="bridge-7.1")),
        (10.0, ev("BridgeLeave", agent.snap("Up"), BridgeUniqueid="bridge-7.1")),
        *hangup(agent, 10.0),
        (10.1, ev("Newchannel", target.snap("Down"))),
        (
            10.1,
            ev("DialBegin", caller.snap("Up", "268"), target.snap("Down", prefix="Dest")),
        ),
        (10.1, ev("Newstate", target.snap("Ringing"))),
        (14.1, ev("Newstate", target.snap("Up"))),
        (14.1, ev("BridgeEnter", target.snap("Up"), BridgeUniqueid="b2")),
        (14.1, ev("BridgeEnter", caller.snap("Up", "268"), BridgeUniqueid="b2")),
        *hangup(caller, 20.0),
        *hangup(target, 20.0),
    ]
    events = feed(CallTracker(pbx="office"), stream)
    assert names(events) == [
        ("7.1", "call.ringing", "269"),
        ("7.1", "call.answered", "269"),
        ("7.1", "call.transferred", "269"),
        ("7.1", "call.ringing", "268"),
        ("7.1", "call.answered", "268"),
        ("7.1", "call.ended", "268"),
    ]
    assert events[-1].call.to_dict()["transfers"] == [
        {"type": "blind", "by": "269", "to": "268", "at": "2023-11-14T22:13:30.000Z"}
    ]
    assert events[-1].call.from_name is None  # an empty caller name is no name


def test_queue_answered_by_one_member_is_missed_by_nobody_unanswered_by_all() -> None:
    def queue_call(n: int, answer: bool) -> list:
        caller = Chan("YSGSM/11-1", f"8.{n}0", f"8.{n}0", "+79787342741", "")
        members = [
            Chan(f"SIP/26{k}-0000008{n}{k}", f"8.{n}{k}", f"8.{n}0", f"26{k}", f"Agent {k}")
            for k in (7, 8)
        ]
        t = n * 100.0
        stream = [
            (t, ev("Newchannel", caller.snap("Ring", "s"))),
            (t + 1, ev("QueueCallerJoin", caller.snap("Up", "s"), Queue="600", Position="1")),
        ]
        for member in members:
            stream += [
                (t + 2, ev("Newchannel", member.snap("Down"))),
                (
                    t + 2,
                    ev("DialBegin", caller.snap("Up", "s"), member.snap("Down", prefix="Dest")),
                ),
                (t + 2.01, ev("Newstate", member.snap("Ringing"))),
            ]
        if answer:
            stream += [
                (t + 7, ev("Newstate", members[1].snap("Up"))),
                (
                    t + 7,
                    ev(
                        "DialEnd",
                        caller.snap("Up", "s"),
                        members[0].snap("Ringing", prefix="Dest"),
                        DialStatus="CANCEL",
                    ),
                ),
                (t + 7, ev("Hangup", members[0].snap("Ringing"), Cause="26")),
                *hangup(caller, t + 30),
                *hangup(members[1], t + 30),
            ]
        else:
            stream += [
                *hangup(caller, t + 12, state="Up"),
                *[
                    (
                        t + 12,
                        ev(
                            "DialEnd",
                            caller.snap("Up", "s"),
                            member.snap("Ringing", prefix="Dest"),
                            DialStatus="CANCEL",
                        ),
                    )
                    for member in members
                ],
                *[(t + 12, ev("Hangup", m.snap("Ringing"), Cause="16")) for m in members],
            ]
        return stream

    events = feed(CallTracker(pbx="office"), queue_call(1, True) + queue_call(2, False))
    assert names(events) == [
        ("8.10", "call.ringing", "267"),
        ("8.10", "call.ringing", "268"),
        ("8.10", "call.answered", "268"),
        ("8.10", "call.ended", "268"),
        ("8.20", "call.ringing", "267"),
        ("8.20", "call.ringing", "268"),
        ("8.20", "call.ended", "268"),
        ("8.20", "call.missed", "267"),
        ("8.20", "call.missed", "268"),
    ]
    assert events[3].call.end_reason == "completed"
    assert events[6].call.end_reason == "cancelled"
    assert events[6].call.to_number == "600"  # the queue the caller dialled into
    assert events[6].call.ring_seconds == 9.99  # from the first Ringing to the cancel


def test_outbound_call_announced_once_and_updated_when_the_far_end_changes() -> None:
    caller = Chan("SIP/269-00000031", "9.1", "9.1", "269", "Reception")
    line = Chan("PJSIP/trunk-00000032", "9.2", "9.1", "269", "Reception")
    stream = [
        (0.0, ev("Newchannel", caller.snap("Ring", "89787342741"))),
        (0.0, ev("Newchannel", line.snap("Down"))),
        (
            0.0,
            ev(
                "DialBegin",
                caller.snap("Ring", "89787342741"),
                line.snap("Down", prefix="Dest"),
                DialString="trunk/89787342741",
            ),
        ),
        (0.5, ev("Newstate", line.snap("Ringing"))),
        (
            0.5,
            ev(
                "DialState",
                caller.snap("Ring", "89787342741"),
                line.snap("Ringing", prefix="Dest"),
                DialStatus="RINGING",
            ),
        ),
        (5.0, ev("Newstate", line.snap("Up"))),
        (
            9.0,
            ev(
                "NewConnectedLine",
                caller.snap("Up", "89787342741"),
                ConnectedLineNum="89780000000",
                ConnectedLineName="Ivanov",
            ),
        ),
        *hangup(line, 20.0),
        *hangup(caller, 20.0),
    ]
    events = feed(CallTracker(pbx="office"), stream)
    assert [(e.name, e.call.extension, e.call.status) for e in events] == [
        ("call.ringing", "269", "ringing"),
        ("call.answered", "269", "up"),
        ("call.updated", "269", "up"),
        ("call.ended", "269", "ended"),
    ]
    end = events[-1].call
    assert (end.direction, end.to_number, end.to_name, end.trunk) == (
        "outbound",
        "89787342741",
        "Ivanov",
        "PJSIP/trunk",
    )
    assert (end.ring_seconds, end.talk_seconds) == (5.0, 15.0)
    assert end.extensions == frozenset({"269"})


def test_caller_id_change_of_an_announced_call_is_an_update() -> None:
    caller = Chan("YSGSM/11-1", "10.1", "10.1", "+79787342741", "")
    phone = Chan("SIP/269-00000041", "10.2", "10.1", "269", "Reception")
    renamed = Chan("YSGSM/11-1", "10.1", "10.1", "+79787342741", "Petrov (CRM)")
    stream = [
        *call_of(caller, phone, "s", 0.0, 3.0)[:4],
        (1.0, ev("NewCallerid", renamed.snap("Ring", "s"))),
        *hangup(caller, 2.0, state="Ring"),
        (2.0, ev("Hangup", phone.snap("Ringing"), Cause="16")),
    ]
    events = feed(CallTracker(pbx="office"), stream)
    assert [(e.name, e.call.from_name) for e in events] == [
        ("call.ringing", None),
        ("call.updated", "Petrov (CRM)"),
        ("call.ended", "Petrov (CRM)"),
        ("call.missed", "Petrov (CRM)"),
    ]
    assert events[-1].call.end_reason == "cancelled"


def test_old_dialect_pickup_by_masquerade_is_one_call_answered_by_the_picker() -> None:
    def old(name: str, **fields: str) -> Message:
        return Message(headers=(("Event", name), ("Privilege", "call,all"), *fields.items()))

    stream = [
        (0.0, old("Newchannel", Channel="SIP/269-01", ChannelStateDesc="Ring",
                  CallerIDNum="269", CallerIDName="269", Exten="267", Uniqueid="11.1")),
        (0.0, old("Newchannel", Channel="SIP/267-02", ChannelStateDesc="Down",
                  CallerIDNum="267", CallerIDName="267", Exten="", Uniqueid="11.2")),
        (0.0, old("Dial", SubEvent="Begin", Channel="SIP/269-01", Destination="SIP/267-02",
                  CallerIDNum="269", CallerIDName="269", UniqueID="11.1",
                  DestUniqueID="11.2", Dialstring="267")),
        (0.1, old("Newstate", Channel="SIP/267-02", ChannelStateDesc="Ringing",
                  CallerIDNum="267", CallerIDName="267", Uniqueid="11.2")),
        (3.0, old("Newchannel", Channel="SIP/268-03", ChannelStateDesc="Ring",
                  CallerIDNum="268", CallerIDName="268", Exten="*8", Uniqueid="11.3")),
        (3.0, old("Newstate", Channel="SIP/268-03", ChannelStateDesc="Up",
                  CallerIDNum="268", CallerIDName="268", Uniqueid="11.3")),
        (3.1, old("Masquerade", Clone="SIP/268-03", CloneState="Up",
                  Original="SIP/267-02", OriginalState="Ringing")),
        (3.1, old("Rename", Channel="SIP/268-03", Newname="SIP/268-03<MASQ>", Uniqueid="11.3")),
        (3.1, old("Rename", Channel="SIP/267-02", Newname="SIP/268-03", Uniqueid="11.2")),
        (3.1, old("Rename", Channel="SIP/268-03<MASQ>", Newname="SIP/267-02<ZOMBIE>",
                  Uniqueid="11.3")),
        (3.1, old("Hangup", Channel="SIP/267-02<ZOMBIE>", Uniqueid="11.3", Cause="16")),
        (3.1, old("Dial", SubEvent="End", Channel="SIP/269-01", UniqueID="11.1",
                  DialStatus="ANSWER")),
        (3.1, old("Bridge", Bridgestate="Link", Channel1="SIP/269-01", Channel2="SIP/268-03",
                  Uniqueid1="11.1", Uniqueid2="11.2")),
        (9.1, old("Bridge", Bridgestate="Unlink", Channel1="SIP/269-01", Channel2="SIP/268-03",
                  Uniqueid1="11.1", Uniqueid2="11.2")),
        (9.1, old("Hangup", Channel="SIP/268-03", Uniqueid="11.2", Cause="16")),
        (9.1, old("Hangup", Channel="SIP/269-01", Uniqueid="11.1", Cause="16")),
    ]  # fmt: skip
    tracker = CallTracker(pbx="mypbx")
    events = feed(tracker, stream)
    assert names(events) == [
        ("11.1", "call.ringing", "267"),
        ("11.1", "call.answered", "268"),
        ("11.1", "call.ended", "268"),
    ]
    assert events[1].call.channels == ("SIP/269-01", "SIP/268-03")
    assert events[-1].call.extensions == frozenset({"269", "267", "268"})
    assert (events[-1].call.ring_seconds, events[-1].call.talk_seconds) == (3.0, 6.0)
    assert tracker.tracked_channels == 0


def test_old_dialect_sip_transfer_event_is_a_blind_transfer() -> None:
    def old(name: str, **fields: str) -> Message:
        return Message(headers=(("Event", name), ("Privilege", "call,all"), *fields.items()))

    stream = [
        (0.0, old("Newchannel", Channel="YSGSM/11-1", ChannelStateDesc="Rsrvd",
                  CallerIDNum="+79787342741", CallerIDName="", Exten="s", Uniqueid="12.1")),
        (0.0, old("Newchannel", Channel="SIP/269-01", ChannelStateDesc="Down",
                  CallerIDNum="269", CallerIDName="269", Exten="", Uniqueid="12.2")),
        (0.0, old("Dial", SubEvent="Begin", Channel="YSGSM/11-1", Destination="SIP/269-01",
                  UniqueID="12.1", DestUniqueID="12.2", Dialstring="269")),
        (0.1, old("Newstate", Channel="SIP/269-01", ChannelStateDesc="Ringing",
                  Uniqueid="12.2")),
        (2.0, old("Newstate", Channel="SIP/269-01", ChannelStateDesc="Up", Uniqueid="12.2")),
        (2.0, old("Bridge", Bridgestate="Link", Channel1="YSGSM/11-1", Channel2="SIP/269-01",
                  Uniqueid1="12.1", Uniqueid2="12.2")),
        (8.0, old("Transfer", TransferMethod="SIP", TransferType="Blind",
                  Channel="SIP/269-01", Uniqueid="12.2", TargetChannel="YSGSM/11-1",
                  TargetUniqueid="12.1", TransferExten="268", TransferContext="from-office")),
        (8.0, old("Bridge", Bridgestate="Unlink", Channel1="YSGSM/11-1", Channel2="SIP/269-01",
                  Uniqueid1="12.1", Uniqueid2="12.2")),
        (8.0, old("Newexten", Channel="YSGSM/11-1", Context="from-office", Extension="268",
                  Priority="1", Application="Dial", Uniqueid="12.1")),
        (8.0, old("Hangup", Channel="SIP/269-01", Uniqueid="12.2", Cause="16")),
        (8.1, old("Newchannel", Channel="SIP/268-02", ChannelStateDesc="Down",
                  CallerIDNum="268", CallerIDName="268", Exten="", Uniqueid="12.3")),
        (8.1, old("Dial", SubEvent="Begin", Channel="YSGSM/11-1", Destination="SIP/268-02",
                  UniqueID="12.1", DestUniqueID="12.3", Dialstring="268")),
        (8.2, old("Newstate", Channel="SIP/268-02", ChannelStateDesc="Ringing",
                  Uniqueid="12.3")),
        (20.0, old("Hangup", Channel="YSGSM/11-1", Uniqueid="12.1", Cause="16")),
        (20.0, old("Dial", SubEvent="End", Channel="YSGSM/11-1", UniqueID="12.1",
                   DialStatus="CANCEL")),
        (20.0, old("Hangup", Channel="SIP/268-02", Uniqueid="12.3", Cause="16")),
    ]  # fmt: skip
    events = feed(CallTracker(pbx="mypbx"), stream)
    assert names(events) == [
        ("12.1", "call.ringing", "269"),
        ("12.1", "call.answered", "269"),
        ("12.1", "call.transferred", "269"),
        ("12.1", "call.ringing", "268"),
        ("12.1", "call.ended", "268"),
    ]
    assert events[2].call.to_dict()["transfers"] == [
        {"type": "blind", "by": "269", "to": "268", "at": "2023-11-14T22:13:28.000Z"}
    ]
    # Answered by 269 before the transfer: 268 not picking up is not a missed call.
    assert events[-1].call.end_reason == "completed"


def test_call_ids_for_channels_and_click_to_calls() -> None:
    caller = Chan("SIP/269-00000051", "13.1", "13.1", "269", "Reception")
    phone = Chan("SIP/267-00000052", "13.2", "13.1", "267", "Sales")
    tracker = CallTracker(pbx="office")
    feed(tracker, call_of(caller, phone, "267", 0.0, 1.0)[:3])
    assert tracker.call_id_of_channel("13.2") == "13.1"
    assert tracker.call_id_of_channel("nope") is None
    assert tracker.call_id_for_action("never-sent") is None
    assert tracker.get("13.1") is not None
    assert tracker.get("13.9") is None
