"""Feeding recorded and scripted AMI event streams to the call tracker.

Two fixture formats, both parsed with the product's own ``AmiParser``:

- ``tests/data/ami/calls/replay/*.chunks.jsonl``: real Asterisk 20 recordings, one JSON
  object per socket read (``{t, conn, dir, data}``); only the ``conn_events`` S->C
  chunks are the event stream, and a chunk's ``t`` (seconds since the recording began)
  is the arrival time of every message in it. ``NOTE`` entries are commentary; the
  first one is the ``GROUND TRUTH``.
- ``tests/data/ami/calls/old_dialect/*.ami``: hand-written streams in the Asterisk
  1.4/1.8 (Yeastar MyPBX) dialect. Lines starting with ``#`` are comments (the first is
  the ground truth); ``@ 1.250`` sets the arrival time of the messages after it;
  messages are ``Key: Value`` lines ended by a blank line, as on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import NEED_DATA, AmiParser, Message

DATA = Path(__file__).resolve().parents[1] / "data" / "ami" / "calls"
RECORDINGS = DATA / "replay"
TRANSCRIPTS = DATA.parent / "replay"  # the protocol transcripts 01-12 (one connection: conn1)
OLD_DIALECT = DATA / "old_dialect"

BASE = 1_700_000_000.0
"""Epoch seconds of a recording's ``t = 0``: 2023-11-14T22:13:20.000Z."""


@dataclass(frozen=True)
class Stream:
    """An event stream: ``(arrival time relative to BASE, message)`` in order."""

    name: str
    ground_truth: str
    events: list[tuple[float, Message]]


def _parse(parser: AmiParser, data: bytes) -> list[Message]:
    parser.receive_data(data)
    messages: list[Message] = []
    while (item := parser.next_event()) is not NEED_DATA:
        if isinstance(item, Message):
            messages.append(item)
    return messages


def load_recording(name: str, *, folder: Path = RECORDINGS, conn: str = "conn_events") -> Stream:
    """A real recording by its number or name prefix (``"13"``); ``conn`` is the
    connection whose S->C chunks are the event stream."""
    (path,) = sorted(folder.glob(f"{name}*.chunks.jsonl"))
    parser = AmiParser()
    truth = ""
    events: list[tuple[float, Message]] = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["dir"] == "NOTE":
            if not truth and record["data"].startswith("GROUND TRUTH"):
                truth = record["data"]
            continue
        if record["conn"] != conn or record["dir"] != "S->C":
            continue
        for message in _parse(parser, record["data"].encode("latin-1")):
            events.append((record["t"], message))
    return Stream(path.name.split(".")[0], truth, events)


def load_script(name: str) -> Stream:
    """A hand-written old-dialect stream by its number or name prefix (``"01"``)."""
    (path,) = sorted(OLD_DIALECT.glob(f"{name}*.ami"))
    parser = AmiParser(expect_greeting=False)
    truth_lines: list[str] = []
    events: list[tuple[float, Message]] = []
    now = 0.0
    block: list[str] = []

    def flush() -> None:
        if block:
            data = ("\r\n".join(block) + "\r\n\r\n").encode()
            events.extend((now, message) for message in _parse(parser, data))
            block.clear()

    for line in path.read_text().splitlines():
        if line.startswith("#"):
            if not events and not block:
                truth_lines.append(line.lstrip("# ").rstrip())
            continue
        if line.startswith("@"):
            flush()
            now = float(line[1:])
            continue
        if not line.strip():
            flush()
            continue
        block.append(line)
    flush()
    return Stream(path.name.split(".")[0], " ".join(truth_lines), events)


def feed(tracker: CallTracker, events: list[tuple[float, Message]]) -> list[CallEvent]:
    """Every call event the tracker reports for a stream, in order."""
    out: list[CallEvent] = []
    for t, message in events:
        out.extend(tracker.observe(message, BASE + t))
    return out


class Near:
    """Equal to any number within ``tolerance`` of ``value`` (seconds from a note)."""

    def __init__(self, value: float, tolerance: float = 0.05) -> None:
        self.value = value
        self.tolerance = tolerance

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, int | float)
            and not isinstance(other, bool)
            and abs(other - self.value) <= self.tolerance
        )

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"≈{self.value}"


CALL_FIELDS = (
    "callId",
    "pbx",
    "status",
    "direction",
    "fromNumber",
    "fromName",
    "toNumber",
    "toName",
    "extension",
    "trunk",
    "did",
    "startedAt",
    "answeredAt",
    "endedAt",
    "ringSeconds",
    "talkSeconds",
    "endReason",
    "onHold",
    "transfers",
    "channels",
    "originated",
    "actionId",
)
"""The call object's fields, exactly as the public call model names them."""


def at(seconds: str) -> str:
    """``"21.118"`` -> the ISO time that many seconds after 22:13:00 on the BASE day."""
    return f"2023-11-14T22:13:{seconds}Z"
