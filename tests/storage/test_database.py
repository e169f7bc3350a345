"""The Database interface on both backends: statements, transactions, bounds, errors."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from tests.storage.fixtures import TEST_SETTINGS
from vwell_pbx.storage import (
    IntegrityViolation,
    Storage,
    StorageBusy,
    StorageTimeout,
    StorageUrl,
    open_database,
)
from vwell_pbx.storage.dialect import to_numbered

CREATE = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, data {blob})"


async def _notes(storage: Storage) -> None:
    await storage.db.execute(storage.db.dialect.ddl(CREATE))


def test_named_parameters_become_numbered_once() -> None:
    assert to_numbered("SELECT :a, :b, :a, x::text FROM t WHERE c = :c") == (
        "SELECT $1, $2, $1, x::text FROM t WHERE c = $3",
        ("a", "b", "c"),
    )


async def test_values_travel_as_parameters(storage: Storage) -> None:
    await _notes(storage)
    hostile = "'); DROP TABLE notes; -- :id \\ \" ё 🙂"
    await storage.db.execute(
        "INSERT INTO notes (id, body, data) VALUES (:id, :body, :data)",
        {"id": 1, "body": hostile, "data": b"\x00\xff"},
    )
    row = await storage.db.fetch_one("SELECT body, data FROM notes WHERE id = :id", {"id": 1})
    assert row == (hostile, b"\x00\xff")
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM notes") == 1


async def test_transaction_commits_or_rolls_back(storage: Storage) -> None:
    await _notes(storage)
    async with storage.db.transaction() as tx:
        await tx.execute("INSERT INTO notes (id, body) VALUES (1, 'kept')")
    with pytest.raises(RuntimeError):
        async with storage.db.transaction() as tx:
            await tx.execute("INSERT INTO notes (id, body) VALUES (2, 'lost')")
            raise RuntimeError("boom")
    assert await storage.db.fetch_all("SELECT id, body FROM notes") == [(1, "kept")]


async def test_a_cancelled_transaction_is_rolled_back(storage: Storage) -> None:
    await _notes(storage)
    inside = asyncio.Event()

    async def writer() -> None:
        async with storage.db.transaction() as tx:
            await tx.execute("INSERT INTO notes (id, body) VALUES (1, 'lost')")
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(writer())
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await storage.db.fetch_all("SELECT id FROM notes") == []
    async with storage.db.transaction() as tx:  # the writer is free again
        await tx.execute("INSERT INTO notes (id, body) VALUES (2, 'kept')")
    assert await storage.db.fetch_all("SELECT id FROM notes") == [(2,)]


async def test_fetch_value_many_answers_each_sets_value_in_order(storage: Storage) -> None:
    await _notes(storage)
    insert = (
        "INSERT INTO notes (id, body) VALUES (:id, :body) "
        "ON CONFLICT (id) DO NOTHING RETURNING body"
    )
    statements = storage.db.statements
    async with storage.db.transaction() as tx:
        assert await tx.fetch_value_many(insert, []) == []
        values = await tx.fetch_value_many(
            insert,
            [
                {"id": 1, "body": "a"},
                {"id": 2, "body": "b"},
                {"id": 1, "body": "again"},  # a conflict: no row, so None in its place
                {"id": 3, "body": "c"},
            ],
        )
    assert values == ["a", "b", None, "c"]
    if storage.db.dialect.backend == "sqlite":  # one job on the writer for all four sets
        assert storage.db.statements - statements == 3  # BEGIN, the four, COMMIT
    assert await storage.db.fetch_all("SELECT id, body FROM notes ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


async def test_fetch_value_many_fails_whole_with_its_transaction(storage: Storage) -> None:
    await _notes(storage)
    insert = "INSERT INTO notes (id, body) VALUES (:id, :body) RETURNING id"
    with pytest.raises(IntegrityViolation):
        async with storage.db.transaction() as tx:
            await tx.fetch_value_many(insert, [{"id": 1, "body": "a"}, {"id": 1, "body": "b"}])
    assert await storage.db.fetch_all("SELECT id FROM notes") == []


async def test_insert_many_answers_each_new_rows_id_or_none(storage: Storage) -> None:
    await storage.db.execute(
        storage.db.dialect.ddl("CREATE TABLE tags (id {id}, tag TEXT NOT NULL UNIQUE)")
    )
    insert = "INSERT INTO tags (tag) VALUES (:tag) ON CONFLICT (tag) DO NOTHING"
    statements = storage.db.statements
    async with storage.db.transaction() as tx:
        assert await tx.insert_many(insert, [], key="id") == []
        ids = await tx.insert_many(
            insert,
            [{"tag": "a"}, {"tag": "b"}, {"tag": "a"}, {"tag": "c"}],  # the second "a": None
            key="id",
        )
    if storage.db.dialect.backend == "sqlite":  # one job on the writer for all four sets
        assert storage.db.statements - statements == 3  # BEGIN, the four, COMMIT
    stored = dict(await storage.db.fetch_all("SELECT tag, id FROM tags"))
    assert ids == [stored["a"], stored["b"], None, stored["c"]]
    assert len(set(stored.values())) == 3


async def test_duplicate_key_is_an_integrity_violation(storage: Storage) -> None:
    await _notes(storage)
    await storage.db.execute("INSERT INTO notes (id, body) VALUES (1, 'a')")
    with pytest.raises(IntegrityViolation):
        async with storage.db.transaction() as tx:
            await tx.execute("INSERT INTO notes (id, body) VALUES (1, 'b')")
    assert await storage.db.fetch_value("SELECT body FROM notes") == "a"


async def test_iterate_reads_in_batches(storage: Storage) -> None:
    await _notes(storage)
    await storage.db.execute_many(
        "INSERT INTO notes (id, body) VALUES (:id, :body)",
        [{"id": i, "body": f"n{i}"} for i in range(25)],
    )
    batches = [
        rows async for rows in storage.db.iterate("SELECT id FROM notes ORDER BY id", batch=10)
    ]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [r[0] for b in batches for r in b] == list(range(25))


async def test_table_columns(storage: Storage) -> None:
    await _notes(storage)
    assert await storage.db.table_columns("notes") == ["id", "body", "data"]
    assert await storage.db.table_columns("missing") == []


async def test_a_slow_statement_times_out_and_the_database_stays_usable(
    storage_url: StorageUrl, storage_backend: str
) -> None:
    settings = dataclasses.replace(TEST_SETTINGS, query_timeout=0.3, busy_timeout=0.1)
    db = await open_database(storage_url, settings)
    try:
        slow = (
            "SELECT pg_sleep(5)"
            if storage_backend == "postgresql"
            else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT COUNT(*) FROM n"  # endless: only the interrupt stops it
        )
        started = asyncio.get_running_loop().time()
        with pytest.raises(StorageTimeout):
            await db.fetch_all(slow)
        assert asyncio.get_running_loop().time() - started < 3.0
        assert await db.fetch_value("SELECT 41 + 1") == 42
    finally:
        await db.aclose()


async def test_sqlite_queue_is_bounded(tmp_path: Path) -> None:
    settings = dataclasses.replace(TEST_SETTINGS, pool_size=1, queue_size=2, query_timeout=5.0)
    db = await open_database(StorageUrl.sqlite(tmp_path / "q.sqlite3"), settings)
    try:
        slow = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
            "SELECT COUNT(*) FROM n"
        )
        calls = [asyncio.create_task(db.fetch_all(slow)) for _ in range(4)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        busy = [r for r in results if isinstance(r, StorageBusy)]
        done = [r for r in results if r == [(1000000,)]]
        # One running, two waiting in the bounded queue: the fourth is refused at once.
        assert len(busy) >= 1
        assert len(done) + len(busy) == 4
    finally:
        await db.aclose()


async def test_sqlite_sees_another_connections_commit_from_the_next_loop_turn(
    tmp_path: Path,
) -> None:
    path = tmp_path / "feed.sqlite3"
    db = await open_database(StorageUrl.sqlite(path), TEST_SETTINGS)
    other = await open_database(StorageUrl.sqlite(path), TEST_SETTINGS)
    try:
        await db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER)")
        await db.execute("INSERT INTO counters VALUES ('users', 0)")
        feed = db.watch("users", "SELECT value FROM counters WHERE name = 'users'")
        await asyncio.sleep(0)
        before = feed.generation()
        assert before is not None
        await other.execute("UPDATE counters SET value = 1")  # another connection commits
        await asyncio.sleep(0)
        seen = feed.generation()
        assert seen is not None and seen > before
        # Within one turn the check is made once and shared: a commit made meanwhile (here
        # synchronously, as another process could) shows from the next turn on.
        with contextlib.closing(sqlite3.connect(path)) as other_process, other_process:
            other_process.execute("UPDATE counters SET value = 2")
        assert feed.generation() == seen
        await asyncio.sleep(0)
        assert feed.generation() == seen + 1
    finally:
        await other.aclose()
        await db.aclose()
