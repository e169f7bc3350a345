"""``callHistory`` at 1,000,000 stored calls, on SQLite and on PostgreSQL.

    PYTHONPATH=.:src .venv/bin/python -m bench.call_history [--calls N] [--backend B]

Fills a fresh database (the server's own migrations, then a bulk load: SQLite
``executemany`` in transactions of 50,000 rows, PostgreSQL ``COPY``; the secondary
indexes are dropped for the load and created again with the migration's own
statements, which is what a long-running server ends up with) and times the queries
``callHistory`` makes, through ``CallStore.history`` itself, for:

- a busy extension (about 14 % of all calls) and a rare one (about 0.15 %);
- with and without ``number`` (a number that often calls the busy extension, and one
  that called it a few times);
- the first page and a deep page (a cursor halfway down that extension's history);
- for comparison: no filter, a number alone, an operator's three extensions, and a
  rare ``endReason`` on the busy extension (a filter checked on the rows the scan
  visits, not an index).

Each query runs 30 times (after one warm-up run); the table shows the median and the
95th percentile in ms and the rows returned (a page asks for 101: 100 plus one to know
whether there is a next page, as the method does). PostgreSQL runs on a throw-away
cluster (``tests/storage/pg_cluster``, fsync off) on loopback and is ``ANALYZE``d
after the load (autovacuum would do so); SQLite gets no ``ANALYZE``, as the server
runs none. The machine's core count and the database sizes are printed too.
Nothing here asserts anything; docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.common import percentile, print_table
from vwell_pbx.storage import (
    HistoryPosition,
    HistoryQuery,
    Storage,
    StorageSettings,
    StorageUrl,
    open_storage,
)
from vwell_pbx.storage.migrations import MIGRATIONS

DAY_MS = 86_400_000
START_MS = 1_700_000_000_000
SPAN_MS = 90 * DAY_MS  # the default retention
EXTENSIONS = [str(200 + i) for i in range(200)]
BUSY, RARE = "200", "399"
POPULAR_NUMBER = "89780000007"
BATCH = 50_000
RUNS = 30
SETTINGS = StorageSettings(query_timeout=600.0, acquire_timeout=600.0, queue_size=1024)

CALL_COLUMNS = (
    "id",
    "pbx",
    "call_id",
    "started_ms",
    "ended_ms",
    "direction",
    "end_reason",
    "from_number",
    "to_number",
    "document",
)
EXTENSION_COLUMNS = (
    "call_row",
    "extension",
    "pbx",
    "started_ms",
    "direction",
    "end_reason",
    "from_number",
    "to_number",
)


def _weights() -> list[float]:
    """Extension popularity (Zipf-like): the first ~14 % of the calls, the last ~0.15 %."""
    raw = [1.0 / (rank + 1) ** 0.9 for rank in range(len(EXTENSIONS))]
    total = sum(raw)
    return [w / total for w in raw]


def _number(rng: random.Random) -> str:
    """An outside number: one popular number (2 %), else one of 200,000."""
    if rng.random() < 0.02:
        return POPULAR_NUMBER
    return f"8978{rng.randrange(200_000):07d}"


def _document(call_id: str, started_ms: int, row: dict[str, Any], extension: str) -> str:
    """A call object as the server stores it (about 600 bytes)."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started_ms / 1000))
    return orjson.dumps(
        {
            "callId": call_id,
            "pbx": "office",
            "status": "ended",
            "direction": row["direction"],
            "fromNumber": row["from_number"],
            "fromName": "Caller Name",
            "toNumber": row["to_number"],
            "toName": None,
            "extension": extension,
            "trunk": "YSGSM/11" if row["direction"] != "internal" else None,
            "did": None,
            "startedAt": f"{iso}.000Z",
            "answeredAt": f"{iso}.000Z",
            "endedAt": f"{iso}.500Z",
            "ringSeconds": 4.2,
            "talkSeconds": 61.3,
            "endReason": row["end_reason"],
            "onHold": False,
            "transfers": [],
            "channels": [],
            "originated": False,
            "actionId": None,
        }
    ).decode()


def generate(count: int, seed: int = 1) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """``count`` calls over 90 days: (calls row, its call_extensions rows)."""
    rng = random.Random(seed)
    weights = _weights()
    step = SPAN_MS / count
    for index in range(count):
        started_ms = START_MS + int(index * step) + rng.randrange(1000)
        kind = rng.random()
        if kind < 0.15:  # internal: two phones
            first, second = rng.choices(EXTENSIONS, weights, k=2)
            extensions = list(dict.fromkeys((first, second)))
            direction, from_number, to_number = "internal", first, second
        elif kind < 0.98:  # inbound or outbound through a trunk: one phone
            (phone,) = rng.choices(EXTENSIONS, weights)
            extensions = [phone]
            if kind < 0.70:
                direction, from_number, to_number = "inbound", _number(rng), phone
            else:
                direction, from_number, to_number = "outbound", phone, _number(rng)
        else:  # no phone took part (a trunk to the dialplan)
            extensions = []
            direction, from_number, to_number = "unknown", _number(rng), None
        end_reason = rng.choices(
            ("completed", "no_answer", "cancelled", "busy", "failed"), (80, 8, 8, 3, 1)
        )[0]
        row = {
            "direction": direction,
            "from_number": from_number,
            "to_number": to_number,
            "end_reason": end_reason,
        }
        call_id = f"{started_ms // 1000}.{index}"
        ended_ms = started_ms + 60_000
        document = _document(call_id, started_ms, row, extensions[0] if extensions else "")
        row_id = index + 1
        calls_row = (
            row_id,
            "office",
            call_id,
            started_ms,
            ended_ms,
            direction,
            end_reason,
            from_number,
            to_number,
            document,
        )
        extension_rows = [
            (row_id, ext, "office", started_ms, direction, end_reason, from_number, to_number)
            for ext in extensions
        ]
        yield calls_row, extension_rows


def _index_statements(backend: str) -> tuple[list[str], list[str]]:
    """The migration's CREATE INDEX statements, and the DROPs that undo them."""
    creates = [s for s in MIGRATIONS[2].statements(backend) if s.upper().startswith("CREATE INDEX")]
    drops = [f"DROP INDEX {s.split()[2]}" for s in creates]
    return creates, drops


async def fill(storage: Storage, count: int, url: StorageUrl) -> float:
    """Load ``count`` calls; returns the seconds it took (indexes included)."""
    started = time.perf_counter()
    backend = url.backend
    creates, drops = _index_statements(backend)
    for statement in drops:
        await storage.db.execute(statement)
    if backend == "sqlite":
        await _fill_sqlite(storage, count)
    else:
        await _fill_postgres(url, count)
    for statement in creates:
        await storage.db.execute(statement)
    if backend == "postgresql":
        await storage.db.reset_serial("calls", "id")
        await storage.db.execute("ANALYZE")
    return time.perf_counter() - started


async def _fill_sqlite(storage: Storage, count: int) -> None:
    call_sql = (
        f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in CALL_COLUMNS)})"
    )
    ext_sql = (
        f"INSERT INTO call_extensions ({', '.join(EXTENSION_COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in EXTENSION_COLUMNS)})"
    )
    calls: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []

    async def flush() -> None:
        async with storage.db.transaction() as tx:
            await tx.execute_many(call_sql, calls)
            await tx.execute_many(ext_sql, extensions)
        calls.clear()
        extensions.clear()

    for calls_row, extension_rows in generate(count):
        calls.append(dict(zip(CALL_COLUMNS, calls_row, strict=True)))
        extensions.extend(dict(zip(EXTENSION_COLUMNS, r, strict=True)) for r in extension_rows)
        if len(calls) >= BATCH:
            await flush()
    if calls:
        await flush()


async def _fill_postgres(url: StorageUrl, count: int) -> None:
    password = url.password.get_secret_value() if url.password else None
    conn = await asyncpg.connect(url.dsn(), password=password)
    try:
        calls: list[tuple[Any, ...]] = []
        extensions: list[tuple[Any, ...]] = []

        async def flush() -> None:
            await conn.copy_records_to_table("calls", records=calls, columns=CALL_COLUMNS)
            await conn.copy_records_to_table(
                "call_extensions", records=extensions, columns=EXTENSION_COLUMNS
            )
            calls.clear()
            extensions.clear()

        for calls_row, extension_rows in generate(count):
            calls.append(calls_row)
            extensions.extend(extension_rows)
            if len(calls) >= BATCH:
                await flush()
        if calls:
            await flush()
    finally:
        await conn.close()


async def _position(storage: Storage, extension: str, number: str | None) -> HistoryPosition:
    """A cursor position halfway down an extension's history (with ``number``, if any)."""
    where = "extension = :extension"
    params: dict[str, object] = {"extension": extension}
    if number is not None:
        where += " AND (from_number = :number OR to_number = :number)"
        params["number"] = number
    total = int(
        await storage.db.fetch_value(f"SELECT COUNT(*) FROM call_extensions WHERE {where}", params)
    )
    row = await storage.db.fetch_one(
        f"SELECT started_ms, call_row FROM call_extensions WHERE {where} "
        "ORDER BY started_ms DESC, call_row DESC LIMIT 1 OFFSET :skip",
        {**params, "skip": max(0, total // 2)},
    )
    assert row is not None
    return HistoryPosition(int(row[0]), int(row[1]))


async def _rare_number_of(storage: Storage, extension: str) -> str:
    """A number that called ``extension`` only a few times."""
    value = await storage.db.fetch_value(
        "SELECT from_number FROM call_extensions WHERE extension = :extension "
        "AND direction = 'inbound' AND from_number <> :popular "
        "ORDER BY started_ms DESC LIMIT 1",
        {"extension": extension, "popular": POPULAR_NUMBER},
    )
    return str(value)


async def measure(storage: Storage) -> list[dict[str, Any]]:
    """Every query of the module docstring, timed."""
    busy_half = await _position(storage, BUSY, None)
    rare_half = await _position(storage, RARE, None)
    busy_number_half = await _position(storage, BUSY, POPULAR_NUMBER)
    rare_number = await _rare_number_of(storage, BUSY)
    counts = {
        ext: int(
            await storage.db.fetch_value(
                "SELECT COUNT(*) FROM call_extensions WHERE extension = :e", {"e": ext}
            )
        )
        for ext in (BUSY, RARE)
    }
    busy, rare = (BUSY,), (RARE,)
    day = START_MS + 45 * DAY_MS
    cases: list[tuple[str, HistoryQuery]] = [
        (f"busy extension ({counts[BUSY]:,} calls), first page", HistoryQuery(extensions=busy)),
        ("busy extension, deep page", HistoryQuery(extensions=busy, before=busy_half)),
        (f"rare extension ({counts[RARE]:,} calls), first page", HistoryQuery(extensions=rare)),
        ("rare extension, deep page", HistoryQuery(extensions=rare, before=rare_half)),
        (
            "busy extension + frequent number, first page",
            HistoryQuery(extensions=busy, number=POPULAR_NUMBER),
        ),
        (
            "busy extension + frequent number, deep page",
            HistoryQuery(extensions=busy, number=POPULAR_NUMBER, before=busy_number_half),
        ),
        (
            "busy extension + rare number",
            HistoryQuery(extensions=busy, number=rare_number),
        ),
        (
            "rare extension + frequent number",
            HistoryQuery(extensions=rare, number=POPULAR_NUMBER),
        ),
        (
            "busy extension, one day (since/until)",
            HistoryQuery(extensions=busy, since_ms=day, until_ms=day + DAY_MS),
        ),
        ("three extensions (an operator's)", HistoryQuery(extensions=(BUSY, "250", RARE))),
        ("no filter (a supervisor), first page", HistoryQuery()),
        ("frequent number alone", HistoryQuery(number=POPULAR_NUMBER)),
        (
            "busy extension + endReason failed (checked per row)",
            HistoryQuery(extensions=busy, end_reason="failed"),
        ),
    ]
    rows = []
    for label, case in cases:
        query = replace(case, limit=101)
        found = await storage.calls.history(query)  # warm-up
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            await storage.calls.history(query)
            times.append(time.perf_counter() - started)
        times.sort()
        rows.append(
            {
                "query": label,
                "rows": len(found),
                "median ms": statistics.median(times) * 1000,
                "p95 ms": percentile(times, 0.95) * 1000,
            }
        )
    return rows


async def _size(storage: Storage, url: StorageUrl) -> str:
    if url.backend == "sqlite":
        assert url.path is not None
        size = await asyncio.to_thread(os.path.getsize, url.path)
        return f"{size / 2**20:,.0f} MiB file"
    value = await storage.db.fetch_value("SELECT pg_database_size(current_database())")
    return f"{int(value) / 2**20:,.0f} MiB database"


async def run(url: StorageUrl, count: int) -> None:
    """Fill and measure one database."""
    async with open_storage(url, SETTINGS) as storage:
        seconds = await fill(storage, count, url)
        calls = int(await storage.db.fetch_value("SELECT COUNT(*) FROM calls"))
        links = int(await storage.db.fetch_value("SELECT COUNT(*) FROM call_extensions"))
        size = await _size(storage, url)
        version = await storage.db.fetch_value(
            "SELECT sqlite_version()" if url.backend == "sqlite" else "SHOW server_version"
        )
        print(
            f"\n{url.backend} {version}: {calls:,} calls, {links:,} call_extensions rows, "
            f"{size}; filled in {seconds:,.0f} s",
            flush=True,
        )
        print_table(f"callHistory on {url.backend}, {calls:,} calls", await measure(storage))


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls to store")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both", help="which"
    )
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="vwell-bench-") as folder:
            asyncio.run(run(StorageUrl.sqlite(Path(folder) / "history.sqlite3"), args.calls))
    if args.backend in ("postgresql", "both"):
        from tests.storage.pg_cluster import PgCluster  # noqa: PLC0415 (only for PostgreSQL)

        cluster = PgCluster.create()
        try:
            url = StorageUrl.parse(cluster.url()).with_password(cluster.password)
            asyncio.run(run(url, args.calls))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
