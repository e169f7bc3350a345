"""SMS text encodings: CLI escaping, percent-encoding, control characters, line limits."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.sms import (
    MAX_LINE_BYTES,
    YeastarCommandBackend,
    YeastarTgBackend,
    escape_sms_text,
    flatten_controls,
    percent_encode,
)
from vwell_pbx.protocol import encode_action
from vwell_pbx.simulator.gsm import parse_send_sms, split_cli_args


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("lorem ipsum", "lorem ipsum"),
        ('say "hi"', 'say \\"hi\\"'),
        ("C:\\path\\", "C:\\\\path\\\\"),  # a trailing backslash cannot eat the quote
        ('\\"', '\\\\\\"'),
        ("line1\r\nline2", "line1 line2"),  # CR LF counts as one break
        ("a\rb\nc", "a b c"),
        ("\r\n\r\n", "  "),  # the blank line that would end an AMI message
        ("tab\there", "tab here"),
        ("nul\x00bell\x07del\x7f", "nul bell del "),
        ("ls\u2028ps\u2029nel\x85", "ls ps nel "),
        ("Привет, мир! 👋", "Привет, мир! 👋"),
        ("zero\u200bwidth", "zero\u200bwidth"),  # format characters are text, kept
    ],
)
def test_escape_table(text: str, escaped: str) -> None:
    assert escape_sms_text(text) == escaped


def test_percent_encoding_keeps_line_breaks_as_escapes() -> None:
    assert percent_encode('Привет "мир"\r\n+1 100%') == (
        "%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82%20%22%D0%BC%D0%B8%D1%80%22%0D%0A%2B1%20100%25"
    )


def test_flatten_controls() -> None:
    assert flatten_controls("a\r\n\r\nb\tc") == "a  b c"


@given(st.text(max_size=200))
def test_escaped_text_survives_the_cli_parser_as_one_argument(text: str) -> None:
    line = YeastarCommandBackend.command_line(2, "81002003040", text)
    parsed = parse_send_sms(line)
    assert parsed is not None
    assert (parsed.span, parsed.number, parsed.sms_id) == (2, "81002003040", None)
    assert parsed.text == flatten_controls(text)
    assert "\r" not in line and "\n" not in line
    encode_action([("Action", "Command"), ("Command", line)])  # the codec accepts it


@given(st.text(max_size=200))
def test_percent_encoded_text_round_trips(text: str) -> None:
    line = YeastarTgBackend.command_line(2, "81002003040", text, "17")
    args = split_cli_args(line)
    assert len(args) == 7
    assert unquote(args[5]) == text
    assert args[6] == "17"
    assert line.isascii()


def test_escaping_cannot_add_arguments() -> None:
    hostile = 'x" 99 "evil\r\nAction: Originate\r\n\r\n'
    line = YeastarCommandBackend.command_line(2, "100", hostile)
    assert len(split_cli_args(line)) == 6
    assert "\n" not in line


def test_too_long_text_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(InvalidArgument, match=r"^argument\.msg is too long"):
        YeastarTgBackend.check_text("Я" * 200)  # 200 letters -> 1200 URL-encoded characters
    YeastarTgBackend.check_text("a" * (MAX_LINE_BYTES - 100))
    YeastarCommandBackend.check_text("Я" * 400)  # 800 bytes of UTF-8 fit the CLI line
    with pytest.raises(InvalidArgument, match=r"^argument\.msg is too long"):
        YeastarCommandBackend.check_text("Я" * 500)
