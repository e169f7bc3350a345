"""The SQLite backend: one writer and a few readers, each a connection with its own thread.

``sqlite3`` calls block, so each connection lives in a thread of its own and receives
work through a **bounded** queue (``queue_size``; a full queue raises ``StorageBusy`` at
once). The event loop waits for the answer with a timeout; a statement that overruns
it is interrupted (``sqlite3.Connection.interrupt``) and the caller gets
``StorageTimeout``.

Invariants:

1. Every write goes through the one writer connection, and only while holding
   ``_write_lock`` (an ``asyncio.Lock`` acquired with ``acquire_timeout``). So this
   process never contends with itself for SQLite's write lock; other processes (the
   CLI) are waited for by SQLite's ``busy_timeout`` inside the thread.
2. A transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT``/``ROLLBACK`` on the writer, all
   jobs on its one FIFO queue, so a rollback queued after a timed-out statement runs
   after it, whatever the awaiting task did meanwhile. Should a transaction ever be left
   open (a ``BEGIN`` that ran after its caller gave up), the next writer job rolls it
   back before doing anything else.
3. The file is in WAL mode: readers never block the writer nor each other.

Change feeds use a separate watcher connection on the event loop thread with
``busy_timeout = 0``: ``PRAGMA data_version`` (a few microseconds, no disk I/O in WAL
mode) changes when any *other* connection, in this process or another, committed; only
then is the feed's probe query run. If SQLite answers "busy" the feed says "unknown"
(``None``) rather than block the loop. The check runs at most once per turn of the
event loop: the requests handled in one turn (many, under load) share it, and a commit
is still seen by the first request of the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from vwell_pbx.storage.database import ChangeFeed, Database, Params, PoolUse, Row, Transaction
from vwell_pbx.storage.dialect import Dialect
from vwell_pbx.storage.errors import (
    IntegrityViolation,
    StorageBusy,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
)
from vwell_pbx.storage.settings import StorageSettings
from vwell_pbx.storage.url import StorageUrl

__all__ = ["SqliteDatabase", "open_sqlite"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifier(name: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(name):
        raise StorageError(f"not an SQL identifier: {name[:40]!r}")
    return name


class _Job(Generic[T]):
    __slots__ = ("abandoned", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], T],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.abandoned = False


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Worker:
    """One ``sqlite3`` connection and the thread that owns it."""

    def __init__(self, path: Path, settings: StorageSettings, name: str) -> None:
        self._path = path
        self._settings = settings
        self._name = name
        self._queue: queue.Queue[_Job[Any] | None] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()  # guards _running against interrupt()
        self._running: _Job[Any] | None = None
        self.jobs = 0  # statements (and BEGIN/COMMIT) sent through this connection
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    @property
    def backlog(self) -> int:
        """Jobs waiting for this connection."""
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        """Whether a job is running or waiting on this connection."""
        return self._running is not None or not self._queue.empty()

    @property
    def open(self) -> bool:
        """Whether the connection is open."""
        return self._conn is not None

    async def start(self) -> None:
        """Start the thread, which opens the connection (bounded by ``connect_timeout``)."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(loop, opened), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(opened), self._settings.connect_timeout)
        except TimeoutError:
            raise StorageTimeout(
                f"{self._path}: not opened within {self._settings.connect_timeout:g} s"
            ) from None
        except sqlite3.Error as exc:
            raise _convert(exc, self._path) from exc
        except OSError as exc:
            raise StorageUnavailable(f"{self._path}: cannot open: {exc.strerror}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._settings.busy_timeout,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN/COMMIT
            check_same_thread=False,  # interrupt() comes from the event loop's thread
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _main(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, opened, False, exc)
            return
        self._conn = conn
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, opened, True, None)
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    break
                if job.abandoned:
                    continue
                with self._lock:
                    self._running = job
                try:
                    value: Any = job.fn(conn)
                    ok = True
                except BaseException as exc:  # delivered to the awaiting task
                    value, ok = exc, False
                finally:
                    with self._lock:
                        self._running = None
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    job.loop.call_soon_threadsafe(_settle, job.future, ok, value)
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T], limit: float) -> T:
        """Run ``fn(connection)`` in the thread; driver errors become ``StorageError``s."""
        if self._thread is None or not self._thread.is_alive():
            raise StorageUnavailable(f"{self._name}: the connection is closed")
        job: _Job[T] = _Job(fn, asyncio.get_running_loop())
        try:
            self._queue.put_nowait(job)
            self.jobs += 1
        except queue.Full:
            raise StorageBusy(
                f"{self._name}: {self._settings.queue_size} statements already wait "
                "([storage] queue_size)"
            ) from None
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), limit)
        except TimeoutError:
            job.abandoned = True
            with self._lock:
                if self._running is job and self._conn is not None:
                    self._conn.interrupt()
            raise StorageTimeout(
                f"{self._name}: a statement took longer than {limit:g} s"
            ) from None
        except asyncio.CancelledError:
            job.abandoned = True  # if still queued it is skipped; if running it finishes
            raise
        except sqlite3.Error as exc:
            raise _convert(exc, self._path) from exc

    async def stop(self) -> None:
        """Finish queued jobs, close the connection and end the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:  # bounded: the queue may be full and the thread stuck in a statement
            await asyncio.to_thread(self._queue.put, None, True, self._settings.query_timeout)
        except queue.Full:
            log.warning("%s: did not stop within %g s", self._name, self._settings.query_timeout)
            return
        await asyncio.to_thread(thread.join, self._settings.query_timeout + 1.0)


def _convert(exc: sqlite3.Error, path: Path) -> StorageError:
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(text)
    if "interrupted" in text:
        return StorageTimeout(f"{path}: the statement was interrupted (timeout)")
    if "locked" in text or "busy" in text:
        return StorageTimeout(f"{path}: the database is locked by another writer ({text})")
    if "unable to open" in text:
        return StorageUnavailable(f"{path}: cannot open the database: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return StorageError(f"{path}: not a usable database: {text}")
    return StorageError(f"{path}: {text}")


def _execute(sql: str, params: Params) -> Callable[[sqlite3.Connection], int]:
    def job(conn: sqlite3.Connection) -> int:
        cursor = conn.execute(sql, params)
        cursor.fetchall()  # finish the statement (RETURNING rows, if any, are discarded)
        return cursor.rowcount

    return job


def _fetch_all(sql: str, params: Params) -> Callable[[sqlite3.Connection], list[Row]]:
    def job(conn: sqlite3.Connection) -> list[Row]:
        return conn.execute(sql, params).fetchall()

    return job


def _execute_many(sql: str, rows: Sequence[Params]) -> Callable[[sqlite3.Connection], None]:
    def job(conn: sqlite3.Connection) -> None:
        conn.executemany(sql, rows)

    return job


def _fetch_value_many(
    sql: str, rows: Sequence[Params]
) -> Callable[[sqlite3.Connection], list[Any]]:
    def job(conn: sqlite3.Connection) -> list[Any]:
        values: list[Any] = []
        for params in rows:
            found = conn.execute(sql, params).fetchall()  # all: finishes the statement
            values.append(found[0][0] if found else None)
        return values

    return job


def _insert_many(sql: str, rows: Sequence[Params]) -> Callable[[sqlite3.Connection], list[Any]]:
    def job(conn: sqlite3.Connection) -> list[Any]:
        # One cursor for every set, and the new row's id from the driver: with
        # RETURNING, SQLite spends about a third more CPU per INSERT, and fetching
        # its row is one more sqlite3_step, i.e. one more release of the GIL.
        cursor = conn.cursor()
        values: list[Any] = []
        for params in rows:
            cursor.execute(sql, params)
            values.append(cursor.lastrowid if cursor.rowcount == 1 else None)
        cursor.close()
        return values

    return job


def _autocommit(job: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """``job`` outside any transaction (see ``_begin``)."""

    def run(conn: sqlite3.Connection) -> T:
        if conn.in_transaction:  # left over by a transaction whose ROLLBACK never ran
            conn.rollback()
        return job(conn)

    return run


def _begin(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # left over by a transaction whose ROLLBACK never ran
        conn.rollback()
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


class _SqliteTransaction(Transaction):
    def __init__(self, writer: _Worker, timeout: float) -> None:
        self._writer = writer
        self._timeout = timeout

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006 (read-only)
        return await self._writer.run(_execute(sql, params), self._timeout)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        await self._writer.run(_execute_many(sql, rows), self._timeout)

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        return await self._writer.run(_fetch_all(sql, params), self._timeout)

    async def fetch_value_many(self, sql: str, rows: Sequence[Params]) -> list[Any]:
        if not rows:
            return []
        # One job for every set: one round trip to the writer's thread, not one each.
        return await self._writer.run(_fetch_value_many(sql, rows), self._timeout)

    async def insert_many(self, sql: str, rows: Sequence[Params], *, key: str) -> list[Any]:
        # ``key`` is the table's INTEGER PRIMARY KEY, i.e. the rowid lastrowid reports.
        if not rows:
            return []
        return await self._writer.run(_insert_many(sql, rows), self._timeout)

    async def notify(self, channel: str) -> None:
        # Nothing to send: other connections see the commit through PRAGMA data_version.
        return None


class _SqliteChangeFeed:
    """``generation()`` from ``PRAGMA data_version`` and a probe (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection, probe: str) -> None:
        self._conn = conn
        self._probe = probe
        self._data_version: object = None
        self._probe_value: object = None
        self._generation = 0
        self._checked_this_turn = False

    def generation(self) -> int | None:
        if self._checked_this_turn:
            return self._generation
        try:
            data_version = self._conn.execute("PRAGMA data_version").fetchall()[0][0]
            if data_version != self._data_version:
                value = self._conn.execute(self._probe).fetchall()
                self._data_version = data_version
                if value != self._probe_value:
                    self._probe_value = value
                    self._generation += 1
        except sqlite3.Error:
            return None  # busy or broken: the caller checks the database itself
        self._share_until_next_turn()
        return self._generation

    def _share_until_next_turn(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside a loop: nothing to share with
        self._checked_this_turn = True
        loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._checked_this_turn = False

    def changed_locally(self) -> None:
        self._generation += 1


class SqliteDatabase(Database):
    """A SQLite file (see the module docstring). Create it with ``open_sqlite``."""

    def __init__(self, url: StorageUrl, settings: StorageSettings) -> None:
        assert url.path is not None
        self.url = url
        self.dialect = Dialect("sqlite")
        self.settings = settings
        self.path = url.path
        self._writer = _Worker(self.path, settings, f"sqlite writer {self.path.name}")
        self._readers = [
            _Worker(self.path, settings, f"sqlite reader {index} {self.path.name}")
            for index in range(max(1, settings.pool_size))
        ]
        self._write_lock = asyncio.Lock()
        self._watcher: sqlite3.Connection | None = None
        self._feeds: dict[tuple[str, str], _SqliteChangeFeed] = {}
        # A statement may first wait busy_timeout for another process's lock.
        self._timeout = settings.query_timeout + settings.busy_timeout

    async def _start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        await self._writer.start()  # first: switches the file to WAL mode
        for reader in self._readers:
            await reader.start()

    @property
    def statements(self) -> int:
        return sum(worker.jobs for worker in (self._writer, *self._readers))

    def pool_use(self) -> PoolUse:
        workers = (self._writer, *self._readers)
        return PoolUse(
            open=sum(worker.open for worker in workers),
            busy=sum(worker.busy for worker in workers),
            max=len(workers),
        )

    def _reader(self) -> _Worker:
        return min(self._readers, key=lambda worker: worker.backlog)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Worker]:
        try:
            await asyncio.wait_for(self._write_lock.acquire(), self.settings.acquire_timeout)
        except TimeoutError:
            raise StorageTimeout(
                f"{self.path}: the writer stayed busy for {self.settings.acquire_timeout:g} s"
            ) from None
        try:
            yield self._writer
        finally:
            self._write_lock.release()

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006
        async with self._writing() as writer:
            return await writer.run(_autocommit(_execute(sql, params)), self._timeout)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        async with self._writing() as writer:
            await writer.run(_autocommit(_execute_many(sql, rows)), self._timeout)

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        return await self._reader().run(_fetch_all(sql, params), self._timeout)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._writing() as writer:
            await writer.run(_begin, self._timeout)
            try:
                yield _SqliteTransaction(writer, self._timeout)
            except BaseException:
                # FIFO: even if this wait is cut short, the rollback runs before any
                # later job on the writer (invariant 2).
                await asyncio.shield(writer.run(_rollback, self._timeout))
                raise
            try:
                await writer.run(_commit, self._timeout)
            except BaseException:
                await asyncio.shield(writer.run(_rollback, self._timeout))
                raise

    async def iterate(
        self,
        sql: str,
        params: Params = {},  # noqa: B006
        *,
        batch: int = 1000,
    ) -> AsyncIterator[list[Row]]:
        reader = self._reader()
        cursor: sqlite3.Cursor = await reader.run(lambda c: c.execute(sql, params), self._timeout)
        try:
            while True:
                rows = await reader.run(lambda _c: cursor.fetchmany(batch), self._timeout)
                if not rows:
                    return
                yield rows
        finally:
            await reader.run(lambda _c: cursor.close(), self._timeout)

    async def table_columns(self, table: str) -> list[str]:
        rows = await self.fetch_all(f'PRAGMA table_info("{_identifier(table)}")')
        return [str(row[1]) for row in rows]

    async def reset_serial(self, table: str, column: str) -> None:
        # An INTEGER PRIMARY KEY continues after the highest rowid by itself.
        _identifier(table)
        _identifier(column)

    def watch(self, channel: str, probe: str) -> ChangeFeed:
        if self._watcher is None:
            self._watcher = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        key = (channel, probe)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = _SqliteChangeFeed(self._watcher, probe)
        return feed

    async def aclose(self) -> None:
        for worker in (*self._readers, self._writer):
            await worker.stop()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None


async def open_sqlite(url: StorageUrl, settings: StorageSettings) -> SqliteDatabase:
    """Open (creating if needed) the SQLite file of ``url``."""
    db = SqliteDatabase(url, settings)
    try:
        await db._start()
    except BaseException:
        await db.aclose()
        raise
    return db
