"""SMS text on the AMI wire: the encodings each backend needs, and the size limits.

Newlines in SMS text must never reach the AMI stream raw, and a text must never be able
to close its quotes or start a second header:

- ``yeastar`` (``Command: gsm send sms SPAN NUMBER "TEXT"``): ``escape_sms_text``. The
  Asterisk CLI splits a command line on blanks, groups by double quotes and takes a
  backslash as "the next character is literal". So ``\\`` becomes ``\\\\`` and ``"``
  becomes ``\\"``; CR LF, a lone CR or LF, tab and every other control character
  (Unicode category Cc, plus U+2028/U+2029/U+0085) become one space each (a CR LF pair
  counts as one). The result contains no unescaped quote, does not end in a lone
  backslash and has no control characters, so it can neither close its quotes nor
  break its header. Line breaks are lost: the CLI has no way to carry them.
- ``yeastar-tg`` (``smscommand``): ``percent_encode``, the percent-encoding of the UTF-8
  text with no safe characters, which keeps line breaks as ``%0A``.
- ``dongle`` (``DongleSendSMS``): the ``Message`` header gets ``flatten_controls`` of
  the text, as above without the quote escaping (a header value needs none).

Every AMI line Asterisk reads must fit its 1024-byte input buffer (longer lines are
cut). A text whose encoded line would exceed ``MAX_LINE_BYTES`` is refused with
``InvalidArgument('msg')`` rather than sent truncated; so is a text longer than
``MAX_TEXT_CHARS`` or blank after trimming.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import quote

from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.numbers import check_normalised

MAX_LINE_BYTES: Final = 1000
"""Longest ``Key: value`` line (UTF-8 bytes, CRLF excluded) sent for an SMS."""

MAX_TEXT_CHARS: Final = 1000
"""Longest SMS text accepted before encoding."""

_LINE_BREAK: Final = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")


def flatten_controls(text: str) -> str:
    """``text`` with each line break (CR LF counts as one) and control character as a space."""
    text = _LINE_BREAK.sub(" ", text)
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in text)


def escape_sms_text(text: str) -> str:
    """Make ``text`` safe inside the double quotes of a Yeastar CLI argument.

    Backslash -> ``\\\\``, double quote -> ``\\"``, line breaks and control characters
    -> a space (see the module docstring). Everything else, Unicode included, is kept.
    """
    flat = flatten_controls(text)
    return flat.replace("\\", "\\\\").replace('"', '\\"')


def percent_encode(text: str) -> str:
    """Percent-encoding of the UTF-8 bytes of ``text``, as TG gateways expect it."""
    return quote(text, safe="", encoding="utf-8")


def check_line(key: str, value: str) -> None:
    """Refuse (``InvalidArgument('msg')``) a text whose AMI line would not fit Asterisk's buffer."""
    size = len(f"{key}: {value}".encode())
    if size > MAX_LINE_BYTES:
        raise InvalidArgument(
            "msg",
            f"is too long for the PBX: its AMI line would be {size} bytes, at most "
            f"{MAX_LINE_BYTES} fit (non-Latin letters take more room, up to 6 bytes "
            "each when URL-encoded)",
        )


def check_request(tel: str, text: str) -> None:
    """Refuse a number that is not normalised (``tel``) or a blank or over-long text (``msg``)."""
    check_normalised(tel, argument="tel")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("msg", "is required and must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument("msg", f"is too long (more than {MAX_TEXT_CHARS} characters)")
