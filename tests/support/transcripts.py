"""The recorded Asterisk 20 transcripts (tests/data/ami, see its README.md), as tests read them.

Each ``replay/NN_name.chunks.jsonl`` line is one socket read or write:
``{t, conn, dir, data}``, with ``data.encode("latin-1")`` the exact wire bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vwell_pbx.protocol import NEED_DATA, AmiParser, Message

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "ami" / "replay"


def chunks(prefix: str) -> list[dict[str, Any]]:
    """Every chunk of the transcript whose file name starts with ``prefix`` (``"06"``)."""
    (path,) = TRANSCRIPTS.glob(f"{prefix}_*.chunks.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def transcript(prefix: str) -> list[tuple[str, str, Message]]:
    """(conn, direction, message) for every message of a recorded transcript."""
    parsers: dict[tuple[str, str], AmiParser] = {}
    out: list[tuple[str, str, Message]] = []
    for chunk in chunks(prefix):
        key = (chunk["conn"], chunk["dir"])
        parser = parsers.setdefault(key, AmiParser(expect_greeting=key[1] == "S->C"))
        parser.receive_data(chunk["data"].encode("latin-1"))
        while (item := parser.next_event()) is not NEED_DATA:
            if isinstance(item, Message):
                out.append((key[0], key[1], item))
    return out


def recorded_answer(prefix: str, action_id: str) -> Message:
    """The recorded response to the action with ``action_id``."""
    for _, direction, message in transcript(prefix):
        if (
            direction == "S->C"
            and message.kind.value == "response"
            and message.action_id == action_id
        ):
            return message
    raise AssertionError(f"no response to {action_id} in {prefix}")


def replay_answer(prefix: str, action_id: str) -> str:
    """Everything Asterisk sent after the action with ``action_id`` until the next action.

    The text is the exact wire data (latin-1 round trip) of the recorded server chunks.
    """
    marker = f"ActionID: {action_id}\r\n"
    out: list[str] = []
    collecting = False
    for chunk in chunks(prefix):
        if chunk["dir"] == "C->S":
            if collecting:
                break
            collecting = marker in chunk["data"]
        elif chunk["dir"] == "S->C" and collecting:
            out.append(chunk["data"])
    assert out, f"no answer to {action_id} in transcript {prefix}"
    return "".join(out)


def retarget(text: str, old_id: str, new_id: str) -> bytes:
    """Recorded wire text with the recorder's ActionID replaced by the client's."""
    return text.replace(f"ActionID: {old_id}\r\n", f"ActionID: {new_id}\r\n").encode("latin-1")
