"""AmiParser in the server role: a client's actions, parsed strictly, as Asterisk reads them.

Tables of (wire bytes, expected items), each fed whole, byte by byte and in random
splits (``parse_every_way``); the bytes are what clients sent in the recorded
transcripts (tests/data/ami) or what a client could send. Garbage and limits raise
``RemoteProtocolError`` and keep the items before them. The property tests are in
``test_codec_properties``; the recorded client streams in ``test_transcripts``.
"""

from __future__ import annotations

from typing import Any

import pytest

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Message,
    MissingAction,
    RemoteProtocolError,
    action_name,
    encode_message,
)

from .support import Item, msg, parse_every_way, parse_ok

SERVER: dict[str, Any] = {"role": "server"}

CASES: list[Any] = [
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
            MissingAction(),
            MissingAction(),
            msg(("Action", "Ping"), ("ActionID", "after-stray-blank-lines")),
            msg(("action", "ping"), ("actionid", "lf-only-line-endings")),
        ],
        id="transcript 05: each stray blank line is a MissingAction; LF only",
    ),
    pytest.param(
        b"ActionID: no-action-header\r\nFoo: bar\r\n\r\n",
        [MissingAction(headers=(("ActionID", "no-action-header"), ("Foo", "bar")))],
        id="transcript 05: headers without Action",
    ),
    pytest.param(
        b"Action:   \r\nActionID: blank\r\n\r\n",
        [MissingAction(headers=(("Action", "  "), ("ActionID", "blank")))],
        id="a blank Action is no action",
    ),
    pytest.param(
        b"ActionID: first\r\nAction: \r\naction: Ping\r\n\r\n",
        [msg(("ActionID", "first"), ("Action", ""), ("action", "Ping"))],
        id="Action found anywhere, the first non-blank one",
    ),
    pytest.param(
        b"ACTION: PING\r\nACTIONID: upper\r\n\r\n",
        [msg(("ACTION", "PING"), ("ACTIONID", "upper"))],
        id="transcript 05: upper-case keys",
    ),
    pytest.param(
        b"Action: UserEvent\r\nUserEvent: Lab\r\nColon: a:b: c\r\nEmpty:\r\n"
        b"Spaced:   x  \r\nKey : v\r\nTab: a\tb\r\nHeader1: one\r\nHeader1: two\r\n\r\n",
        [
            msg(
                ("Action", "UserEvent"),
                ("UserEvent", "Lab"),
                ("Colon", "a:b: c"),
                ("Empty", ""),
                ("Spaced", "  x  "),
                ("Key", "v"),
                ("Tab", "a\tb"),
                ("Header1", "one"),
                ("Header1", "two"),
            )
        ],
        id="values as sent: colons, blanks, tab, repeated keys",
    ),
    pytest.param(
        b"Response: Follows\r\nActionID: 1\r\n\r\n",
        [MissingAction(headers=(("Response", "Follows"), ("ActionID", "1")))],
        id="Response: Follows means nothing from a client",
    ),
    pytest.param(
        "Action: UserEvent\r\nName: Иванов И.И.\r\n".encode() + b"Bad: \xff\xfe\r\n\r\n",
        [msg(("Action", "UserEvent"), ("Name", "Иванов И.И."), ("Bad", "\ufffd\ufffd"))],
        id="UTF-8, invalid bytes replaced",
    ),
    pytest.param(b"\n\r\n", [MissingAction(), MissingAction()], id="blank lines alone"),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_parse_table(data: bytes, expected: list[Item]) -> None:
    assert parse_ok(data, **SERVER) == expected


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_every_action_encodes_back_to_itself(data: bytes, expected: list[Item]) -> None:
    for item in parse_ok(data, **SERVER):
        if isinstance(item, Message):
            assert parse_ok(encode_message(item.headers), **SERVER) == [item]


def test_action_name_and_missing_action_id() -> None:
    (ping,) = parse_ok(b"ActionID: 7\r\nAction: \r\naction:  Ping \r\n\r\n", **SERVER)
    assert isinstance(ping, Message) and action_name(ping) == "Ping"
    assert action_name(msg(("Event", "X"), ("Action", " "))) is None
    assert MissingAction().action_id is None
    assert MissingAction(headers=(("actionid", " 9 "), ("ActionID", "10"))).action_id == "9 "
    assert MissingAction(headers=(("ActionID", ""),)).action_id is None


GARBAGE: list[Any] = [
    pytest.param(b"\x00\x01\x02binary\r\n\r\n", id="binary"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="an HTTP request"),
    pytest.param(b"hello there\r\n\r\n", id="a line without a colon"),
    pytest.param(b"Action: Ping\r\n: no key\r\n\r\n", id="nothing before the colon"),
    pytest.param(b"Action: Ping\r\n   : blank key\r\n\r\n", id="blanks before the colon"),
    pytest.param(b"Action: Ping\r\nX: a\rb\r\n\r\n", id="a lone CR"),
    pytest.param(b"Action: Ping\r\r\n\r\n", id="CR CR LF"),
    pytest.param(b"Action: Ping\r\nX: \x1b[31mred\r\n\r\n", id="an escape sequence"),
    pytest.param(b"Action: Ping\r\nX: del\x7f\r\n\r\n", id="DEL"),
    pytest.param(b"Action: Ping\r\nX: nul\x00\r\n", id="NUL, message unfinished"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_a_remote_error(data: bytes) -> None:
    before = b"Action: Ping\r\nActionID: before\r\n\r\n"
    result = parse_every_way(before + data, **SERVER)
    assert isinstance(result.error, RemoteProtocolError)
    assert result.items == [msg(("Action", "Ping"), ("ActionID", "before"))]


LIMITED: dict[str, Any] = {"role": "server", "max_line": 40, "max_message": 150, "max_headers": 5}
LONG, LARGE, MANY = "longer than", "larger than", "more than"
LIMIT_CASES: list[Any] = [
    pytest.param(b"Action: A\r\nLong: " + b"x" * 40 + b"\r\n\r\n", LONG, id="line too long"),
    pytest.param(b"Action: " + b"x" * 60, LONG, id="partial line too long"),
    pytest.param(
        b"Action: A\r\n" + b"".join(b"Key: " + c * 30 + b"\r\n" for c in (b"x", b"y", b"z", b"w")),
        LARGE,
        id="message too large, unfinished",
    ),
    pytest.param(b"Action: A\r\n" + b"K: v\r\n" * 5 + b"\r\n", MANY, id="too many headers"),
    pytest.param(b"Action: A\r\n" + b"K: v\r\n" * 5, MANY, id="too many headers, unfinished"),
]


@pytest.mark.parametrize(("data", "reason"), LIMIT_CASES)
def test_limits_raise_remote_error_and_break_the_parser(data: bytes, reason: str) -> None:
    good = b"Action: Ping\r\nActionID: before\r\n\r\n"
    result = parse_every_way(good + data, **LIMITED)
    assert isinstance(result.error, RemoteProtocolError)
    assert reason in str(result.error)
    assert result.items == [msg(("Action", "Ping"), ("ActionID", "before"))]
    parser = AmiParser(**LIMITED)
    parser.receive_data(data)
    with pytest.raises(RemoteProtocolError) as first:
        while parser.next_event() is not NEED_DATA:
            pass
    with pytest.raises(RemoteProtocolError) as again:
        parser.next_event()
    assert again.value is first.value


def test_limits_are_inclusive_and_blank_lines_do_not_count() -> None:
    line = b"K: " + b"v" * 36 + b"\r\n"  # 40 bytes before the LF, CR included
    data = b"Action: A\r\n" + line * 4  # 5 lines
    assert parse_ok(b"\r\n" * 50 + data + b"\r\n", **dict(LIMITED, max_message=len(data)))[-1]
    result = parse_every_way(data + b"\r\n", **dict(LIMITED, max_message=len(data) - 1))
    assert isinstance(result.error, RemoteProtocolError)


def test_nothing_is_returned_before_the_blank_line() -> None:
    parser = AmiParser(role="server")
    parser.receive_data(b"Action: Ping\r\nActionID: 1\r\n")
    assert parser.next_event() is NEED_DATA
    assert parser.buffered > 0
    parser.receive_data(b"\r\n")
    assert parser.next_event() == msg(("Action", "Ping"), ("ActionID", "1"))
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 0


def test_a_server_reads_no_banner() -> None:
    assert parse_ok(b"Action: Ping\r\n\r\n", role="server") == [msg(("Action", "Ping"))]
    assert parse_ok(b"Action: Ping\r\n\r\n", role="server", expect_greeting=False)
    with pytest.raises(ValueError, match="expect_greeting"):
        AmiParser(role="server", expect_greeting=True)
    with pytest.raises(ValueError, match="role"):
        AmiParser(role="peer")  # type: ignore[arg-type]
