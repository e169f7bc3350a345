"""Versioned migrations: a fresh database, the earlier users.sqlite3, a newer schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.storage.fixtures import TEST_SETTINGS
from vwell_pbx.storage import (
    LATEST,
    SchemaError,
    SchemaTooNew,
    StorageUrl,
    open_database,
    open_storage,
    schema_status,
    upgrade,
)
from vwell_pbx.storage.migrations import MIGRATIONS, TABLES
from vwell_pbx.users import UserDirectory, scrypt_hasher, sha1_of_password

FAST = (2**4, 8, 1)

# The schema earlier releases created in users.sqlite3 (src/vwell_pbx/users.py, v1).
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    login TEXT NOT NULL,
    login2 TEXT NOT NULL,
    role TEXT NOT NULL,
    extensions TEXT NOT NULL DEFAULT '[]',
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    n INTEGER NOT NULL,
    r INTEGER NOT NULL,
    p INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (login, login2)
);
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO counters (name, value) VALUES ('version', 7);
"""


def test_migrations_are_numbered_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert len(set(TABLES)) == len(TABLES)
    for migration in MIGRATIONS:
        for backend in ("sqlite", "postgresql"):
            assert migration.statements(backend)  # every token known to the dialect table


async def test_fresh_database_gets_every_table(storage_url: StorageUrl) -> None:
    db = await open_database(storage_url, TEST_SETTINGS)
    try:
        status = await schema_status(db)
        assert (status.current, status.latest, len(status.pending)) == (0, LATEST, LATEST)
        applied = await upgrade(db)
        assert [m.version for m in applied] == list(range(1, LATEST + 1))
        for table in TABLES:
            assert await db.table_columns(table), table
        rows = await db.fetch_all("SELECT version, name FROM schema_version ORDER BY version")
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        assert await upgrade(db) == []  # nothing pending: nothing done
    finally:
        await db.aclose()


async def test_concurrent_upgrades_migrate_once(storage_url: StorageUrl) -> None:
    dbs = [await open_database(storage_url, TEST_SETTINGS) for _ in range(3)]
    try:
        results = await asyncio.gather(*(upgrade(db) for db in dbs))
        assert sorted(len(r) for r in results) == [0, 0, LATEST]
        count = await dbs[0].fetch_value("SELECT COUNT(*) FROM schema_version")
        assert count == LATEST
    finally:
        for db in dbs:
            await db.aclose()


async def test_a_newer_schema_is_refused(storage_url: StorageUrl) -> None:
    async with open_storage(storage_url, TEST_SETTINGS) as storage:
        await storage.db.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (:v, 'future', 'x')",
            {"v": LATEST + 1},
        )
    for migrate in (True, False):
        with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}"):
            async with open_storage(storage_url, TEST_SETTINGS, migrate=migrate):
                pass


async def test_without_migrate_a_pending_schema_is_an_error(storage_url: StorageUrl) -> None:
    with pytest.raises(SchemaError, match="db upgrade"):
        async with open_storage(storage_url, TEST_SETTINGS, migrate=False):
            pass


async def test_the_earlier_users_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    # A user written by the earlier release: its row format, its hash.
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA)
    salt = b"s" * 16
    digest = scrypt_hasher(sha1_of_password("old-pw").encode(), salt, *FAST)
    conn.execute(
        "INSERT INTO users VALUES ('Agent', 'Иванов И.И.', 'operator', '[\"269\"]', ?, ?, "
        "16, 8, 1, 7, '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')",
        (salt, digest),
    )
    conn.commit()
    conn.close()

    async with open_storage(StorageUrl.sqlite(path), TEST_SETTINGS) as storage:
        assert storage.schema.current == LATEST
        directory = UserDirectory(storage.users, scrypt_params=FAST)
        record = await directory.get("Agent", "Иванов И.И.")
        assert record is not None
        assert record.extensions == ("269",)
        assert directory.verify(record, sha1_of_password("old-pw"))
        directory_rows = await storage.db.fetch_all(
            "SELECT version, name FROM schema_version ORDER BY version"
        )
        # The version counter carries on from where the old file left it.
        added = await directory.add("New", "User", sha1_hex="0" * 40)
        assert added.version == 8
    assert directory_rows == [(1, "users"), *[(m.version, m.name) for m in MIGRATIONS[1:]]]
