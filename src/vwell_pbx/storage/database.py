"""The async database interface the repositories use, whatever the backend.

A ``Database`` runs single statements in autocommit mode (``execute``, ``fetch_one``,
``fetch_all``, ``fetch_value``) and opens write transactions::

    async with db.transaction() as tx:
        version = await tx.fetch_value("UPDATE counters SET ... RETURNING value", {...})
        await tx.execute("INSERT INTO users (...) VALUES (:login, ...)", {...})
        await tx.notify("vwell_users")  # delivered when (and only if) it commits

A transaction also runs one statement for many parameter sets: ``execute_many`` (bulk
insert), ``fetch_value_many`` (each set's ``RETURNING`` value) and ``insert_many`` (the
row ids of a batch of inserts, each ``None`` where a conflict skipped the row), with
fewer round trips than a statement each.

SQL uses named ``:name`` parameters (see ``dialect``); rows come back as tuples in
the order of the selected columns. Every call is bounded in time by the settings'
timeouts and raises only ``StorageError`` kinds.

``watch(channel, probe)`` returns a ``ChangeFeed`` whose ``generation()`` is a cheap,
synchronous "has anything changed?" test (no round trip to the database while nothing
changed); writers announce changes with ``tx.notify(channel)``. See the backends for
how each implements it.

Messages between processes (PostgreSQL only, ``supports_messages``): ``send(channel,
payloads)`` sends texts of at most ``MAX_MESSAGE_BYTES`` each in one transaction, so
they arrive together and in order; ``listen(channel, on_message, on_resume)`` calls
``on_message(text)`` for each, in every process listening on that channel (this one
included), and ``on_resume()`` after the listening connection was lost and is back
(messages sent meanwhile were missed). ``pool_use()`` and ``listener_state()`` say how
busy the connections are and whether the listening connection is up (``/health``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from vwell_pbx.storage.dialect import Dialect
from vwell_pbx.storage.errors import StorageError
from vwell_pbx.storage.settings import StorageSettings
from vwell_pbx.storage.url import StorageUrl

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ChangeFeed",
    "Database",
    "ListenerState",
    "Params",
    "PoolUse",
    "Queries",
    "Row",
    "Transaction",
]

Row = tuple[Any, ...]
Params = Mapping[str, object]

_NO_PARAMS: Params = {}

#: The largest message ``Database.send`` takes, in UTF-8 bytes: PostgreSQL refuses a
#: ``NOTIFY`` payload of 8000 bytes or more.
MAX_MESSAGE_BYTES: Final = 7999


@dataclass(frozen=True, slots=True)
class PoolUse:
    """The database connections of this process, now.

    ``open``: connections open (PostgreSQL: in the pool; SQLite: the writer and the
    readers); ``busy``: those running a statement or lent out; ``max``: the most there
    can be.
    """

    open: int
    busy: int
    max: int


@dataclass(frozen=True, slots=True)
class ListenerState:
    """The connection that receives notifications (PostgreSQL's ``LISTEN``).

    ``status``: ``"listening"``, ``"down"`` (being reconnected; change feeds answer
    "unknown" meanwhile) or ``"unused"`` (nothing is watched yet, or the backend needs
    none: SQLite). ``reconnects`` counts the times it was lost and listened again;
    ``last_error`` is the last reason it was lost (never a password).
    """

    status: Literal["listening", "down", "unused"]
    channels: tuple[str, ...] = ()
    reconnects: int = 0
    last_error: str | None = None


class ChangeFeed(Protocol):
    """A change counter for one kind of data (e.g. the users)."""

    def generation(self) -> int | None:
        """A number that changes whenever the watched data may have changed.

        ``None`` means "cannot tell right now" (e.g. the PostgreSQL LISTEN connection
        is down): the caller must then check the database itself. Cheap and
        synchronous: safe to call on every request.
        """
        ...

    def changed_locally(self) -> None:
        """Note a change this process made, so ``generation`` moves at once."""
        ...


class Queries(abc.ABC):
    """Statements; shared by a ``Database`` (autocommit) and a ``Transaction``."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = _NO_PARAMS) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abc.abstractmethod
    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement once per parameter set (bulk insert)."""

    @abc.abstractmethod
    async def fetch_all(self, sql: str, params: Params = _NO_PARAMS) -> list[Row]:
        """Every row of a query."""

    async def fetch_one(self, sql: str, params: Params = _NO_PARAMS) -> Row | None:
        """The first row of a query, or ``None``."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_value(self, sql: str, params: Params = _NO_PARAMS) -> Any:
        """The first column of the first row, or ``None`` when there is no row."""
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


class Transaction(Queries):
    """An open write transaction; committed when its ``async with`` block ends normally."""

    @abc.abstractmethod
    async def fetch_value_many(self, sql: str, rows: Sequence[Params]) -> list[Any]:
        """Run one statement once per parameter set, in order; for each, the first
        column of its first row, or ``None`` when it returned none (e.g. ``INSERT ...
        ON CONFLICT DO NOTHING RETURNING id``). As many round trips as the backend
        needs, not one per set where it can help it (SQLite: one job on the writer's
        thread for all of them, bounded by one statement's timeout)."""

    async def insert_many(self, sql: str, rows: Sequence[Params], *, key: str) -> list[Any]:
        """Run an ``INSERT`` of one row (typically ``... ON CONFLICT DO NOTHING``, without
        ``RETURNING``) once per parameter set, in order; for each set, the ``key``
        column (the table's integer primary key) of the row it inserted, or ``None``
        when it inserted none. Where the driver reports the new row's id by itself
        (SQLite's ``lastrowid``, ``key`` being the rowid), that saves ``RETURNING``,
        about a third of such a statement's CPU there; elsewhere ``RETURNING key`` is
        added and run as ``fetch_value_many``."""
        return await self.fetch_value_many(f"{sql} RETURNING {key}", rows)

    @abc.abstractmethod
    async def notify(self, channel: str) -> None:
        """Tell the ``ChangeFeed`` of ``channel`` (in every process) after the commit."""


class Database(Queries):
    """A connection pool to one database. Close it with ``aclose``."""

    url: StorageUrl
    dialect: Dialect
    settings: StorageSettings

    @property
    @abc.abstractmethod
    def statements(self) -> int:
        """How many statements were sent to the database so far (for metrics and tests)."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction (rolled back if the block raises or is cancelled)."""

    @abc.abstractmethod
    def iterate(
        self, sql: str, params: Params = _NO_PARAMS, *, batch: int = 1000
    ) -> AsyncIterator[list[Row]]:
        """A query's rows in batches of at most ``batch`` (for copying big tables)."""

    @abc.abstractmethod
    async def table_columns(self, table: str) -> list[str]:
        """The columns of ``table`` in their order; empty if there is no such table."""

    @abc.abstractmethod
    async def reset_serial(self, table: str, column: str) -> None:
        """After a bulk copy, let ``{id}`` column values continue after the highest one."""

    @abc.abstractmethod
    def watch(self, channel: str, probe: str) -> ChangeFeed:
        """The change feed of ``channel``.

        ``probe`` is a query returning one value that changes whenever the watched data
        does (e.g. a counter bumped by every write); backends that cannot be notified
        directly use it to tell relevant commits from others.
        """

    @property
    def supports_messages(self) -> bool:
        """Whether ``send`` and ``listen`` work (PostgreSQL: yes; SQLite: no)."""
        return False

    async def send(self, channel: str, payloads: Sequence[str]) -> None:
        """Send ``payloads`` (each at most ``MAX_MESSAGE_BYTES``) on ``channel``, in one
        transaction: every listener gets all of them, in order, or none."""
        raise StorageError(f"{self.url}: messages between processes need PostgreSQL")

    def listen(
        self,
        channel: str,
        on_message: Callable[[str], None],
        on_resume: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        """Call ``on_message(payload)`` for every message sent on ``channel`` (by any
        process, this one included), on the event loop, in the order sent; and
        ``on_resume()`` each time listening starts again after the connection was lost.
        Returns a function that stops it. The callbacks must be quick and not raise."""
        raise StorageError(f"{self.url}: messages between processes need PostgreSQL")

    @abc.abstractmethod
    def pool_use(self) -> PoolUse:
        """How many connections are open and busy (for ``/health`` and metrics)."""

    def listener_state(self) -> ListenerState:
        """The notification connection's state (``unused`` where there is none)."""
        return ListenerState(status="unused")

    async def wait_listening(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) until notifications are being received;
        whether they are. True at once where none are needed (SQLite)."""
        return True

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection and stop the backend's threads or tasks."""
