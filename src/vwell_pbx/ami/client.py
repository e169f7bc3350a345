"""``AmiClient``: one long-lived, self-healing AMI connection with request correlation.

The client owns a background task that connects, logs in, reads, pings and
reconnects; callers only ever see finished answers or errors::

    client = AmiClient(AmiSettings(host="pbx", username="vwell", secret="..."))
    await client.start()
    await client.wait_connected(timeout=5)
    result = await client.send_action([("Action", "CoreShowChannels")], timeout=5)
    for channel in result.events:
        ...
    await client.close()

Invariants the client keeps:

1. Every ``ActionID`` on the wire is generated here (random per-client prefix +
   counter, or the injected ``action_ids``). An ``ActionID`` in the caller's fields is
   dropped, so two callers can never receive each other's answers.
2. An answer is matched to its action by ``ActionID`` only. A response with no or an
   unknown ``ActionID`` (``Missing action in request``, an answer that arrived after
   its caller gave up, the answer to ``write_action``) is logged at debug and dropped.
3. Items of an event list that a caller is collecting (and of lists nobody waits for
   any more) go to that caller only, never to listeners. Every other event, including
   an ``OriginateResponse`` (or 1.4's ``OriginateSuccess``/``OriginateFailure``) that
   also resolves a ``followup``, goes to wait_event watchers, listeners and event
   streams, in that order.
4. Every wait has a timeout; on timeout the waiting entry is removed and a late answer
   is dropped. Actions' deadlines share one timer (armed for the earliest, see
   ``SWEEP_GRANULARITY``) instead of one each, since arming a timer per action was a
   large share of a round trip's CPU. Bounds: ``max_pending`` actions awaiting an answer (past it
   ``TooManyPending``), as many followups and as many ``wait_event`` watchers,
   ``MAX_LIST_ITEMS`` items per event list, ``max_message`` bytes per message, one
   bounded deque per ``EventStream``, ``COALESCE_MAX`` bytes (plus one action) of
   actions gathered for the socket in one loop turn.
5. When the connection goes (EOF, reset, protocol error, unanswered keepalive), every
   pending action, followup and watcher fails at once with ``PbxUnavailable``, the state
   becomes ``DOWN`` with ``last_error``, and the loop reconnects after
   ``backoff_delay``. ``send_action`` never waits for a reconnect: it fails fast.
   The keepalive Ping counts as unanswered only if no earlier action is still waiting
   for its response (Asterisk answers a session's actions in order, so a sync
   Originate legitimately holds the Ping back).
6. The reader never awaits a consumer: listeners are synchronous callbacks whose
   exceptions are logged and swallowed, event streams have their own bounded queues.
   An action's ``on_answer`` callback runs in the reader too, at the point of the
   stream where its answer completed: listeners have seen every event before that
   point and none after it (a channel list can be applied in stream order).
7. The secret never reaches a log line, an error message or ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final, Literal, NamedTuple, TypeVar

from vwell_pbx.ami.answers import ListStyle, command_output, ends_list, is_ok, list_style
from vwell_pbx.ami.backoff import backoff_delay
from vwell_pbx.ami.errors import (
    ActionTimeout,
    AmiError,
    AnswerTooLarge,
    LoginFailed,
    PbxUnavailable,
    TooManyPending,
)
from vwell_pbx.ami.stream import EventStream
from vwell_pbx.futures import fail_quietly
from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Greeting,
    Message,
    MessageKind,
    RemoteProtocolError,
    encode_action,
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

READ_SIZE: Final = 64 * 1024
"""Bytes asked for per socket read."""

DISPATCH_BURST: Final = 256
"""Messages the reader hands to the listeners at most before it lets the event loop
run; it also lets it run before a read while a backlog lasts (the last read came back
full), so at most one read's bytes (``READ_SIZE``) of events go out at a time.

A read returns at once while bytes are buffered, and after a pause (a busy loop, a
long list) the event loop's one socket read brings up to 256 KB: without this, every
event in them would be queued to the subscribers before any of their senders could
write, and a catch-all subscriber would pass its queue's bound (``[limits]
ws_queue_size``, 1,000 frames) on a burst alone and be dropped as slow, its client
reading all along."""

MAX_LIST_ITEMS: Final = 100_000
"""Items one event list may carry; past it the action fails with ``AnswerTooLarge``."""

DEFAULT_FOLLOWUP_TIMEOUT: Final = 120.0
"""Followup wait when ``send_action`` gets ``followup`` without ``followup_timeout``.

An OriginateResponse comes after the ring timeout of the call, so this is long;
callers should pass their own."""

LOGOFF_TIMEOUT: Final = 1.0
"""How long ``close()`` waits for ``Response: Goodbye``."""

_MIN_DISCARDED: Final = 64

_MAX_ROUTES: Final = 1024
"""Event name spellings whose listeners ``AmiClient._routes`` remembers."""


class _Listener(NamedTuple):
    callback: Callable[[Message], None]
    events: frozenset[str] | None  # casefolded names; None: every event


COALESCE_MAX: Final = 64 * 1024
"""Bytes of actions one loop turn may gather into one socket write (see ``_Session``).

Past it, or while the socket has unsent bytes, a writer waits for the socket to drain
as each action once did, so the gathered bytes stay bounded by this plus one action."""

SWEEP_GRANULARITY: Final = 0.005
"""Seconds: an action times out at its deadline or at most this much later.

Action deadlines are not one timer each but one timer for the whole client, armed for
the earliest deadline; after a sweep it is re-armed no sooner than this, so actions
with many distinct deadlines cost one sweep per this period at most."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiSettings:
    """Where the PBX is, how to log in, and the client's timeouts and bounds (seconds, bytes)."""

    host: str
    port: int = 5038
    username: str
    secret: str = field(repr=False)
    auth: Literal["md5", "plain"] = "md5"
    """``md5``: ``Challenge`` then ``Key = md5hex(challenge + secret)``; ``plain``: ``Secret``."""
    tls: bool = False
    """Wrap the TCP connection in TLS (``ssl.create_default_context()``)."""
    name: str = "default"
    """The PBX's name in logs and error messages."""
    connect_timeout: float = 5.0
    login_timeout: float = 5.0
    """Banner, challenge and login together must finish within this."""
    ping_interval: float = 20.0
    ping_timeout: float = 5.0
    """No answer to a keepalive Ping within this: the peer is dead, reconnect."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_pending: int = 1000
    max_message: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', got {self.auth!r}")
        for name in (
            "connect_timeout",
            "login_timeout",
            "ping_interval",
            "ping_timeout",
            "backoff_initial",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        if self.max_pending < 1 or self.max_message < 1:
            raise ValueError("max_pending and max_message must be >= 1")
        for name in ("host", "username", "secret", "name"):
            value = getattr(self, name)
            if any(c in value for c in "\r\n\x00"):
                # The value itself is not quoted: it may be the secret.
                raise ValueError(f"{name} must not contain CR, LF or NUL")

    @property
    def where(self) -> str:
        """``name (host:port)`` for messages; never includes credentials."""
        return f"{self.name!r} ({self.host}:{self.port})"


class ConnectionStatus(Enum):
    """Where the connection to the PBX stands."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionState:
    """A snapshot of the connection, handed to state listeners on every change."""

    status: ConnectionStatus
    since: float
    """Wall-clock time (``time.time()``) of the last status change."""
    last_error: str | None
    """Why the last connection failed or was lost; ``None`` while connected."""
    reconnects: int
    """Connection attempts started after the first one."""
    greeting: str | None
    """The banner of the current (or last) connection, e.g. ``Asterisk Call Manager/9.0.0``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult:
    """The complete answer to one action."""

    action_id: str
    """The wire ActionID the client generated."""
    response: Message
    events: tuple[Message, ...] = ()
    """Event-list items in arrival order (not including the ...Complete event)."""
    complete: Message | None = None
    """The event that closed the list, if the answer was a list."""
    output: str | None = None
    """``Command`` output, lines joined with ``"\\n"`` (both wire formats)."""
    followup: asyncio.Future[Message] | None = None
    """Resolves with the awaited followup event (e.g. ``OriginateResponse``)."""

    @property
    def ok(self) -> bool:
        """True for ``Success``, ``Follows`` and ``Goodbye`` responses."""
        return is_ok(self.response)


@dataclass(slots=True, eq=False)
class _Session:
    """One TCP connection: its streams, parser and fate.

    Actions written in one turn of the event loop while the socket keeps up are
    gathered in ``outbox`` and handed to the transport with one write when the turn
    ends (``AmiClient._flush``): fifty requests answered together cost one ``send``
    system call, not fifty. Each action is one whole ``bytes`` in the outbox, so
    actions never interleave.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: AmiParser
    greeting: str | None = None
    lost_reason: str | None = None
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    outbox: list[bytes] = field(default_factory=list)
    outbox_bytes: int = 0

    def abort(self) -> None:
        # abort(), not close(): a dead peer would otherwise keep unsent bytes (and us) waiting.
        self.writer.transport.abort()


@dataclass(frozen=True, slots=True)
class _FollowupNames:
    """The event names that may answer a followup: lower-cased for matching, and a label."""

    names: frozenset[str]
    label: str  # as the caller spelled them, for error messages

    @classmethod
    def of(cls, followup: str | Collection[str]) -> _FollowupNames:
        spelled = (followup,) if isinstance(followup, str) else tuple(followup)
        if not spelled or not all(spelled):
            raise ValueError("followup must name at least one event")
        return cls(frozenset(name.lower() for name in spelled), " or ".join(spelled))


@dataclass(slots=True, eq=False)
class _PendingAction:
    action_id: str
    action: str
    future: asyncio.Future[ActionResult]
    followup: _FollowupNames | None
    followup_timeout: float
    response: Message | None = None
    style: ListStyle | None = None
    events: list[Message] = field(default_factory=list)
    early_followup: Message | None = None
    on_answer: Callable[[ActionResult], None] | None = None
    # The deadline (loop time) and what the sweep needs to enforce it: the awaiting
    # task, its cancellation count when the action started (as asyncio.timeout keeps
    # it), and whether the sweep has cancelled it for this deadline.
    deadline: float = math.inf
    task: asyncio.Task[object] | None = None
    cancelling: int = 0
    expired: bool = False


@dataclass(slots=True, eq=False)
class _Followup:
    names: _FollowupNames
    future: asyncio.Future[Message]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class _Watcher:
    predicate: Callable[[Message], bool]
    future: asyncio.Future[Message]
    timer: asyncio.TimerHandle | None = None


class AmiClient:
    """A self-reconnecting AMI client for one PBX (see the module docstring)."""

    def __init__(
        self,
        settings: AmiSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        action_ids: Callable[[], str] | None = None,
    ) -> None:
        """Build a client; nothing connects until ``start()``.

        ``clock`` (monotonic seconds) times answers for debug logs; ``rng`` drives the
        reconnect jitter and the random ActionID prefix; ``action_ids`` replaces the
        ActionID generator (it must never repeat an id that is still in use).
        """
        self._settings = settings
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._next_action_id = action_ids if action_ids is not None else self._default_ids()
        self._state = ConnectionState(
            status=ConnectionStatus.DOWN,
            since=time.time(),
            last_error=None,
            reconnects=0,
            greeting=None,
        )
        self._last_failure: PbxUnavailable | LoginFailed | None = None
        self._session: _Session | None = None
        self._pending: dict[str, _PendingAction] = {}
        # One timer for every pending action's deadline (see SWEEP_GRANULARITY), armed
        # for `_sweep_at`; inf when not armed.
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._followups: dict[str, _Followup] = {}
        self._watchers: dict[_Watcher, None] = {}  # an ordered set
        # ActionIDs whose answer nobody waits for any more -> "its answer is an event
        # list still in progress". Bounded; the oldest entries are forgotten.
        self._discarded: OrderedDict[str, bool] = OrderedDict()
        # (callback, the casefolded event names it wants or None for all), in the order
        # added; a tuple, replaced on every change.
        self._listeners: tuple[_Listener, ...] = ()
        # Event name as spelled on the wire -> the callbacks that want it, in order:
        # most events (VarSet floods) are wanted by the bus alone, and a look-up here
        # spares a Python call per listener that would only compare the name. Learnt
        # as names arrive, emptied on every change of the listeners (the reader then
        # holds the old tuple, so a listener added or removed takes effect next event)
        # and when it holds _MAX_ROUTES spellings.
        self._routes: dict[str, tuple[Callable[[Message], None], ...]] = {}
        self._state_listeners: list[Callable[[ConnectionState], None]] = []
        self._streams: set[EventStream] = set()
        self._state_waiters: set[asyncio.Future[None]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._closing = False

    def _default_ids(self) -> Callable[[], str]:
        prefix = f"vw{self._rng.getrandbits(32):08x}"
        counter = itertools.count(1)
        return lambda: f"{prefix}-{next(counter)}"

    # -- public API -----------------------------------------------------------------

    @property
    def settings(self) -> AmiSettings:
        """The settings this client was built with."""
        return self._settings

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        session = self._session
        return (
            self._state.status is ConnectionStatus.CONNECTED
            and session is not None
            and session.lost_reason is None
        )

    def add_listener(
        self, callback: Callable[[Message], None], *, events: Iterable[str] | None = None
    ) -> Callable[[], None]:
        """Call ``callback(event)`` from the reader for every PBX event, or with
        ``events`` only for events of those names (case-insensitive); returns a remover.

        Listeners are called in the order they were added. Items of event lists a
        caller is collecting are not passed. The callback must not block; its
        exceptions are logged and swallowed.
        """
        wanted = None if events is None else frozenset(name.casefold() for name in events)
        entry = _Listener(callback, wanted)
        self._listeners = (*self._listeners, entry)
        self._routes = {}

        def remove() -> None:
            self._listeners = tuple(each for each in self._listeners if each is not entry)
            self._routes = {}

        return remove

    def _route(self, spelled: str) -> tuple[Callable[[Message], None], ...]:
        """The listeners an event named ``spelled`` goes to, remembered (``_routes``)."""
        folded = spelled.casefold()
        route = tuple(
            each.callback
            for each in self._listeners
            if each.events is None or folded in each.events
        )
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()  # only a PBX inventing event names gets here
        self._routes[spelled] = route
        return route

    def add_state_listener(self, callback: Callable[[ConnectionState], None]) -> Callable[[], None]:
        """Call ``callback(state)`` on every state change; returns a remover."""
        self._state_listeners.append(callback)
        return _remover(self._state_listeners, callback)

    def events(self, maxsize: int = 1000) -> EventStream:
        """A new ``EventStream`` of PBX events with its own drop-oldest queue of ``maxsize``."""
        stream = EventStream(maxsize, on_close=self._streams.discard)
        if self._closing:
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    async def start(self) -> None:
        """Start the background connect/login/read/keepalive/reconnect loop; returns at once."""
        if self._closing:
            raise PbxUnavailable(f"PBX {self._settings.where}: client closed")
        if self._run_task is None:
            self._run_task = asyncio.get_running_loop().create_task(
                self._run(), name=f"ami-client-{self._settings.name}"
            )

    # The timeout is part of the interface on purpose: every wait in this layer has one.
    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until logged in; on timeout raise ``PbxUnavailable`` with the last error.

        If the last failure was a refused login, ``LoginFailed`` is raised instead.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.connected:
            if self._closing:
                raise PbxUnavailable(f"PBX {self._settings.where}: client closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                error = (
                    f"PBX {self._settings.where} not connected after {timeout}s "
                    f"(last error: {self._state.last_error or 'none'})"
                )
                if isinstance(self._last_failure, LoginFailed):
                    raise LoginFailed(error)
                raise PbxUnavailable(error)
            waiter: asyncio.Future[None] = loop.create_future()
            self._state_waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                self._state_waiters.discard(waiter)
                waiter.cancel()

    async def send_action(
        self,
        fields: Sequence[tuple[str, str]],
        *,
        timeout: float,  # noqa: ASYNC109 - mandatory: every action has its own deadline
        followup: str | Collection[str] | None = None,
        followup_timeout: float | None = None,
        on_answer: Callable[[ActionResult], None] | None = None,
    ) -> ActionResult:
        """Send one action and wait (at most ``timeout`` s) for its complete answer.

        ``fields`` start with ``("Action", name)``; an ``ActionID`` among them is replaced.
        The answer is complete with the response, or for an event list with its closing
        event. ``Response: Error`` is returned, not raised: the caller decides.

        With ``followup`` (an event name such as ``"OriginateResponse"``, or several,
        such as ``answers.ORIGINATE_RESULT_EVENTS``) and a non-error response,
        ``result.followup`` resolves with the first event of one of those names
        (case-insensitive) carrying our ActionID, or fails with ``ActionTimeout`` after
        ``followup_timeout`` s or ``PbxUnavailable`` on connection loss.

        ``on_answer(result)``, when given, is called synchronously by the reader the
        moment the answer is complete, before any later message is dispatched (the
        awaiting caller resumes only later, after the reader may have passed further
        events to listeners). Use it to apply a snapshot such as a channel list in
        stream order. It is not called when the action fails or times out; its
        exceptions are logged and swallowed.

        Raises ``LocalProtocolError`` (nothing written) for fields AMI cannot carry,
        ``PbxUnavailable`` at once when not connected or when the connection is lost
        while waiting, ``ActionTimeout`` and ``TooManyPending``.
        """
        data, action_id, action = self._encode(fields)
        session = self._usable_session()
        return await self._request(
            session,
            data,
            action_id,
            action,
            timeout=timeout,
            followup=followup,
            followup_timeout=followup_timeout,
            internal=False,
            on_answer=on_answer,
        )

    async def write_action(self, fields: Sequence[tuple[str, str]]) -> str:
        """Send one action without waiting for its answer (which is dropped); returns its ActionID.

        Events it causes (an ``OriginateResponse``, say) still reach listeners. Returns
        once the action is handed to the transport or, while the PBX keeps up, added to
        this loop turn's one write (``_Session``). Raises ``PbxUnavailable`` when not
        connected and ``ActionTimeout`` if the bytes cannot be handed to the socket
        within ``ping_timeout``.
        """
        data, action_id, action = self._encode(fields)
        session = self._usable_session()
        self._discard(action_id, listing=False)
        if self._gather(session, data):
            return action_id  # no wait, so no timeout to arm
        try:
            async with asyncio.timeout(self._settings.ping_timeout):
                await self._write_waiting(session, data)
        except TimeoutError:
            raise ActionTimeout(
                f"could not write {action} to PBX {self._settings.where} within "
                f"{self._settings.ping_timeout}s"
            ) from None
        return action_id

    def wait_event(
        self, predicate: Callable[[Message], bool], timeout: float
    ) -> asyncio.Future[Message]:
        """Watch for the first event matching ``predicate``, starting NOW.

        The watcher is registered before this returns, so register first and then send
        the action that causes the event. The future fails with ``ActionTimeout`` after
        ``timeout`` s, ``PbxUnavailable`` if not connected or on connection loss,
        ``TooManyPending`` when ``max_pending`` watchers are registered, or the
        predicate's own exception. Cancel it to stop watching.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        if not self.connected:
            fail_quietly(future, self._unavailable())
            return future
        if len(self._watchers) >= self._settings.max_pending:
            fail_quietly(
                future, TooManyPending(f"{len(self._watchers)} event watchers already registered")
            )
            return future
        watcher = _Watcher(predicate, future)
        watcher.timer = loop.call_later(timeout, self._watcher_timed_out, watcher, timeout)
        self._watchers[watcher] = None
        future.add_done_callback(lambda _: self._drop_watcher(watcher))
        return future

    async def close(self) -> None:
        """Log off (best effort, short timeout), stop the loop and fail everything pending.

        Pending actions, followups and watchers fail with ``PbxUnavailable("... client
        closed")``; event streams end. Idempotent; concurrent calls wait for the same close.
        """
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._close_task)

    # -- sending ----------------------------------------------------------------------

    def _encode(self, fields: Sequence[tuple[str, str]]) -> tuple[bytes, str, str]:
        pairs = [(key, value) for key, value in fields if key.strip().lower() != "actionid"]
        action_id = self._new_action_id()
        head = pairs[:1]
        data = encode_action([*head, ("ActionID", action_id), *pairs[1:]] if head else pairs)
        return data, action_id, pairs[0][1]

    def _new_action_id(self) -> str:
        action_id = self._next_action_id()
        if action_id in self._pending or action_id in self._followups:
            # An injected generator that repeats itself would cross-deliver answers.
            raise AmiError(f"action id generator repeated an id in use: {action_id!r}")
        return action_id

    def _usable_session(self) -> _Session:
        session = self._session
        if session is None or not self.connected:
            raise self._unavailable()
        return session

    def _unavailable(self) -> PbxUnavailable:
        if self._closing:
            return PbxUnavailable(f"PBX {self._settings.where}: client closed")
        return PbxUnavailable(
            f"PBX {self._settings.where} is not connected "
            f"(last error: {self._state.last_error or 'none'})"
        )

    def _gather(self, session: _Session, data: bytes) -> bool:
        """Add ``data`` to this turn's outbox if nothing calls for waiting; whether it did.

        Waiting is called for while the transport holds unsent bytes (the PBX is slow
        to read: writers must feel the back-pressure), while a writer waits for it, or
        when the outbox is full (``COALESCE_MAX``). Raises ``PbxUnavailable`` when the
        connection is lost.
        """
        if session.lost_reason is not None:
            raise self._unavailable()
        if (
            session.outbox_bytes >= COALESCE_MAX
            or session.write_lock.locked()
            or session.writer.transport.get_write_buffer_size()
        ):
            return False
        if not session.outbox:
            if len(self._pending) <= 1:
                # No other action in flight (this one's entry at most): no answers will
                # wake other writers this turn, so write now rather than pay an extra
                # loop turn for the flush.
                session.outbox.append(data)
                self._flush(session)
                if session.lost_reason is not None:
                    raise self._unavailable()
                return True
            asyncio.get_running_loop().call_soon(self._flush, session)
        session.outbox.append(data)
        session.outbox_bytes += len(data)
        return True

    def _flush(self, session: _Session) -> None:
        """Hand the outbox to the transport in one write (scheduled by ``_gather``)."""
        chunks = session.outbox
        if not chunks:
            return
        session.outbox = []
        session.outbox_bytes = 0
        if session.lost_reason is not None:
            return  # everyone waiting has failed already; the bytes have nowhere to go
        try:
            session.writer.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except (OSError, RuntimeError) as exc:
            # Fails every pending action, whose callers are awaiting their answers.
            self._lose(session, f"write failed: {exc!r}")

    async def _write_waiting(self, session: _Session, data: bytes) -> None:
        """Write ``data`` after the outbox and wait until the transport drains."""
        if session.lost_reason is not None:
            raise self._unavailable()
        # writer.write() queues the whole message at once, so messages never interleave;
        # the lock keeps drain() waiters orderly under back-pressure.
        async with session.write_lock:
            try:
                self._flush(session)  # what this turn gathered goes first
                if session.lost_reason is not None:
                    raise self._unavailable()
                session.writer.write(data)
                await session.writer.drain()
            except (OSError, RuntimeError) as exc:
                self._lose(session, f"write failed: {exc!r}")
                raise self._unavailable() from exc

    async def _request(
        self,
        session: _Session,
        data: bytes,
        action_id: str,
        action: str,
        *,
        timeout: float,  # noqa: ASYNC109
        followup: str | Collection[str] | None,
        followup_timeout: float | None,
        internal: bool,
        on_answer: Callable[[ActionResult], None] | None = None,
    ) -> ActionResult:
        settings = self._settings
        if not internal and len(self._pending) >= settings.max_pending:
            raise TooManyPending(
                f"{len(self._pending)} actions already await an answer from PBX "
                f"{settings.where} (max_pending={settings.max_pending})"
            )
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # a coroutine awaited in asyncio always runs in a task
        entry = _PendingAction(
            action_id=action_id,
            action=action,
            future=loop.create_future(),
            followup=_FollowupNames.of(followup) if followup else None,
            followup_timeout=(
                DEFAULT_FOLLOWUP_TIMEOUT if followup_timeout is None else followup_timeout
            ),
            on_answer=on_answer,
            deadline=loop.time() + timeout,
            task=task,
            cancelling=task.cancelling(),
        )
        # Registered before writing: the answer may arrive before drain() returns.
        self._pending[action_id] = entry
        if entry.deadline < self._sweep_at:
            self._arm_sweep(loop, entry.deadline)
        # The answer's timing is only for a debug line: no clock read when it is off.
        debug = _log.isEnabledFor(logging.DEBUG)
        started = self._clock() if debug else 0.0
        try:
            # Both the write (back-pressure) and the answer count against the deadline:
            # the sweep cancels this task when it passes, as asyncio.timeout would.
            if not self._gather(session, data):
                await self._write_waiting(session, data)
            result = await entry.future
        except asyncio.CancelledError:
            # uncancel() as in asyncio.timeout: a cancellation from elsewhere (the
            # caller went away) stays a cancellation.
            if entry.expired and task.uncancel() <= entry.cancelling:
                raise ActionTimeout(
                    f"no complete answer to {action} (ActionID {action_id}) from PBX "
                    f"{settings.where} within {timeout}s"
                ) from None
            raise
        finally:
            if self._pending.get(action_id) is entry:
                # Timed out or cancelled: forget it, and drop its answer when it comes.
                del self._pending[action_id]
                self._discard(action_id, listing=entry.style is not None)
        if debug:
            _log.debug(
                "PBX %s: %s %s answered %s in %.3fs",
                settings.name,
                action,
                action_id,
                result.response.name,
                self._clock() - started,
            )
        return result

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = when
        self._sweep = loop.call_at(when, self._sweep_deadlines, loop)

    def _sweep_deadlines(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the task of every action past its deadline; re-arm for the next one.

        O(pending actions), at most once per ``SWEEP_GRANULARITY``; with one timeout for
        all actions it runs about once per timeout, since later actions never re-arm.
        """
        self._sweep = None
        self._sweep_at = math.inf
        now = loop.time()
        earliest = math.inf
        for entry in list(self._pending.values()):
            if entry.expired:
                continue  # cancelled already; its task has not run yet
            if entry.deadline <= now:
                entry.expired = True
                if entry.task is not None and not entry.task.done():
                    entry.task.cancel()
            elif entry.deadline < earliest:
                earliest = entry.deadline
        if earliest < math.inf:
            self._arm_sweep(loop, max(earliest, now + SWEEP_GRANULARITY))

    def _discard(self, action_id: str, *, listing: bool) -> None:
        self._discarded[action_id] = listing
        self._discarded.move_to_end(action_id)
        while len(self._discarded) > max(_MIN_DISCARDED, self._settings.max_pending):
            self._discarded.popitem(last=False)

    # -- reading and dispatch ---------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        kind = message.kind
        if kind is MessageKind.EVENT:
            # As _on_event does, without its call: nearly always nothing waits (below).
            if self._pending or self._discarded or self._followups:
                self._on_event(message)
            else:
                self._publish(message)
        elif kind is MessageKind.RESPONSE:
            self._on_response(message)
        else:
            _log.debug(
                "PBX %s: dropping a message that is neither response nor event: %r",
                self._settings.name,
                message.name,
            )

    def _on_response(self, response: Message) -> None:
        action_id = response.action_id
        entry = self._pending.get(action_id) if action_id is not None else None
        if entry is None:
            if action_id is not None and action_id in self._discarded:
                if list_style(response) is None:
                    del self._discarded[action_id]
                else:
                    self._discarded[action_id] = True
                _log.debug(
                    "PBX %s: dropping the answer to abandoned action %s",
                    self._settings.name,
                    action_id,
                )
            else:
                _log.debug(
                    "PBX %s: dropping unsolicited response %s (ActionID %r): %s",
                    self._settings.name,
                    response.name,
                    action_id,
                    response.get("Message"),
                )
            return
        if entry.response is not None:
            _log.debug("PBX %s: dropping a second response for %s", self._settings.name, action_id)
            return
        entry.response = response
        entry.style = list_style(response)
        if entry.style is None:
            self._complete(entry)

    def _on_event(self, event: Message) -> None:
        # An event's ActionID matters only to an action still waiting for something;
        # while none does (nearly always, on a busy PBX feed), the look-up is skipped.
        if not (self._pending or self._discarded or self._followups):
            self._publish(event)
            return
        action_id = event.action_id
        if action_id is not None:
            entry = self._pending.get(action_id)
            if entry is not None and entry.style is not None:
                self._collect(entry, event)
                return
            if self._discarded.get(action_id):
                if ends_list(None, event):
                    del self._discarded[action_id]
                return
            name = event.name.lower()
            if (
                entry is not None
                and entry.response is None
                and entry.followup is not None
                and name in entry.followup.names
            ):
                # The followup overtook its response; keep it for when the response comes.
                if entry.early_followup is None:
                    entry.early_followup = event
            else:
                pending_followup = self._followups.get(action_id)
                if pending_followup is not None and name in pending_followup.names.names:
                    del self._followups[action_id]
                    if pending_followup.timer is not None:
                        pending_followup.timer.cancel()
                    if not pending_followup.future.done():
                        pending_followup.future.set_result(event)
        self._publish(event)

    def _collect(self, entry: _PendingAction, event: Message) -> None:
        if ends_list(entry.style, event):
            self._complete(entry, complete=event)
        elif len(entry.events) >= MAX_LIST_ITEMS:
            del self._pending[entry.action_id]
            self._discard(entry.action_id, listing=True)
            if not entry.future.done():
                entry.future.set_exception(
                    AnswerTooLarge(
                        f"the event list of {entry.action} has more than {MAX_LIST_ITEMS} "
                        "items; ask for less (a filter, one channel or peer)"
                    )
                )
        else:
            entry.events.append(event)

    def _complete(self, entry: _PendingAction, complete: Message | None = None) -> None:
        self._pending.pop(entry.action_id, None)
        response = entry.response
        assert response is not None  # only called once the response is in
        if entry.future.done():
            return
        followup = None
        if entry.followup is not None and is_ok(response):
            followup = self._start_followup(entry)
        result = ActionResult(
            action_id=entry.action_id,
            response=response,
            events=tuple(entry.events),
            complete=complete,
            output=command_output(response),
            followup=followup,
        )
        if entry.on_answer is not None:
            try:
                entry.on_answer(result)
            except Exception:
                _log.exception(
                    "PBX %s: on_answer callback of %s failed", self._settings.name, entry.action
                )
        entry.future.set_result(result)

    def _start_followup(self, entry: _PendingAction) -> asyncio.Future[Message]:
        assert entry.followup is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        if entry.early_followup is not None:
            future.set_result(entry.early_followup)
            return future
        if len(self._followups) >= self._settings.max_pending:
            fail_quietly(
                future, TooManyPending(f"{len(self._followups)} followups already awaited")
            )
            return future
        action_id = entry.action_id
        pending = _Followup(entry.followup, future)
        pending.timer = loop.call_later(
            entry.followup_timeout,
            self._followup_timed_out,
            action_id,
            pending,
            entry.followup_timeout,
        )
        self._followups[action_id] = pending
        future.add_done_callback(lambda _: self._forget_followup(action_id, pending))
        return future

    def _followup_timed_out(self, action_id: str, pending: _Followup, timeout: float) -> None:
        if self._followups.get(action_id) is pending:
            del self._followups[action_id]
        fail_quietly(
            pending.future,
            ActionTimeout(
                f"no {pending.names.label} event for ActionID {action_id} from PBX "
                f"{self._settings.where} within {timeout}s"
            ),
        )

    def _forget_followup(self, action_id: str, pending: _Followup) -> None:
        # The caller cancelled the followup future (or it finished): stop watching.
        if self._followups.get(action_id) is pending:
            del self._followups[action_id]
        if pending.timer is not None:
            pending.timer.cancel()

    def _watcher_timed_out(self, watcher: _Watcher, timeout: float) -> None:
        fail_quietly(
            watcher.future,
            ActionTimeout(f"no matching event from PBX {self._settings.where} within {timeout}s"),
        )

    def _drop_watcher(self, watcher: _Watcher) -> None:
        self._watchers.pop(watcher, None)
        if watcher.timer is not None:
            watcher.timer.cancel()

    def _publish(self, event: Message) -> None:
        # Copies of the watchers and streams, because a callback may add or remove one
        # (the listeners are a tuple already); skipped when empty (nearly always), since
        # this runs for every event.
        for watcher in tuple(self._watchers) if self._watchers else ():
            if watcher.future.done():
                continue
            try:
                matched = watcher.predicate(event)
            except Exception as exc:
                # The caller's predicate is broken: tell the caller, not the reader.
                fail_quietly(watcher.future, exc)
                continue
            if matched:
                watcher.future.set_result(event)
        spelled = event.headers[0][1]  # event.name, without the property's call
        route = self._routes.get(spelled)
        if route is None:
            route = self._route(spelled)
        for listener in route:
            try:
                listener(event)
            except Exception:
                _log.exception(
                    "PBX %s: event listener %r failed on %s",
                    self._settings.name,
                    listener,
                    event.name,
                )
        if self._streams:
            for stream in tuple(self._streams):
                stream.push(event)

    # -- connection lifecycle ---------------------------------------------------------

    async def _run(self) -> None:
        settings = self._settings
        attempt = 0
        reconnects = 0
        while not self._closing:
            self._set_state(
                ConnectionStatus.CONNECTING, self._state.last_error, reconnects=reconnects
            )
            try:
                session = await self._open_session()
            except Exception as exc:
                # Anything else (a host name IDNA cannot encode, a bug) must not end this
                # loop silently, leaving the state CONNECTING forever: fail and retry.
                unforeseen = not isinstance(exc, PbxUnavailable | LoginFailed)
                failure = (
                    exc
                    if isinstance(exc, PbxUnavailable | LoginFailed)
                    else PbxUnavailable(f"PBX {settings.where}: connect failed: {exc!r}")
                )
                # A PBX that stays away fails the same way every few seconds for hours:
                # warn when the reason changes, keep the repeats at debug.
                repeated = str(failure) == self._state.last_error
                self._last_failure = failure
                self._set_state(ConnectionStatus.DOWN, str(failure))
                _log.log(
                    logging.DEBUG if repeated else logging.WARNING,
                    "PBX %s: %s",
                    settings.name,
                    failure,
                    exc_info=unforeseen and not repeated,
                )
            else:
                attempt = 0
                self._last_failure = None
                await self._serve(session)
            if self._closing:
                break
            delay = backoff_delay(
                attempt,
                initial=settings.backoff_initial,
                maximum=settings.backoff_max,
                rng=self._rng,
            )
            attempt += 1
            reconnects += 1
            _log.debug("PBX %s: reconnecting in %.2fs", settings.name, delay)
            await asyncio.sleep(delay)

    async def _open_session(self) -> _Session:
        settings = self._settings
        context = ssl.create_default_context() if settings.tls else None
        try:
            async with asyncio.timeout(settings.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    settings.host, settings.port, ssl=context, limit=READ_SIZE
                )
        except TimeoutError:
            raise PbxUnavailable(
                f"PBX {settings.where}: no connection within {settings.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise PbxUnavailable(f"PBX {settings.where}: connect failed: {exc}") from exc
        session = _Session(reader, writer, AmiParser(max_message=settings.max_message))
        try:
            async with asyncio.timeout(settings.login_timeout):
                await self._login(session)
        except TimeoutError:
            session.abort()
            raise PbxUnavailable(
                f"PBX {settings.where}: no banner or login answer within {settings.login_timeout}s"
            ) from None
        except (OSError, RemoteProtocolError) as exc:
            session.abort()
            raise PbxUnavailable(f"PBX {settings.where}: login failed: {exc}") from exc
        except BaseException:
            session.abort()
            raise
        return session

    async def _login(self, session: _Session) -> None:
        settings = self._settings
        greeting = await self._read_item(session)
        if not isinstance(greeting, Greeting):  # the parser returns the banner first
            raise PbxUnavailable(f"PBX {settings.where}: no AMI banner")
        session.greeting = greeting.line
        fields: list[tuple[str, str]]
        if settings.auth == "md5":
            answer = await self._login_exchange(
                session, [("Action", "Challenge"), ("AuthType", "MD5")]
            )
            challenge = answer.get("Challenge")
            if answer.name.lower() != "success" or not challenge:
                raise LoginFailed(
                    f"PBX {settings.where} refused the MD5 challenge: "
                    f"{answer.get('Message') or answer.name}"
                )
            key = hashlib.md5(
                (challenge + settings.secret).encode(), usedforsecurity=False
            ).hexdigest()
            fields = [
                ("Action", "Login"),
                ("AuthType", "MD5"),
                ("Username", settings.username),
                ("Key", key),
                ("Events", "on"),
            ]
        else:
            fields = [
                ("Action", "Login"),
                ("Username", settings.username),
                ("Secret", settings.secret),
                ("Events", "on"),
            ]
        answer = await self._login_exchange(session, fields)
        if answer.name.lower() != "success":
            # The PBX's own words ("Authentication failed"); never our secret or key.
            raise LoginFailed(
                f"PBX {settings.where} refused the AMI login of user {settings.username!r}: "
                f"{answer.get('Message') or answer.name}"
            )

    async def _login_exchange(self, session: _Session, fields: list[tuple[str, str]]) -> Message:
        action_id = self._next_action_id()
        session.writer.write(encode_action([fields[0], ("ActionID", action_id), *fields[1:]]))
        await session.writer.drain()
        while True:
            item = await self._read_item(session)
            if (
                isinstance(item, Message)
                and item.kind is MessageKind.RESPONSE
                and item.action_id == action_id
            ):
                return item
            _log.debug(
                "PBX %s: ignoring %r during login",
                self._settings.name,
                item.name if isinstance(item, Message) else item,
            )

    async def _read_item(self, session: _Session) -> Greeting | Message:
        while True:
            item = session.parser.next_event()
            if item is not NEED_DATA:
                assert isinstance(item, Greeting | Message)
                return item
            data = await session.reader.read(READ_SIZE)
            if not data:
                raise PbxUnavailable(
                    f"PBX {self._settings.where} closed the connection during login"
                )
            session.parser.receive_data(data)

    async def _serve(self, session: _Session) -> None:
        settings = self._settings
        self._session = session
        self._discarded.clear()  # ids of the last connection will not be answered here
        self._set_state(ConnectionStatus.CONNECTED, None, greeting=session.greeting)
        _log.info(
            "PBX %s: connected to %s:%s as %r (%s)",
            settings.name,
            settings.host,
            settings.port,
            settings.username,
            session.greeting,
        )
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._read_loop(session), name=f"ami-reader-{settings.name}"),
            loop.create_task(self._keepalive(session), name=f"ami-ping-{settings.name}"),
        ]
        try:
            await session.lost.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._lose(session, "client closed")
            self._session = None

    async def _read_loop(self, session: _Session) -> None:
        burst = DISPATCH_BURST
        backlog = False
        try:
            while session.lost_reason is None:
                item = session.parser.next_event()
                if item is NEED_DATA:
                    if backlog:
                        # The last read came back full, so more bytes may be buffered
                        # and the next read would return at once: let the loop run
                        # first (DISPATCH_BURST). A short read left none.
                        await asyncio.sleep(0)
                        burst = DISPATCH_BURST
                    data = await session.reader.read(READ_SIZE)
                    if not data:
                        self._lose(session, "the PBX closed the connection")
                        return
                    backlog = len(data) == READ_SIZE
                    session.parser.receive_data(data)
                elif isinstance(item, Message):
                    self._dispatch(item)
                    burst -= 1
                    if not burst:
                        burst = DISPATCH_BURST
                        await asyncio.sleep(0)
        except RemoteProtocolError as exc:
            self._lose(session, f"protocol error: {exc}")
        except OSError as exc:
            self._lose(session, f"read failed: {exc!r}")
        except Exception as exc:
            _log.exception("PBX %s: reader failed", self._settings.name)
            self._lose(session, f"internal error: {exc!r}")

    async def _keepalive(self, session: _Session) -> None:
        settings = self._settings
        while session.lost_reason is None:
            await asyncio.sleep(settings.ping_interval)
            # Asterisk answers one session's actions strictly in order, and a blocking
            # action (sync Originate, a slow Command) holds back every later answer,
            # Pings included. A Ping stuck behind such an action proves nothing; that
            # action's own timeout bounds the wait, and the next Ping judges again.
            # Nor does one whose wait ended just as that action was answered: the Pong
            # comes right behind the answer, maybe in a read not handed out yet.
            ahead = [entry for entry in self._pending.values() if entry.response is None]
            try:
                data, action_id, action = self._encode([("Action", "Ping")])
                await self._request(
                    session,
                    data,
                    action_id,
                    action,
                    timeout=settings.ping_timeout,
                    followup=None,
                    followup_timeout=None,
                    internal=True,
                )
            except ActionTimeout:
                # Still waiting for its answer, or answered since the Ping was sent.
                pending = self._pending
                if any(e.response is not None or pending.get(e.action_id) is e for e in ahead):
                    _log.debug(
                        "PBX %s: Ping unanswered behind a slow action; waiting", settings.name
                    )
                    continue
                _log.warning(
                    "PBX %s: no answer to Ping within %ss; dropping the connection",
                    settings.name,
                    settings.ping_timeout,
                )
                self._lose(session, f"no answer to keepalive Ping within {settings.ping_timeout}s")
                return
            except PbxUnavailable:
                return

    def _lose(self, session: _Session, reason: str) -> None:
        """Mark ``session`` dead (once): abort it, fail everything waiting, go DOWN."""
        if session.lost_reason is not None:
            return
        session.lost_reason = reason
        session.abort()
        session.lost.set()
        if self._closing:
            message = f"PBX {self._settings.where}: client closed"
        else:
            message = f"connection to PBX {self._settings.where} lost: {reason}"
            _log.warning("PBX %s: connection lost: %s", self._settings.name, reason)
        self._last_failure = PbxUnavailable(message)
        self._fail_all(message)
        if self._session is session:
            self._set_state(ConnectionStatus.DOWN, message)

    def _fail_all(self, message: str) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            # Quietly: when the write itself failed, _request raises from _write and
            # never awaits this future ("Future exception was never retrieved").
            fail_quietly(entry.future, PbxUnavailable(message))
        followups, self._followups = self._followups, {}
        for followup in followups.values():
            if followup.timer is not None:
                followup.timer.cancel()
            fail_quietly(followup.future, PbxUnavailable(message))
        for watcher in tuple(self._watchers):
            fail_quietly(watcher.future, PbxUnavailable(message))
        self._watchers.clear()

    async def _close(self) -> None:
        session = self._session
        if session is not None and self.connected:
            try:
                data, action_id, action = self._encode([("Action", "Logoff")])
                await self._request(
                    session,
                    data,
                    action_id,
                    action,
                    timeout=LOGOFF_TIMEOUT,
                    followup=None,
                    followup_timeout=None,
                    internal=True,
                )
            except AmiError as exc:
                _log.debug("PBX %s: Logoff failed: %s", self._settings.name, exc)
        if session is not None:
            self._lose(session, "client closed")
        task = self._run_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_all(f"PBX {self._settings.where}: client closed")
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, math.inf
        for stream in tuple(self._streams):
            stream.close()
        self._set_state(ConnectionStatus.DOWN, "client closed")
        _log.info("PBX %s: client closed", self._settings.name)

    def _set_state(
        self,
        status: ConnectionStatus,
        last_error: str | None,
        *,
        reconnects: int | None = None,
        greeting: str | None = None,
    ) -> None:
        old = self._state
        new = replace(
            old,
            status=status,
            since=old.since if status is old.status else time.time(),
            last_error=last_error,
            reconnects=old.reconnects if reconnects is None else reconnects,
            greeting=old.greeting if greeting is None else greeting,
        )
        if new == old:
            return
        self._state = new
        waiters, self._state_waiters = self._state_waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for listener in tuple(self._state_listeners):
            try:
                listener(new)
            except Exception:
                _log.exception("PBX %s: state listener %r failed", self._settings.name, listener)


def _remover(items: list[_T], item: _T) -> Callable[[], None]:
    def remove() -> None:
        with contextlib.suppress(ValueError):  # removing twice is harmless
            items.remove(item)

    return remove
