"""A simulated Asterisk / Yeastar PBX speaking AMI over TCP, for tests and demos.

Like aiosmtpd's ``Controller``, it is a real server users start in their own tests::

    async with PbxSimulator(secret="s3cret", call_hold=0.2) as pbx:
        client = await connect("127.0.0.1", pbx.port, ...)
        await pbx.incoming_call("+79787342741", span=11, to="269")
        run = await pbx.scenario("attended_transfer", caller="269", to="267", target="268")
        await run.wait(timeout=10)
        assert pbx.actions_received[-1].name == "Originate"

Wire behaviour follows the transcripts recorded from a real Asterisk 20 (kept in
``tests/data/ami``: banner, login, MD5 challenge, errors, event lists, Originate,
Redirect, Command, the eleven call scenarios) and, with ``dialect="yeastar"``, the
Asterisk 1.8 event layout of the Yeastar MyPBX the original product drove. The scripted
calls are :mod:`vwell_pbx.simulator.scenarios`; call steps and outcome rules are in
:mod:`vwell_pbx.simulator.calls`; GSM CLI texts in :mod:`vwell_pbx.simulator.gsm`.

The module is the connection layer: the listener, one ``AmiSession`` per client
(banner, parsing with the codec's strict server role, the login gate, writing without
ever awaiting a client) and the public API above. What each AMI action does is in
:mod:`vwell_pbx.simulator.actions`, one small handler per action in a table.

Bounds (and what happens past them):

* an incoming line longer than ``MAX_LINE`` bytes, an action over ``MAX_ACTION`` bytes
  or ``MAX_HEADERS`` headers, a header line without ``Key:`` or with control
  characters: the connection is closed (garbage); other connections are unaffected.
  A stray blank line or a message without ``Action`` is answered ``Missing action in
  request``, as Asterisk does;
* more than ``MAX_OUTBOUND`` bytes waiting in a client's socket buffer: the client is
  too slow and is disconnected (``emit`` never awaits a client); more than
  ``MAX_HELD_EVENTS`` events held back behind a sync Originate: the same;
* ``actions_received`` keeps the last ``MAX_RECORDED_ACTIONS`` actions, ``sms_sent``
  the last ``MAX_RECORDED_SMS`` SMS;
* at most ``actions.channels.MAX_GLOBAL_VARS`` global variables (``Setvar`` without
  a channel); past that the oldest one is forgotten;
* at most ``MAX_CONNECTIONS`` clients; later ones are closed at once;
* background traffic keeps at most ``MAX_TRAFFIC_CALLS`` calls alive;
* at most ``calls.MAX_LIVE_CHANNELS`` live channels: past it new calls fail with
  congestion; a ``CallRun`` remembers the names of at most ``runs.MAX_RUN_CHANNELS``
  channels (it still waits for all of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Message,
    MissingAction,
    ProtocolError,
    action_name,
    encode_greeting,
    encode_message,
)
from vwell_pbx.simulator import gsm
from vwell_pbx.simulator.actions import ACTIONS, PRE_LOGIN, SessionEnd, response
from vwell_pbx.simulator.calls import CallEngine, DialScript
from vwell_pbx.simulator.dialects import Asterisk20Events, YeastarEvents
from vwell_pbx.simulator.gsm import (
    IncomingSms,
    SentSms,
    SmsFault,
    SmsFaults,
    SmsShape,
    SpanState,
    default_spans,
)
from vwell_pbx.simulator.model import (
    DEFAULT_EXTENSIONS,
    Dialplan,
    ExtensionBehaviour,
    IdAllocator,
)
from vwell_pbx.simulator.originator import Originator
from vwell_pbx.simulator.runs import CallRun
from vwell_pbx.simulator.scenarios import CallScenarios

MAX_LINE: Final = 8 * 1024
MAX_ACTION: Final = 64 * 1024
MAX_HEADERS: Final = 256
MAX_OUTBOUND: Final = 16 * 1024 * 1024
MAX_HELD_EVENTS: Final = 20_000
MAX_RECORDED_ACTIONS: Final = 100_000
MAX_RECORDED_SMS: Final = 10_000
MAX_CONNECTIONS: Final = 1_000
MAX_TRAFFIC_CALLS: Final = 500

Dialect = Literal["asterisk20", "yeastar"]
CommandFormat = Literal["output", "follows"]


class PbxSimulator:
    """An AMI server backed by a small simulated PBX (channels, calls, GSM spans, SMS).

    Use as ``async with PbxSimulator(...) as pbx`` or call ``start()``/``stop()``.
    ``port=0`` picks a free port; read ``pbx.port`` after start.

    Besides the public API for tests, the simulated PBX's state is open to the action
    handlers (``simulator.actions``): ``engine`` (channels and calls), ``originator``,
    ``scenarios`` (and its ``features``: transfers, pickup), ``spans``,
    ``global_vars``, ``clock``/``rng``/``started_at``, ``span()``, ``record_sms()``,
    ``deliver_sms_later()`` and ``emit()``.
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
        call_ring: float = 0.5,
        call_hold: float = 1.0,
        no_answer_after: float = 1.0,
        sms_send_delay: float = 0.05,
        sms_answer_delay: float = 0.0,
        extensions: Mapping[str, ExtensionBehaviour | str] | None = None,
        contexts: Sequence[str] | None = None,
        ami_version: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        uniqueid_epoch: int | None = None,
        legacy_originate_events: bool = False,
        dialplan: Dialplan | None = None,
    ) -> None:
        """Configure the simulator; nothing listens until ``start()``.

        ``extensions`` maps ``TECH/ext`` or ``ext`` to a behaviour (``"answer"``,
        ``"busy"``, ``"noanswer"``, ``"unregistered"``, ``"congestion"``); it replaces
        :data:`DEFAULT_EXTENSIONS`. ``contexts``: the dialplan contexts that exist
        (``None``: all of them). ``call_step_delay``: the pause between two steps of
        a call (and how long a phone rings before it answers by itself);
        ``call_ring``: how long a scenario's phones ring unless told;
        ``call_hold``: how long a bridged call lasts; ``no_answer_after``: the Dial
        timeout. ``dialplan``: application extensions, ring groups and the pickup
        code (default :class:`~vwell_pbx.simulator.model.Dialplan`: ``100`` and
        ``700`` answer and wait, ``2000`` rings 267 and 268, ``*8`` picks up).
        ``legacy_originate_events``: report an async Originate as Asterisk 1.4 did,
        with ``OriginateSuccess`` / ``OriginateFailure`` instead of ``OriginateResponse``.
        ``sms_send_delay``: how long a module takes to send an SMS (its report follows);
        ``sms_answer_delay``: how long the PBX takes to answer an SMS send action.
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
        self.sms_faults = SmsFaults()
        """Faults the next SMS sends meet (``fail_sms``)."""
        self.sms_answer_delay = sms_answer_delay
        """Seconds the PBX takes before it answers an SMS send (a slow module)."""
        self._mute = False
        self.ignored_reads = 0
        """Reads the hung PBX (``mute``) threw away: what a client kept sending to it."""
        self.clock = clock
        """Wall-clock time source (``time.time`` by default)."""
        self.rng = rng or random.Random()
        """Randomness: challenges, SMS IDs, traffic."""
        self.started_at = clock()
        self.global_vars: dict[str, str] = {}
        """Variables set without a channel (bounded by ``Setvar``'s handler)."""
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
                uniqueid_epoch if uniqueid_epoch is not None else int(clock()), self.rng
            ),
            clock=clock,
            spawn=self._spawn,
            extensions=self.extensions,
            contexts=frozenset(contexts) if contexts is not None else None,
            spans=lambda: self.spans,
            step_delay=call_step_delay,
            hold=call_hold,
            no_answer_after=no_answer_after,
            dialplan=dialplan,
            legacy_originate_events=legacy_originate_events,
        )
        self.originator = Originator(self.engine)
        """``Originate`` actions and click-to-calls."""
        self.scenarios = CallScenarios(
            self.engine, self.originator, ring=call_ring, spans=lambda: self.spans
        )
        """The scripted calls (``scenario()`` starts one by name)."""
        self._server: asyncio.Server | None = None
        self._sessions: set[AmiSession] = set()
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
        return max(0.0, self.clock() - self.started_at)

    def emit(self, event: Message) -> None:
        """Send an event to every logged-in connection that has events on. Never awaits."""
        self.emit_bytes(encode_message(event.headers, event.output))

    def emit_bytes(self, data: bytes) -> None:
        """Send raw bytes, as an event, to every logged-in connection with events on:
        for what a PBX writes that ``Message`` cannot express (a TG gateway's trailer
        line, bytes that are not UTF-8). Never awaits."""
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
        redirected, until ``hold`` seconds later (or until hung up). Extension ``to``
        behaves as ``extensions`` says (busy, no answer...); with ``answer=False`` the
        caller gives up after ``hold`` seconds of ringing. For other outcomes and
        timings use ``scenario("inbound", ...)``.
        """
        engine = self.engine
        script = engine.script_for(to) if answer else DialScript(outcome="cancel", ring=hold)
        run = self.scenarios.inbound(caller, to=to, span=span, script=script, talk=hold)
        await run.until("answered" if answer else "ringing", timeout=hold + 30.0)
        return run.channels[0]

    async def scenario(self, name: str, /, **options: Any) -> CallRun:
        """Start the call scenario ``name`` and return its run once its first channel
        exists (or it ended without one).

        ``name`` is one of ``inbound``, ``internal``, ``ring_group``,
        ``blind_transfer``, ``attended_transfer``, ``hold``, ``pickup``,
        ``click_to_call``; ``options`` are that method's keyword arguments on
        :class:`~vwell_pbx.simulator.scenarios.CallScenarios` (numbers, outcome,
        timings in seconds). ``await run.wait()`` waits for the end of the call::

            run = await pbx.scenario(
                "ring_group",
                caller="269",
                targets=["267", "268"],
                answer_by="268",
                ring=0.2,
                talk=0.3,
            )
            await run.wait(timeout=5)
        """
        run = self.scenarios.start(name, **options)
        await run.until("created", timeout=30.0)
        return run

    def incoming_sms(
        self,
        sender: str,
        text: str | None = None,
        *,
        span: int = 2,
        parts: int = 1,
        shape: SmsShape = "tg",
        order: Sequence[int] | None = None,
        data: bytes | None = None,
        device: str = "dongle0",
        first_index: int = 1,
    ) -> str:
        """An SMS arriving from ``sender``, as events in the ``shape`` of a backend.

        ``tg`` (default) and ``mypbx``: ``ReceivedSMS`` events, one per part (``parts``),
        sharing an ``ID``, emitted in ``order`` (1-based part numbers; default in order),
        numbered from ``first_index``. ``dongle``: chan_dongle's ``DongleNewSMS`` then
        ``DongleNewSMSBase64`` from ``device`` (chan_dongle joins long SMS itself).
        ``data`` sends raw bytes instead of ``text`` (cut into parts anywhere). Returns
        the ``ID`` of the parts. See ``simulator.gsm`` for the exact shapes.
        """
        if (text is None) == (data is None):
            raise ValueError("give either text or data")
        self._sms_ids += 1
        sms = IncomingSms(
            sender=sender,
            text=text,
            data=data or b"",
            span=span,
            device=device,
            reference=str(self._sms_ids),
            received=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock())),
            parts=parts,
            order=order,
            first_index=first_index,
        )
        for event in gsm.incoming_sms_events(sms, shape):
            self.emit_bytes(event)
        return sms.reference

    def fail_sms(self, fault: SmsFault, count: int = 1) -> None:
        """Let the next ``count`` SMS sends fail with ``fault``: ``busy`` (the span or
        device cannot send now), ``error`` (refused for good), ``no_answer`` (sent, but
        the action is never answered) or ``report_failed`` (answered, then reported
        failed; ``smscommand`` and ``DongleSendSMS`` only)."""
        self.sms_faults.add(fault, count)

    def start_traffic(self, calls_per_second: float, *, hold: float | None = None) -> None:
        """Start a background stream of calls (Poisson arrivals): mostly inbound GSM
        calls, with every other scenario among them (``scenarios.TRAFFIC_MIX``).

        ``hold`` (default ``call_hold``) scales the calls: phones ring 0.2 to 0.6 of it,
        conversations last 0.5 to 1.5 of it (a few seconds make a lively console).
        """
        if calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        if hold is not None and hold <= 0:
            raise ValueError("hold must be positive")
        if self._traffic is not None:
            self._traffic.cancel()
        loop = asyncio.get_running_loop()
        scale = self.engine.hold if hold is None else hold
        self._traffic = loop.create_task(self._traffic_loop(calls_per_second, scale))

    async def stop_traffic(self) -> None:
        """Stop generating calls; calls already in progress finish on their own."""
        task, self._traffic = self._traffic, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _traffic_loop(self, rate: float, scale: float) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            if self._traffic_calls >= MAX_TRAFFIC_CALLS:
                continue
            hold = scale * self.rng.uniform(0.5, 1.5)
            run = self.scenarios.traffic_call(self.rng, hold)
            self._spawn(self._traffic_call(run, hold))

    async def _traffic_call(self, run: CallRun, hold: float) -> None:
        self._traffic_calls += 1
        try:
            # Bounded: every traffic scenario ends within a few of its holds.
            await run.wait(timeout=hold * 10 + 30.0)
        except TimeoutError:
            pass
        finally:
            self._traffic_calls -= 1

    # ------------------------------------------------------------------- SMS
    def span(self, number: int) -> SpanState | None:
        """The GSM span with that number, or ``None``."""
        return next((s for s in self.spans if s.number == number), None)

    def record_sms(self, sms: SentSms) -> None:
        """Note an SMS the PBX was asked to send (``sms_sent``, bounded)."""
        self.sms_sent.append(sms)
        if len(self.sms_sent) > MAX_RECORDED_SMS:
            del self.sms_sent[: len(self.sms_sent) - MAX_RECORDED_SMS]

    def deliver_sms_later(self, lane: int | None, report: Callable[[], None]) -> None:
        """Call ``report`` once the SMS has taken ``sms_send_delay`` on its module.

        A GSM module sends one SMS at a time: SMS of the same ``lane`` (a span number,
        or chan_dongle's device) wait for each other. Only existing spans and the
        dongle get a lane (``None``: none), so that a client naming ever new span
        numbers cannot grow ``_span_locks`` without bound.
        """
        self._spawn(self._deliver_sms(lane, report))

    async def _deliver_sms(self, lane: int | None, report: Callable[[], None]) -> None:
        if lane is None:
            await asyncio.sleep(self.sms_send_delay)
            report()
            return
        async with self._span_locks.setdefault(lane, asyncio.Lock()):
            await asyncio.sleep(self.sms_send_delay)
            report()

    # ------------------------------------------------------------ connections
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._sessions) >= MAX_CONNECTIONS or self._server is None:
            writer.transport.abort()
            return
        session = AmiSession(self, reader, writer, silent=self.mute)
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


class AmiSession:
    """One AMI client connection: reads actions in order and has them answered.

    Implements what an action handler may use (``actions.base.ActionSession``). Its
    own rules: the banner first (late, if accepted while muted); actions are parsed
    by the codec's strict server role and answered one at a time, in order; before
    login only ``actions.PRE_LOGIN`` actions are served; a disabled or unknown action
    gets Asterisk's ``Invalid/unknown command``.
    """

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
            role="server", max_line=MAX_LINE, max_message=MAX_ACTION, max_headers=MAX_HEADERS
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

    @contextlib.contextmanager
    def holding_events(self) -> Iterator[None]:
        """Keep this client's events back (at most ``MAX_HELD_EVENTS``) until the block ends."""
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for data in held or []:
                self.send(data)

    # ------------------------------------------------------------------ input
    async def run(self) -> None:
        """Serve until the client leaves, misbehaves or the simulator stops."""
        self.send(encode_greeting(self.sim.ami_version))
        try:
            while not self.closed:
                item = self.parser.next_event()
                if item is NEED_DATA:
                    data = await self.reader.read(65536)
                    if not data:
                        return
                    if not (self.silent or self.sim.mute):  # a hung PBX ignores what it reads
                        self.parser.receive_data(data)
                    else:
                        self.sim.ignored_reads += 1
                elif isinstance(item, MissingAction):
                    # Each stray blank line too (transcript 05); the session goes on.
                    message = ("Message", "Missing action in request")
                    self.send(response("Error", item.action_id, message))
                elif isinstance(item, Message):
                    self.sim._record(item)
                    await self.handle(item)
        except (SessionEnd, ProtocolError, ConnectionError):
            return
        finally:
            self.closed = True
            if not self.writer.transport.is_closing():
                self.writer.close()

    async def handle(self, action: Message) -> None:
        """Answer one action (the parser guarantees it names one)."""
        # As Asterisk: leading blanks skipped, and a blank ActionID is none at all.
        action_id = (action.get("ActionID") or "").lstrip(" \t") or None
        name = action_name(action) or ""
        key = name.lower()
        if not self.authenticated and key not in PRE_LOGIN:
            self.send(response("Error", action_id, ("Message", "Permission denied")))
            return
        handler = ACTIONS.get(key)
        disabled = (key == "smscommand" and not self.sim.tg_sms) or (
            key == "donglesendsms" and not self.sim.dongle
        )
        if handler is None or disabled:
            message = (
                f"Invalid/unknown command: {name}. "
                "Use Action: ListCommands to show available commands."
            )
            self.send(response("Error", action_id, ("Message", message)))
            return
        await handler(self, action, action_id)
