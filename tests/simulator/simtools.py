"""A tiny raw AMI client (asyncio streams + AmiParser) and transcript readers.

Deliberately not the project's AmiClient: these tests pin the simulator's wire format
on their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from vwell_pbx.protocol import NEED_DATA, AmiParser, Greeting, Message, encode_action

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "ami" / "replay"  # see ../README.md


class RawAmi:
    """One loopback AMI connection; every event read is kept in ``events``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = AmiParser()
        self.greeting: Greeting | None = None
        self.events: list[Message] = []
        self.pending: list[Message] = []  # responses read while looking for something else

    async def _read(self, wait: float) -> Message | None:
        while True:
            item = self.parser.next_event()
            if item is NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), wait)
                if not data:
                    return None
                self.parser.receive_data(data)
                continue
            if isinstance(item, Greeting):
                self.greeting = item
                continue
            assert isinstance(item, Message)
            return item

    async def next(self, wait: float = 3) -> Message:
        """The next message of any kind, in wire order."""
        if self.pending:
            return self.pending.pop(0)
        message = await self._read(wait)
        assert message is not None, "connection closed"
        if message.kind.value == "event":
            self.events.append(message)
        return message

    async def banner(self, wait: float = 3) -> Greeting:
        """Wait for the banner line."""
        while self.greeting is None:
            line = await asyncio.wait_for(self.reader.readline(), wait)
            assert line, "closed before the banner"
            self.parser.receive_data(line)
            item = self.parser.next_event()
            if isinstance(item, Greeting):
                self.greeting = item
        return self.greeting

    def send(self, *pairs: tuple[str, str]) -> None:
        """Write one action."""
        self.writer.write(encode_action(list(pairs)))

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes."""
        self.writer.write(data)

    async def response(self, action_id: str | None = None, wait: float = 3) -> Message:
        """The next response (with ``action_id`` if given); events seen meanwhile are kept."""
        for index, message in enumerate(self.pending):
            if action_id is None or message.action_id == action_id:
                return self.pending.pop(index)
        while True:
            message = await self._read(wait)
            assert message is not None, "connection closed"
            if message.kind.value == "event":
                self.events.append(message)
                continue
            if action_id is None or message.action_id == action_id:
                return message
            self.pending.append(message)

    async def action(self, *pairs: tuple[str, str], wait: float = 3) -> Message:
        """Send an action and return its response."""
        self.send(*pairs)
        action_id = dict((k.lower(), v) for k, v in pairs).get("actionid")
        return await self.response(action_id, wait)

    async def event(self, predicate: Callable[[Message], bool], wait: float = 3) -> Message:
        """The first event (already seen or coming) that matches."""
        for message in self.events:
            if predicate(message):
                return message
        while True:
            message = await self._read(wait)
            assert message is not None, "connection closed"
            if message.kind.value == "event":
                self.events.append(message)
                if predicate(message):
                    return message
            else:
                self.pending.append(message)

    async def until(self, predicate: Callable[[Message], bool], wait: float = 3) -> list[Message]:
        """Read messages in wire order until one matches; return them all (match last)."""
        out: list[Message] = []
        while True:
            message = await self.next(wait)
            out.append(message)
            if predicate(message):
                return out

    async def closed(self, wait: float = 3) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), wait)
                if not data:
                    return True
                self.parser.receive_data(data)
        except ConnectionError:
            return True

    async def login(
        self, username: str = "admin", secret: str = "admin", events: str = "on"
    ) -> Message:
        """Plain login; returns the response."""
        await self.banner()
        response = await self.action(
            ("Action", "Login"),
            ("ActionID", "login"),
            ("Username", username),
            ("Secret", secret),
            ("Events", events),
        )
        if response.name == "Success" and events != "off":
            await self.event(lambda m: m.name == "FullyBooted")  # leave a clean stream
        return response

    def close(self) -> None:
        """Close our side."""
        self.writer.close()


def transcript(prefix: str) -> list[tuple[str, str, Message]]:
    """(conn, direction, message) for every message of a recorded transcript."""
    (path,) = TRANSCRIPTS.glob(f"{prefix}_*.chunks.jsonl")
    parsers: dict[tuple[str, str], AmiParser] = {}
    out: list[tuple[str, str, Message]] = []
    for line in path.read_text().splitlines():
        chunk = json.loads(line)
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


def keys(message: Message) -> list[str]:
    """Header keys in order."""
    return [key for key, _ in message.headers]


async def wait_until(predicate: Callable[[], bool], limit: float = 3) -> None:
    """Poll ``predicate`` until it holds; fail after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


Connect = Callable[..., Awaitable[RawAmi]]
