"""Asterisk 1.8 (Yeastar MyPBX) orders a few things late; the tracker still reports the truth.

Minimal streams in the order a MyPBX sends them (the simulator's ``yeastar`` dialect
plays the same, see ``test_calls_simulator.py``):

- A Dial timeout: the Dial application hangs up the ringing phone (``Hangup`` 16)
  *before* it reports ``Dial End`` ``NOANSWER``; the same for a click-to-call through
  a Local channel, whose phone is gone before its Local half's ``Dial End``.
- A ``Redirect`` of a bridged caller: ``Unlink``, the peer's ``Hangup``, ``Dial End
  ANSWER``, and only then the caller's ``Newexten`` at the new extension.
- A click-to-call whose phone is busy: the phone's channel appears, hangs up (17) in
  ``Down``, and the ``OriginateResponse`` (``Uniqueid: <unknown>``) comes last; no
  event names the channel as the Originate's.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.calls.replay import BASE
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import Message

CALLER = ("SIP/269-00000000", "1796172254.0")
CALLEE = ("SIP/267-00000001", "1796172254.1")


def event(name: str, *fields: tuple[str, str]) -> Message:
    """An AMI event ``name`` with ``fields`` in order."""
    return Message.build(("Event", name), *fields)


def channel_event(name: str, channel: tuple[str, str], *fields: tuple[str, str]) -> Message:
    """An event about ``channel`` (name, Uniqueid)."""
    return event(name, ("Channel", channel[0]), *fields, ("Uniqueid", channel[1]))


def newchannel(channel: tuple[str, str], number: str, exten: str, state: str) -> Message:
    return channel_event(
        "Newchannel",
        channel,
        ("ChannelStateDesc", state),
        ("CallerIDNum", number),
        ("CallerIDName", number),
        ("Exten", exten),
        ("Context", "DLPN_DialPlan269"),
    )


def newstate(channel: tuple[str, str], state: str) -> Message:
    return channel_event("Newstate", channel, ("ChannelStateDesc", state))


def hangup(channel: tuple[str, str], cause: int) -> Message:
    return channel_event("Hangup", channel, ("Cause", str(cause)))


def dial_begin(source: tuple[str, str], dest: tuple[str, str], dialstring: str) -> Message:
    return event(
        "Dial",
        ("SubEvent", "Begin"),
        ("Channel", source[0]),
        ("Destination", dest[0]),
        ("UniqueID", source[1]),
        ("DestUniqueID", dest[1]),
        ("Dialstring", dialstring),
    )


def dial_end(source: tuple[str, str], status: str) -> Message:
    return event(
        "Dial",
        ("SubEvent", "End"),
        ("Channel", source[0]),
        ("UniqueID", source[1]),
        ("DialStatus", status),
    )


def bridge(state: str) -> Message:
    return event(
        "Bridge",
        ("Bridgestate", state),
        ("Channel1", CALLER[0]),
        ("Channel2", CALLEE[0]),
        ("Uniqueid1", CALLER[1]),
        ("Uniqueid2", CALLEE[1]),
    )


def play(
    stream: Sequence[Message], tracker: CallTracker | None = None
) -> tuple[CallTracker, list[CallEvent]]:
    """Feed ``stream`` a tenth of a second apart; the tracker and its call events."""
    tracker = tracker if tracker is not None else CallTracker(pbx="mypbx")
    out: list[CallEvent] = []
    for number, message in enumerate(stream):
        out.extend(tracker.observe(message, BASE + number / 10))
    return tracker, out


def story(events: list[CallEvent]) -> list[tuple[str, str | None, str | None]]:
    return [(e.name, e.call.extension, e.call.end_reason) for e in events]


def ringing_call() -> list[Message]:
    """269 calls 267, whose phone rings."""
    return [
        newchannel(CALLER, "269", "267", "Down"),
        newstate(CALLER, "Ring"),
        newchannel(CALLEE, "267", "", "Down"),
        dial_begin(CALLER, CALLEE, "267"),
        newstate(CALLEE, "Ringing"),
    ]


def test_a_dial_timeout_is_no_answer_though_the_phone_hung_up_before_the_status() -> None:
    tracker, events = play(
        [
            *ringing_call(),
            hangup(CALLEE, 16),  # the Dial's timeout hangs the phone up first
            dial_end(CALLER, "NOANSWER"),
            hangup(CALLER, 16),
        ]
    )
    assert story(events) == [
        ("call.ringing", "267", None),
        ("call.ended", "267", "no_answer"),
        ("call.missed", "267", "no_answer"),
    ]
    assert tracker.active() == []


def test_a_caller_giving_up_is_still_cancelled() -> None:
    _, events = play(
        [*ringing_call(), hangup(CALLEE, 16), dial_end(CALLER, "CANCEL"), hangup(CALLER, 16)]
    )
    assert story(events)[1:] == [
        ("call.ended", "267", "cancelled"),
        ("call.missed", "267", "cancelled"),
    ]


def test_a_local_click_to_call_not_answered_waits_for_its_dial_end() -> None:
    one = ("Local/267@DLPN_DialPlan267-f2a7;1", "1796172254.0")
    two = ("Local/267@DLPN_DialPlan267-f2a7;2", "1796172254.1")
    phone = ("SIP/267-00000000", "1796172254.2")
    tracker = CallTracker(pbx="mypbx")
    tracker.expect_originate("click-1", "Local/267@DLPN_DialPlan267", BASE, to_number="269")
    _, events = play(
        [
            newchannel(one, "<unknown>", "267", "Down"),
            newchannel(two, "<unknown>", "267", "Ring"),
            newchannel(phone, "267", "", "Down"),
            dial_begin(two, phone, "267"),
            newstate(phone, "Ringing"),
            newstate(one, "Ringing"),
            hangup(phone, 16),  # gone before its Dial reports why
            dial_end(two, "NOANSWER"),
            event(
                "OriginateResponse",
                ("ActionID", "click-1"),
                ("Response", "Failure"),
                ("Channel", "Local/267@DLPN_DialPlan267"),
                ("Reason", "3"),
                ("Uniqueid", "<unknown>"),
            ),
            hangup(one, 0),
            hangup(two, 19),
        ],
        tracker,
    )
    assert story(events) == [("call.ended", "267", "no_answer")]
    (ended,) = events
    assert (ended.call.originated, ended.call.action_id) == (True, "click-1")
    assert ended.call.ended_at == "2023-11-14T22:13:20.700Z"  # at the Dial End
    assert tracker.active() == [] and tracker.tracked_channels == 0


def test_a_redirect_is_a_transfer_though_the_peer_hung_up_before_the_newexten() -> None:
    tracker, events = play(
        [
            *ringing_call(),
            newstate(CALLEE, "Up"),
            newstate(CALLER, "Up"),
            bridge("Link"),
            bridge("Unlink"),
            hangup(CALLEE, 16),
            dial_end(CALLER, "ANSWER"),
            channel_event("Newexten", CALLER, ("Extension", "700"), ("Application", "Answer")),
            hangup(CALLER, 16),
        ]
    )
    assert story(events) == [
        ("call.ringing", "267", None),
        ("call.answered", "267", None),
        ("call.transferred", "267", None),
        ("call.ended", "700", "completed"),
    ]
    moved = events[2].call
    assert [(t.type, t.by, t.to) for t in moved.transfers] == [("blind", "267", "700")]
    assert moved.channels == (CALLER[0],)
    assert tracker.active() == []


def test_a_hang_up_then_the_dialplan_going_on_elsewhere_is_no_transfer() -> None:
    # The callee hangs up; the caller's Dial returns and its extension goes on (next
    # priority, then a Goto): the first Newexten after the Unlink is the same extension.
    _, events = play(
        [
            *ringing_call(),
            newstate(CALLEE, "Up"),
            newstate(CALLER, "Up"),
            bridge("Link"),
            bridge("Unlink"),
            hangup(CALLEE, 16),
            dial_end(CALLER, "ANSWER"),
            channel_event("Newexten", CALLER, ("Extension", "267"), ("Application", "Goto")),
            channel_event("Newexten", CALLER, ("Extension", "800"), ("Application", "Playback")),
            hangup(CALLER, 16),
        ]
    )
    assert story(events) == [
        ("call.ringing", "267", None),
        ("call.answered", "267", None),
        ("call.ended", "267", "completed"),
    ]


def test_a_click_to_call_whose_phone_is_busy_is_one_call_ended_busy() -> None:
    phone = ("SIP/267-00000000", "1796172254.0")
    tracker = CallTracker(pbx="mypbx")
    tracker.expect_originate("click-2", "SIP/267", BASE, to_number="269")
    _, events = play(
        [
            newchannel(phone, "267", "s", "Down"),
            channel_event("NewCallerid", phone, ("CallerIDNum", "269"), ("CallerIDName", "267")),
            hangup(phone, 17),
            event(
                "OriginateResponse",
                ("ActionID", "click-2"),
                ("Response", "Failure"),
                ("Channel", "SIP/267"),
                ("Reason", "5"),
                ("Uniqueid", "<unknown>"),
            ),
        ],
        tracker,
    )
    assert story(events) == [("call.ended", "267", "busy")]
    call = events[0].call
    assert (call.call_id, call.originated, call.action_id) == (phone[1], True, "click-2")
    assert (call.from_number, call.to_number, call.direction) == ("267", "269", "internal")
    assert tracker.call_id_for_action("click-2") == phone[1]


def test_a_phone_hanging_up_untouched_is_no_call_without_a_click_to_call() -> None:
    # The same channel events with no dial of that phone pending: not a call.
    phone = ("SIP/267-00000000", "1796172254.0")
    tracker = CallTracker(pbx="mypbx")
    tracker.expect_originate("click-3", "SIP/268", BASE, to_number="269")
    _, events = play([newchannel(phone, "267", "s", "Down"), hangup(phone, 17)], tracker)
    assert events == []
    assert tracker.call_id_for_action("click-3") is None
