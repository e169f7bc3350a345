"""``UserStore``: the rows of the ``users`` table (the domain rules live in ``vwell_pbx.users``).

Every write runs in one transaction that

1. bumps the ``version`` counter (``counters``), a number that only grows, also across
   a remove and re-add, and stamps the row with it;
2. changes the row;
3. announces the change on the ``vwell_users`` channel (``NOTIFY`` on PostgreSQL;
   SQLite readers notice the commit through ``PRAGMA data_version``).

So ``changes().generation()`` moves after any user write by any process, and
``version_of`` tells whether one user's row is still the one that was verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from vwell_pbx.storage.database import ChangeFeed, Database, Row, Transaction

__all__ = ["USERS_CHANNEL", "UserRow", "UserStore"]

USERS_CHANNEL: Final = "vwell_users"
_VERSION_COUNTER: Final = "version"  # the counter's name in earlier releases' files

_COLUMNS = "login, login2, role, extensions, version, created, updated, salt, hash, n, r, p"
#: The columns ``update`` may set: a fixed list, so no caller's text reaches the SQL.
_UPDATABLE: Final = frozenset({"role", "extensions", "salt", "hash", "n", "r", "p"})


class UserRow(NamedTuple):
    """One row of ``users``, columns as stored (``extensions`` is a JSON list)."""

    login: str
    login2: str
    role: str
    extensions: str
    version: int
    created: str
    updated: str
    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int


def _row(row: Row) -> UserRow:
    login, login2, role, ext, version, created, updated, salt, hash_, n, r, p = row
    return UserRow(
        str(login),
        str(login2),
        str(role),
        str(ext),
        int(version),
        str(created),
        str(updated),
        bytes(salt),
        bytes(hash_),
        int(n),
        int(r),
        int(p),
    )


class UserStore:
    """The ``users`` table of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._changes: ChangeFeed | None = None

    def changes(self) -> ChangeFeed:
        """The change feed of the users (see ``ChangeFeed.generation``).

        Created on first use: a command-line tool that only writes never opens the
        PostgreSQL LISTEN connection.
        """
        if self._changes is None:
            self._changes = self.db.watch(
                USERS_CHANNEL, f"SELECT value FROM counters WHERE name = '{_VERSION_COUNTER}'"
            )
        return self._changes

    def _changed(self) -> None:
        if self._changes is not None:
            self._changes.changed_locally()

    @staticmethod
    async def _next_version(tx: Transaction) -> int:
        value = await tx.fetch_value(
            "INSERT INTO counters (name, value) VALUES (:name, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
            {"name": _VERSION_COUNTER},
        )
        return int(value)

    async def insert(self, row: UserRow) -> int:
        """Add ``row`` (its ``version`` is ignored); returns the version it got.

        Raises ``IntegrityViolation`` when ``(login, login2)`` exists.
        """
        async with self.db.transaction() as tx:
            version = await self._next_version(tx)
            await tx.execute(
                f"INSERT INTO users ({_COLUMNS}) VALUES (:login, :login2, :role, :extensions,"
                " :version, :created, :updated, :salt, :hash, :n, :r, :p)",
                {**row._asdict(), "version": version},
            )
            await tx.notify(USERS_CHANNEL)
        self._changed()
        return version

    async def update(
        self, login: str, login2: str, values: Mapping[str, Any], *, updated: str
    ) -> int | None:
        """Set ``values`` (names from a fixed list) on one user; the new version or ``None``."""
        unknown = set(values) - _UPDATABLE
        if unknown or not values:
            raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")
        assignments = ", ".join(f"{name} = :{name}" for name in sorted(values))
        params = {**values, "updated": updated, "login": login, "login2": login2}
        try:
            async with self.db.transaction() as tx:
                version = await self._next_version(tx)
                changed = await tx.execute(
                    f"UPDATE users SET {assignments}, version = :version, updated = :updated "
                    "WHERE login = :login AND login2 = :login2",
                    {**params, "version": version},
                )
                if changed == 0:
                    raise _NoSuchUser
                await tx.notify(USERS_CHANNEL)
        except _NoSuchUser:
            return None
        self._changed()
        return version

    async def delete(self, login: str, login2: str) -> bool:
        """Remove one user; ``False`` if there was none."""
        try:
            async with self.db.transaction() as tx:
                await self._next_version(tx)  # the generation moves for removals too
                changed = await tx.execute(
                    "DELETE FROM users WHERE login = :login AND login2 = :login2",
                    {"login": login, "login2": login2},
                )
                if changed == 0:
                    raise _NoSuchUser
                await tx.notify(USERS_CHANNEL)
        except _NoSuchUser:
            return False
        self._changed()
        return True

    async def get(self, login: str, login2: str) -> UserRow | None:
        """One user's row, or ``None``."""
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM users WHERE login = :login AND login2 = :login2",
            {"login": login, "login2": login2},
        )
        return None if row is None else _row(row)

    async def version_of(self, login: str, login2: str) -> int | None:
        """One user's version (an indexed lookup), or ``None`` if there is no such user."""
        value = await self.db.fetch_value(
            "SELECT version FROM users WHERE login = :login AND login2 = :login2",
            {"login": login, "login2": login2},
        )
        return None if value is None else int(value)

    async def all(self) -> list[UserRow]:
        """Every user, ordered by login then login2."""
        rows = await self.db.fetch_all(f"SELECT {_COLUMNS} FROM users ORDER BY login, login2")
        return [_row(row) for row in rows]


class _NoSuchUser(Exception):
    """Rolls back an update/delete that matched no row (internal to this module)."""
