"""``vwell-pbx db copy``: every table of one database into another, in order.

Both databases are first brought to the latest schema (what the server does at
start). The target must be empty unless ``force`` is given, in which case its rows are
deleted first; either way the copy is one transaction on the target, so it is all or
nothing, and running it twice refuses the second time instead of doubling rows.
Rows are read in batches, so a big call history does not have to fit in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vwell_pbx.storage.database import Database
from vwell_pbx.storage.errors import StorageError, StorageNotEmpty
from vwell_pbx.storage.migrations import TABLES, upgrade
from vwell_pbx.storage.users import USERS_CHANNEL

__all__ = ["CopyReport", "copy_database", "row_counts"]

#: Serial (``{id}``) columns, per table, whose sequence must continue after a copy.
SERIAL_COLUMNS: dict[str, str] = {"calls": "id", "sms_messages": "id"}

_BATCH = 1000
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifier(name: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(name):
        raise StorageError(f"unexpected column name {name[:40]!r}")
    return name


@dataclass(frozen=True, slots=True)
class CopyReport:
    """How many rows each table received."""

    rows: dict[str, int]


async def row_counts(db: Database) -> dict[str, int]:
    """Rows per table of ours (tables that do not exist yet are left out)."""
    counts: dict[str, int] = {}
    for table in TABLES:
        if await db.table_columns(table):
            counts[table] = int(await db.fetch_value(f"SELECT COUNT(*) FROM {table}") or 0)
    return counts


async def copy_database(source: Database, target: Database, *, force: bool = False) -> CopyReport:
    """Copy every table of ``source`` into ``target`` (see the module docstring)."""
    await upgrade(source)
    await upgrade(target)
    filled = {table: n for table, n in (await row_counts(target)).items() if n}
    if filled and not force:
        listing = ", ".join(f"{table} ({n} rows)" for table, n in filled.items())
        raise StorageNotEmpty(
            f"{target.url}: the target already holds data: {listing}; use --force to replace it"
        )
    copied: dict[str, int] = {}
    async with target.transaction() as tx:
        for table in reversed(TABLES):  # children before parents
            await tx.execute(f"DELETE FROM {table}")
        for table in TABLES:
            columns = [_identifier(c) for c in await source.table_columns(table)]
            names = ", ".join(columns)
            insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in columns)})"
            copied[table] = 0
            async for rows in source.iterate(f"SELECT {names} FROM {table}", batch=_BATCH):
                await tx.execute_many(
                    insert, [dict(zip(columns, row, strict=True)) for row in rows]
                )
                copied[table] += len(rows)
        await tx.notify(USERS_CHANNEL)  # running servers re-check their cached logins
    for table, column in SERIAL_COLUMNS.items():
        await target.reset_serial(table, column)
    return CopyReport(rows=copied)
