"""The PostgreSQL backend, on asyncpg (chosen by measurement: docs/architecture.md).

A pool of at most ``pool_size`` connections (``pool_min`` kept open). Every wait is
bounded: opening a connection by ``connect_timeout``, waiting for a free one by
``acquire_timeout``, each statement by ``query_timeout`` (asyncpg cancels it on the
server when it expires). Driver exceptions become ``StorageError`` kinds here, once,
and their text is scrubbed of the password.

Change feeds use one more connection, outside the pool, that ``LISTEN``s on every
watched channel. While it is up, a feed's ``generation()`` moves on each notification
(writers ``NOTIFY`` inside their transaction, so it arrives after the commit). When it
is down, or has not been confirmed alive for a while, ``generation()`` is ``None`` and
callers fall back to asking the database; a background task reconnects with capped,
jittered backoff and, once listening again, moves every generation (anything may have
changed meanwhile). It is checked every ``listen_check_seconds`` with a ``SELECT 1``,
so a connection that died silently is noticed within about that time plus
``query_timeout``.

The same connection carries messages between processes (``send``/``listen``: other
server instances' ``dispatchEvent``): ``send`` runs ``pg_notify`` once per payload in
one transaction, so a listener gets them together and in order after the commit (the
server serialises notifying commits, so one transaction's notifications are never
interleaved with another's). A message sent while this process's listening connection
is down is lost for it; ``on_resume`` says so when listening starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import asyncpg.pool

from vwell_pbx.storage.database import (
    MAX_MESSAGE_BYTES,
    ChangeFeed,
    Database,
    ListenerState,
    Params,
    PoolUse,
    Row,
    Transaction,
)
from vwell_pbx.storage.dialect import Dialect, to_numbered
from vwell_pbx.storage.errors import (
    IntegrityViolation,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
)
from vwell_pbx.storage.settings import StorageSettings
from vwell_pbx.storage.url import StorageUrl

__all__ = ["PostgresDatabase", "open_postgres"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BACKOFF_MAX = 10.0
LISTENER_SUFFIX = " listener"

if TYPE_CHECKING:  # asyncpg's classes are generic only in its type stubs
    Connection = asyncpg.Connection[asyncpg.Record]
    # What a pool hands out: a proxy with the connection's methods.
    PooledConnection = Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]


def _identifier(name: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(name):
        raise StorageError(f"not an SQL identifier: {name[:40]!r}")
    return name


class _Scrubber:
    """Turns driver exceptions into ``StorageError``s without the password in the text."""

    def __init__(self, url: StorageUrl) -> None:
        self._where = url.redacted()
        self._secrets = url.secrets()

    def text(self, exc: BaseException) -> str:
        message = str(exc) or type(exc).__name__
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def convert(self, exc: BaseException, what: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, TimeoutError):
            return StorageTimeout(f"{self._where}: {what} timed out")
        if isinstance(exc, asyncpg.UniqueViolationError):
            return IntegrityViolation(self.text(exc))
        if isinstance(
            exc,
            OSError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.TooManyConnectionsError
            | asyncpg.AdminShutdownError,
        ):
            return StorageUnavailable(f"{self._where}: {what} failed: {self.text(exc)}")
        if isinstance(
            exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
        ):
            return StorageUnavailable(f"{self._where}: {self.text(exc)}")
        return StorageError(f"{self._where}: {self.text(exc)}")


class _Counter:
    value = 0


class _PgQueries:
    """Statements on one connection (named ``:params`` become ``$n``)."""

    def __init__(
        self, conn: PooledConnection, timeout: float, scrub: _Scrubber, counter: _Counter
    ) -> None:
        self._conn = conn
        self._timeout = timeout
        self._scrub = scrub
        self._counter = counter

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        self._counter.value += 1
        try:
            return await call
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise self._scrub.convert(exc, what) from exc

    async def execute(self, sql: str, params: Params) -> int:
        text, names = to_numbered(sql)
        status = await self._call(
            "a statement",
            self._conn.execute(text, *(params[n] for n in names), timeout=self._timeout),
        )
        # asyncpg answers the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        text, names = to_numbered(sql)
        await self._call(
            "a bulk statement",
            self._conn.executemany(
                text, [tuple(row[n] for n in names) for row in rows], timeout=self._timeout
            ),
        )

    async def fetch_all(self, sql: str, params: Params) -> list[Row]:
        text, names = to_numbered(sql)
        records = await self._call(
            "a query",
            self._conn.fetch(text, *(params[n] for n in names), timeout=self._timeout),
        )
        return [tuple(record) for record in records]


class _PgTransaction(Transaction):
    def __init__(self, queries: _PgQueries) -> None:
        self._q = queries

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006 (read-only)
        return await self._q.execute(sql, params)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        await self._q.execute_many(sql, rows)

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        return await self._q.fetch_all(sql, params)

    async def fetch_value_many(self, sql: str, rows: Sequence[Params]) -> list[Any]:
        # A loop on the transaction's one connection (the statement is prepared once,
        # asyncpg caches it). asyncpg's fetchmany would take one round trip, but it
        # answers the rows of all sets together, so a set that returned none (ON
        # CONFLICT DO NOTHING) could not be told from the others.
        values: list[Any] = []
        for params in rows:
            found = await self._q.fetch_all(sql, params)
            values.append(found[0][0] if found else None)
        return values

    async def notify(self, channel: str) -> None:
        await self._q.execute("SELECT pg_notify(:channel, '')", {"channel": channel})


class _PgChangeFeed:
    """The generation of one channel, moved by the listener."""

    def __init__(self, listener: _Listener, channel: str) -> None:
        self._listener = listener
        self.channel = channel
        self.count = 0  # notifications (and reconnects) seen

    def generation(self) -> int | None:
        return self.count if self._listener.listening else None

    def changed_locally(self) -> None:
        self.count += 1


MessageHandler = Callable[[str], None]
ResumeHandler = Callable[[], None]


class _Channel:
    """What one LISTENed channel moves: a change feed, message handlers, or both."""

    __slots__ = ("feed", "handlers")

    def __init__(self) -> None:
        self.feed: _PgChangeFeed | None = None
        self.handlers: tuple[tuple[MessageHandler, ResumeHandler | None], ...] = ()


class _Listener:
    """The LISTEN connection and its keeper task (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        settings: StorageSettings,
        scrub: _Scrubber,
        rng: random.Random,
    ) -> None:
        self._connect = connect
        self._settings = settings
        self._scrub = scrub
        self._rng = rng
        self._channels: dict[str, _Channel] = {}
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._adding: set[asyncio.Task[None]] = set()  # LISTENs on the live connection
        self._up = asyncio.Event()  # set while listening
        self.listening = False
        self.reconnects = 0
        self.last_error: str | None = None

    def _channel(self, name: str) -> _Channel:
        """The channel's record; a new channel starts the keeper or makes it re-LISTEN."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel()
            if self._task is None:
                self._task = asyncio.create_task(self._keep(), name="vwell storage listener")
            elif self._conn is not None and self.listening:
                task = asyncio.create_task(self._add_channel(self._conn, name))
                self._adding.add(task)
                task.add_done_callback(self._adding.discard)
            else:
                self._lost.set()  # (re)connecting: make sure the new channel is included
        return channel

    async def _add_channel(self, conn: Connection, name: str) -> None:
        """LISTEN on one more channel on the live connection (reconnect if that fails)."""
        try:
            await conn.add_listener(name, self._notified)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            if conn is self._conn:
                self._lost.set()

    def feed(self, name: str) -> _PgChangeFeed:
        channel = self._channel(name)
        if channel.feed is None:
            channel.feed = _PgChangeFeed(self, name)
        return channel.feed

    def add_handler(
        self, name: str, on_message: MessageHandler, on_resume: ResumeHandler | None
    ) -> Callable[[], None]:
        channel = self._channel(name)
        entry = (on_message, on_resume)
        channel.handlers = (*channel.handlers, entry)

        def stop() -> None:
            channel.handlers = tuple(each for each in channel.handlers if each is not entry)

        return stop

    def state(self) -> ListenerState:
        if not self._channels:
            return ListenerState(status="unused")
        return ListenerState(
            status="listening" if self.listening else "down",
            channels=tuple(self._channels),
            reconnects=self.reconnects,
            last_error=self.last_error,
        )

    def _notified(self, _conn: object, _pid: int, name: str, payload: object) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return
        if channel.feed is not None:
            channel.feed.count += 1
        for on_message, _ in channel.handlers:
            try:
                on_message(str(payload))
            except Exception:  # one handler's bug must not stop the others
                log.exception("storage: a handler of channel %s failed", name)

    def _terminated(self, conn: object) -> None:
        # asyncpg calls this later, also for a connection we closed ourselves (to LISTEN
        # on a new channel): only the current connection's end is a loss.
        if conn is not self._conn:
            return
        self.listening = False
        self.last_error = "the connection was closed"
        self._lost.set()

    async def _listen(self) -> Connection:
        conn = await self._connect()
        try:
            for name in list(self._channels):
                await conn.add_listener(name, self._notified)
            conn.add_termination_listener(self._terminated)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _resumed(self, *, again: bool) -> None:
        """Listening (again): anything may have changed while we were not."""
        for name, channel in self._channels.items():
            if channel.feed is not None:
                channel.feed.count += 1
            if not again:
                continue
            for _, on_resume in channel.handlers:
                if on_resume is None:
                    continue
                try:
                    on_resume()
                except Exception:
                    log.exception("storage: a resume handler of channel %s failed", name)

    async def _keep(self) -> None:
        delay = 0.5
        listened_before = False
        while True:
            self._lost.clear()
            try:
                self._conn = await self._listen()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                self.last_error = self._scrub.text(exc)
                log.warning(
                    "storage: cannot LISTEN (%s); retrying in %.1f s", self.last_error, delay
                )
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            delay = 0.5
            if listened_before:
                self.reconnects += 1
            self.listening = True
            self._up.set()
            self._resumed(again=listened_before)
            listened_before = True
            try:
                await self._watch(self._conn)
            finally:
                self.listening = False
                self._up.clear()
                conn, self._conn = self._conn, None
                conn.terminate()

    async def _watch(self, conn: Connection) -> None:
        """Return when the connection is lost or fails a check."""
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._settings.listen_check_seconds)
            if self._lost.is_set():
                return
            try:
                await conn.execute("SELECT 1", timeout=self._settings.query_timeout)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                self.last_error = self._scrub.text(exc) or "the check timed out"
                log.warning("storage: the LISTEN connection stopped answering; reconnecting")
                return

    async def wait_listening(self, within: float) -> bool:
        if not self._channels:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), within)
        return self.listening

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.listening = False


class PostgresDatabase(Database):
    """A PostgreSQL database through an asyncpg pool. Create it with ``open_postgres``."""

    def __init__(
        self, url: StorageUrl, settings: StorageSettings, *, rng: random.Random | None = None
    ) -> None:
        self.url = url
        self.dialect = Dialect("postgresql")
        self.settings = settings
        self._scrub = _Scrubber(url)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._counter = _Counter()
        self._listener = _Listener(self._connect, settings, self._scrub, rng or random.Random())

    def _connect_kwargs(self, application_name: str) -> dict[str, Any]:
        password = self.url.password.get_secret_value() if self.url.password else None
        return {
            "dsn": self.url.dsn(),
            "password": password,
            "timeout": self.settings.connect_timeout,
            "command_timeout": self.settings.query_timeout,
            # Shown in pg_stat_activity, so an administrator can tell our connections apart.
            "server_settings": {"application_name": application_name},
        }

    async def _connect(self) -> Connection:
        name = self.settings.application_name + LISTENER_SUFFIX
        return await asyncpg.connect(**self._connect_kwargs(name))

    async def _start(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                **self._connect_kwargs(self.settings.application_name),
                min_size=min(self.settings.pool_min, self.settings.pool_size),
                max_size=self.settings.pool_size,
                max_inactive_connection_lifetime=300.0,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise self._scrub.convert(exc, "connecting") from None

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[_PgQueries]:
        if self._pool is None:
            raise StorageUnavailable(f"{self.url}: the pool is closed")
        try:
            conn = await self._pool.acquire(timeout=self.settings.acquire_timeout)
        except TimeoutError:
            raise StorageTimeout(
                f"{self.url}: no free connection within {self.settings.acquire_timeout:g} s "
                f"(pool_size {self.settings.pool_size})"
            ) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._scrub.convert(exc, "connecting") from None
        try:
            yield _PgQueries(conn, self.settings.query_timeout, self._scrub, self._counter)
        finally:
            # release() resets the connection (or closes a broken one); bounded too.
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=self.settings.query_timeout)

    @property
    def statements(self) -> int:
        return self._counter.value

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006 (read-only)
        async with self._acquire() as q:
            return await q.execute(sql, params)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        async with self._acquire() as q:
            await q.execute_many(sql, rows)

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        async with self._acquire() as q:
            return await q.fetch_all(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._acquire() as q:
            conn = q._conn
            tx = conn.transaction()
            await q._call("BEGIN", tx.start())
            try:
                yield _PgTransaction(q)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(tx.rollback())
                raise
            await q._call("COMMIT", tx.commit())

    async def iterate(
        self,
        sql: str,
        params: Params = {},  # noqa: B006
        *,
        batch: int = 1000,
    ) -> AsyncIterator[list[Row]]:
        text, names = to_numbered(sql)
        async with self._acquire() as q:
            conn = q._conn
            async with conn.transaction():  # a server-side cursor lives in a transaction
                cursor = await q._call("a query", conn.cursor(text, *(params[n] for n in names)))
                while True:
                    records = await q._call(
                        "a query", cursor.fetch(batch, timeout=self.settings.query_timeout)
                    )
                    if not records:
                        return
                    yield [tuple(r) for r in records]

    async def table_columns(self, table: str) -> list[str]:
        rows = await self.fetch_all(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = :table "
            "ORDER BY ordinal_position",
            {"table": _identifier(table)},
        )
        return [str(row[0]) for row in rows]

    async def reset_serial(self, table: str, column: str) -> None:
        await self.execute(
            f"SELECT setval(pg_get_serial_sequence(:table, :column), "
            f"COALESCE((SELECT MAX({_identifier(column)}) FROM {_identifier(table)}), 0) + 1, "
            "false)",
            {"table": table, "column": column},
        )

    def watch(self, channel: str, probe: str) -> ChangeFeed:
        return self._listener.feed(_identifier(channel))

    @property
    def supports_messages(self) -> bool:
        return True

    async def send(self, channel: str, payloads: Sequence[str]) -> None:
        _identifier(channel)
        for payload in payloads:
            size = len(payload.encode("utf-8", "surrogatepass"))
            if size > MAX_MESSAGE_BYTES or "\0" in payload:
                raise StorageError(
                    f"a message must be text of at most {MAX_MESSAGE_BYTES} bytes without "
                    f"NUL (this one is {size} bytes)"
                )
        if not payloads:
            return
        rows = [{"channel": channel, "payload": payload} for payload in payloads]
        async with self.transaction() as tx:  # delivered together, in order, at commit
            await tx.execute_many("SELECT pg_notify(:channel, :payload)", rows)

    def listen(
        self,
        channel: str,
        on_message: Callable[[str], None],
        on_resume: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        return self._listener.add_handler(_identifier(channel), on_message, on_resume)

    def pool_use(self) -> PoolUse:
        pool = self._pool
        if pool is None:
            return PoolUse(open=0, busy=0, max=self.settings.pool_size)
        size = pool.get_size()
        return PoolUse(open=size, busy=size - pool.get_idle_size(), max=pool.get_max_size())

    def listener_state(self) -> ListenerState:
        return self._listener.state()

    async def wait_listening(self, within: float) -> bool:
        return await self._listener.wait_listening(within)

    async def aclose(self) -> None:
        await self._listener.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.settings.query_timeout)
            except TimeoutError:
                pool.terminate()


async def open_postgres(url: StorageUrl, settings: StorageSettings) -> PostgresDatabase:
    """Connect the pool of ``url`` (``StorageUnavailable`` if that fails, within the timeouts)."""
    db = PostgresDatabase(url, settings)
    await db._start()
    return db
