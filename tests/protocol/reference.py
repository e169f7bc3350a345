"""A deliberately naive model of the AMI framing rules, for differential tests.

It reads the whole stream at once, one line at a time, straight from the rules in the
``vwell_pbx.protocol.codec`` docstring, with no buffering tricks and no fast path. The
real parser must produce exactly what this produces, for any bytes split any way:
``reference_parse`` for the client role, ``reference_parse_actions`` for the server
role. It shares no code with the codec on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vwell_pbx.protocol import Greeting, Message, MissingAction

END_COMMAND = "--END COMMAND--"


def split_header(line: str) -> tuple[str, str]:
    """Rules 2 and 5: split on the first colon, strip the key, drop one space."""
    if ":" not in line:
        return "", line
    colon = line.index(":")
    key, value = line[:colon].strip(), line[colon + 1 :]
    if value.startswith(" "):
        value = value[1:]
    return key, value


@dataclass
class _Pending:
    headers: list[tuple[str, str]] = field(default_factory=list)
    output: list[str] | None = None
    in_follows_headers: bool = False
    size: int = 0


def reference_parse(
    data: bytes,
    *,
    expect_greeting: bool = True,
    max_line: int = 64 * 1024,
    max_message: int = 4 * 1024 * 1024,
    max_headers: int = 10_000,
) -> tuple[list[Greeting | Message], bool]:
    """(items, failed): what the rules make of ``data``; ``failed`` if a rule was broken."""
    *complete, partial = data.split(b"\n")
    items: list[Greeting | Message] = []
    want_greeting = expect_greeting
    pending = _Pending()
    for raw in complete:
        if len(raw) > max_line:
            return items, True
        text = (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8", "replace")
        if want_greeting:
            want_greeting = False
            if "/" not in text or "manager" not in text.lower():
                return items, True
            items.append(Greeting(line=text))
            continue
        output = pending.output
        if output is not None:  # inside Response: Follows
            pending.size += len(raw) + 1
            if pending.size > max_message:
                return items, True
            key, value = split_header(text)
            if pending.in_follows_headers and key.lower() in ("privilege", "actionid"):
                pending.headers.append((key, value))
                if len(pending.headers) > max_headers:
                    return items, True
                continue
            pending.in_follows_headers = False
            if text.endswith(END_COMMAND):
                rest = text[: -len(END_COMMAND)]
                if rest:
                    output.append(rest)
                if len(output) > max_headers:
                    return items, True
                items.append(Message(headers=tuple(pending.headers), output=tuple(output)))
                pending = _Pending()
                continue
            output.append(text)
            if len(output) > max_headers:
                return items, True
            continue
        if text == "":
            if pending.headers:
                items.append(Message(headers=tuple(pending.headers)))
                pending = _Pending()
            continue
        key, value = split_header(text)
        pending.size += len(raw) + 1
        if pending.size > max_message:
            return items, True
        if not pending.headers and key.lower() == "response" and value.lower() == "follows":
            pending.output = []
            pending.in_follows_headers = True
        pending.headers.append((key, value))
        if len(pending.headers) > max_headers:
            return items, True
    if len(partial) > max_line:
        return items, True
    return items, False


def _has_control(line: bytes) -> bool:
    """Rule S3: a byte below 0x20 other than tab, or DEL."""
    return any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in line)


def reference_parse_actions(
    data: bytes,
    *,
    max_line: int = 64 * 1024,
    max_message: int = 4 * 1024 * 1024,
    max_headers: int = 10_000,
) -> tuple[list[Message | MissingAction], bool]:
    """(items, failed): what the server role's rules (S1-S4) make of a client's bytes."""
    *complete, partial = data.split(b"\n")
    items: list[Message | MissingAction] = []
    headers: list[tuple[str, str]] = []
    size = 0
    for raw in complete:
        if len(raw) > max_line:
            return items, True
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line == b"":  # S1: every empty line ends a message, an empty one included
            named = [v for k, v in headers if k.lower() == "action" and v.strip()]
            items.append(
                Message(headers=tuple(headers)) if named else MissingAction(headers=tuple(headers))
            )
            headers, size = [], 0
            continue
        size += len(raw) + 1
        if size > max_message or len(headers) + 1 > max_headers or _has_control(line):
            return items, True
        key, value = split_header(line.decode("utf-8", "replace"))
        if key == "":  # S3: no colon, or nothing before it
            return items, True
        headers.append((key, value))
    if len(partial) > max_line:
        return items, True
    return items, False
