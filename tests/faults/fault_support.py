"""Helpers for the fault suites: waiting on conditions, a raw AMI peer that misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from vwell_pbx.protocol import NEED_DATA, AmiParser, Message, encode_greeting, encode_message


async def until(condition: Callable[[], bool], within: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``condition()`` is true; ``TimeoutError`` after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(step)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawPeer"], Awaitable[None]]


class RawPeer:
    """A tiny AMI server written for one misbehaviour: ``behaviour(reader, writer, peer)``
    runs per connection (after nothing at all: it decides whether to send a banner)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.port = 0
        self.connections = 0
        self.go = asyncio.Event()  # for behaviours that wait for the test to be ready
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawPeer:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.behaviour(reader, writer, self)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


async def next_action(reader: asyncio.StreamReader, parser: AmiParser) -> Message | None:
    """The next action the client sends, or ``None`` at EOF."""
    while True:
        item = parser.next_event()
        if item is not NEED_DATA:
            assert isinstance(item, Message)
            return item
        data = await reader.read(65536)
        if not data:
            return None
        parser.receive_data(data)


async def log_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AmiParser:
    """Banner, MD5 challenge and login, answered like Asterisk; returns the parser."""
    writer.write(encode_greeting("9.0.0"))
    parser = AmiParser(expect_greeting=False)
    while True:
        action = await next_action(reader, parser)
        if action is None:
            raise ConnectionError("client left during login")
        pairs: list[tuple[str, str]] = [("Response", "Success")]
        if action.action_id:
            pairs.append(("ActionID", action.action_id))
        if action.name.lower() == "challenge":
            writer.write(encode_message([*pairs, ("Challenge", "123456789")]))
        elif action.name.lower() == "login":
            writer.write(encode_message([*pairs, ("Message", "Authentication accepted")]))
            return parser
        else:
            writer.write(encode_message(pairs))


def answer(action: Message, *pairs: tuple[str, str]) -> bytes:
    """A success response to ``action``."""
    headers: list[tuple[str, str]] = [("Response", "Success")]
    if action.action_id:
        headers.append(("ActionID", action.action_id))
    if action.name.lower() == "ping":
        headers.append(("Ping", "Pong"))
    return encode_message([*headers, *pairs])
