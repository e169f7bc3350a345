"""Versioned schema migrations, recorded in the ``schema_version`` table.

Each ``Migration`` has a number (1, 2, ... with no gaps), a name, the tables it creates
(in creation order: ``db copy`` copies tables in this order, so a table is copied
after the tables it refers to) and its SQL: one text for both backends, written with
the ``{tokens}`` of ``dialect.DDL_TOKENS`` where the two spell a type differently, or a
mapping ``{"sqlite": ..., "postgresql": ...}`` where they need different statements.

``upgrade`` applies the pending migrations in one transaction: all of them or none.
On PostgreSQL it first takes a transaction-scoped advisory lock, so several instances
starting together migrate once; on SQLite ``BEGIN IMMEDIATE`` is that lock. A database
whose ``schema_version`` is above ``LATEST`` was written by a newer program: every
entry point refuses it (``SchemaTooNew``) rather than guess.

``schema_version`` holds one row per applied migration: ``(version, name, applied_at)``.
Migration 1 is, column for column, the layout of the user database that earlier
releases created (``users.sqlite3``: ``schema_version`` with a lone ``version`` column,
``counters``, ``users``), so such a file is simply "at version 1" and is upgraded in
place; the two missing columns of its ``schema_version`` are added first.

How to add a table: see "Adding a table" in docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from vwell_pbx.storage.database import Database, Transaction
from vwell_pbx.storage.dialect import Dialect
from vwell_pbx.storage.errors import SchemaError, SchemaTooNew
from vwell_pbx.storage.url import Backend

__all__ = [
    "LATEST",
    "MIGRATIONS",
    "TABLES",
    "Migration",
    "SchemaStatus",
    "refuse_newer",
    "schema_status",
    "upgrade",
]

# Any constant: the advisory lock that serialises migrations across instances.
_MIGRATION_LOCK = 0x76_77_65_6C_6C  # "vwell"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema."""

    version: int
    name: str
    tables: tuple[str, ...]
    sql: str | Mapping[Backend, str]

    def statements(self, backend: Backend) -> list[str]:
        """The SQL statements of this step for ``backend``, tokens replaced."""
        text = self.sql if isinstance(self.sql, str) else self.sql[backend]
        return [s.strip() for s in Dialect(backend).ddl(text).split(";") if s.strip()]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "users",
        ("counters", "users"),
        """
        CREATE TABLE IF NOT EXISTS counters (
            name TEXT PRIMARY KEY,
            value {bigint} NOT NULL
        );
        CREATE TABLE IF NOT EXISTS users (
            login TEXT NOT NULL,
            login2 TEXT NOT NULL,
            role TEXT NOT NULL,
            extensions TEXT NOT NULL DEFAULT '[]',
            salt {blob} NOT NULL,
            hash {blob} NOT NULL,
            n INTEGER NOT NULL,
            r INTEGER NOT NULL,
            p INTEGER NOT NULL,
            version {bigint} NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            PRIMARY KEY (login, login2)
        )
        """,
    ),
    Migration(
        2,
        "lockouts",
        ("lockouts",),
        """
        CREATE TABLE lockouts (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            failures INTEGER NOT NULL,
            locked_until {real} NOT NULL,
            last_failure {real} NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE INDEX lockouts_by_last_failure ON lockouts (last_failure)
        """,
    ),
    # Call history (storage/calls.py). ``calls`` holds each ended call once per PBX
    # (UNIQUE (pbx, call_id): several instances watching one PBX write it once), with
    # the call object as JSON in ``document``. ``call_extensions`` has one row per local
    # extension the call involved, copying the columns queries filter on, so that the
    # history of one extension is an index range scan newest first, with or without
    # a number (see CallStore for the query plans). Times are epoch milliseconds.
    Migration(
        3,
        "calls",
        ("calls", "call_extensions", "server_keys"),
        """
        CREATE TABLE calls (
            id {id},
            pbx TEXT NOT NULL,
            call_id TEXT NOT NULL,
            started_ms {bigint} NOT NULL,
            ended_ms {bigint} NOT NULL,
            direction TEXT NOT NULL,
            end_reason TEXT NOT NULL,
            from_number TEXT,
            to_number TEXT,
            document TEXT NOT NULL,
            UNIQUE (pbx, call_id)
        );
        CREATE INDEX calls_by_start ON calls (started_ms, id);
        CREATE INDEX calls_by_from ON calls (from_number, started_ms, id);
        CREATE INDEX calls_by_to ON calls (to_number, started_ms, id);
        CREATE TABLE call_extensions (
            call_row {bigint} NOT NULL,
            extension TEXT NOT NULL,
            pbx TEXT NOT NULL,
            started_ms {bigint} NOT NULL,
            direction TEXT NOT NULL,
            end_reason TEXT NOT NULL,
            from_number TEXT,
            to_number TEXT,
            PRIMARY KEY (call_row, extension)
        );
        CREATE INDEX call_extensions_by_start ON call_extensions (extension, started_ms, call_row);
        CREATE INDEX call_extensions_by_from
            ON call_extensions (extension, from_number, started_ms, call_row);
        CREATE INDEX call_extensions_by_to
            ON call_extensions (extension, to_number, started_ms, call_row);
        CREATE TABLE server_keys (
            name TEXT PRIMARY KEY,
            secret {blob} NOT NULL
        )
        """,
    ),
    # The SMS outbox and inbox (storage/sms.py): every SMS in and out, idempotency keys
    # and the per-lane pacing shared by every instance.
    Migration(
        4,
        "sms",
        ("sms_messages", "sms_keys", "sms_lanes"),
        # Flags are INTEGER 0/1 (not {bool}) and raw bytes base64 TEXT, so that `db copy`
        # moves the rows between the engines unchanged. Partial indexes keep the outbox's
        # hot queries (claims, quota counts) on the few open rows, however long the
        # history grows; the predicates are repeated literally in storage/sms.py so that
        # PostgreSQL's planner can use them.
        """
        CREATE TABLE sms_messages (
            id {id},
            sms_id TEXT NOT NULL UNIQUE,
            direction TEXT NOT NULL,
            pbx TEXT NOT NULL,
            status TEXT NOT NULL,
            number TEXT NOT NULL,
            text TEXT NOT NULL,
            span TEXT,
            backend TEXT,
            login TEXT,
            login2 TEXT,
            client_key TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            detail TEXT,
            pbx_sms_id TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            next_attempt_at {real},
            expires_at {real},
            accepted_at {real},
            done_at {real},
            claimed_by TEXT,
            lease_until {real},
            pbx_time TEXT,
            raw TEXT,
            undecodable INTEGER NOT NULL DEFAULT 0,
            partial INTEGER NOT NULL DEFAULT 0,
            parts INTEGER NOT NULL DEFAULT 1,
            dedupe_key TEXT,
            stored_by TEXT
        );
        CREATE INDEX sms_queue ON sms_messages (pbx, next_attempt_at, id)
            WHERE status = 'queued';
        CREATE INDEX sms_open ON sms_messages (login, login2)
            WHERE status IN ('queued', 'sending');
        CREATE INDEX sms_in_flight ON sms_messages (lease_until)
            WHERE status = 'sending';
        CREATE INDEX sms_by_time ON sms_messages (created_at, id);
        CREATE INDEX sms_by_sender ON sms_messages (login, login2, created_at);
        CREATE INDEX sms_by_number ON sms_messages (number, created_at);
        CREATE INDEX sms_by_span ON sms_messages (direction, span, created_at);
        CREATE INDEX sms_by_dedupe_key ON sms_messages (dedupe_key, created_at);
        CREATE TABLE sms_keys (
            login TEXT NOT NULL,
            login2 TEXT NOT NULL,
            client_key TEXT NOT NULL,
            sms_id TEXT NOT NULL,
            created_at {real} NOT NULL,
            PRIMARY KEY (login, login2, client_key)
        );
        CREATE TABLE sms_lanes (
            lane TEXT PRIMARY KEY,
            last_send {real},
            busy_until {real},
            busy_by TEXT
        )
        """,
    ),
)

LATEST: Final = MIGRATIONS[-1].version

#: Every table the migrations create, in creation order (the order ``db copy`` uses).
TABLES: Final[tuple[str, ...]] = tuple(t for m in MIGRATIONS for t in m.tables)

_CREATE_SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER NOT NULL, name TEXT, applied_at TEXT)"
)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database stands: its version, this program's, and what is pending."""

    current: int
    latest: int
    pending: tuple[Migration, ...]

    @property
    def too_new(self) -> bool:
        """The database was migrated by a newer program."""
        return self.current > self.latest


def refuse_newer(db_version: int, where: str) -> None:
    """Raise ``SchemaTooNew`` if ``db_version`` is above what this program knows."""
    if db_version > LATEST:
        raise SchemaTooNew(
            f"{where}: the database is at schema version {db_version} but this program "
            f"knows versions up to {LATEST}; upgrade vwell-pbx-srv (or point [storage] "
            "url at another database)"
        )


async def schema_status(db: Database) -> SchemaStatus:
    """The schema version of ``db`` (0 for an empty database); changes nothing."""
    current = 0
    if await db.table_columns("schema_version"):
        current = int(await db.fetch_value("SELECT MAX(version) FROM schema_version") or 0)
    pending = tuple(m for m in MIGRATIONS if m.version > current)
    return SchemaStatus(current=current, latest=LATEST, pending=pending)


async def _current(tx: Transaction) -> int:
    return int(await tx.fetch_value("SELECT MAX(version) FROM schema_version") or 0)


async def upgrade(db: Database, *, now: dt.datetime | None = None) -> list[Migration]:
    """Apply the pending migrations in one transaction; returns those applied.

    Raises ``SchemaTooNew`` for a database from a newer program (nothing is changed).
    """
    status = await schema_status(db)
    refuse_newer(status.current, db.url.redacted())
    if not status.pending and "name" in await db.table_columns("schema_version"):
        return []
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    backend = db.dialect.backend
    columns = await db.table_columns("schema_version")
    async with db.transaction() as tx:
        if backend == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock(:key)", {"key": _MIGRATION_LOCK})
        await tx.execute(_CREATE_SCHEMA_VERSION)
        if columns and "name" not in columns:  # the users.sqlite3 of earlier releases
            if backend != "sqlite":
                raise SchemaError(f"{db.url}: schema_version has an unknown layout")
            await tx.execute("ALTER TABLE schema_version ADD COLUMN name TEXT")
            await tx.execute("ALTER TABLE schema_version ADD COLUMN applied_at TEXT")
            await tx.execute("UPDATE schema_version SET name = 'users' WHERE version = 1")
        current = await _current(tx)  # again: another instance may have just migrated
        refuse_newer(current, db.url.redacted())
        applied = [m for m in MIGRATIONS if m.version > current]
        for migration in applied:
            for statement in migration.statements(backend):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) "
                "VALUES (:version, :name, :applied_at)",
                {"version": migration.version, "name": migration.name, "applied_at": stamp},
            )
    return applied
