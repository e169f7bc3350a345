"""Sans-IO AMI codec: bytes in, messages out; messages in, bytes out.

No sockets, no asyncio, no clock. Use it like h11::

    parser = AmiParser()                 # expects the banner first
    parser.receive_data(chunk)
    while (item := parser.next_event()) is not NEED_DATA:
        ...                              # a Greeting, then Message objects

Rules the parser keeps:

1. With ``expect_greeting=True`` the first line is the banner and is returned as a
   ``Greeting``; it must start with ``Asterisk Call Manager`` (or any ``... Manager/``
   banner) and carries no blank line after it.
2. A message is a run of ``Key: Value`` lines ended by an empty line. Lines end with
   ``\\r\\n``; a bare ``\\n`` is accepted too. Keys split on the first ``:``; one space
   after it is dropped; the rest of the value is kept (it may contain ``: ``).
3. Empty lines between messages are skipped (Asterisk sends an extra one after some
   errors).
4. A message whose first header is ``Response: Follows`` continues, blank lines
   included, until a line ending in ``--END COMMAND--``. The ``Privilege`` and
   ``ActionID`` lines right after the first line are headers; every other line is
   output text, kept in ``Message.output``.
5. A line without ``:`` inside a normal message is kept as a header with an empty
   key, so a peer's oddity does not desynchronise the stream.
6. No line may exceed ``max_line`` bytes and no message ``max_message`` bytes, nor
   ``max_headers`` headers; past a limit ``RemoteProtocolError`` is raised and the
   parser stays broken (the caller must close the connection).
7. Bytes are decoded as UTF-8 with ``replace``, so that
   one bad byte from a module never stops the event stream.

``encode_action`` / ``encode_message`` refuse (``LocalProtocolError``) any key or value
that could smuggle a line break, a second header or a second action into the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Final

from vwell_pbx.protocol.errors import LocalProtocolError, RemoteProtocolError
from vwell_pbx.protocol.message import Greeting, Message


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by ``next_event`` when more bytes are needed."""

DEFAULT_MAX_LINE: Final = 64 * 1024
DEFAULT_MAX_MESSAGE: Final = 4 * 1024 * 1024
DEFAULT_MAX_HEADERS: Final = 10_000
END_COMMAND: Final = "--END COMMAND--"


class AmiParser:
    """Incremental parser of an AMI byte stream (either direction)."""

    def __init__(
        self,
        *,
        expect_greeting: bool = True,
        max_line: int = DEFAULT_MAX_LINE,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # bytes of _buffer already known to hold no LF
        self._want_greeting = expect_greeting
        self._max_line = max_line
        self._max_message = max_message
        self._max_headers = max_headers
        self._headers: list[tuple[str, str]] = []
        self._output: list[str] | None = None
        self._follows_headers = False  # still reading Privilege/ActionID after Follows
        self._message_size = 0
        self._broken: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into a message."""
        return len(self._buffer) + self._message_size

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer (any split, any size)."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data

    def next_event(self) -> Greeting | Message | _Sentinel:
        """The next complete item, or ``NEED_DATA``; raises ``RemoteProtocolError``."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def _next(self) -> Greeting | Message | _Sentinel:
        while True:
            line = self._read_line()
            if line is None:
                return NEED_DATA
            if self._want_greeting:
                self._want_greeting = False
                if "/" not in line or "manager" not in line.lower():
                    raise RemoteProtocolError(f"expected an AMI banner, got {line[:80]!r}")
                return Greeting(line=line)
            message = self._take_line(line)
            if message is not None:
                return message

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
        if self._headers:
            self._message_size += end + 1
            if self._message_size > self._max_message:
                raise RemoteProtocolError(f"AMI message larger than {self._max_message} bytes")
        return raw.decode("utf-8", "replace")

    def _take_line(self, line: str) -> Message | None:
        if self._output is not None:
            return self._take_follows_line(line)
        if not line:
            if not self._headers:
                return None  # blank lines between messages
            return self._finish()
        key, value = _split_header(line)
        if not self._headers and key.lower() == "response" and value.lower() == "follows":
            self._output = []
            self._follows_headers = True
        self._add_header(key, value)
        return None

    def _take_follows_line(self, line: str) -> Message | None:
        assert self._output is not None
        if self._follows_headers:
            key, value = _split_header(line)
            if key.lower() in ("privilege", "actionid"):
                self._add_header(key, value)
                return None
            self._follows_headers = False
        if line.endswith(END_COMMAND):
            text = line[: -len(END_COMMAND)]
            if text:
                self._output.append(text)
            return self._finish()
        if len(self._output) >= self._max_headers:
            raise RemoteProtocolError(f"AMI message has more than {self._max_headers} lines")
        self._output.append(line)
        return None

    def _add_header(self, key: str, value: str) -> None:
        if len(self._headers) >= self._max_headers:
            raise RemoteProtocolError(f"AMI message has more than {self._max_headers} headers")
        if not self._headers:
            self._message_size = len(key) + len(value) + 2
        self._headers.append((key, value))

    def _finish(self) -> Message:
        output = None if self._output is None else tuple(self._output)
        message = Message(headers=tuple(self._headers), output=output)
        self._headers = []
        self._output = None
        self._follows_headers = False
        self._message_size = 0
        return message


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
    for bad in ("\r", "\n", ":"):
        if bad in key:
            raise LocalProtocolError(
                f"AMI header name {key[:40]!r} must not contain {bad!r}"
            )
    if key != key.strip():
        raise LocalProtocolError(f"AMI header name {key[:40]!r} must not start or end with spaces")


def _check_value(key: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"AMI header {key!r}: value must not contain CR or LF")
    if "\x00" in value:
        raise LocalProtocolError(f"AMI header {key!r}: value must not contain NUL")


def encode_message(headers: Iterable[tuple[str, str]], output: Sequence[str] | None = None) -> bytes:
    """Serialise headers (and ``Follows`` output lines) to wire bytes.

    Raises ``LocalProtocolError`` without producing anything if a key or value could
    break the framing. Output lines are raw text and may contain anything but line breaks.
    """
    parts: list[str] = []
    for key, value in headers:
        _check_key(key)
        _check_value(key, value)
        parts.append(f"{key}: {value}\r\n")
    if not parts:
        raise LocalProtocolError("an AMI message needs at least one header")
    if output is not None:
        for line in output:
            _check_value("output", line)
            if line.endswith(END_COMMAND):
                raise LocalProtocolError("output line must not end with the END COMMAND marker")
            parts.append(f"{line}\n")
        parts.append(f"{END_COMMAND}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


def encode_action(fields: Sequence[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Serialise one action; its first header must be ``Action``."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    if not pairs or pairs[0][0].lower() != "action" or not pairs[0][1].strip():
        raise LocalProtocolError("an AMI action must start with a non-empty Action header")
    return encode_message(pairs)


def encode_greeting(version: str = "9.0.0") -> bytes:
    """The banner an AMI server sends on connect."""
    if "\r" in version or "\n" in version:
        raise LocalProtocolError("banner version must not contain CR or LF")
    return f"Asterisk Call Manager/{version}\r\n".encode()
