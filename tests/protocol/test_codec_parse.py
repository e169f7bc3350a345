"""AmiParser, as tables of (wire bytes, expected items).

Every case is fed whole, byte by byte and in random splits (``parse_every_way``); the
bytes are what Asterisk 20 sent in the recorded transcripts (tests/data/ami), or what the
old ``Response: Follows`` servers (Asterisk <= 13, Yeastar) send.
"""

from __future__ import annotations

from typing import Any

import pytest

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Greeting,
    Message,
    MessageKind,
    RemoteProtocolError,
)

from .reference import reference_parse
from .support import Item, msg, outcome, parse_every_way, parse_ok

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

# (bytes, expected items, parser keyword arguments)
CASES: list[Any] = [
    pytest.param(
        BANNER,
        [Greeting(line="Asterisk Call Manager/9.0.0")],
        {},
        id="banner alone, no blank line after it",
    ),
    pytest.param(
        BANNER + b"Response: Success\r\nActionID: conn1-1\r\n"
        b"Message: Authentication accepted\r\n\r\n",
        [
            Greeting(line="Asterisk Call Manager/9.0.0"),
            msg(
                ("Response", "Success"),
                ("ActionID", "conn1-1"),
                ("Message", "Authentication accepted"),
            ),
        ],
        {},
        id="banner then login response",
    ),
    pytest.param(
        b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 9\r\nLastReload: 9\r\n"
        b"Status: Fully Booted\r\n\r\n",
        [
            msg(
                ("Event", "FullyBooted"),
                ("Privilege", "system,all"),
                ("Uptime", "9"),
                ("LastReload", "9"),
                ("Status", "Fully Booted"),
            )
        ],
        {"expect_greeting": False},
        id="event, CRLF",
    ),
    pytest.param(
        b"Response: Success\nActionID: lf\nPing: Pong\n\n",
        [msg(("Response", "Success"), ("ActionID", "lf"), ("Ping", "Pong"))],
        {"expect_greeting": False},
        id="bare LF",
    ),
    pytest.param(
        b"Response: Success\r\nActionID: mixed\nPing: Pong\r\n\nEvent: A\n\r\n",
        [
            msg(("Response", "Success"), ("ActionID", "mixed"), ("Ping", "Pong")),
            msg(("Event", "A")),
        ],
        {"expect_greeting": False},
        id="CRLF and LF mixed, both blank-line forms",
    ),
    pytest.param(
        b"Event: RequestBadFormat\r\nRequestType: Action: NONE\r\nColon: a:b: c\r\n"
        b'Value: "AMI Lab 5551000" <5551000>\r\nURL: http://x:8088/a\r\n\r\n',
        [
            msg(
                ("Event", "RequestBadFormat"),
                ("RequestType", "Action: NONE"),
                ("Colon", "a:b: c"),
                ("Value", '"AMI Lab 5551000" <5551000>'),
                ("URL", "http://x:8088/a"),
            )
        ],
        {"expect_greeting": False},
        id="values containing colons and ': '",
    ),
    pytest.param(
        b"Event: Status\r\nAccountCode: \r\nExten:\r\nDNID: \r\nKey:value\r\n"
        b"Two:  spaces\r\nTrail: x  \r\n\r\n",
        [
            msg(
                ("Event", "Status"),
                ("AccountCode", ""),
                ("Exten", ""),
                ("DNID", ""),
                ("Key", "value"),
                ("Two", " spaces"),
                ("Trail", "x  "),
            )
        ],
        {"expect_greeting": False},
        id="empty values, no space, one space dropped only",
    ),
    pytest.param(
        b"Event: X\r\nKey:value: more\r\n Spaced Key \t: v\r\n: no key\r\n\r\n",
        [
            msg(("Event", "X"), ("Key", "value: more"), ("Spaced Key", "v"), ("", "no key")),
        ],
        {"expect_greeting": False},
        id="split on the FIRST colon even without a space; keys stripped",
    ),
    pytest.param(
        b"RESPONSE: Success\r\nACTIONID: upper-case-keys\r\nping: Pong\r\n"
        b"BridgeID: a\r\nBridgeId: b\r\nCause-txt: Normal Clearing\r\n\r\n",
        [
            msg(
                ("RESPONSE", "Success"),
                ("ACTIONID", "upper-case-keys"),
                ("ping", "Pong"),
                ("BridgeID", "a"),
                ("BridgeId", "b"),
                ("Cause-txt", "Normal Clearing"),
            )
        ],
        {"expect_greeting": False},
        id="any key case kept as spelled",
    ),
    pytest.param(
        b"Event: Status\r\nPrivilege: Call\r\nChannel: Local/100@DLPN_DialPlan269-00000001;1\r\n"
        b"Seconds: 2\r\nVariable: FOO=one\r\nVariable: BAR=two\r\nActionID: conn1-4\r\n\r\n",
        [
            msg(
                ("Event", "Status"),
                ("Privilege", "Call"),
                ("Channel", "Local/100@DLPN_DialPlan269-00000001;1"),
                ("Seconds", "2"),
                ("Variable", "FOO=one"),
                ("Variable", "BAR=two"),
                ("ActionID", "conn1-4"),
            )
        ],
        {"expect_greeting": False},
        id="Status with repeated Variable, ActionID last",
    ),
    pytest.param(
        b"Response: Success\r\nActionID: conn1-21\r\nMessage: Event Sent\r\n\r\n"
        b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: LabEvent\r\n"
        b"ActionID: conn1-21\r\nHeader1: first\r\nHeader1: second\r\nEmpty: \r\n"
        b"Colon: a:b: c\r\n\r\n",
        [
            msg(("Response", "Success"), ("ActionID", "conn1-21"), ("Message", "Event Sent")),
            msg(
                ("Event", "UserEvent"),
                ("Privilege", "user,all"),
                ("UserEvent", "LabEvent"),
                ("ActionID", "conn1-21"),
                ("Header1", "first"),
                ("Header1", "second"),
                ("Empty", ""),
                ("Colon", "a:b: c"),
            ),
        ],
        {"expect_greeting": False},
        id="UserEvent with duplicate headers (transcript 05)",
    ),
    pytest.param(
        b"\r\n\n\r\nResponse: Error\r\nActionID: conn1-10\r\n"
        b"Message: Peer nosuchpeer not found.\r\n\r\n\r\n"
        b"Response: Success\r\nActionID: conn1-11\r\n\r\n",
        [
            msg(
                ("Response", "Error"),
                ("ActionID", "conn1-10"),
                ("Message", "Peer nosuchpeer not found."),
            ),
            msg(("Response", "Success"), ("ActionID", "conn1-11")),
        ],
        {"expect_greeting": False},
        id="leading blank lines, extra blank line after SIPshowpeer error",
    ),
    pytest.param(
        b"Response: Error\r\nMessage: Missing action in request\r\n\r\n",
        [msg(("Response", "Error"), ("Message", "Missing action in request"))],
        {"expect_greeting": False},
        id="response without ActionID",
    ),
    pytest.param(
        b"Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: orig-async-1\r\n"
        b"Response: Success\r\nChannel: Local/100@DLPN_DialPlan269-00000001;1\r\n"
        b"Context: DLPN_DialPlan269\r\nExten: 267\r\nReason: 4\r\nUniqueid: 1795838923.2\r\n"
        b"CallerIDNum: 5551000\r\nCallerIDName: AMI Test\r\n\r\n",
        [
            msg(
                ("Event", "OriginateResponse"),
                ("Privilege", "call,all"),
                ("ActionID", "orig-async-1"),
                ("Response", "Success"),
                ("Channel", "Local/100@DLPN_DialPlan269-00000001;1"),
                ("Context", "DLPN_DialPlan269"),
                ("Exten", "267"),
                ("Reason", "4"),
                ("Uniqueid", "1795838923.2"),
                ("CallerIDNum", "5551000"),
                ("CallerIDName", "AMI Test"),
            )
        ],
        {"expect_greeting": False},
        id="OriginateResponse: an event with a Response header",
    ),
    pytest.param(
        b"Response: Success\r\nActionID: conn1-3\r\nEventList: start\r\n"
        b"Message: Channels will follow\r\n\r\n"
        b"Event: CoreShowChannelsComplete\r\nActionID: conn1-3\r\nEventList: Complete\r\n"
        b"ListItems: 0\r\n\r\n",
        [
            msg(
                ("Response", "Success"),
                ("ActionID", "conn1-3"),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ),
            msg(
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", "conn1-3"),
                ("EventList", "Complete"),
                ("ListItems", "0"),
            ),
        ],
        {"expect_greeting": False},
        id="empty event list",
    ),
    pytest.param(
        b"Response: Success\r\nActionID: cmd-dialplan\r\nMessage: Command output follows\r\n"
        b"Output: [ Context 'DLPN_DialPlan269' created by 'pbx_config' ]\r\n"
        b"Output:   '100' =>          1. NoOp(Local 100 answer+wait)\r\n"
        b"Output:                     2. Answer()\r\n"
        b"Output: \r\n"
        b"Output: -= 10 extensions (31 priorities) in 1 context. =-\r\n\r\n",
        [
            msg(
                ("Response", "Success"),
                ("ActionID", "cmd-dialplan"),
                ("Message", "Command output follows"),
                ("Output", "[ Context 'DLPN_DialPlan269' created by 'pbx_config' ]"),
                ("Output", "  '100' =>          1. NoOp(Local 100 answer+wait)"),
                ("Output", "                    2. Answer()"),
                ("Output", ""),
                ("Output", "-= 10 extensions (31 priorities) in 1 context. =-"),
            )
        ],
        {"expect_greeting": False},
        id="Command output lines, leading spaces kept, empty Output",
    ),
    pytest.param(
        b"Response: Error\r\nActionID: cmd-nonexistent\r\nMessage: Command output follows\r\n"
        b"Output: No such command 'gsm send sms 1 123 \"hi\"' (type 'core show help gsm send' "
        b"for other possible commands)\r\n\r\n",
        [
            msg(
                ("Response", "Error"),
                ("ActionID", "cmd-nonexistent"),
                ("Message", "Command output follows"),
                (
                    "Output",
                    "No such command 'gsm send sms 1 123 \"hi\"' (type 'core show help gsm send' "
                    "for other possible commands)",
                ),
            )
        ],
        {"expect_greeting": False},
        id="unknown CLI command",
    ),
    pytest.param(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-1\r\n"
        b"Name/username   Host      Dyn Nat ACL Port   Status\n"
        b"  100/100       (Unspecified)  D  N   0      UNKNOWN\n"
        b"\n"
        b"Key: value looking line\n"
        b"GSM span 2: Power on, Provisioned, Up, Active,Standard\n"
        b"--END COMMAND--\r\n\r\n"
        b"Event: After\r\n\r\n",
        [
            msg(
                ("Response", "Follows"),
                ("Privilege", "Command"),
                ("ActionID", "cmd-1"),
                output=[
                    "Name/username   Host      Dyn Nat ACL Port   Status",
                    "  100/100       (Unspecified)  D  N   0      UNKNOWN",
                    "",
                    "Key: value looking line",
                    "GSM span 2: Power on, Provisioned, Up, Active,Standard",
                ],
            ),
            msg(("Event", "After")),
        ],
        {"expect_greeting": False},
        id="Follows: raw lines, blank line, ': ' lines, END on its own line",
    ),
    pytest.param(
        b"Response: Follows\r\nPrivilege: Command\r\n"
        b"Asterisk 1.8.20 built by root\n"
        b"last line--END COMMAND--\r\n\r\n",
        [
            msg(
                ("Response", "Follows"),
                ("Privilege", "Command"),
                output=["Asterisk 1.8.20 built by root", "last line"],
            )
        ],
        {"expect_greeting": False},
        id="Follows: END glued to the last line, no ActionID",
    ),
    pytest.param(
        b"response: follows\nactionid: x\n--END COMMAND--\n\n",
        [msg(("response", "follows"), ("actionid", "x"), output=[])],
        {"expect_greeting": False},
        id="Follows: lower case, LF only, no output",
    ),
    pytest.param(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: a\r\nline\n"
        b"--END COMMAND--\r\n"
        b"Response: Success\r\nActionID: b\r\n\r\n",
        [
            msg(
                ("Response", "Follows"),
                ("Privilege", "Command"),
                ("ActionID", "a"),
                output=["line"],
            ),
            msg(("Response", "Success"), ("ActionID", "b")),
        ],
        {"expect_greeting": False},
        id="Follows: END marker ends the message even without a blank line",
    ),
    pytest.param(
        b"Response: Success\r\nMessage: Follows\r\n\r\n",
        [msg(("Response", "Success"), ("Message", "Follows"))],
        {"expect_greeting": False},
        id="'Follows' elsewhere than the first header is an ordinary value",
    ),
    pytest.param(
        "Event: Newchannel\r\nCallerIDName: Иван Петров\r\nExten: 100\r\n\r\n".encode(),
        [msg(("Event", "Newchannel"), ("CallerIDName", "Иван Петров"), ("Exten", "100"))],
        {"expect_greeting": False},
        id="UTF-8 Cyrillic caller name",
    ),
    pytest.param(
        b"Event: Newchannel\r\nCallerIDName: \xff\xfe ok \xd0\r\n\xd0\x98: x\r\n\r\n",
        [
            msg(
                ("Event", "Newchannel"),
                ("CallerIDName", "\ufffd\ufffd ok \ufffd"),
                ("И", "x"),
            )
        ],
        {"expect_greeting": False},
        id="invalid UTF-8 replaced, never fatal",
    ),
    pytest.param(
        b"Event: Odd\r\nno colon here\r\nValue: a\rb\r\r\n\r\n",
        [msg(("Event", "Odd"), ("", "no colon here"), ("Value", "a\rb\r"))],
        {"expect_greeting": False},
        id="line without colon kept with empty key; lone CR is data",
    ),
    pytest.param(
        b"Action: Login\r\nActionID: conn1-1\r\nUsername: vwell\r\nSecret: s\r\nEvents: on\r\n"
        b"\r\n\r\n\r\nAction: Ping\r\nActionID: after-stray-blank-lines\r\n\r\n"
        b"action: ping\nactionid: lf-only-line-endings\n\n",
        [
            msg(
                ("Action", "Login"),
                ("ActionID", "conn1-1"),
                ("Username", "vwell"),
                ("Secret", "s"),
                ("Events", "on"),
            ),
            msg(("Action", "Ping"), ("ActionID", "after-stray-blank-lines")),
            msg(("action", "ping"), ("actionid", "lf-only-line-endings")),
        ],
        {"expect_greeting": False},
        id="client side: actions, stray blank lines skipped, LF only",
    ),
]


@pytest.mark.parametrize(("data", "expected", "kwargs"), CASES)
def test_parse_table(data: bytes, expected: list[Item], kwargs: dict[str, Any]) -> None:
    assert parse_ok(data, **kwargs) == expected


def test_nothing_is_returned_before_the_blank_line() -> None:
    parser = AmiParser(expect_greeting=False)
    parser.receive_data(b"Event: A\r\nKey: v\r\n")
    assert parser.next_event() is NEED_DATA
    assert parser.buffered > 0
    parser.receive_data(b"\r\n")
    assert parser.next_event() == msg(("Event", "A"), ("Key", "v"))
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 0


def test_follows_waits_for_end_command_across_blank_lines() -> None:
    parser = AmiParser(expect_greeting=False)
    parser.receive_data(b"Response: Follows\r\nPrivilege: Command\r\nline 1\n\n\n")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"--END COMMAND--\r\n\r\n")
    item = parser.next_event()
    assert item == msg(("Response", "Follows"), ("Privilege", "Command"), output=["line 1", "", ""])


def test_message_accessors_on_parsed_items() -> None:
    (case,) = [case for case in CASES if case.id.startswith("OriginateResponse")]
    items = parse_ok(case.values[0], expect_greeting=False)
    (originate,) = items
    assert isinstance(originate, Message)
    assert originate.kind is MessageKind.EVENT
    assert originate.name == "OriginateResponse"
    assert originate.get("response") == "Success"
    assert originate.action_id == "orig-async-1"
    greeting = parse_ok(BANNER)[0]
    assert isinstance(greeting, Greeting)
    assert greeting.version == "9.0.0"


# -- the banner ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"Response: Success\r\n\r\n",
        b"\r\nAsterisk Call Manager/9.0.0\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_a_missing_banner_is_a_remote_error(data: bytes) -> None:
    result = parse_every_way(data)
    assert result.items == []
    assert isinstance(result.error, RemoteProtocolError)


def test_other_manager_banners_are_accepted() -> None:
    assert parse_ok(b"Yeastar Call Manager/1.1\r\n") == [Greeting(line="Yeastar Call Manager/1.1")]


# -- limits --------------------------------------------------------------------------

LIMITED: dict[str, Any] = {
    "expect_greeting": False,
    "max_line": 40,
    "max_message": 150,
    "max_headers": 5,
}
LONG, LARGE, MANY = "longer than", "larger than", "more than"
LIMIT_CASES: list[Any] = [
    pytest.param(b"Event: A\r\nLong: " + b"x" * 40 + b"\r\n\r\n", LONG, id="line too long"),
    pytest.param(b"Event: " + b"x" * 60, LONG, id="first line too long, no LF yet"),
    pytest.param(b"Event: A\r\nLong: " + b"x" * 60, LONG, id="partial line too long"),
    pytest.param(
        b"Event: A\r\nLong: " + b"x" * 40 + b"\r\nMore: 1\r\n",
        LONG,
        id="long line inside an unfinished message",
    ),
    pytest.param(
        b"Event: A\r\n" + b"".join(b"Key: " + c * 30 + b"\r\n" for c in (b"x", b"y", b"z", b"w")),
        LARGE,
        id="message too large, unfinished",
    ),
    pytest.param(b"Event: A\r\n" + b"K: v\r\n" * 5 + b"\r\n", MANY, id="too many headers"),
    pytest.param(b"Event: A\r\n" + b"K: v\r\n" * 5, MANY, id="too many headers, unfinished"),
    pytest.param(
        b"Response: Follows\r\n" + b"line\n" * 6 + b"--END COMMAND--\r\n\r\n",
        MANY,
        id="Follows: too many output lines",
    ),
    pytest.param(
        b"Response: Follows\r\n" + b"line\n" * 5 + b"glued--END COMMAND--\r\n\r\n",
        MANY,
        id="Follows: too many output lines, the last glued to END",
    ),
    pytest.param(
        b"Response: Follows\r\nPrivilege: Command\r\n" + b"ActionID: x\r\n" * 5,
        MANY,
        id="Follows: too many headers",
    ),
    pytest.param(
        b"Response: Follows\r\n" + (b"x" * 30 + b"\n") * 5 + b"--END COMMAND--\r\n",
        LARGE,
        id="Follows: too large",
    ),
    pytest.param(b"Response: Follows\r\n" + b"x" * 41, LONG, id="Follows: partial line too long"),
    pytest.param(b"Asterisk Call Manager/" + b"9" * 40, LONG, id="banner too long"),
]


@pytest.mark.parametrize(("data", "reason"), LIMIT_CASES)
def test_limits_raise_remote_error_and_break_the_parser(data: bytes, reason: str) -> None:
    good = b"Response: Success\r\nActionID: before\r\n\r\n"
    kwargs = dict(LIMITED, expect_greeting=data.startswith(b"Asterisk"))
    result = parse_every_way(good * (not kwargs["expect_greeting"]) + data, **kwargs)
    assert isinstance(result.error, RemoteProtocolError)
    assert reason in str(result.error)
    if not kwargs["expect_greeting"]:
        assert result.items == [msg(("Response", "Success"), ("ActionID", "before"))]

    parser = AmiParser(**kwargs)
    parser.receive_data(data)
    with pytest.raises(RemoteProtocolError) as first:
        while parser.next_event() is not NEED_DATA:
            pass
    # Broken for good: the same error again, whatever comes next.
    with pytest.raises(RemoteProtocolError) as again:
        parser.next_event()
    assert again.value is first.value
    with pytest.raises(RemoteProtocolError):
        parser.receive_data(b"Event: Fine\r\n\r\n")


def test_limits_are_inclusive() -> None:
    # A line of exactly max_line bytes (CR included), a message of exactly max_message
    # bytes and exactly max_headers lines all pass.
    line = b"K: " + b"v" * 36 + b"\r\n"  # 39 bytes + CR = 40 before the LF
    assert len(line) - 1 == 40
    data = b"Event: A\r\n" + line * 4  # 5 lines
    assert parse_ok(data + b"\r\n", **dict(LIMITED, max_message=len(data)))
    result = parse_every_way(data + b"\r\n", **dict(LIMITED, max_message=len(data) - 1))
    assert isinstance(result.error, RemoteProtocolError)


def test_blank_lines_between_messages_do_not_count() -> None:
    kwargs = dict(LIMITED, max_message=20)
    assert len(parse_ok(b"\r\n" * 100 + b"Event: A\r\n\r\n" * 3, **kwargs)) == 3


def test_error_mid_stream_keeps_the_items_before_it() -> None:
    data = b"Event: A\r\n\r\nEvent: B\r\n\r\n" + b"x" * 100
    result = outcome([data], **LIMITED)
    assert result.items == [msg(("Event", "A")), msg(("Event", "B"))]
    assert isinstance(result.error, RemoteProtocolError)


# -- many messages in one read (the batch path) -------------------------------------------

_MIXED = (
    b"\r\n\nEvent: VarSet\r\nChannel: PJSIP/201-1\r\nVariable: x\r\nValue: a: b\r\n\r\n"
    b"\n\r\n"  # blank lines between messages
    b"Event: Note\r\nText: the Follows header follows\r\n\r\n"  # "follows", no Follows
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nline 1\n\nline 3\n"
    b"--END COMMAND--\r\n\r\n"
    b"K:v: w\n \tK :\nno colon\n\r\r\n\n"  # odd lines: keys with colons, spaces, a lone CR
    b"Event: Last\r\nKey: \xd0\x98\xff\r\n\r\n"
)


@pytest.mark.parametrize(
    "limits",
    [{}, {"max_line": 40}, {"max_message": 60}, {"max_headers": 5}, {"max_line": 200}],
    ids=["defaults", "short lines", "small messages", "few headers", "medium lines"],
)
def test_many_messages_in_one_read_match_the_reference_model(limits: dict[str, int]) -> None:
    data = _MIXED * 3
    expected, failed = reference_parse(data, expect_greeting=False, **limits)
    result = parse_every_way(data, expect_greeting=False, **limits)
    assert result.items == expected
    assert (result.error is not None) == failed


def test_messages_read_ahead_count_as_buffered_until_the_last_is_returned() -> None:
    parser = AmiParser(expect_greeting=False)
    data = b"Event: A\r\n\r\nEvent: B\r\n\r\nEvent: C\r\n"
    parser.receive_data(data)
    assert parser.next_event() == msg(("Event", "A"))
    assert parser.buffered > len(b"Event: C\r\n")
    assert parser.next_event() == msg(("Event", "B"))
    assert parser.buffered == len(b"Event: C\r\n")
    assert parser.next_event() is NEED_DATA


def test_a_follows_answer_among_many_messages_is_read_line_by_line() -> None:
    events = b"".join(b"Event: E%d\r\nN: %d\r\n\r\n" % (i, i) for i in range(50))
    follows = b"Response: Follows\r\nActionID: 1\r\nup\n\nstill output\n--END COMMAND--\r\n\r\n"
    items = parse_ok(events + follows + events, random_runs=3, expect_greeting=False)
    assert len(items) == 101
    assert items[50] == msg(
        ("Response", "Follows"), ("ActionID", "1"), output=["up", "", "still output"]
    )
    assert items[51] == msg(("Event", "E0"), ("N", "0"))
