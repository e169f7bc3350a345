"""Raw AMI over real loopback sockets, for what the simulator will not do on demand.

``ScriptedPbx`` is the one scripted AMI server. By default it speaks just enough AMI,
as the recorded Asterisk does: the banner, Challenge/Login (plain and MD5, refusing bad
credentials), Ping and Logoff; every other action goes to a handler the test sets with
``on()``, which can answer with bytes replayed from the transcripts
(``tests.support.transcripts``), answer late, never answer, or break the connection.
A test that needs a PBX misbehaving from the first byte (no banner, garbage, half a
message, a flood) gives a *behaviour* instead: one coroutine per connection, which may
still call ``connection.log_in()`` to get through the login like Asterisk.

``RawAmi`` is the other end: a raw AMI client (asyncio streams and ``AmiParser``) for
the simulator's tests, which pin its wire format without the project's ``AmiClient``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Greeting,
    Message,
    encode_action,
    encode_message,
)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

Handler = Callable[["PeerConnection", Message], Awaitable[None] | None]
Behaviour = Callable[["PeerConnection"], Awaitable[None]]


def answer(action: Message, *pairs: tuple[str, str]) -> bytes:
    """A success response to ``action`` (a ``Ping`` gets its ``Ping: Pong``), as bytes."""
    headers: list[tuple[str, str]] = [("Response", "Success")]
    if action.action_id:
        headers.append(("ActionID", action.action_id))
    if action.name.lower() == "ping":
        headers.append(("Ping", "Pong"))
    return encode_message([*headers, *pairs])


class PeerConnection:
    """The server side of one client connection."""

    def __init__(
        self,
        pbx: ScriptedPbx,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
    ) -> None:
        self.pbx = pbx
        self.reader = reader
        self.writer = writer
        self.number = number  # 1 for the first connection the PBX accepted, then 2, ...
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
        """The next action the client sends, or ``None`` once it has gone."""
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

    async def log_in(self) -> None:
        """The banner, then the client's actions answered as Asterisk does until it is
        logged in (``ConnectionError`` if it leaves or is refused first)."""
        self.send(BANNER)
        while not self.logged_in:
            if not await self._serve_one():
                raise ConnectionError("the client left (or was refused) during login")

    async def serve_like_asterisk(self) -> None:
        """The default behaviour: banner (unless switched off), then every action."""
        if self.pbx.banner:
            self.send(BANNER)
        while await self._serve_one():
            pass

    async def _serve_one(self) -> bool:
        action = await self.next_action()
        if action is None:
            return False
        self.pbx.actions.append(action)
        await self.pbx.handle(self, action)
        return True


class ScriptedPbx:
    """A minimal AMI server on 127.0.0.1 whose behaviour each test scripts.

    ``async with ScriptedPbx(...) as pbx`` (or ``await ScriptedPbx(...).start()`` and
    ``await pbx.stop()``); ``pbx.port`` is where it listens, and a restart with
    ``port=`` comes back on the same one.
    """

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        username: str = "admin",
        secret: str = "s3cret",
        banner: bool = True,
        answer_pings: bool = True,
        port: int = 0,
    ) -> None:
        self.behaviour = behaviour
        self.username = username
        self.secret = secret
        self.banner = banner
        self.answer_pings = answer_pings
        self.requested_port = port
        self.handlers: dict[str, Handler] = {}
        self.actions: list[Message] = []
        self.connections: list[PeerConnection] = []
        self.logins = 0
        self.go = asyncio.Event()  # for behaviours that wait until the test is ready
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def on(self, action: str, handler: Handler) -> None:
        """Answer ``action`` (case-insensitive) with ``handler(connection, action)``."""
        self.handlers[action.lower()] = handler

    def received(self, action: str) -> list[Message]:
        """Actions of that name received so far (all connections)."""
        return [a for a in self.actions if a.name.lower() == action.lower()]

    async def start(self) -> ScriptedPbx:
        """Start listening."""
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

    async def __aenter__(self) -> ScriptedPbx:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = PeerConnection(self, reader, writer, len(self.connections) + 1)
        self.connections.append(connection)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.behaviour is not None:
                await self.behaviour(connection)
            else:
                await connection.serve_like_asterisk()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            connection.closed.set()
            writer.transport.abort()

    async def handle(self, conn: PeerConnection, action: Message) -> None:
        """Answer one action as the scripted Asterisk does (see the module docstring)."""
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

    async def _login(self, conn: PeerConnection, action: Message) -> None:
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
            # Asterisk waits about a second before it answers; a short pause stands for it.
            await asyncio.sleep(0.01)
            conn.reply(action, ("Message", "Authentication failed"), response="Error")
            await conn.writer.drain()
            conn.abort()
            return
        conn.logged_in = True
        self.logins += 1
        conn.reply(action, ("Message", "Authentication accepted"))
        conn.event("FullyBooted", ("Privilege", "system,all"), ("Status", "Fully Booted"))


class RawAmi:
    """One raw loopback AMI client connection; every event read is kept in ``events``."""

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

    async def read_until(
        self, predicate: Callable[[Message], bool], wait: float = 3
    ) -> list[Message]:
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


def keys(message: Message) -> list[str]:
    """Header keys in order."""
    return [key for key, _ in message.headers]


Connect = Callable[..., Awaitable[RawAmi]]
