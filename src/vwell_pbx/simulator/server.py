"""A simulated Asterisk / Yeastar PBX speaking AMI over TCP, for tests and demos.

Like aiosmtpd's ``Controller``, it is a real server users start in their own tests::

    async with PbxSimulator(secret="s3cret", call_hold=0.2) as pbx:
        client = await connect("127.0.0.1", pbx.port, ...)
        await pbx.incoming_call("+79787342741", span=11, to="269")
        assert pbx.actions_received[-1].name == "Originate"

Wire behaviour follows the transcripts recorded from a real Asterisk 20 (kept in
``tests/data/ami``: banner, login, MD5 challenge, errors, event lists, Originate,
Redirect, Command) and, with ``dialect="yeastar"``, the Asterisk 1.8 event layout of
the Yeastar MyPBX the original product drove. Call outcomes are described in
:mod:`vwell_pbx.simulator.calls`; GSM CLI texts in :mod:`vwell_pbx.simulator.gsm`.

Bounds (and what happens past them):

* an incoming line longer than ``MAX_LINE`` bytes, an action over ``MAX_ACTION`` bytes
  or ``MAX_HEADERS`` headers, a header line without ``:`` or with control characters:
  the connection is closed (garbage); other connections are unaffected;
* more than ``MAX_OUTBOUND`` bytes waiting in a client's socket buffer: the client is
  too slow and is disconnected (``emit`` never awaits a client);
* ``actions_received`` keeps the last ``MAX_RECORDED_ACTIONS`` actions, ``sms_sent``
  the last ``MAX_RECORDED_SMS`` SMS;
* at most ``MAX_GLOBAL_VARS`` global variables (``Setvar`` without a channel); past
  that the oldest one is forgotten;
* at most ``MAX_CONNECTIONS`` clients; later ones are closed at once;
* background traffic keeps at most ``MAX_TRAFFIC_CALLS`` calls alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Message,
    ProtocolError,
    encode_greeting,
    encode_message,
)
from vwell_pbx.simulator import gsm
from vwell_pbx.simulator.calls import CallEngine, OriginateOutcome, OriginateRequest
from vwell_pbx.simulator.commands import CliState, run_command
from vwell_pbx.simulator.dialects import Asterisk20Events, YeastarEvents
from vwell_pbx.simulator.gsm import SentSms, SpanState, default_spans
from vwell_pbx.simulator.model import (
    DEFAULT_EXTENSIONS,
    Channel,
    ExtensionBehaviour,
    IdAllocator,
    parse_callerid,
)

MAX_LINE: Final = 8 * 1024
MAX_ACTION: Final = 64 * 1024
MAX_HEADERS: Final = 256
MAX_OUTBOUND: Final = 16 * 1024 * 1024
MAX_HELD_EVENTS: Final = 20_000
MAX_RECORDED_ACTIONS: Final = 100_000
MAX_RECORDED_SMS: Final = 10_000
MAX_GLOBAL_VARS: Final = 10_000
MAX_CONNECTIONS: Final = 1_000
MAX_TRAFFIC_CALLS: Final = 500
SYNC_ORIGINATE_SLACK: Final = 5.0  # seconds beyond the action's Timeout we wait for a sync answer
_DONGLE_LOCK: Final = -1  # the _span_locks key of chan_dongle's one device

_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
Dialect = Literal["asterisk20", "yeastar"]
CommandFormat = Literal["output", "follows"]
Pairs = list[tuple[str, str]]


def _response(status: str, action_id: str | None, *pairs: tuple[str, str]) -> bytes:
    headers: Pairs = [("Response", status)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers.extend(pairs)
    return encode_message(headers)


class _SessionEndError(Exception):
    """Internal: the session must end now."""


class PbxSimulator:
    """An AMI server backed by a small simulated PBX (channels, calls, GSM spans, SMS).

    Use as ``async with PbxSimulator(...) as pbx`` or call ``start()``/``stop()``.
    ``port=0`` picks a free port; read ``pbx.port`` after start.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "admin",
        secret: str = "admin",
        dialect: Dialect = "asterisk20",
        command_format: CommandFormat | None = None,
        spans: Sequence[SpanState] | None = None,
        gsm: bool = True,
        tg_sms: bool = True,
        dongle: bool = True,
        auth_failure_delay: float = 1.0,
        call_step_delay: float = 0.05,
        call_hold: float = 1.0,
        no_answer_after: float = 1.0,
        sms_send_delay: float = 0.05,
        extensions: Mapping[str, ExtensionBehaviour | str] | None = None,
        contexts: Sequence[str] | None = None,
        ami_version: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        uniqueid_epoch: int | None = None,
        legacy_originate_events: bool = False,
    ) -> None:
        """Configure the simulator; nothing listens until ``start()``.

        ``extensions`` maps ``TECH/ext`` or ``ext`` to a behaviour (``"answer"``,
        ``"busy"``, ``"noanswer"``, ``"unregistered"``, ``"congestion"``); it replaces
        :data:`DEFAULT_EXTENSIONS`. ``contexts``: the dialplan contexts that exist
        (``None``: all of them). ``call_hold``: how long a bridged call lasts.
        ``legacy_originate_events``: report an async Originate as Asterisk 1.4 did,
        with ``OriginateSuccess`` / ``OriginateFailure`` instead of ``OriginateResponse``.
        """
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.dialect: Dialect = dialect
        self.command_format: CommandFormat = command_format or (
            "output" if dialect == "asterisk20" else "follows"
        )
        self.gsm = gsm
        self.tg_sms = tg_sms
        self.dongle = dongle
        self.auth_failure_delay = auth_failure_delay
        self.sms_send_delay = sms_send_delay
        self.ami_version = ami_version or ("9.0.0" if dialect == "asterisk20" else "1.1")
        self.spans: list[SpanState] = list(spans) if spans is not None else default_spans()
        self.actions_received: list[Message] = []
        self.sms_sent: list[SentSms] = []
        self._mute = False
        self._clock = clock
        self._rng = rng or random.Random()
        self._started_at = clock()
        self._global_vars: dict[str, str] = {}
        behaviours = (
            DEFAULT_EXTENSIONS
            if extensions is None
            else {key: ExtensionBehaviour(value) for key, value in extensions.items()}
        )
        self.extensions: dict[str, ExtensionBehaviour] = dict(behaviours)
        events = YeastarEvents() if dialect == "yeastar" else Asterisk20Events()
        self.engine = CallEngine(
            dialect=events,
            emit=self.emit,
            ids=IdAllocator(
                uniqueid_epoch if uniqueid_epoch is not None else int(clock()), self._rng
            ),
            clock=clock,
            spawn=self._spawn,
            extensions=self.extensions,
            contexts=frozenset(contexts) if contexts is not None else None,
            spans=lambda: self.spans,
            step_delay=call_step_delay,
            hold=call_hold,
            no_answer_after=no_answer_after,
            legacy_originate_events=legacy_originate_events,
        )
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._traffic: asyncio.Task[None] | None = None
        self._traffic_calls = 0
        self._sms_ids = 0
        self._span_locks: dict[int, asyncio.Lock] = {}

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen; after this ``port`` is the bound port."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection, cancel every task (none leak)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for session in list(self._sessions):
            session.abort()
        tasks = [t for t in self._tasks if not t.done()]
        if self._traffic is not None:
            tasks.append(self._traffic)
            self._traffic = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.engine.clear()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def __aenter__(self) -> PbxSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------- public API
    @property
    def mute(self) -> bool:
        """While True the PBX is hung: it accepts TCP but answers nothing, not even the
        banner, and ignores what it reads. Set back to False, it recovers: connections
        accepted meanwhile get their (late) banner; what was sent meanwhile is lost."""
        return self._mute

    @mute.setter
    def mute(self, value: bool) -> None:
        self._mute = value
        if not value:
            for session in list(self._sessions):
                session.wake()

    @property
    def connections(self) -> int:
        """Currently open client connections."""
        return len(self._sessions)

    @property
    def live_channels(self) -> list[str]:
        """Names of the channels that exist now, oldest first."""
        return list(self.engine.channels)

    @property
    def uptime(self) -> float:
        """Seconds since the simulator was made."""
        return max(0.0, self._clock() - self._started_at)

    def emit(self, event: Message) -> None:
        """Send an event to every logged-in connection that has events on. Never awaits."""
        data = encode_message(event.headers, event.output)
        for session in list(self._sessions):
            session.send_event(data)

    def drop_connections(self) -> None:
        """Abort every client socket abruptly (RST where the OS allows it)."""
        for session in list(self._sessions):
            session.abort()

    async def incoming_call(
        self,
        caller: str = "+79787342741",
        *,
        span: int = 11,
        to: str = "269",
        answer: bool = True,
        hold: float = 0.5,
    ) -> str:
        """Simulate a call arriving on GSM span ``span`` and ringing extension ``to``.

        Returns the GSM channel name (``YSGSM/<span>-<n>``) once the call is bridged
        (``answer=True``) or ringing (``answer=False``); it stays live, and can be
        redirected, until ``hold`` seconds later (or until hung up).
        """
        return await self.engine.incoming_call(
            caller=caller,
            span=span,
            to=to,
            answer=answer,
            hold=hold,
            yeastar=self.dialect == "yeastar",
        )

    def incoming_sms(self, sender: str, text: str, *, span: int = 2, parts: int = 1) -> None:
        """Emit ``ReceivedSMS`` events (one per part, same ID, URL-encoded Content)."""
        self._sms_ids += 1
        pieces = gsm.split_parts(text, parts)
        received = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock()))
        for index, piece in enumerate(pieces, start=1):
            self.emit(
                Message.build(
                    ("Event", "ReceivedSMS"),
                    ("Privilege", "all,smscommand"),
                    ("ID", str(self._sms_ids)),
                    ("GsmSpan", str(span)),
                    ("Sender", sender),
                    ("Recvtime", received),
                    ("Index", str(index)),
                    ("Total", str(len(pieces))),
                    ("Smsc", "+79000000000"),
                    ("Content", gsm.url_encode(piece)),
                )
            )

    def start_traffic(self, calls_per_second: float) -> None:
        """Start a background stream of incoming GSM calls (Poisson arrivals)."""
        if calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        if self._traffic is not None:
            self._traffic.cancel()
        self._traffic = asyncio.get_running_loop().create_task(self._traffic_loop(calls_per_second))

    async def stop_traffic(self) -> None:
        """Stop generating calls; calls already in progress finish on their own."""
        task, self._traffic = self._traffic, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _traffic_loop(self, rate: float) -> None:
        while True:
            await asyncio.sleep(self._rng.expovariate(rate))
            if self._traffic_calls >= MAX_TRAFFIC_CALLS:
                continue
            ready = [s.number for s in self.spans if s.can_send] or [11]
            caller = "+7978" + "".join(self._rng.choice("0123456789") for _ in range(7))
            hold = self.engine.hold * self._rng.uniform(0.5, 1.5)
            self._spawn(
                self._traffic_call(
                    caller, self._rng.choice(ready), self._rng.choice(("267", "269")), hold
                )
            )

    async def _traffic_call(self, caller: str, span: int, to: str, hold: float) -> None:
        self._traffic_calls += 1
        try:
            await self.incoming_call(caller, span=span, to=to, hold=hold)
        finally:
            self._traffic_calls -= 1

    # ------------------------------------------------------------------- SMS
    def _span(self, number: int) -> SpanState | None:
        return next((s for s in self.spans if s.number == number), None)

    def _cli_send_sms(self, span_number: int, number: str, text: str) -> list[str]:
        span = self._span(span_number)
        if span is None:
            return [f"GSM span {span_number} does not exist"]
        self._record_sms(
            SentSms(via="command", span=span_number, number=number, text=text, ok=span.can_send)
        )
        return [] if span.can_send else [f"GSM span {span_number} is not ready"]

    def _record_sms(self, sms: SentSms) -> None:
        self.sms_sent.append(sms)
        if len(self.sms_sent) > MAX_RECORDED_SMS:
            del self.sms_sent[: len(self.sms_sent) - MAX_RECORDED_SMS]

    async def _deliver_sms(self, lock_key: int | None, finish: Callable[[], None]) -> None:
        # A GSM module sends one SMS at a time per span: queue behind the span's lock.
        # Only existing spans and the dongle have a lock (key None: no lock), so that a
        # client naming ever new span numbers cannot grow _span_locks without bound.
        if lock_key is None:
            await asyncio.sleep(self.sms_send_delay)
            finish()
            return
        async with self._span_locks.setdefault(lock_key, asyncio.Lock()):
            await asyncio.sleep(self.sms_send_delay)
            finish()

    # ------------------------------------------------------------ connections
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._sessions) >= MAX_CONNECTIONS or self._server is None:
            writer.transport.abort()
            return
        session = _Session(self, reader, writer, silent=self.mute)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._sessions.add(session)
        try:
            await session.run()
        except asyncio.CancelledError:
            # stop() cancelled this handler; ending normally keeps asyncio's stream
            # callback from logging the cancellation as an unhandled error.
            pass
        finally:
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    def _record(self, action: Message) -> None:
        self.actions_received.append(action)
        if len(self.actions_received) > MAX_RECORDED_ACTIONS:
            del self.actions_received[: len(self.actions_received) - MAX_RECORDED_ACTIONS]

    def _cli_state(self) -> CliState:
        return CliState(
            dialect=self.dialect,
            gsm=self.gsm,
            channels=lambda: list(self.engine.channels.values()),
            calls_processed=lambda: self.engine.calls_processed,
            uptime=lambda: self.uptime,
            spans=lambda: self.spans,
            send_sms=self._cli_send_sms,
        )


class _Session:
    """One AMI client connection: reads actions in order and answers them."""

    def __init__(
        self,
        sim: PbxSimulator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        silent: bool,
    ) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.silent = silent  # accepted while muted: no banner until unmuted
        self.parser = AmiParser(
            expect_greeting=False,
            max_line=MAX_LINE,
            max_message=MAX_ACTION,
            max_headers=MAX_HEADERS,
        )
        self.authenticated = False
        self.events_on = True
        self.challenge: str | None = None
        self.closed = False
        self._held: list[bytes] | None = None

    # ----------------------------------------------------------------- output
    def wake(self) -> None:
        """The simulator was unmuted: a connection accepted while muted gets its banner."""
        if self.silent and not self.closed:
            self.silent = False
            self.send(encode_greeting(self.sim.ami_version))

    def abort(self) -> None:
        """Drop the connection at once."""
        self.closed = True
        self.writer.transport.abort()

    def send(self, data: bytes) -> None:
        """Write without awaiting; a client that lets its buffer fill up is dropped."""
        if self.closed or self.silent or self.sim.mute:
            return
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > MAX_OUTBOUND:
            self.abort()
            return
        self.writer.write(data)

    def send_event(self, data: bytes) -> None:
        """Deliver an event if this client is logged in with events on."""
        if not (self.authenticated and self.events_on):
            return
        if self._held is not None:
            if len(self._held) >= MAX_HELD_EVENTS:
                self.abort()
                return
            self._held.append(data)
            return
        self.send(data)

    # ------------------------------------------------------------------ input
    async def run(self) -> None:
        """Serve until the client leaves, misbehaves or the simulator stops."""
        self.send(encode_greeting(self.sim.ami_version))
        buffer = bytearray()
        in_message = False
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    return
                if self.silent or self.sim.mute:
                    continue  # a hung PBX: bytes are read and ignored
                buffer += data
                while not self.closed:
                    end = buffer.find(b"\n")
                    if end < 0:
                        if len(buffer) > MAX_LINE:
                            raise _SessionEndError
                        break
                    if end > MAX_LINE:
                        raise _SessionEndError
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    content = line.rstrip(b"\r\n")
                    if not content and not in_message:
                        # Asterisk answers every stray blank line (transcript 05).
                        self.send(
                            _response("Error", None, ("Message", "Missing action in request"))
                        )
                        continue
                    if _CONTROL.search(content):
                        raise _SessionEndError
                    in_message = bool(content)
                    self.parser.receive_data(line)
                    item = self.parser.next_event()
                    if item is NEED_DATA or not isinstance(item, Message):
                        continue
                    if any(not key for key, _ in item.headers):
                        raise _SessionEndError  # a line without ':' is garbage, not AMI
                    self.sim._record(item)
                    await self.handle(item)
        except (_SessionEndError, ProtocolError, ConnectionError):
            return
        finally:
            self.closed = True
            if not self.writer.transport.is_closing():
                self.writer.close()

    async def handle(self, action: Message) -> None:
        """Answer one action."""
        action_id = action.get("ActionID")
        name = action.get("Action")
        if name is None or not name.strip():
            self.send(_response("Error", action_id, ("Message", "Missing action in request")))
            return
        key = name.strip().lower()
        if not self.authenticated and key not in ("login", "challenge", "logoff"):
            self.send(_response("Error", action_id, ("Message", "Permission denied")))
            return
        handler = _HANDLERS.get(key)
        disabled = (key == "smscommand" and not self.sim.tg_sms) or (
            key == "donglesendsms" and not self.sim.dongle
        )
        if handler is None or disabled:
            self.send(
                _response(
                    "Error",
                    action_id,
                    (
                        "Message",
                        f"Invalid/unknown command: {name}. "
                        "Use Action: ListCommands to show available commands.",
                    ),
                )
            )
            return
        await handler(self, action, action_id)

    # --------------------------------------------------------------- actions
    async def _login(self, action: Message, action_id: str | None) -> None:
        if self.authenticated:
            self.send(_response("Success", action_id, ("Message", "Already authenticated")))
            return
        sim = self.sim
        username = action.get("Username", "")
        if (action.get("AuthType") or "").lower() == "md5":
            expected = None
            if self.challenge is not None:
                expected = hashlib.md5(
                    (self.challenge + sim.secret).encode(), usedforsecurity=False
                ).hexdigest()
            ok = expected is not None and (action.get("Key") or "").lower() == expected
        else:
            ok = action.get("Secret") == sim.secret
        if not ok or username != sim.username:
            await asyncio.sleep(sim.auth_failure_delay)
            self.send(_response("Error", action_id, ("Message", "Authentication failed")))
            raise _SessionEndError
        self.authenticated = True
        self.events_on = (action.get("Events") or "on").strip().lower() != "off"
        self.send(_response("Success", action_id, ("Message", "Authentication accepted")))
        if self.events_on:
            uptime = str(int(sim.uptime))
            booted: Pairs = [("Event", "FullyBooted"), ("Privilege", "system,all")]
            if sim.dialect == "asterisk20":
                booted += [("Uptime", uptime), ("LastReload", uptime)]
            booted.append(("Status", "Fully Booted"))
            self.send(encode_message(booted))

    async def _challenge(self, action: Message, action_id: str | None) -> None:
        if (action.get("AuthType") or "").lower() != "md5":
            self.send(_response("Error", action_id, ("Message", "Must specify AuthType")))
            return
        self.challenge = str(self.sim._rng.randrange(100_000_000, 1_000_000_000))
        self.send(_response("Success", action_id, ("Challenge", self.challenge)))

    async def _logoff(self, action: Message, action_id: str | None) -> None:
        self.send(_response("Goodbye", action_id, ("Message", "Thanks for all the fish.")))
        raise _SessionEndError

    async def _ping(self, action: Message, action_id: str | None) -> None:
        self.send(
            _response(
                "Success", action_id, ("Ping", "Pong"), ("Timestamp", f"{self.sim._clock():.6f}")
            )
        )

    async def _events(self, action: Message, action_id: str | None) -> None:
        mask = (action.get("EventMask") or "").strip().lower()
        if not mask:
            self.send(_response("Error", action_id, ("Message", "Invalid event mask")))
            return
        self.events_on = mask != "off"
        self.send(_response("Success", action_id, ("Events", "On" if self.events_on else "Off")))

    async def _core_show_channels(self, action: Message, action_id: str | None) -> None:
        sim = self.sim
        now = sim._clock()
        out = [
            _response(
                "Success", action_id, ("EventList", "start"), ("Message", "Channels will follow")
            )
        ]
        channels = list(sim.engine.channels.values())
        for ch in channels:
            item = sim.engine.dialect.core_show_channel(ch, action_id, now)
            out.append(encode_message(item.headers))
        tail: Pairs = [("Event", "CoreShowChannelsComplete")]
        if action_id is not None:
            tail.append(("ActionID", action_id))
        tail += [("EventList", "Complete"), ("ListItems", str(len(channels)))]
        out.append(encode_message(tail))
        self.send(b"".join(out))

    async def _status(self, action: Message, action_id: str | None) -> None:
        sim = self.sim
        engine = sim.engine
        wanted = action.get("Channel")
        if wanted:
            found = engine.find(wanted)
            if found is None:
                self.send(_response("Error", action_id, ("Message", "No such channel")))
                return
            channels = [found]
        else:
            channels = list(engine.channels.values())
        names = [v.strip() for v in (action.get("Variables") or "").split(",") if v.strip()]
        start: list[tuple[str, str]] = (
            [("EventList", "start")] if engine.dialect.status_has_eventlist else []
        )
        out = [_response("Success", action_id, *start, ("Message", "Channel status will follow"))]
        now = sim._clock()
        for ch in channels:
            out.append(encode_message(engine.dialect.status(ch, action_id, names, now).headers))
        out.append(encode_message(engine.dialect.status_complete(action_id, len(channels)).headers))
        self.send(b"".join(out))

    def _variable(self, ch: Channel | None, name: str) -> str:
        upper = name.upper()
        if ch is not None:
            if upper == "CALLERID(NUM)":
                return ch.cid_num
            if upper == "CALLERID(NAME)":
                return ch.cid_name
            if upper == "CALLERID(ALL)":
                return f'"{ch.cid_name}" <{ch.cid_num}>'
            if upper == "UNIQUEID":
                return ch.uniqueid
            if name in ch.variables:
                return ch.variables[name]
        return self.sim._global_vars.get(name, "")

    async def _getvar(self, action: Message, action_id: str | None) -> None:
        name = action.get("Variable")
        if not name:
            self.send(_response("Error", action_id, ("Message", "No variable specified")))
            return
        ch = None
        channel = action.get("Channel")
        if channel:
            ch = self.sim.engine.find(channel)
            if ch is None:
                self.send(_response("Error", action_id, ("Message", "No such channel")))
                return
        self.send(
            _response("Success", action_id, ("Variable", name), ("Value", self._variable(ch, name)))
        )

    async def _setvar(self, action: Message, action_id: str | None) -> None:
        name = action.get("Variable")
        value = action.get("Value", "") or ""
        if not name:
            self.send(_response("Error", action_id, ("Message", "No variable specified")))
            return
        sim = self.sim
        channel = action.get("Channel")
        if channel:
            ch = sim.engine.find(channel)
            if ch is None:
                self.send(_response("Error", action_id, ("Message", "No such channel")))
                return
            ch.variables[name] = value
            self.send(_response("Success", action_id, ("Message", "Variable Set")))
            for event in sim.engine.dialect.varset(ch, name, value):
                sim.emit(event)
            return
        sim._global_vars.pop(name, None)  # re-inserted last: the newest is kept longest
        sim._global_vars[name] = value
        if len(sim._global_vars) > MAX_GLOBAL_VARS:
            del sim._global_vars[next(iter(sim._global_vars))]
        self.send(_response("Success", action_id, ("Message", "Variable Set")))
        sim.emit(
            Message.build(
                ("Event", "VarSet"),
                ("Privilege", "dialplan,all"),
                ("Channel", "none"),
                ("Uniqueid", "none"),
                ("Variable", name),
                ("Value", value),
            )
        )

    async def _hangup(self, action: Message, action_id: str | None) -> None:
        engine = self.sim.engine
        channel = action.get("Channel")
        if not channel:
            self.send(_response("Error", action_id, ("Message", "No channel specified")))
            return
        try:
            cause = int(action.get("Cause") or 16)
        except ValueError:
            cause = 16
        if len(channel) > 2 and channel.startswith("/") and channel.endswith("/"):
            matched = engine.match(channel[1:-1])
            out = [
                _response(
                    "Success",
                    action_id,
                    ("EventList", "start"),
                    ("Message", "Channels hung up will follow"),
                )
            ]
            for ch in matched:
                item: Pairs = [("Event", "ChannelHungup"), ("Channel", ch.name)]
                if action_id is not None:
                    item.append(("ActionID", action_id))
                out.append(encode_message(item))
            done: Pairs = [("Event", "ChannelsHungupListComplete")]
            if action_id is not None:
                done.append(("ActionID", action_id))
            done += [("EventList", "Complete"), ("ListItems", str(len(matched)))]
            out.append(encode_message(done))
            self.send(b"".join(out))
            for ch in matched:
                engine.hangup(ch, cause)
            return
        found = engine.find(channel)
        if found is None:
            self.send(_response("Error", action_id, ("Message", "No such channel")))
            return
        self.send(_response("Success", action_id, ("Message", "Channel Hungup")))
        engine.hangup(found, cause)

    async def _redirect(self, action: Message, action_id: str | None) -> None:
        engine = self.sim.engine
        name = action.get("Channel")
        if not name:
            self.send(_response("Error", action_id, ("Message", "Channel not specified")))
            return
        exten = action.get("Exten")
        if not exten:
            self.send(_response("Error", action_id, ("Message", "Exten not specified")))
            return
        context = action.get("Context") or "default"
        try:
            priority = int(action.get("Priority") or 1)
        except ValueError:
            self.send(_response("Error", action_id, ("Message", "Invalid priority")))
            return
        ch = engine.find(name)
        if ch is None:
            self.send(_response("Error", action_id, ("Message", f"Channel does not exist: {name}")))
            return
        targets = {ch: (context, exten, priority)}
        extra_name = action.get("ExtraChannel")
        if extra_name:
            extra = engine.find(extra_name)
            if extra is None:
                self.send(
                    _response(
                        "Error",
                        action_id,
                        ("Message", f"ExtraChannel does not exist: {extra_name}"),
                    )
                )
                return
            try:
                extra_priority = int(action.get("ExtraPriority") or priority)
            except ValueError:
                extra_priority = priority
            targets[extra] = (
                action.get("ExtraContext") or context,
                action.get("ExtraExten") or exten,
                extra_priority,
            )
        message = "Dual Redirect successful" if extra_name else "Redirect successful"
        self.send(_response("Success", action_id, ("Message", message)))
        engine.redirect(targets)

    async def _originate(self, action: Message, action_id: str | None) -> None:
        engine = self.sim.engine
        channel = action.get("Channel")
        if not channel:
            self.send(_response("Error", action_id, ("Message", "Channel not specified")))
            return
        try:
            priority = int(action.get("Priority") or 1)
        except ValueError:
            self.send(_response("Error", action_id, ("Message", "Invalid priority")))
            return
        try:
            timeout = int(action.get("Timeout") or 30000) / 1000.0
        except ValueError:
            self.send(_response("Error", action_id, ("Message", "Invalid timeout")))
            return
        application = action.get("Application") or None
        context = action.get("Context") or "default"
        exten = action.get("Exten") or "s"
        if application is None and not engine.context_exists(context):
            self.send(_response("Error", action_id, ("Message", "Extension does not exist.")))
            return
        cid_num, cid_name = parse_callerid(action.get("CallerID"))
        variables: list[tuple[str, str]] = []
        for raw in action.get_all("Variable"):
            for item in raw.split(","):
                key, sep, value = item.partition("=")
                if sep and key.strip():
                    variables.append((key.strip(), value))
        is_async = (action.get("Async") or "").strip().lower() in ("true", "yes", "1", "on")
        request = OriginateRequest(
            channel=channel,
            context=None if application else context,
            exten=None if application else exten,
            priority=priority,
            application=application,
            data=action.get("Data") or "",
            cid_num=cid_num,
            cid_name=cid_name,
            timeout=max(0.0, timeout),
            variables=variables,
            account=action.get("Account") or "",
            action_id=action_id,
            channel_id=action.get("ChannelId") or None,
            other_channel_id=action.get("OtherChannelId") or None,
            is_async=is_async,
        )
        if is_async:
            self.send(_response("Success", action_id, ("Message", "Originate successfully queued")))
            engine.originate(request, lambda outcome: None)
            return
        # Sync: Asterisk answers only once the call is answered or failed, and the
        # events that happened meanwhile reach this client after the response.
        loop = asyncio.get_running_loop()
        decided: asyncio.Future[OriginateOutcome] = loop.create_future()

        def settle(outcome: OriginateOutcome) -> None:
            if not decided.done():
                decided.set_result(outcome)

        self._held = []
        try:
            engine.originate(request, settle)
            try:
                outcome = await asyncio.wait_for(
                    decided, timeout + engine.no_answer_after + SYNC_ORIGINATE_SLACK
                )
            except TimeoutError:
                outcome = OriginateOutcome(False, 0)
            if outcome.success:
                self.send(
                    _response("Success", action_id, ("Message", "Originate successfully queued"))
                )
            else:
                self.send(_response("Error", action_id, ("Message", "Originate failed")))
        finally:
            held, self._held = self._held, None
            for data in held or []:
                self.send(data)

    async def _command(self, action: Message, action_id: str | None) -> None:
        line = (action.get("Command") or "").strip()
        if not line:
            self.send(_response("Error", action_id, ("Message", "No command provided")))
            return
        result = run_command(self.sim._cli_state(), line)
        self._send_output(action_id, result.lines, ok=result.known)

    def _send_output(self, action_id: str | None, lines: list[str], *, ok: bool) -> None:
        if self.sim.command_format == "follows":
            headers: Pairs = [("Response", "Follows"), ("Privilege", "Command")]
            if action_id is not None:
                headers.append(("ActionID", action_id))
            self.send(encode_message(headers, output=lines))
            return
        outputs = [("Output", line) for line in (lines or [""])]
        self.send(
            _response(
                "Success" if ok else "Error",
                action_id,
                ("Message", "Command output follows"),
                *outputs,
            )
        )

    async def _smscommand(self, action: Message, action_id: str | None) -> None:
        sim = self.sim
        parsed = gsm.parse_send_sms(action.get("command") or "")
        if parsed is None or parsed.sms_id is None:
            self.send(_response("Error", action_id, ("Message", "Invalid command")))
            return
        span = sim._span(parsed.span)
        ok = span is not None and span.can_send
        text = gsm.url_decode(parsed.text)
        sim._record_sms(
            SentSms(
                via="smscommand",
                span=parsed.span,
                number=parsed.number,
                text=text,
                sms_id=parsed.sms_id,
                ok=ok,
            )
        )
        self.send(_response("Success", action_id, ("Message", "SMS command queued")))
        sms_id = parsed.sms_id

        def finish() -> None:
            sim.emit(
                Message.build(
                    ("Event", "UpdateSMSSend"),
                    ("Privilege", "all,smscommand"),
                    ("ID", sms_id),
                    ("Smsc", "+79000000000"),
                    ("Status", "1" if ok else "0"),
                )
            )

        sim._spawn(sim._deliver_sms(parsed.span if span is not None else None, finish))

    async def _dongle_send_sms(self, action: Message, action_id: str | None) -> None:
        sim = self.sim
        for field in ("Device", "Number", "Message"):
            if not action.get(field):
                self.send(_response("Error", action_id, ("Message", f"{field} not specified")))
                return
        device = action.get("Device") or ""
        sms_id = f"0x{sim._rng.getrandbits(48):012x}"
        sim._record_sms(
            SentSms(
                via="dongle",
                device=device,
                number=action.get("Number") or "",
                text=action.get("Message") or "",
                sms_id=sms_id,
            )
        )
        self.send(
            _response(
                "Success", action_id, ("Message", f"[{device}] SMS queued for send"), ("ID", sms_id)
            )
        )

        def finish() -> None:
            sim.emit(
                Message.build(
                    ("Event", "DongleSMSStatus"),
                    ("Privilege", "call,all"),
                    ("Device", device),
                    ("ID", sms_id),
                    ("Status", "Sent"),
                )
            )

        sim._spawn(sim._deliver_sms(_DONGLE_LOCK, finish))

    async def _core_status(self, action: Message, action_id: str | None) -> None:
        sim = self.sim
        started = time.gmtime(sim._started_at)
        day, clock = time.strftime("%Y-%m-%d", started), time.strftime("%H:%M:%S", started)
        calls = len({ch.linkedid for ch in sim.engine.channels.values()})
        self.send(
            _response(
                "Success",
                action_id,
                ("CoreStartupDate", day),
                ("CoreStartupTime", clock),
                ("CoreReloadDate", day),
                ("CoreReloadTime", clock),
                ("CoreCurrentCalls", str(calls)),
                ("CoreProcessedCalls", str(sim.engine.calls_processed)),
            )
        )

    async def _core_settings(self, action: Message, action_id: str | None) -> None:
        version = "20.20.1" if self.sim.dialect == "asterisk20" else "1.8.20.0"
        self.send(
            _response(
                "Success",
                action_id,
                ("AMIversion", self.sim.ami_version),
                ("AsteriskVersion", version),
                ("SystemName", ""),
                ("CoreMaxCalls", "0"),
                ("CoreMaxLoadAvg", "0.000000"),
                ("CoreRunUser", ""),
                ("CoreRunGroup", ""),
                ("CoreMaxFilehandles", "0"),
                ("CoreRealTimeEnabled", "No"),
                ("CoreCDRenabled", "No"),
                ("CoreHTTPenabled", "Yes"),
                ("SoundsSearchCustomDir", "No"),
            )
        )

    async def _user_event(self, action: Message, action_id: str | None) -> None:
        name = action.get("UserEvent")
        if not name:
            self.send(_response("Error", action_id, ("Message", "UserEvent not specified")))
            return
        self.send(_response("Success", action_id, ("Message", "Event Sent")))
        headers: Pairs = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name)]
        if action_id is not None:
            headers.append(("ActionID", action_id))
        headers += [
            (k, v)
            for k, v in action.headers
            if k.lower() not in ("action", "actionid", "userevent")
        ]
        self.sim.emit(Message(headers=tuple(headers)))

    async def _list_commands(self, action: Message, action_id: str | None) -> None:
        pairs = [
            (name, f"{text}  (Priv: {priv})")
            for name, text, priv in _COMMAND_HELP
            if (name != "smscommand" or self.sim.tg_sms)
            and (name != "DongleSendSMS" or self.sim.dongle)
        ]
        self.send(_response("Success", action_id, *pairs))


_COMMAND_HELP = [
    ("Challenge", "Generate Challenge for MD5 Auth.", "<none>"),
    ("Command", "Execute Asterisk CLI Command.", "command,all"),
    ("CoreSettings", "Show PBX core settings (version etc).", "system,reporting,all"),
    ("CoreShowChannels", "List currently active channels.", "system,reporting,all"),
    ("CoreStatus", "Show PBX core status variables.", "system,reporting,all"),
    ("DongleSendSMS", "Send a SMS message.", "call,all"),
    ("Events", "Control Event Flow.", "<none>"),
    ("Getvar", "Gets a channel variable or function value.", "call,reporting,all"),
    ("Hangup", "Hangup channel.", "system,call,all"),
    ("ListCommands", "List available manager commands.", "<none>"),
    ("Login", "Login Manager.", "<none>"),
    ("Logoff", "Logoff Manager.", "<none>"),
    ("Originate", "Originate a call.", "originate,all"),
    ("Ping", "Keepalive command.", "<none>"),
    ("Redirect", "Redirect (transfer) a call.", "call,all"),
    ("Setvar", "Sets a channel variable or function value.", "call,all"),
    ("smscommand", "Send an SMS through a GSM span.", "call,all"),
    ("Status", "List channel status.", "system,call,reporting,all"),
    ("UserEvent", "Send an arbitrary event.", "user,all"),
]

Handler = Callable[[_Session, Message, "str | None"], Coroutine[Any, Any, None]]
_HANDLERS: dict[str, Handler] = {
    "login": _Session._login,
    "challenge": _Session._challenge,
    "logoff": _Session._logoff,
    "ping": _Session._ping,
    "events": _Session._events,
    "coreshowchannels": _Session._core_show_channels,
    "status": _Session._status,
    "getvar": _Session._getvar,
    "setvar": _Session._setvar,
    "hangup": _Session._hangup,
    "redirect": _Session._redirect,
    "originate": _Session._originate,
    "command": _Session._command,
    "smscommand": _Session._smscommand,
    "donglesendsms": _Session._dongle_send_sms,
    "corestatus": _Session._core_status,
    "coresettings": _Session._core_settings,
    "userevent": _Session._user_event,
    "listcommands": _Session._list_commands,
}
