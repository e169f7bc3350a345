"""Golden transcripts: the parser against every byte a real Asterisk 20 sent or received.

Each ``tests/data/ami/replay/*.chunks.jsonl`` line is ``{t, conn, dir, data}``;
``data.encode("latin-1")`` gives the exact wire bytes. Per connection and direction the
chunks are concatenated and parsed (S->C with the banner, C->S without), fed as the
recorded reads and in other splits. The number of messages is checked against an
independent count, the items against the reference model, and known messages by hand.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.transcripts import TRANSCRIPTS
from vwell_pbx.ami.answers import command_output, ends_list, list_style
from vwell_pbx.pbx.dial import OriginateOutcome
from vwell_pbx.protocol import Greeting, Message, MessageKind, MissingAction, action_name

from .reference import reference_parse
from .support import outcome, random_pieces


def is_event_list_start(message: Message) -> bool:
    return list_style(message) is not None


def is_event_list_end(message: Message) -> bool:
    return ends_list(None, message)


REPLAY = TRANSCRIPTS  # tests/data/ami/replay, see its README.md
FILES = sorted(REPLAY.glob("*.chunks.jsonl"))
assert len(FILES) == 12, f"the 12 recorded transcripts belong in {REPLAY}"


@dataclass
class Stream:
    """One direction of one connection: the reads as recorded."""

    name: str
    chunks: list[bytes]
    server_side: bool  # S->C: starts with the banner

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def load_streams(path: Path) -> list[Stream]:
    """Every AMI byte stream in a transcript (HTTP connections give their rawman bodies)."""
    chunks: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["dir"] in ("S->C", "C->S"):
            chunks[(record["conn"], record["dir"])].append(record["data"].encode("latin-1"))
    streams: list[Stream] = []
    for (conn, direction), parts in chunks.items():
        name = f"{path.name[:2]}:{conn}:{direction}"
        if conn.startswith("http"):
            # AMI over HTTP: only /rawman bodies are AMI framing (/mxml, /manager are not).
            request = b"".join(chunks[(conn, "C->S")])
            if direction == "S->C" and request.startswith(b"GET /rawman"):
                _, _, body = b"".join(parts).partition(b"\r\n\r\n")
                streams.append(Stream(name, [body], server_side=False))
            continue
        streams.append(Stream(name, parts, server_side=direction == "S->C"))
    return streams


STREAMS = [stream for path in FILES for stream in load_streams(path)]
BY_NAME = {stream.name: stream for stream in STREAMS}


def count_messages(data: bytes, *, server_side: bool) -> int:
    """Count messages the simple way: chunks of non-blank lines between blank lines.

    Valid for these transcripts, which hold no ``Response: Follows`` message (checked).
    """
    assert not re.search(rb"(?im)^response: *follows\r?$", data)
    if server_side:
        _, _, data = data.partition(b"\n")  # the banner line
    return sum(1 for block in re.split(rb"\n(?:\r?\n)+", b"\n" + data) if block.strip(b"\r\n"))


def parse(stream: Stream) -> list[Greeting | Message]:
    result = outcome(stream.chunks, expect_greeting=stream.server_side)
    assert result.error is None, result.error
    assert result.buffered == 0
    return result.items


def messages(name: str) -> list[Message]:
    items = parse(BY_NAME[name])
    return [item for item in items if isinstance(item, Message)]


@pytest.mark.parametrize("stream", STREAMS, ids=[stream.name for stream in STREAMS])
def test_transcript_parses_completely(stream: Stream) -> None:
    items = parse(stream)
    if stream.server_side:
        assert items[0] == Greeting(line="Asterisk Call Manager/9.0.0")
        items = items[1:]
    assert all(isinstance(item, Message) for item in items)
    assert len(items) == count_messages(stream.data, server_side=stream.server_side)

    # Same items however the bytes are split, and the same as the naive model's.
    expected, failed = reference_parse(stream.data, expect_greeting=stream.server_side)
    assert not failed
    full = parse(stream)
    assert full == expected
    data = stream.data
    assert outcome([data], expect_greeting=stream.server_side).items == full
    rng = random.Random(stream.name)
    for _ in range(3):
        pieces = random_pieces(data, rng, max_cuts=200)
        assert outcome(pieces, expect_greeting=stream.server_side).items == full
    if len(data) < 20_000:
        pieces = [data[i : i + 1] for i in range(len(data))]
        assert outcome(pieces, expect_greeting=stream.server_side).items == full


CLIENT_STREAMS = [s for s in STREAMS if not s.server_side and s.name.endswith("C->S")]


@pytest.mark.parametrize("stream", CLIENT_STREAMS, ids=[s.name for s in CLIENT_STREAMS])
def test_client_streams_parse_as_asterisk_read_them(stream: Stream) -> None:
    """A server's parser makes of every recorded client stream what Asterisk made of it:
    one ``MissingAction`` per ``Missing action in request`` it answered, the actions
    otherwise as a client's parser reads them."""
    result = outcome(stream.chunks, role="server")
    assert result.error is None, result.error
    assert result.buffered == 0
    answers = messages(stream.name.replace("C->S", "S->C"))
    complaints = [m for m in answers if m.get("Message") == "Missing action in request"]
    missing = [item for item in result.items if isinstance(item, MissingAction)]
    assert [m.action_id for m in missing] == [m.action_id for m in complaints]
    actions = [item for item in result.items if isinstance(item, Message)]
    lenient = [m for m in messages(stream.name) if action_name(m) is not None]
    assert actions == lenient and all(a.kind is MessageKind.ACTION for a in actions)
    data = stream.data
    byte_by_byte = [data[i : i + 1] for i in range(len(data))]
    assert outcome(byte_by_byte, role="server").items == result.items


# -- spot checks -----------------------------------------------------------------------


def test_01_login_events_and_goodbye() -> None:
    items = messages("01:conn1:S->C")
    assert items[0].to_dict() == {
        "Response": "Success",
        "ActionID": "conn1-1",
        "Message": "Authentication accepted",
    }
    assert items[1].name == "FullyBooted"
    assert items[-1].name == "Goodbye"
    assert [m.get("Action") for m in messages("01:conn1:C->S")] == ["Login", "Ping", "Logoff"]


def test_05_corner_cases() -> None:
    server = messages("05:conn1:S->C")
    user_event = next(m for m in server if m.name == "UserEvent")
    assert user_event.get_all("Header1") == ["first", "second"]
    assert user_event.get("Empty") == ""
    assert user_event.get("Colon") == "a:b: c"
    assert user_event.kind is MessageKind.EVENT

    missing = [m for m in server if m.get("Message") == "Missing action in request"]
    assert [m.action_id for m in missing] == [None, None, "no-action-header"]
    not_found = next(m for m in server if m.action_id == "conn1-10")
    assert not_found.get("Message") == "Peer nosuchpeer not found."

    list_commands = next(m for m in server if m.action_id == "conn1-22")
    assert len(list_commands.headers) > 100
    assert list_commands.get("UserEvent") == "Send an arbitrary event.  (Priv: user,all)"

    empty_list = [m for m in server if m.action_id == "conn1-3"]
    assert is_event_list_start(empty_list[0])
    assert is_event_list_end(empty_list[1]) and empty_list[1].get("ListItems") == "0"


def test_05_client_side_stray_blank_lines_and_odd_actions() -> None:
    client = messages("05:conn1:C->S")
    ids = [m.action_id for m in client]
    # The two stray blank lines are skipped; the action after them is intact.
    assert "after-stray-blank-lines" in ids
    odd = client[ids.index("no-action-header")]
    assert odd.kind is MessageKind.OTHER
    assert odd.to_dict() == {"ActionID": "no-action-header", "Foo": "bar"}
    lower = client[ids.index("lf-only-line-endings")]
    assert lower.kind is MessageKind.ACTION and lower.get("Action") == "ping"
    upper = client[ids.index("upper-case-keys")]
    assert upper.kind is MessageKind.ACTION
    assert "UserEvent" in client[ids.index("conn1-21")]
    assert client[ids.index("conn1-21")].get_all("header1") == ["first", "second"]


def test_06_originate_and_lists() -> None:
    server = messages("06:conn1:S->C")
    (originate,) = [m for m in server if m.name == "OriginateResponse"]
    assert originate.kind is MessageKind.EVENT
    assert originate.get("Response") == "Success"
    assert originate.get("Reason") == "4"
    reason = int(originate.get("Reason") or "")
    assert OriginateOutcome.from_reason(reason) is OriginateOutcome.ANSWERED
    assert originate.action_id == "orig-async-1"

    channels = [m for m in server if m.action_id == "conn1-2"]
    assert is_event_list_start(channels[0])
    assert [m.name for m in channels[1:]] == ["CoreShowChannel"] * 3 + ["CoreShowChannelsComplete"]
    assert is_event_list_end(channels[-1]) and channels[-1].get("ListItems") == "3"
    assert not any(is_event_list_end(m) for m in channels[:-1])

    status = [m for m in server if m.action_id == "conn1-4"]
    assert status[1].get_all("Variable") == ["FOO=one", "BAR=two"]
    assert status[1].to_dict()["Variable"] == ["FOO=one", "BAR=two"]
    assert status[1].headers[-1] == ("ActionID", "conn1-4")

    show = next(m for m in server if m.action_id == "conn1-7")
    output = command_output(show)
    assert output is not None
    assert output.splitlines()[-3:] == [
        "3 active channels",
        "2 active calls",
        "3 calls processed",
    ]


def test_07_regex_hangup_list_end() -> None:
    server = messages("07:conn1:S->C")
    hungup = [m for m in server if m.action_id == "conn1-5"]
    assert hungup[-1].name == "ChannelsHungupListComplete"
    assert is_event_list_end(hungup[-1]) and hungup[-1].get("ListItems") == "2"


def test_08_command_output() -> None:
    by_id = {m.action_id: m for m in messages("08:conn1:S->C")}
    dialplan = command_output(by_id["cmd-dialplan"])
    assert dialplan is not None
    lines = dialplan.split("\n")
    assert lines[0] == "[ Context 'DLPN_DialPlan269' created by 'pbx_config' ]"
    assert lines[1].startswith("  '100' =>          1. NoOp(Local 100 answer+wait)")
    assert lines[-2:] == ["", "-= 10 extensions (31 priorities) in 1 context. =-"]
    assert command_output(by_id["cmd-empty-output"]) == ""
    assert command_output(by_id["cmd-missing-header"]) is None
    assert by_id["cmd-nonexistent"].name == "Error"
    assert (command_output(by_id["cmd-nonexistent"]) or "").startswith("No such command 'gsm")
    assert command_output(by_id["cmd-uptime"]) == "System uptime: 52\nLast reload: 52"


def test_09_originate_failures() -> None:
    by_id = {m.action_id: m for m in messages("09:conn1:S->C") if m.name == "OriginateResponse"}
    assert by_id["orig-async-chanunavail"].get("Response") == "Failure"
    assert by_id["orig-async-chanunavail"].get("Reason") == "0"
    assert by_id["orig-async-chanunavail"].get("Uniqueid") == "<unknown>"
    busy = int(by_id["orig-async-busy"].get("Reason") or "")
    assert OriginateOutcome.from_reason(busy) is OriginateOutcome.BUSY


def test_12_rawman_bodies() -> None:
    rawman = [s for s in STREAMS if s.name.startswith("12:")]
    assert len(rawman) == 8
    bodies = {s.name: parse(s) for s in rawman}
    assert bodies["12:http1:S->C"] == [
        Message.build(("Response", "Error"), ("Message", "Permission denied"))
    ]
    csc = bodies["12:http5:S->C"]
    assert isinstance(csc[0], Message) and is_event_list_start(csc[0])
    assert isinstance(csc[-1], Message) and is_event_list_end(csc[-1])


# -- the hot path ----------------------------------------------------------------------


def test_busy_transcript_parses_fast() -> None:
    stream = BY_NAME["10:conn1:S->C"]
    size = len(stream.data)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        items = parse(stream)
        best = min(best, time.perf_counter() - started)
    assert len(items) == 1 + 2261
    print(  # shown with -s: the number the report quotes
        f"busy transcript: {size} bytes, {len(items)} items in {best * 1000:.1f} ms: "
        f"{size / best / 1e6:.1f} MB/s, {len(items) / best:,.0f} messages/s"
    )
    # ~30-45 ms on the development VM; a generous bound that still catches a regression
    # to per-byte or quadratic work.
    assert best < 0.5
