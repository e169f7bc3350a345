"""``LockoutStore``: the login throttle's lock-outs, so a restart (or another instance)
sees them.

A row is one locked key: ``kind`` is ``"login"`` (``key`` = the JSON list
``[login, login2]``, ASCII-escaped so that any text a client sends can be stored) or
``"address"`` (``key`` = the client address or IPv6 /64). Times are Unix epoch seconds.

The table holds the failure *counts* too, so that every instance sharing the database
counts the same failures: ``count_failure`` adds one atomically and answers the shared
count; a row whose ``locked_until`` is in the past is a count, not a lock-out. Writes
stay bounded under attack: a locked key is refused before any password is checked, so
after its threshold a key costs at most one counted failure (and one lock-out write)
per lock period.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vwell_pbx.storage.database import Database

__all__ = ["LockoutKind", "LockoutStore", "StoredLockout", "login_key"]

LockoutKind = Literal["login", "address"]


def login_key(login: str, login2: str) -> str:
    """The ``key`` of a ``login`` lock-out (printable ASCII whatever the names hold)."""
    return json.dumps([login, login2], ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class StoredLockout:
    """One locked key."""

    kind: LockoutKind
    key: str
    failures: int
    locked_until: float
    last_failure: float


class LockoutStore:
    """The ``lockouts`` table of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def count_failure(
        self, kind: LockoutKind, key: str, now: float, forget_before: float
    ) -> int:
        """Add one failure to ``key``'s shared count; the count after it.

        A count whose last failure is before ``forget_before`` starts again at one, as
        the in-memory throttle forgets it. Atomic: two instances counting at once get
        two different answers.
        """
        async with self.db.transaction() as tx:
            count = await tx.fetch_value(
                "INSERT INTO lockouts (kind, key, failures, locked_until, last_failure) "
                "VALUES (:kind, :key, 1, 0, :now) "
                "ON CONFLICT (kind, key) DO UPDATE SET failures = CASE "
                "WHEN lockouts.last_failure < :forget_before THEN 1 "
                "ELSE lockouts.failures + 1 END, last_failure = :now "
                "RETURNING failures",
                {"kind": kind, "key": key, "now": now, "forget_before": forget_before},
            )
        return int(count)

    async def save(self, lockouts: Sequence[StoredLockout]) -> None:
        """Store these lock-outs (one transaction).

        A stored lock-out is only ever extended: of two instances locking one key at
        once, the longer lock-out stays whichever writes last.
        """
        if not lockouts:
            return
        async with self.db.transaction() as tx:
            for lock in lockouts:
                await tx.execute(
                    "INSERT INTO lockouts (kind, key, failures, locked_until, last_failure) "
                    "VALUES (:kind, :key, :failures, :locked_until, :last_failure) "
                    "ON CONFLICT (kind, key) DO UPDATE SET failures = excluded.failures, "
                    "locked_until = excluded.locked_until, last_failure = excluded.last_failure "
                    "WHERE lockouts.locked_until < excluded.locked_until",
                    {
                        "kind": lock.kind,
                        "key": lock.key,
                        "failures": lock.failures,
                        "locked_until": lock.locked_until,
                        "last_failure": lock.last_failure,
                    },
                )

    async def clear(self, kind: LockoutKind, key: str) -> None:
        """Forget one key (after a successful login)."""
        await self.db.execute(
            "DELETE FROM lockouts WHERE kind = :kind AND key = :key", {"kind": kind, "key": key}
        )

    async def find(
        self, keys: Sequence[tuple[LockoutKind, str]], since: float
    ) -> list[StoredLockout]:
        """The rows of ``keys`` (counts, and lock-outs in force or not) whose last failure
        is after ``since``."""
        found: list[StoredLockout] = []
        for kind, key in keys:  # two keys per login attempt: two primary-key lookups
            row = await self.db.fetch_one(
                "SELECT failures, locked_until, last_failure FROM lockouts "
                "WHERE kind = :kind AND key = :key AND last_failure > :since",
                {"kind": kind, "key": key, "since": since},
            )
            if row is not None:
                found.append(StoredLockout(kind, key, int(row[0]), float(row[1]), float(row[2])))
        return found

    async def recent(self, since: float, limit: int) -> list[StoredLockout]:
        """Rows (lock-outs and counts) whose last failure is after ``since``, newest first,
        at most ``limit``."""
        rows = await self.db.fetch_all(
            "SELECT kind, key, failures, locked_until, last_failure FROM lockouts "
            "WHERE last_failure > :since ORDER BY last_failure DESC LIMIT :limit",
            {"since": since, "limit": limit},
        )
        return [
            StoredLockout(
                "login" if row[0] == "login" else "address",
                str(row[1]),
                int(row[2]),
                float(row[3]),
                float(row[4]),
            )
            for row in rows
        ]

    async def purge(self, before: float) -> int:
        """Delete lock-outs whose last failure is older than ``before``; how many."""
        return await self.db.execute(
            "DELETE FROM lockouts WHERE last_failure < :before", {"before": before}
        )
