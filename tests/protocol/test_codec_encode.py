"""encode_action / encode_message / encode_greeting: exact bytes, round trips, refusals.

The contract: whatever the encoder accepts, the parser reads back exactly; whatever it
refuses raises ``LocalProtocolError`` (and only that) before producing any bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vwell_pbx.protocol import (
    Greeting,
    LocalProtocolError,
    Message,
    ProtocolError,
    encode_action,
    encode_greeting,
    encode_message,
)

from .support import msg, parse_ok


def read_back(data: bytes) -> Message:
    (item,) = parse_ok(data, expect_greeting=False, random_runs=3)
    assert isinstance(item, Message)
    return item


# -- exact bytes and round trips -----------------------------------------------------


def test_action_exact_bytes() -> None:
    assert encode_action({"Action": "Ping", "ActionID": "conn1-2"}) == (
        b"Action: Ping\r\nActionID: conn1-2\r\n\r\n"
    )


def test_follows_exact_bytes() -> None:
    data = encode_message(
        [("Response", "Follows"), ("Privilege", "Command"), ("ActionID", "c1")],
        output=["line 1", "", "  indented: yes"],
    )
    assert data == (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n"
        b"line 1\n\n  indented: yes\n--END COMMAND--\r\n\r\n"
    )


def test_greeting_round_trip() -> None:
    assert encode_greeting() == b"Asterisk Call Manager/9.0.0\r\n"
    assert parse_ok(encode_greeting("2.10.4")) == [Greeting(line="Asterisk Call Manager/2.10.4")]


ROUND_TRIPS: list[Any] = [
    pytest.param(
        [
            ("Action", "Originate"),
            ("ActionID", "orig-async-1"),
            ("Channel", "Local/100@DLPN_DialPlan269"),
            ("Variable", "FOO=one"),
            ("Variable", "BAR=two"),
            ("CallerID", '"AMI Test" <5551000>'),
            ("Async", "true"),
        ],
        id="Originate with repeated Variable",
    ),
    pytest.param(
        [("Action", "Command"), ("Command", 'gsm send sms 2 +79001234567 "Привет: мир"')],
        id="Cyrillic and ': ' in a value",
    ),
    pytest.param(
        [("Action", "UserEvent"), ("UserEvent", "X"), ("Empty", ""), ("Spaces", "  lead")],
        id="empty value and leading spaces",
    ),
    pytest.param([("action", "ping"), ("actionid", "lower")], id="lower-case keys"),
]


@pytest.mark.parametrize("pairs", ROUND_TRIPS)
def test_action_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert read_back(encode_action(pairs)) == Message(headers=tuple(pairs))
    assert read_back(encode_message(pairs)) == Message(headers=tuple(pairs))


def test_mapping_round_trip() -> None:
    fields = {"Action": "Setvar", "Variable": "X", "Value": "1: 2"}
    assert read_back(encode_action(fields)).to_dict() == fields


@pytest.mark.parametrize(
    "output",
    [[], [""], ["a", "", "b: c", "   x"], ["Privilege is a word here"], ["--END COMMAND-- x"]],
)
def test_follows_round_trip(output: list[str]) -> None:
    headers = (("Response", "Follows"), ("Privilege", "Command"), ("ActionID", "x"))
    assert read_back(encode_message(headers, output=output)) == Message(
        headers=headers, output=tuple(output)
    )


# -- refusals --------------------------------------------------------------------------

BAD_VALUES = ["a\rb", "a\nb", "x\r\n\r\nAction: Hangup", "\r\n\r\n", "nul\x00", "\ud800"]
BAD_KEYS = ["", "A\rB", "A\nB", "A:B", "Channel: x", " Lead", "Trail ", "\t", "N\x00L", "\udc80"]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_values_are_refused(value: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_action([("Action", "Setvar"), ("Value", value)])
    with pytest.raises(LocalProtocolError):
        encode_message([("Event", "X"), ("Value", value)])


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_action([("Action", "Setvar"), (key, "v")])


@pytest.mark.parametrize(
    "fields",
    [
        [],
        {},
        [("ActionID", "x"), ("Action", "Ping")],
        {"ActionID": "x", "Action": "Ping"},
        [("Action", "")],
        [("Action", "   ")],
        [("Event", "Ping")],
    ],
)
def test_actions_must_start_with_action(fields: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_action(fields)


@pytest.mark.parametrize(
    ("headers", "output"),
    [
        pytest.param([], None, id="no headers"),
        pytest.param([("Response", "Follows")], None, id="Follows without output"),
        pytest.param([("response", "FOLLOWS")], None, id="Follows any case, without output"),
        pytest.param([("Response", "Success")], ["x"], id="output without Follows"),
        pytest.param(
            [("Response", "Follows"), ("Message", "x")], ["x"], id="Follows with other header"
        ),
        pytest.param([("Response", "Follows")], ["ActionID: x"], id="output read as header"),
        pytest.param([("Response", "Follows")], [" privilege : x"], id="output read as header 2"),
        pytest.param([("Response", "Follows")], ["a--END COMMAND--"], id="output ends with END"),
        pytest.param([("Response", "Follows")], ["a\nb"], id="output with LF"),
        pytest.param([("Response", "Follows")], ["a\rb"], id="output with CR"),
        pytest.param([("Response", "Follows")], ["\udfff"], id="output not Unicode"),
    ],
)
def test_messages_that_would_not_read_back_are_refused(
    headers: list[tuple[str, str]], output: list[str] | None
) -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(headers, output=output)


@pytest.mark.parametrize("version", ["9.0\r\n", "9\n", "\ud800"])
def test_bad_banner_versions_are_refused(version: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_greeting(version)


def test_local_errors_are_protocol_errors() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)


# -- properties ------------------------------------------------------------------------

_SAFE_KEY = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True)
_SAFE_VALUE = st.text(
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]), max_size=20
)
# The characters that matter to the framing, plus any character at all.
_TRICKY = st.sampled_from([*"Aa:- \r\n\t\x00\x85\u2028\ufffd", "--END COMMAND--"])
_TEXT = st.lists(_TRICKY | st.characters(), max_size=8).map("".join)
_NAMES = st.sampled_from(["Action", "Response", "Event", "Privilege", "ActionID", "Output"])
_KEYS = _SAFE_KEY | _NAMES | _TEXT
_VALUES = _SAFE_VALUE | st.sampled_from(["Follows", "follows", "Ping", "Success"]) | _TEXT
_HEADERS = st.lists(st.tuples(_KEYS, _VALUES), max_size=6)
_OUTPUT = st.none() | st.lists(_SAFE_VALUE | _TEXT | st.just("ActionID: 1"), max_size=5)


@pytest.mark.slow  # hypothesis, hundreds of examples
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(headers=_HEADERS, output=_OUTPUT)
def test_encode_message_reads_back_or_refuses(
    headers: list[tuple[str, str]], output: list[str] | None
) -> None:
    try:
        data = encode_message(headers, output=output)
    except LocalProtocolError:
        event("refused")
        return
    event("accepted")
    expected = Message(headers=tuple(headers), output=None if output is None else tuple(output))
    assert read_back(data) == expected


@pytest.mark.slow  # hypothesis, hundreds of examples
@settings(max_examples=300)
@given(
    action=_VALUES,
    headers=st.lists(st.tuples(_KEYS, _VALUES), max_size=6)
    | st.dictionaries(_KEYS, _VALUES, max_size=6).map(lambda d: list(d.items())),
)
def test_encode_action_reads_back_or_refuses(action: str, headers: list[tuple[str, str]]) -> None:
    pairs = [("Action", action), *headers]
    try:
        data = encode_action(pairs)
    except LocalProtocolError:
        return
    assert read_back(data) == Message(headers=tuple(pairs))


@pytest.mark.slow  # hypothesis, hundreds of examples
@settings(max_examples=200)
@given(action=_SAFE_VALUE.filter(str.strip), headers=st.lists(st.tuples(_SAFE_KEY, _SAFE_VALUE)))
def test_ordinary_actions_are_never_refused(
    action: str, headers: Sequence[tuple[str, str]]
) -> None:
    pairs = [("Action", action), *headers]
    assert read_back(encode_action(pairs)) == msg(*pairs)
