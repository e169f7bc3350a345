"""Call history: ``CallStore`` (the ``calls`` and ``call_extensions`` tables) and
``CallHistoryWriter`` (a bounded queue and one task that writes ended calls in batches).

**Rows.** ``calls`` holds each ended call once per PBX: ``UNIQUE (pbx, call_id)`` and
``INSERT ... ON CONFLICT DO NOTHING``, so several instances that watch the same PBX
(and so each see the call end) write it once. The call object a client gets back is
stored whole as JSON text (``document``); the columns beside it are what queries filter
and sort on. ``call_extensions`` has one row per local extension the call involved,
with copies of those columns, so that filtering by extension never has to visit calls
of other extensions. Times are integer epoch milliseconds (``started_ms``).

**Query plans** (``CallStore.history``; newest first, ties broken by the row id):

- by extension: one index range scan of ``call_extensions (extension, started_ms,
  call_row)`` per extension asked for, each stopped after ``limit`` rows; with a
  ``number`` (from or to), two scans per extension, on ``(extension, from_number,
  started_ms, call_row)`` and ``(extension, to_number, ...)``; the branches are merged
  with ``UNION`` (which also removes a call found twice) and the page's rows are then
  read from ``calls`` by primary key;
- by number only: the same on ``calls (from_number, ...)`` and ``calls (to_number, ...)``;
- otherwise: ``calls (started_ms, id)``.

``since``/``until`` and the page position narrow each range; ``direction``,
``endReason`` and ``pbx`` are checked on the rows the scan visits. So a page costs
about ``limit`` index entries per branch, whatever the table holds, except when a
rare ``direction``/``endReason`` has to be looked for among many rows.

**The writer** never blocks its caller: ``offer`` appends to a deque of at most
``queue_size`` items and wakes the writer task; when the deque is full the call is
dropped, counted (``dropped``) and logged (at most once a minute). The writer lingers
so that calls share transactions: it takes a batch when ``batch_size`` calls are
queued, when the oldest queued call has waited ``flush_interval`` seconds, when
``flush`` asks for the calls offered so far, or at shutdown, whichever comes first (0:
as soon as one is queued). A batch is one transaction: ``BEGIN``, the calls'
``INSERT`` for all of them (``Transaction.insert_many``: on SQLite without
``RETURNING``, the new row ids read from the driver), their extensions' rows
(``execute_many``), ``COMMIT``; on SQLite that is four jobs on the writer's thread
whatever the batch's size (PostgreSQL: one round trip per call's ``INSERT``). Items
are converted to ``CallRecord`` in the writer task (``convert``), off the caller's
path. A batch that fails because the database is away is retried with capped backoff
while new calls queue behind it (and overflow, counted, if the outage lasts); at
shutdown what is queued is flushed within ``flush_timeout``. With a ``retention`` the
writer also deletes calls older than it every ``purge_interval`` seconds, in batches.

**Read your writes.** A client that got ``call.ended`` and asks ``callHistory`` at once
would miss the call while it lingers in the queue, so ``callHistory`` first calls
``flush`` (bounded) when anything is ``pending``; calls ended at another instance may
still be up to that instance's ``flush_interval`` away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from vwell_pbx.storage.database import Database, Params, Transaction
from vwell_pbx.storage.errors import StorageError

__all__ = [
    "MAX_FLUSH_INTERVAL",
    "MAX_QUERY_EXTENSIONS",
    "CallHistoryWriter",
    "CallRecord",
    "CallStore",
    "HistoryPosition",
    "HistoryQuery",
    "StoredCall",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_QUERY_EXTENSIONS = 64
"""Extensions one history query may name (each is one index scan)."""

MAX_EXTENSIONS_PER_CALL = 64
"""Extensions stored per call (a call that involved more keeps the first ones)."""

MAX_FLUSH_INTERVAL = 60.0
"""The longest a queued call may wait for others to share its transaction (seconds)."""

_DROP_LOG_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One ended call as it is stored: the filter columns and the call object's JSON."""

    pbx: str
    call_id: str
    started_ms: int
    ended_ms: int
    direction: str
    end_reason: str
    from_number: str | None
    to_number: str | None
    extensions: tuple[str, ...]
    document: str
    originated: bool = False
    """A click-to-call of this instance's ``dial``: only that instance knows it (the
    document's ``originated``/``actionId``), so its document replaces one that another
    instance watching the same PBX stored first."""


@dataclass(frozen=True, slots=True, order=True)
class HistoryPosition:
    """Where a row sits in the newest-first order: its start time, then its row id."""

    started_ms: int
    row: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    """What ``CallStore.history`` looks for.

    ``extensions``: calls that involved any of these local extensions (``None``: any
    call; an empty tuple: nothing). ``number``: ``from_number`` or ``to_number``
    equals it. ``since_ms`` (inclusive) and ``until_ms`` (exclusive) bound the start
    time. ``before``: only rows older than this position (the previous page's last).
    """

    extensions: tuple[str, ...] | None = None
    number: str | None = None
    direction: str | None = None
    end_reason: str | None = None
    pbx: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: HistoryPosition | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.extensions is not None and len(self.extensions) > MAX_QUERY_EXTENSIONS:
            raise ValueError(f"at most {MAX_QUERY_EXTENSIONS} extensions per query")


@dataclass(frozen=True, slots=True)
class StoredCall:
    """One row of a history page: its position (for the next page's cursor) and the
    call object as stored (JSON text)."""

    position: HistoryPosition
    document: str


_INSERT_CALL = (
    "INSERT INTO calls (pbx, call_id, started_ms, ended_ms, direction, end_reason, "
    "from_number, to_number, document) VALUES (:pbx, :call_id, :started_ms, :ended_ms, "
    ":direction, :end_reason, :from_number, :to_number, :document) "
    "ON CONFLICT (pbx, call_id) DO NOTHING"
)
_ADOPT_ORIGINATED = (
    "UPDATE calls SET document = :document, direction = :direction, "
    "end_reason = :end_reason, from_number = :from_number, to_number = :to_number "
    "WHERE pbx = :pbx AND call_id = :call_id RETURNING id"
)
_ADOPT_ORIGINATED_EXTENSIONS = (
    "UPDATE call_extensions SET direction = :direction, end_reason = :end_reason, "
    "from_number = :from_number, to_number = :to_number WHERE call_row = :call_row"
)
_INSERT_EXTENSION = (
    "INSERT INTO call_extensions (call_row, extension, pbx, started_ms, direction, "
    "end_reason, from_number, to_number) VALUES (:call_row, :extension, :pbx, :started_ms, "
    ":direction, :end_reason, :from_number, :to_number)"
)
_PURGE_EXTENSIONS = (
    "DELETE FROM call_extensions WHERE call_row IN (SELECT id FROM calls "
    "WHERE started_ms < :before ORDER BY started_ms, id LIMIT :batch)"
)
_PURGE_CALLS = (
    "DELETE FROM calls WHERE id IN (SELECT id FROM calls "
    "WHERE started_ms < :before ORDER BY started_ms, id LIMIT :batch)"
)


class CallStore:
    """The call history tables of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, records: Sequence[CallRecord]) -> int:
        """Store ended calls (one transaction); returns how many were new.

        A call already stored (same ``pbx`` and ``call_id``, e.g. written by another
        instance) is left as it is, except that an ``originated`` record's document
        replaces the stored one with its filter columns (the other instance did not
        know it was a click-to-call); the row keeps its times and extensions.
        """
        if not records:
            return 0
        added = 0
        async with self.db.transaction() as tx:
            # One statement for the whole batch (SQLite: one job on the writer's thread,
            # the new rows' ids read from the driver rather than with RETURNING).
            rows = await tx.insert_many(_INSERT_CALL, [_call_params(r) for r in records], key="id")
            extension_rows: list[Params] = []
            for record, row in zip(records, rows, strict=True):
                if row is None:
                    if record.originated:
                        await self._adopt(tx, record)
                    continue
                added += 1
                for extension in dict.fromkeys(record.extensions[:MAX_EXTENSIONS_PER_CALL]):
                    extension_rows.append(
                        {
                            "call_row": row,
                            "extension": extension,
                            "pbx": record.pbx,
                            "started_ms": record.started_ms,
                            "direction": record.direction,
                            "end_reason": record.end_reason,
                            "from_number": record.from_number,
                            "to_number": record.to_number,
                        }
                    )
            if extension_rows:
                await tx.execute_many(_INSERT_EXTENSION, extension_rows)
        return added

    @staticmethod
    async def _adopt(tx: Transaction, record: CallRecord) -> None:
        """Replace a stored call's document and filter columns with ``record``'s."""
        # The row keeps its times: its place in the newest-first order and the cursors.
        params = {k: v for k, v in _call_params(record).items() if not k.endswith("_ms")}
        row = await tx.fetch_value(_ADOPT_ORIGINATED, params)
        if row is not None:
            await tx.execute(
                _ADOPT_ORIGINATED_EXTENSIONS,
                {
                    "call_row": row,
                    "direction": record.direction,
                    "end_reason": record.end_reason,
                    "from_number": record.from_number,
                    "to_number": record.to_number,
                },
            )

    async def history(self, query: HistoryQuery) -> list[StoredCall]:
        """At most ``query.limit`` calls matching ``query``, newest first."""
        if query.extensions is not None and not query.extensions:
            return []
        sql, params = history_sql(query)
        rows = await self.db.fetch_all(sql, params)
        return [StoredCall(HistoryPosition(int(row[1]), int(row[0])), str(row[2])) for row in rows]

    async def purge(self, before_ms: int, *, batch: int = 10_000) -> int:
        """Delete calls that started before ``before_ms``, ``batch`` at a time (each
        batch one short transaction); returns how many were deleted."""
        total = 0
        while True:
            params = {"before": before_ms, "batch": batch}
            async with self.db.transaction() as tx:
                await tx.execute(_PURGE_EXTENSIONS, params)
                deleted = await tx.execute(_PURGE_CALLS, params)
            total += deleted
            if deleted < batch:
                return total


def _call_params(record: CallRecord) -> Params:
    return {
        "pbx": record.pbx,
        "call_id": record.call_id,
        "started_ms": record.started_ms,
        "ended_ms": record.ended_ms,
        "direction": record.direction,
        "end_reason": record.end_reason,
        "from_number": record.from_number,
        "to_number": record.to_number,
        "document": record.document,
    }


def history_sql(query: HistoryQuery) -> tuple[str, dict[str, object]]:
    """The SQL text and parameters of ``query`` (see the module docstring's plans).

    Only constant fragments and generated parameter names go into the text; every
    value is a parameter.
    """
    params: dict[str, object] = {"limit": query.limit}
    shared: list[str] = []
    if query.since_ms is not None:
        shared.append("started_ms >= :since_ms")
        params["since_ms"] = query.since_ms
    if query.until_ms is not None:
        shared.append("started_ms < :until_ms")
        params["until_ms"] = query.until_ms
    for column, value in (
        ("direction", query.direction),
        ("end_reason", query.end_reason),
        ("pbx", query.pbx),
    ):
        if value is not None:
            shared.append(f"{column} = :{column}")
            params[column] = value
    if query.before is not None:
        params["before_ms"] = query.before.started_ms
        params["before_row"] = query.before.row
    number_columns: tuple[str | None, ...] = (None,)
    if query.number is not None:
        params["number"] = query.number
        number_columns = ("from_number", "to_number")
    paged = query.before is not None
    branches: list[str] = []
    if query.extensions is not None:
        for index, extension in enumerate(query.extensions):
            params[f"x{index}"] = extension
            branches.extend(
                _branch(
                    "call_extensions",
                    "call_row",
                    [f"extension = :x{index}", *shared],
                    column,
                    paged,
                )
                for column in number_columns
            )
    else:
        branches.extend(_branch("calls", "id", shared, column, paged) for column in number_columns)
    if len(branches) == 1:
        hits = branches[0]
    else:
        hits = " UNION ".join(
            f"SELECT hit, started_ms FROM ({branch}) AS b{index}"
            for index, branch in enumerate(branches)
        )
    sql = (
        "SELECT c.id, c.started_ms, c.document FROM (" + hits + ") AS hits "
        "JOIN calls c ON c.id = hits.hit "
        "ORDER BY hits.started_ms DESC, hits.hit DESC LIMIT :limit"
    )
    return sql, params


def _branch(
    table: str, row: str, conditions: list[str], number_column: str | None, paged: bool
) -> str:
    """One index range scan: rows of ``table`` newest first, at most ``:limit``."""
    where = list(conditions)
    if number_column is not None:
        where.append(f"{number_column} = :number")
    if paged:
        # The page position as a range on the index's time column, the row id residual.
        where.append(
            f"started_ms <= :before_ms AND (started_ms < :before_ms OR {row} < :before_row)"
        )
    text = " AND ".join(where) if where else "1 = 1"
    return (
        f"SELECT {row} AS hit, started_ms FROM {table} WHERE {text} "
        f"ORDER BY started_ms DESC, {row} DESC LIMIT :limit"
    )


class CallHistoryWriter(Generic[T]):
    """Writes ended calls in batches off the caller's path (see the module docstring).

    ``convert`` turns an offered item into a ``CallRecord`` (it runs in the writer
    task). ``flush_interval`` (seconds; 0: write as soon as a call is queued) is how
    long a queued call may wait for others to share its transaction; a full batch
    (``batch_size``), ``flush`` and shutdown end the wait early. ``retention_ms``
    (``None``: keep forever) and ``purge_interval`` drive the periodic purge; ``clock``
    gives epoch seconds. Use as ``async with``.
    """

    def __init__(
        self,
        store: CallStore,
        convert: Callable[[T], CallRecord],
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        flush_interval: float = 0.0,
        retention_ms: int | None = None,
        purge_interval: float = 3600.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        flush_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        if purge_interval <= 0 or retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("purge_interval and retry delays must be positive")
        if not (0 <= flush_interval <= MAX_FLUSH_INTERVAL):
            raise ValueError(f"flush_interval must be between 0 and {MAX_FLUSH_INTERVAL:g} s")
        self._store = store
        self._convert = convert
        # (time.monotonic() when queued, item): the oldest call's wait ends the linger.
        self._queue: deque[tuple[float, T]] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retention_ms = retention_ms
        self._purge_interval = purge_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._flush_timeout = flush_timeout
        self._clock = clock
        self._wakeup = asyncio.Event()  # set: something was queued
        self._hurry = asyncio.Event()  # set: stop lingering (see _must_write)
        self._progress = asyncio.Event()  # set (and replaced) after each batch
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_drop_log = float("-inf")
        self._dropped_since_log = 0
        # Counts of accepted calls, in queue order (so each is also a position):
        # offered, taken out of the queue by the writer, and done with (written, found
        # already stored, failed to convert or dropped). taken <= accepted, and the
        # calls up to flush_to must be taken without lingering.
        self._accepted = 0
        self._taken = 0
        self._settled = 0
        self._flush_to = 0
        #: Calls written (new rows; a call another instance wrote first is not counted).
        self.written = 0
        #: Calls refused because the queue was full, or lost at shutdown.
        self.dropped = 0
        #: Calls whose conversion failed (a bug; logged with its traceback).
        self.failed = 0
        #: Calls deleted by the retention purge.
        self.purged = 0

    @property
    def queued(self) -> int:
        """Calls waiting to be written (at most ``queue_size``; a batch in hand is not
        counted)."""
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Calls offered and not yet done with: queued, or in the batch being written."""
        return self._accepted - self._settled

    def offer(self, item: T) -> bool:
        """Queue one ended call for writing; never blocks. ``False``: dropped (full)."""
        queue = self._queue
        if self._closing or len(queue) >= self._queue_size:
            self._drop(1)
            return False
        queue.append((time.monotonic(), item))
        self._accepted += 1
        if len(queue) >= self._batch_size:
            self._hurry.set()
        self._idle.clear()
        self._wakeup.set()
        return True

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Write the calls offered so far now, without waiting for ``flush_interval``,
        and wait (at most ``timeout`` s) until that is done; whether it was (at once
        ``True`` when nothing is pending). Calls offered meanwhile are not waited for.
        "Done" includes a call dropped at shutdown or whose conversion failed."""
        target = self._accepted
        if self._settled >= target:
            return True
        self._flush_to = max(self._flush_to, target)
        self._hurry.set()
        try:
            async with asyncio.timeout(timeout):
                while self._settled < target:
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def drained(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (at most ``timeout`` s) until everything offered so far is written,
        ``flush_interval`` included (``flush`` does not wait for it)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def purge_now(self) -> int:
        """Delete the calls past the retention now; returns how many (0 without one)."""
        if self._retention_ms is None:
            return 0
        before = round(self._clock() * 1000) - self._retention_ms
        deleted = await self._store.purge(before)
        self.purged += deleted
        if deleted:
            log.info("call history: %d calls older than the retention deleted", deleted)
        return deleted

    async def __aenter__(self) -> CallHistoryWriter[T]:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._write_loop(), name="call-history-writer"))
        if self._retention_ms is not None:
            self._tasks.append(loop.create_task(self._purge_loop(), name="call-history-purge"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True  # no lingering from now on (_must_write)
        self._hurry.set()
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await self.drained(self._flush_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._queue:
            lost = len(self._queue)
            self._queue.clear()
            self._taken += lost
            self._settle(lost)
            self.dropped += lost
            log.warning("call history: %d ended calls not written at shutdown", lost)

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._dropped_since_log += count
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_SECONDS:
            log.warning(
                "call history: queue full (%d calls); %d ended calls not stored since the "
                "last report (%d in all)",
                self._queue_size,
                self._dropped_since_log,
                self.dropped,
            )
            self._last_drop_log = now
            self._dropped_since_log = 0

    def _settle(self, count: int) -> None:
        """``count`` more calls are done with: wake whoever ``flush`` waits for them."""
        self._settled += count
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _must_write(self) -> bool:
        """Whether the queued calls must be written without lingering."""
        return (
            self._closing
            or len(self._queue) >= self._batch_size
            or self._taken < self._flush_to  # the queue's head was asked for by flush()
        )

    async def _linger(self) -> None:
        """Wait until the oldest queued call has been queued for ``flush_interval``,
        unless the calls must be written sooner (``_must_write``)."""
        while True:
            self._hurry.clear()
            if self._flush_interval <= 0 or self._must_write():
                return
            delay = self._queue[0][0] + self._flush_interval - time.monotonic()
            if delay <= 0:
                return
            try:
                async with asyncio.timeout(delay):
                    await self._hurry.wait()
            except TimeoutError:
                return

    def _take(self) -> tuple[list[CallRecord], int]:
        """The next batch: up to ``batch_size`` queued calls, converted; how many were
        taken (a call whose conversion fails is counted and logged, not returned)."""
        batch: list[CallRecord] = []
        taken = 0
        queue = self._queue
        while queue and taken < self._batch_size:
            _, item = queue.popleft()
            taken += 1
            try:
                batch.append(self._convert(item))
            except Exception:
                self.failed += 1
                log.exception("call history: cannot convert an ended call")
        self._taken += taken
        return batch, taken

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._linger()
                batch, taken = self._take()
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    # Stopped at shutdown (flush_timeout passed) with a batch in hand.
                    self.dropped += len(batch)
                    self._settle(taken)
                    raise
                self._settle(taken)
            self._idle.set()

    async def _write(self, batch: list[CallRecord]) -> None:
        """Write one batch, retrying while the database is away (bounded by shutdown)."""
        delay = self._retry_initial
        failing = False
        while batch:
            try:
                self.written += await self._store.add(batch)
            except StorageError as exc:
                if not failing:
                    log.warning(
                        "call history: cannot write %d calls (%s); retrying", len(batch), exc
                    )
                    failing = True
                if self._closing:
                    self.dropped += len(batch)
                    log.warning("call history: %d ended calls not written at shutdown", len(batch))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
            else:
                if failing:
                    log.info("call history: writing again")
                return

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.purge_now()
            except StorageError as exc:
                log.warning("call history: purge failed (%s); trying again later", exc)
            await asyncio.sleep(self._purge_interval)
