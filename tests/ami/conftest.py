"""A scripted AMI server for the client's edge cases, plus client factories.

``ScriptedPbx`` speaks just enough AMI over a real loopback socket: the banner,
Challenge/Login (plain and MD5, refusing bad credentials like Asterisk does), Ping and
Logoff. Every other action goes to a per-test handler, which can answer with bytes
replayed from the recorded Asterisk transcripts (``replay_answer``), answer late, never
answer, or break the connection: things a well-behaved PBX will not do on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vwell_pbx.ami import AmiClient, AmiSettings
from vwell_pbx.protocol import NEED_DATA, AmiParser, Message, encode_message
from vwell_pbx.simulator import PbxSimulator

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "ami" / "replay"  # see ../README.md
BANNER = b"Asterisk Call Manager/9.0.0\r\n"

Handler = Callable[["PbxConnection", Message], Awaitable[None] | None]


def replay_answer(transcript: str, action_id: str) -> str:
    """Everything Asterisk sent after the action with ``action_id`` until the next action.

    ``transcript`` is the file prefix (``"06"``); the text is the exact wire data
    (latin-1 round trip) of the recorded server chunks.
    """
    (path,) = TRANSCRIPTS.glob(f"{transcript}_*.chunks.jsonl")
    chunks = [json.loads(line) for line in path.read_text().splitlines()]
    marker = f"ActionID: {action_id}\r\n"
    out: list[str] = []
    collecting = False
    for chunk in chunks:
        if chunk["dir"] == "C->S":
            if collecting:
                break
            collecting = marker in chunk["data"]
        elif chunk["dir"] == "S->C" and collecting:
            out.append(chunk["data"])
    assert out, f"no answer to {action_id} in transcript {transcript}"
    return "".join(out)


def retarget(text: str, old_id: str, new_id: str) -> bytes:
    """Recorded wire text with the recorder's ActionID replaced by the client's."""
    return text.replace(f"ActionID: {old_id}\r\n", f"ActionID: {new_id}\r\n").encode("latin-1")


class PbxConnection:
    """The server side of one client connection."""

    def __init__(
        self, pbx: ScriptedPbx, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.pbx = pbx
        self.reader = reader
        self.writer = writer
        self.parser = AmiParser(expect_greeting=False)
        self.logged_in = False
        self.challenge: str | None = None
        self.closed = asyncio.Event()

    def send(self, data: bytes | str) -> None:
        """Write raw wire bytes (str is encoded as latin-1, like the transcripts)."""
        if not self.writer.is_closing():
            self.writer.write(data.encode("latin-1") if isinstance(data, str) else data)

    def reply(
        self,
        action: Message,
        *pairs: tuple[str, str],
        response: str = "Success",
        output: list[str] | None = None,
    ) -> None:
        """Send ``Response: <response>`` echoing the action's ActionID, then ``pairs``."""
        headers = [("Response", response)]
        if action.action_id is not None:
            headers.append(("ActionID", action.action_id))
        self.send(encode_message([*headers, *pairs], output=output))

    def event(self, name: str, *pairs: tuple[str, str]) -> None:
        """Send one event."""
        self.send(encode_message([("Event", name), *pairs]))

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye (a crashed or unplugged PBX)."""
        self.writer.transport.abort()

    async def next_action(self) -> Message | None:
        while True:
            item = self.parser.next_event()
            if item is not NEED_DATA:
                assert isinstance(item, Message)
                return item
            try:
                data = await self.reader.read(65536)
            except OSError:
                return None
            if not data:
                return None
            self.parser.receive_data(data)


class ScriptedPbx:
    """A minimal AMI server on 127.0.0.1 whose behaviour each test scripts."""

    def __init__(
        self,
        *,
        username: str = "admin",
        secret: str = "s3cret",
        banner: bool = True,
        answer_pings: bool = True,
        port: int = 0,
    ) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.answer_pings = answer_pings
        self.requested_port = port
        self.handlers: dict[str, Handler] = {}
        self.actions: list[Message] = []
        self.connections: list[PbxConnection] = []
        self.logins = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def on(self, action: str, handler: Handler) -> None:
        """Answer ``action`` (case-insensitive) with ``handler(connection, action)``."""
        self.handlers[action.lower()] = handler

    def received(self, action: str) -> list[Message]:
        """Actions of that name received so far (all connections)."""
        return [a for a in self.actions if a.name.lower() == action.lower()]

    async def start(self) -> ScriptedPbx:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.requested_port)
        self.requested_port = self.port  # a restart comes back on the same port
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (the PBX goes away)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in self.connections:
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = PbxConnection(self, reader, writer)
        self.connections.append(connection)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.banner:
                connection.send(BANNER)
            while (action := await connection.next_action()) is not None:
                self.actions.append(action)
                await self._handle(connection, action)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            connection.closed.set()
            writer.transport.abort()

    async def _handle(self, conn: PbxConnection, action: Message) -> None:
        name = action.name.lower()
        if name == "challenge":
            if (action.get("AuthType") or "").lower() != "md5":
                conn.reply(action, ("Message", "Must specify AuthType"), response="Error")
                return
            conn.challenge = str(time.monotonic_ns() % 1_000_000_000)
            conn.reply(action, ("Challenge", conn.challenge))
        elif name == "login":
            await self._login(conn, action)
        elif name == "logoff":
            conn.reply(action, ("Message", "Thanks for all the fish."), response="Goodbye")
            await conn.writer.drain()
            conn.abort()
        elif not conn.logged_in:
            conn.reply(action, ("Message", "Permission denied"), response="Error")
        elif name in self.handlers:
            result = self.handlers[name](conn, action)
            if inspect.isawaitable(result):
                self._spawn(result)
        elif name == "ping":
            if self.answer_pings:
                conn.reply(action, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))
        else:
            conn.reply(
                action, ("Message", f"Invalid/unknown command: {action.name}."), response="Error"
            )

    async def _login(self, conn: PbxConnection, action: Message) -> None:
        if conn.logged_in:
            conn.reply(action, ("Message", "Already authenticated"))
            return
        good_user = action.get("Username") == self.username
        if (action.get("AuthType") or "").lower() == "md5":
            expected = hashlib.md5(f"{conn.challenge}{self.secret}".encode()).hexdigest()
            good = good_user and conn.challenge is not None and action.get("Key") == expected
        else:
            good = good_user and action.get("Secret") == self.secret
        if not good:
            # Asterisk waits about a second; a short pause keeps the tests fast.
            await asyncio.sleep(0.01)
            conn.reply(action, ("Message", "Authentication failed"), response="Error")
            await conn.writer.drain()
            conn.abort()
            return
        conn.logged_in = True
        self.logins += 1
        conn.reply(action, ("Message", "Authentication accepted"))
        conn.event("FullyBooted", ("Privilege", "system,all"), ("Status", "Fully Booted"))


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Wait (polling, bounded) until ``condition()`` holds; fail the test otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)


@pytest.fixture
async def pbx() -> AsyncIterator[ScriptedPbx]:
    """A started scripted PBX (user ``admin`` / ``s3cret``)."""
    server = await ScriptedPbx().start()
    try:
        yield server
    finally:
        await server.stop()


ClientFactory = Callable[..., Awaitable[AmiClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``await make_client(pbx, **settings)``: a started client with test-sized timings,
    for a scripted peer or the simulator (both say their port, username and secret).

    Connected unless ``wait=False``; closed at teardown.
    """
    clients: list[AmiClient] = []

    async def make(
        server: ScriptedPbx | PbxSimulator,
        *,
        wait: bool = True,
        client_kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> AmiClient:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": server.port,
            "username": server.username,
            "secret": server.secret,
            "auth": "plain",
            "connect_timeout": 1.0,
            "login_timeout": 1.0,
            "ping_interval": 30.0,
            "ping_timeout": 1.0,
            "backoff_initial": 0.02,
            "backoff_max": 0.1,
            "name": "test",
        }
        settings.update(overrides)
        client = AmiClient(AmiSettings(**settings), **(client_kwargs or {}))
        clients.append(client)
        await client.start()
        if wait:
            await client.wait_connected(timeout=3.0)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def helpers() -> Any:
    """Module-level helpers for test modules (they cannot import conftest)."""

    class _Helpers:
        replay_answer = staticmethod(replay_answer)
        retarget = staticmethod(retarget)
        eventually = staticmethod(eventually)
        ScriptedPbx = globals()["ScriptedPbx"]

    return _Helpers
