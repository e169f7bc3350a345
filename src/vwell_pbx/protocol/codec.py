"""Sans-IO AMI codec: bytes in, messages out; messages in, bytes out.

No sockets, no asyncio, no clock. Use it like h11::

    parser = AmiParser()  # a client's parser: expects the banner first
    parser.receive_data(chunk)
    while (item := parser.next_event()) is not NEED_DATA:
        ...  # a Greeting, then Message objects

The parser has two roles. The default, ``role="client"``, reads what a PBX sends
(banner, responses, events) and is lenient, because a real PBX's oddities must never
desynchronise the stream. ``role="server"`` reads what a client sends (actions) the way
Asterisk's manager does, and is strict, because a server owes a client nothing but an
error; the simulator uses it.

Rules the parser keeps (both roles unless marked; the server role's own are S1-S4):

1. With ``expect_greeting=True`` the first line is the banner and is returned as a
   ``Greeting``; it must contain a ``/`` and the word ``Manager`` (any case), as in
   ``Asterisk Call Manager/9.0.0``, and carries no blank line after it.
2. A line ends at LF; one CR right before the LF is dropped (a lone CR elsewhere is
   data, as in Asterisk's own reader). A message is a run of ``Key: Value`` lines ended
   by an empty line. Keys split on the first ``:`` and are stripped; one space after
   the colon is dropped; the rest of the value is kept (it may contain ``: `` and
   leading spaces, as ``Output:`` lines do).
3. Empty lines between messages are skipped (Asterisk sends an extra one after some
   errors, and a client may send stray ones).
4. A message whose first header is ``Response: Follows`` (any case) continues, blank
   lines included, until a line ending in ``--END COMMAND--`` (alone, or glued to the
   last output line). The ``Privilege`` and ``ActionID`` lines right after the first
   line are headers; every other line is output text, kept in ``Message.output``.
5. A line without ``:`` inside a normal message is kept as a header with an empty
   key, so a peer's oddity does not desynchronise the stream.
6. Limits, checked as soon as the bytes arrive (a message need not be complete):
   no line longer than ``max_line`` bytes (CR included, LF not); no message larger than
   ``max_message`` bytes (its lines with their line ends, the closing blank line not
   counted); no more than ``max_headers`` lines in a message (``Follows`` output lines
   are counted apart from its headers). Past a limit ``RemoteProtocolError`` is raised
   and the parser stays broken (the caller must close the connection). Memory held is
   about ``max_message + max_line`` plus whatever one ``receive_data`` call brings.
7. Bytes are decoded as UTF-8 with ``replace``, so that one bad byte from a module
   never stops the event stream.
8. The result never depends on how the bytes were split into ``receive_data`` calls.

In the server role (``role="server"``; no banner is read, ``expect_greeting`` must not
be true):

S1. Every empty line ends a message, as in Asterisk's ``do_message``: the one after
    headers ends that action, and any other (a stray blank line) is an empty message.
    Rules 3 and 4 do not apply: blank lines are not skipped and ``Response: Follows``
    means nothing from a client.
S2. A message with a non-blank ``Action`` header (any case, anywhere) is returned as a
    ``Message``, its headers as sent. One without (a stray blank line included) is
    returned as ``MissingAction``; Asterisk answers it ``Response: Error`` /
    ``Message: Missing action in request`` and reads on.
S3. Strict lines, instead of rule 5: a line without ``:``, with nothing before its
    ``:``, or with a control character (anything below U+0020 but tab, a lone CR
    included, and DEL) raises ``RemoteProtocolError``: such bytes are garbage (binary
    noise, an HTTP request), not AMI. Every ``Message`` returned can therefore be
    encoded back by ``encode_message``.
S4. The limits of rule 6 apply; past one, ``RemoteProtocolError``. (Asterisk answers an
    over-long line or a message of more than 128 headers with an error and reads on;
    a server here closes the connection instead, which bounds what one client costs.)

``encode_action`` / ``encode_message`` refuse (``LocalProtocolError``, nothing produced)
any key or value that could smuggle a line break, a second header or a second action
into the stream, so that for every input they accept the parser reads back exactly the
same headers (and output lines).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Final, Literal

from vwell_pbx.protocol.errors import LocalProtocolError, RemoteProtocolError
from vwell_pbx.protocol.message import Greeting, Message, MissingAction, trusted_message


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by ``next_event`` when more bytes are needed."""

DEFAULT_MAX_LINE: Final = 64 * 1024
DEFAULT_MAX_MESSAGE: Final = 4 * 1024 * 1024
DEFAULT_MAX_HEADERS: Final = 10_000
END_COMMAND: Final = "--END COMMAND--"

_BLANK_LINES: Final = re.compile(rb"(?:\r?\n)+")
_MESSAGE_END: Final = re.compile(rb"\n\r?\n")  # the LF of a line, then an empty line
_FOLLOWS_HEADERS: Final = ("privilege", "actionid")
# Rule S3: C0 controls but tab (LF never reaches a line; the CR before it is dropped
# first), and DEL.
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

Role = Literal["client", "server"]


class AmiParser:
    """Incremental parser of an AMI byte stream, a client's (default) or a server's."""

    def __init__(
        self,
        *,
        role: Role = "client",
        expect_greeting: bool | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        """Make a parser for one connection.

        ``role``: ``"client"`` parses what a PBX sends, ``"server"`` what a client sends
        (see the module docstring). ``expect_greeting``: read the banner first; the
        default is true for a client and false for a server (which never gets one).
        """
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', got {role!r}")
        if expect_greeting is None:
            expect_greeting = role == "client"
        elif expect_greeting and role == "server":
            raise ValueError("a server's parser reads no banner: expect_greeting must be false")
        self._server = role == "server"
        self._buffer = bytearray()
        # Where the next search in _buffer resumes, so that a message arriving in many
        # small reads is scanned once, not once per read (see _next_message/_read_line).
        self._scan_from = 0
        self._first_line_end = -1  # index of the LF ending the current message's first line
        self._lines_seen = 0  # LFs of the current message counted so far ...
        self._lines_counted_to = 0  # ... in _buffer[:_lines_counted_to]
        self._want_greeting = expect_greeting
        self._max_line = max_line
        self._max_message = max_message
        self._max_headers = max_headers
        # State of a ``Response: Follows`` message, which is parsed line by line.
        self._headers: list[tuple[str, str]] = []
        self._output: list[str] | None = None
        self._follows_headers = False  # still reading Privilege/ActionID after Follows
        self._message_size = 0
        self._broken: RemoteProtocolError | None = None
        # Messages parsed ahead by _next_batch, returned before anything else, and the
        # bytes they came from (counted in ``buffered`` until the last is returned).
        self._ready: deque[Message] = deque()
        self._ready_bytes = 0
        # Bytes received in all, and the stream position (bytes received minus bytes
        # still buffered) before which _next_batch must not run: a region it refused
        # is read message by message (see _next_batch).
        self._received = 0
        self._careful_until = 0
        # At most this many bytes per batch: then no line and no message in it can be
        # over the limits, nor have more than max_headers lines (each is 2 bytes or more).
        self._batch_limit = min(max_line + 1, max_message, 2 * max_headers)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message (messages parsed ahead in
        one batch count with all their bytes until the last of them is returned)."""
        return len(self._buffer) + self._message_size + self._ready_bytes

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer (any split, any size)."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        self._received += len(data)

    def next_event(self) -> Greeting | Message | MissingAction | _Sentinel:
        """The next complete item, or ``NEED_DATA``; raises ``RemoteProtocolError``.

        A client's parser returns a ``Greeting`` (when expected) and then ``Message``
        values; a server's returns ``Message`` (actions) and ``MissingAction`` values.
        """
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def _next(self) -> Greeting | Message | MissingAction | _Sentinel:
        if self._server:
            return self._next_action()
        if self._want_greeting:
            line = self._read_line()
            if line is None:
                return NEED_DATA
            self._want_greeting = False
            if "/" not in line or "manager" not in line.lower():
                raise RemoteProtocolError(f"expected an AMI banner, got {line[:80]!r}")
            return Greeting(line=line)
        while True:
            if self._output is None:
                ready = self._ready
                item: Message | _Sentinel | None
                if ready or (self._first_line_end < 0 and self._next_batch()):
                    item = ready.popleft()
                    if not ready:
                        self._ready_bytes = 0
                else:
                    item = self._next_message()
                if item is not None:
                    return item
                # None: a Follows message started; the line-by-line path takes it over.
            line = self._read_line()
            if line is None:
                return NEED_DATA
            message = self._take_follows_line(line)
            if message is not None:
                return message

    # -- the fast path: a whole message at a time ---------------------------------------
    #
    # A normal message ends at its first blank line, so it is framed on the raw bytes
    # (one regex search), then decoded and split in one go. Decoding a whole message
    # equals decoding each line: LF and CR are ASCII and never part of a UTF-8 sequence,
    # so "replace" cannot swallow them. str.replace("\r\n", "\n") drops exactly the
    # one CR before each LF, as the line rule says.

    # -- the fastest path: every whole message in the buffer at once ---------------------
    #
    # Between messages (no message begun), the longest prefix of the buffer that ends
    # with a blank line and is at most ``_batch_limit`` bytes is a run of whole
    # messages and blank lines. Being that short, no line, no message and no message's
    # line count in it can break a limit. It is decoded once and split into messages on
    # the blank lines; if one of them opens a ``Response: Follows`` (whose output may
    # hold blank lines), the whole region is left to the message-by-message path below.

    def _next_batch(self) -> bool:
        """Parse the whole messages at the buffer's start into ``_ready``; whether any."""
        buf = self._buffer
        if self._received - len(buf) < self._careful_until:
            return False
        limit = min(len(buf), self._batch_limit)
        # The last blank line: after the last CRLF one, an LF one (searched only there,
        # since a CRLF stream has none and the search would cross the whole buffer).
        lf_crlf = buf.rfind(b"\n\r\n", 0, limit)
        lf_lf = buf.rfind(b"\n\n", max(lf_crlf, 0), limit)
        stop = lf_lf + 2 if lf_lf >= 0 else lf_crlf + 3 if lf_crlf >= 0 else 0
        if stop == 0:
            return False
        text = buf[:stop].decode("utf-8", "replace").replace("\r\n", "\n")
        blocks = text.split("\n\n")
        del blocks[-1]  # the empty string after the last blank line
        messages = []
        for each in blocks:
            block = each
            if not block or block[0] == "\n":  # rule 3: blank lines between messages
                block = block.lstrip("\n")
                if not block:
                    continue
            # As in _next_message: split on ": " unless that leaves a ":" in the key.
            headers = tuple(
                [
                    (key.strip(), value)
                    if sep and ":" not in key
                    else _split_header(key + sep + value)
                    for key, sep, value in [line.partition(": ") for line in block.split("\n")]
                ]
            )
            key, value = headers[0]
            if len(value) == 7 and _is_follows(key, value):
                self._careful_until = self._received - len(buf) + stop
                return False
            messages.append(trusted_message(headers))
        del buf[:stop]
        self._scan_from = 0
        if not messages:
            return False
        self._ready.extend(messages)
        self._ready_bytes = stop
        return True

    def _next_message(self) -> Message | _Sentinel | None:
        """The next normal message, ``NEED_DATA``, or ``None`` if a Follows one began."""
        buf = self._buffer
        first_end = self._first_line_end
        if first_end < 0:
            blanks = _BLANK_LINES.match(buf)
            if blanks is not None:
                del buf[: blanks.end()]
                self._scan_from = 0
            first_end = buf.find(b"\n", self._scan_from)
            if first_end < 0:
                self._scan_from = len(buf)
                if len(buf) > self._max_line:
                    raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
                return NEED_DATA
            if first_end > self._max_line:
                raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
            # Cheap ASCII pre-check before the exact one: no non-ASCII character
            # lower-cases to a letter of "follows", so nothing is missed.
            if b"follows" in buf[:first_end].lower() and self._start_follows(first_end):
                return None
            self._first_line_end = first_end
            self._scan_from = first_end
        end = _MESSAGE_END.search(buf, self._scan_from)
        if end is None:
            self._check_partial()
            self._scan_from = max(first_end, len(buf) - 2)
            return NEED_DATA
        last_lf = end.start()
        size = last_lf + 1
        if size > self._max_message:
            raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
        if size > self._max_line + 1 and max(map(len, buf[:last_lf].split(b"\n"))) > self._max_line:
            raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
        # Every line of a message is at least 2 bytes, so short messages need no count.
        if size > 2 * self._max_headers and buf.count(b"\n", 0, size) > self._max_headers:
            raise RemoteProtocolError(f"AMI message has more than {self._max_headers} headers")
        lines = buf[:size].decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        del lines[-1]  # the empty string after the last LF
        del buf[: end.end()]
        self._scan_from = 0
        self._first_line_end = -1
        self._lines_seen = 0
        self._lines_counted_to = 0
        # Nearly every line is "Key: value": split on ": ", unless that would leave a ":"
        # in the key (the value starts after the FIRST colon) or there is no ": " at all.
        # One comprehension, because this runs for every header of every event.
        headers = tuple(
            [
                (key.strip(), value) if sep and ":" not in key else _split_header(key + sep + value)
                for key, sep, value in [line.partition(": ") for line in lines]
            ]
        )
        return Message(headers=headers)

    def _check_partial(self) -> None:
        """Apply the limits to a message whose end has not arrived yet."""
        buf = self._buffer
        last_lf = buf.rfind(b"\n")  # >= 0: the first line is complete
        if len(buf) - last_lf - 1 > self._max_line:
            raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
        if last_lf + 1 > self._max_message:
            raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
        counted_to = self._lines_counted_to
        if last_lf + 1 > counted_to:
            # Lines completed since the last call; each starts at or after counted_to,
            # which is always just past an LF (the first line was checked on arrival).
            if last_lf - counted_to > self._max_line and (
                max(map(len, buf[counted_to:last_lf].split(b"\n"))) > self._max_line
            ):
                raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
            self._lines_seen += buf.count(b"\n", counted_to, last_lf + 1)
            self._lines_counted_to = last_lf + 1
            if self._lines_seen > self._max_headers:
                raise RemoteProtocolError(f"AMI message has more than {self._max_headers} headers")

    def _start_follows(self, first_end: int) -> bool:
        """Hand a ``Response: Follows`` message over to the line-by-line path."""
        raw = bytes(self._buffer[:first_end])
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        key, value = _split_header(raw.decode("utf-8", "replace"))
        if key.lower() != "response" or value.lower() != "follows":
            return False
        del self._buffer[: first_end + 1]
        self._scan_from = 0
        self._headers = [(key, value)]
        self._output = []
        self._follows_headers = True
        self._message_size = first_end + 1
        if self._message_size > self._max_message:
            raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
        return True

    # -- the server role: a client's actions, line by line, strictly (rules S1-S4) -------

    def _next_action(self) -> Message | MissingAction | _Sentinel:
        buf = self._buffer
        while True:
            end = buf.find(b"\n", self._scan_from)
            if end < 0:
                self._scan_from = len(buf)
                if len(buf) > self._max_line:
                    raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
                return NEED_DATA
            if end > self._max_line:
                raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
            raw = bytes(buf[:end])
            del buf[: end + 1]
            self._scan_from = 0
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                headers = tuple(self._headers)
                self._headers = []
                self._message_size = 0
                return _action(headers)
            self._message_size += end + 1
            if self._message_size > self._max_message:
                raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
            if len(self._headers) >= self._max_headers:
                raise RemoteProtocolError(f"AMI message has more than {self._max_headers} headers")
            if _CONTROL.search(raw):
                raise RemoteProtocolError("AMI action line contains a control character")
            key, value = _split_header(raw.decode("utf-8", "replace"))
            if not key:
                raise RemoteProtocolError("AMI action line is not 'Key: value' (no key or no ':')")
            self._headers.append((key, value))

    # -- the slow path: line by line (banner and ``Response: Follows``) -----------------

    def _read_line(self) -> str | None:
        end = self._buffer.find(b"\n", self._scan_from)
        if end < 0:
            self._scan_from = len(self._buffer)
            if len(self._buffer) > self._max_line:
                raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
            return None
        if end > self._max_line:
            raise RemoteProtocolError(f"AMI line longer than {self._max_line} bytes")
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scan_from = 0
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self._output is not None:
            self._message_size += end + 1
            if self._message_size > self._max_message:
                raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
        return raw.decode("utf-8", "replace")

    def _take_follows_line(self, line: str) -> Message | None:
        output = self._output
        assert output is not None
        if self._follows_headers:
            key, value = _split_header(line)
            if key.lower() in _FOLLOWS_HEADERS:
                if len(self._headers) >= self._max_headers:
                    raise RemoteProtocolError(
                        f"AMI message has more than {self._max_headers} headers"
                    )
                self._headers.append((key, value))
                return None
            self._follows_headers = False
        done = line.endswith(END_COMMAND)
        if done:
            line = line[: -len(END_COMMAND)]
        if line or not done:  # the marker alone on its line is not output
            if len(output) >= self._max_headers:
                raise RemoteProtocolError(f"AMI message has more than {self._max_headers} lines")
            output.append(line)
        if not done:
            return None
        message = Message(headers=tuple(self._headers), output=tuple(output))
        self._headers = []
        self._output = None
        self._follows_headers = False
        self._message_size = 0
        return message


def _action(headers: tuple[tuple[str, str], ...]) -> Message | MissingAction:
    """Rule S2: an action if some ``Action`` header is not blank, else ``MissingAction``."""
    if any(key.lower() == "action" and value.strip() for key, value in headers):
        return Message(headers=headers)
    return MissingAction(headers=headers)


def _split_header(line: str) -> tuple[str, str]:
    key, sep, value = line.partition(":")
    if not sep:
        return "", line
    if value.startswith(" "):
        value = value[1:]
    return key.strip(), value


def _check_key(key: str) -> None:
    if not key:
        raise LocalProtocolError("AMI header name must not be empty")
    for bad in ("\r", "\n", ":", "\x00"):
        if bad in key:
            raise LocalProtocolError(f"AMI header name {key[:40]!r} must not contain {bad!r}")
    if key != key.strip():
        raise LocalProtocolError(f"AMI header name {key[:40]!r} must not start or end with spaces")


def _check_value(key: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"AMI header {key!r}: value must not contain CR or LF")
    if "\x00" in value:
        raise LocalProtocolError(f"AMI header {key!r}: value must not contain NUL")


def _is_follows(key: str, value: str) -> bool:
    """Whether a first header opens a ``Response: Follows`` message (as the parser sees it)."""
    return key.lower() == "response" and value.lower() == "follows"


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot go on the wire
        raise LocalProtocolError(f"AMI text is not valid Unicode: {exc.reason}") from exc


def encode_message(
    headers: Iterable[tuple[str, str]], output: Sequence[str] | None = None
) -> bytes:
    """Serialise headers (and ``Follows`` output lines) to wire bytes.

    With ``output=None`` this is a normal message. With ``output`` given it is the old
    ``Command`` answer: the headers must be ``Response: Follows`` followed only by
    ``Privilege`` and/or ``ActionID`` (anything else would be read back as output), and
    the output lines are raw text ended by ``--END COMMAND--``.

    Raises ``LocalProtocolError`` without producing anything if a key or value could
    break the framing, so that ``AmiParser`` always reads back exactly what was given.
    """
    pairs = list(headers)
    if not pairs:
        raise LocalProtocolError("an AMI message needs at least one header")
    parts: list[str] = []
    for key, value in pairs:
        _check_key(key)
        _check_value(key, value)
        parts.append(f"{key}: {value}\r\n")
    follows = _is_follows(*pairs[0])
    if output is None:
        if follows:
            raise LocalProtocolError("a 'Response: Follows' message needs output lines")
    else:
        if not follows:
            raise LocalProtocolError("output lines need 'Response: Follows' as the first header")
        for key, _ in pairs[1:]:
            if key.lower() not in _FOLLOWS_HEADERS:
                raise LocalProtocolError(
                    f"a 'Response: Follows' message carries only Privilege and ActionID, "
                    f"not {key[:40]!r}"
                )
        for line in output:
            _check_value("output", line)
            if line.endswith(END_COMMAND):
                raise LocalProtocolError("output line must not end with the END COMMAND marker")
            parts.append(f"{line}\n")
        if output and _split_header(output[0])[0].lower() in _FOLLOWS_HEADERS:
            raise LocalProtocolError(
                "the first output line would be read back as a Privilege/ActionID header"
            )
        parts.append(f"{END_COMMAND}\r\n")
    parts.append("\r\n")
    return _to_bytes("".join(parts))


def encode_action(fields: Sequence[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Serialise one action; its first header must be ``Action`` with a non-blank value."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    if not pairs or pairs[0][0].lower() != "action" or not pairs[0][1].strip():
        raise LocalProtocolError("an AMI action must start with a non-empty Action header")
    return encode_message(pairs)


def encode_greeting(version: str = "9.0.0") -> bytes:
    """The banner an AMI server sends on connect."""
    if "\r" in version or "\n" in version:
        raise LocalProtocolError("banner version must not contain CR or LF")
    return _to_bytes(f"Asterisk Call Manager/{version}\r\n")
