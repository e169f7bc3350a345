"""Properties of AmiParser over arbitrary bytes, split arbitrarily, in both roles.

1. It only ever yields ``Greeting``/``Message`` items (a client's parser) or
   ``Message``/``MissingAction`` items (a server's) or raises ``RemoteProtocolError``:
   no other exception, no hang (hypothesis' deadline and pytest-timeout watch that).
2. It agrees with the naive line-by-line model in ``reference.py`` on every stream,
   limits included, however the stream is split.
3. A server's parser returns only actions that ``encode_message`` writes back to bytes
   it parses into the same action.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vwell_pbx.protocol import (
    Greeting,
    Message,
    MissingAction,
    action_name,
    encode_message,
)

from .reference import reference_parse, reference_parse_actions
from .support import outcome, pieces_at

pytestmark = pytest.mark.slow  # hypothesis, hundreds of examples each

# Fragments that drive the parser into its corners, mixed with raw bytes.
_FRAGMENTS = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n\r\n",
        b"\n\n",
        b":",
        b": ",
        b" ",
        b"Event: X",
        b"Response: Success",
        b"Response: Follows\r\n",
        b"response: follows\n",
        b"Privilege: Command\r\n",
        b"ActionID: 1\r\n",
        b"--END COMMAND--",
        b"Output:  x",
        b"Asterisk Call Manager/9.0.0\r\n",
        b"\xff",
        b"\xd0",
        b"\xd0\x98",
        b"\x00",
        b"\xc2\x85",
        b"follows",
    ]
)
# Line-shaped streams: lines built from the pieces a header is made of (so keys with
# spaces, colons after the first one, "Response: Follows"... come up), some blank, any
# line end.
_PIECES = st.sampled_from(
    [
        *(b"Key", b"Event", b"Response", b"Follows", b"ActionID", b"Privilege"),
        *(b"--END COMMAND--", b":", b": ", b" ", b"  ", b"\t", b"\r"),
        *(b"\xff", b"\xd0\x98", b"\xc2\x85", b"\xc2\xa0"),
    ]
) | st.binary(max_size=3).map(lambda b: b.replace(b"\n", b""))
_LINES = st.lists(
    st.tuples(
        st.lists(_PIECES, max_size=6).map(b"".join),
        st.sampled_from([b"\r\n", b"\n", b"\r\n", b""]),
    ).map(b"".join),
    max_size=12,
).map(b"".join)
_STREAMS = (
    st.binary(max_size=300)
    | st.lists(_FRAGMENTS | st.binary(max_size=4), max_size=40).map(b"".join)
    | _LINES
)


@st.composite
def _split_stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(_STREAMS)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=10))
    return data, pieces_at(data, cuts)


def _check_items(items: list[Any], expect_greeting: bool) -> None:
    for position, item in enumerate(items):
        if expect_greeting and position == 0:
            assert isinstance(item, Greeting)
            assert "\n" not in item.line
            continue
        assert isinstance(item, Message)
        assert item.headers
        for key, value in item.headers:
            assert "\n" not in key and "\n" not in value
        if item.output is not None:
            assert all("\n" not in line for line in item.output)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_split_stream(), expect_greeting=st.booleans())
def test_arbitrary_bytes_parse_or_raise_remote_error(
    stream: tuple[bytes, list[bytes]], expect_greeting: bool
) -> None:
    _, pieces = stream
    # outcome() lets only RemoteProtocolError through as a result; anything else
    # propagates and fails the test.
    result = outcome(pieces, expect_greeting=expect_greeting)
    _check_items(result.items, expect_greeting)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=_split_stream(),
    expect_greeting=st.booleans(),
    # Each limit is left at its default or made small (mostly very small), one at a
    # time or together, so that streams of a few lines reach it.
    limits=st.fixed_dictionaries(
        {},
        optional={
            "max_line": st.integers(2, 12) | st.integers(2, 64),
            "max_message": st.integers(1, 40) | st.integers(1, 400),
            "max_headers": st.integers(1, 8),
        },
    ),
)
# Corners pinned: a long line or too many lines in a message, ended or not, fed whole
# or not; a Follows first line alone over max_message; colons and spaces in keys.
@example(stream=(b"a\nbbb\n\n", [b"a\nbbb\n\n"]), expect_greeting=False, limits={"max_line": 2})
@example(stream=(b"K:v: w\n \tK :\n\n", [b"K:v: w\n \tK :\n\n"]), expect_greeting=False, limits={})
@example(
    stream=(b"a\nb\nc\n\n", [b"a\nb\nc\n\n"]), expect_greeting=False, limits={"max_headers": 2}
)
@example(
    stream=(b"Response: Follows\r\n", [b"Response: Follows\r\n"]),
    expect_greeting=False,
    limits={"max_message": 5},
)
@example(stream=(b"a\nlong\n", [b"a\nlong\n"]), expect_greeting=False, limits={"max_line": 2})
@example(
    stream=(b"a\nb\nc\n", [b"a\n", b"b\nc\n"]), expect_greeting=False, limits={"max_headers": 2}
)
def test_parser_matches_the_reference_model(
    stream: tuple[bytes, list[bytes]], expect_greeting: bool, limits: dict[str, int]
) -> None:
    data, pieces = stream
    kwargs: dict[str, Any] = {"expect_greeting": expect_greeting, **limits}
    expected, failed = reference_parse(data, **kwargs)
    result = outcome(pieces, **kwargs)
    assert result.items == expected
    assert (result.error is not None) == failed


# -- the server role ---------------------------------------------------------------------

# What clients send, and what garbage looks like, in pieces.
_ACTION_PIECES = st.sampled_from(
    [
        *(b"Action", b"action", b"ActionID", b"Ping", b"Key", b"Response", b"Follows"),
        *(b":", b": ", b" ", b"\t", b"\r", b"\x00", b"\x1b", b"\x7f", b"\xff", b"\xd0\x98"),
    ]
) | st.binary(max_size=3).map(lambda b: b.replace(b"\n", b""))
_ACTION_LINES = st.lists(
    st.tuples(
        st.lists(_ACTION_PIECES, max_size=6).map(b"".join),
        st.sampled_from([b"\r\n", b"\n", b"\r\n", b""]),
    ).map(b"".join),
    max_size=12,
).map(b"".join)


@st.composite
def _split_client_stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(_ACTION_LINES | _STREAMS)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=10))
    return data, pieces_at(data, cuts)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_split_client_stream())
@example(stream=(b"Action: Ping\r\n\r\n\n", [b"Action: Ping\r\n\r\n\n"]))
def test_server_role_parses_actions_or_raises_remote_error(
    stream: tuple[bytes, list[bytes]],
) -> None:
    _, pieces = stream
    result = outcome(pieces, role="server")
    for item in result.items:
        assert isinstance(item, Message | MissingAction)
        if isinstance(item, Message):
            assert action_name(item) is not None
            again = outcome([encode_message(item.headers)], role="server")
            assert (again.items, again.error) == ([item], None)
        else:
            assert not any(k.lower() == "action" and v.strip() for k, v in item.headers)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=_split_client_stream(),
    limits=st.fixed_dictionaries(
        {},
        optional={
            "max_line": st.integers(2, 12) | st.integers(2, 64),
            "max_message": st.integers(1, 40) | st.integers(1, 400),
            "max_headers": st.integers(1, 8),
        },
    ),
)
@example(stream=(b"a\nb\n\n", [b"a\nb\n\n"]), limits={})
@example(stream=(b"K: v\nK: v\n", [b"K: v\n", b"K: v\n"]), limits={"max_headers": 1})
def test_server_role_matches_the_reference_model(
    stream: tuple[bytes, list[bytes]], limits: dict[str, int]
) -> None:
    data, pieces = stream
    expected, failed = reference_parse_actions(data, **limits)
    result = outcome(pieces, role="server", **limits)
    assert result.items == expected
    assert (result.error is not None) == failed
