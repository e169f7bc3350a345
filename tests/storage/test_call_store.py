"""Call history on both backends: each call stored once, every filter and page checked
against a plain Python reading of the same rows, the retention purge, the shared keys
and the batch writer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Iterable, Iterator

import pytest

from tests.storage.fixtures import TEST_SETTINGS, create_pg_database, wait_until
from tests.storage.pg_cluster import PgCluster, pg_bindir
from vwell_pbx.storage import (
    CallHistoryWriter,
    CallRecord,
    HistoryPosition,
    HistoryQuery,
    KeyStore,
    Storage,
    open_storage,
)

EXTENSIONS = ("269", "270", "271", "300")
NUMBERS = ("89787342741", "89780000001", "89780000002")
DIRECTIONS = ("inbound", "outbound", "internal")
REASONS = ("completed", "no_answer", "busy", "cancelled")


def record(
    call_id: str,
    started_ms: int,
    *,
    extensions: tuple[str, ...] = ("269",),
    from_number: str | None = "89787342741",
    to_number: str | None = "269",
    direction: str = "inbound",
    end_reason: str = "completed",
    pbx: str = "office",
) -> CallRecord:
    """One ended call; the document is a small call object naming the call."""
    document = json.dumps({"callId": call_id, "pbx": pbx, "startedMs": started_ms})
    return CallRecord(
        pbx=pbx,
        call_id=call_id,
        started_ms=started_ms,
        ended_ms=started_ms + 30_000,
        direction=direction,
        end_reason=end_reason,
        from_number=from_number,
        to_number=to_number,
        extensions=extensions,
        document=document,
    )


def random_calls(count: int, seed: int = 7) -> list[CallRecord]:
    """Calls with repeated start times (ties), several extensions, numbers and PBXs."""
    rng = random.Random(seed)
    calls = []
    for index in range(count):
        extensions = tuple(rng.sample(EXTENSIONS, rng.choice((0, 1, 1, 2))))
        calls.append(
            record(
                f"c{index}",
                1_700_000_000_000 + rng.randrange(40) * 1000,  # many ties
                extensions=extensions,
                from_number=rng.choice((*NUMBERS, None, *extensions)),
                to_number=rng.choice((*NUMBERS, *extensions, None)),
                direction=rng.choice(DIRECTIONS),
                end_reason=rng.choice(REASONS),
                pbx=rng.choice(("office", "office", "branch")),
            )
        )
    return calls


def matches(call: CallRecord, query: HistoryQuery) -> bool:
    """The reference reading of a query: what ``CallStore.history`` must return."""
    if query.extensions is not None and not set(query.extensions) & set(call.extensions):
        return False
    if query.number is not None and query.number not in (call.from_number, call.to_number):
        return False
    for wanted, value in (
        (query.direction, call.direction),
        (query.end_reason, call.end_reason),
        (query.pbx, call.pbx),
    ):
        if wanted is not None and wanted != value:
            return False
    if query.since_ms is not None and call.started_ms < query.since_ms:
        return False
    return query.until_ms is None or call.started_ms < query.until_ms


async def all_pages(storage: Storage, query: HistoryQuery) -> list[str]:
    """Every call the query finds, page after page, as call ids."""
    found: list[str] = []
    position: HistoryPosition | None = None
    for _ in range(1000):
        page = await storage.calls.history(
            HistoryQuery(**{**_fields(query), "before": position})  # type: ignore[arg-type]
        )
        assert len(page) <= query.limit
        positions = [row.position for row in page]
        assert positions == sorted(positions, reverse=True)  # newest first, ids break ties
        if position is not None:
            assert all(p < position for p in positions)
        found += [json.loads(row.document)["callId"] for row in page]
        if len(page) < query.limit:
            return found
        position = page[-1].position
    raise AssertionError("paging did not end")


def _fields(query: HistoryQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in HistoryQuery.__dataclass_fields__}


async def test_a_call_is_stored_once(storage: Storage) -> None:
    first = record("1700000000.1", 1_700_000_000_000, extensions=("269", "270"))
    assert await storage.calls.add([first]) == 1
    # The same call again (another instance saw it end too), with a new one.
    second = record("1700000000.2", 1_700_000_001_000)
    assert await storage.calls.add([first, second]) == 1
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM calls") == 2
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM call_extensions") == 3
    # Same call id on another PBX is another call.
    assert await storage.calls.add([record("1700000000.1", 1, pbx="branch")]) == 1


async def test_the_click_to_call_instances_document_is_the_one_kept(storage: Storage) -> None:
    # Two instances watch one PBX; only the one whose dial made the call knows it is a
    # click-to-call. Whichever writes first, its document is the one stored.
    seen = record("1700000000.5", 1_700_000_000_000, extensions=("269", "270"))
    ours = dataclasses.replace(
        record("1700000000.5", 1_700_000_000_004, extensions=("269", "270"), to_number="270"),
        document=json.dumps({"callId": "1700000000.5", "originated": True}),
        direction="internal",
        originated=True,
    )

    async def stored() -> tuple[object, ...]:
        row = await storage.db.fetch_one(
            "SELECT document, direction, to_number, started_ms FROM calls "
            "WHERE call_id = '1700000000.5'"
        )
        assert row is not None
        by_extension = await storage.db.fetch_all(
            "SELECT DISTINCT direction, to_number FROM call_extensions"
        )
        return (*row, [tuple(r) for r in by_extension])

    assert await storage.calls.add([seen]) == 1
    assert await storage.calls.add([ours]) == 0  # not a new call: the same one, adopted
    adopted = (ours.document, "internal", "270", seen.started_ms, [("internal", "270")])
    assert await stored() == adopted  # the row keeps its place (started_ms)
    assert await storage.calls.add([seen]) == 0  # the other instance, late: nothing changes
    assert await stored() == adopted
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM call_extensions") == 2


QUERIES = [
    HistoryQuery(limit=7),
    HistoryQuery(extensions=("269",), limit=5),
    HistoryQuery(extensions=("269", "300"), limit=4),  # a call with both is found once
    HistoryQuery(extensions=("999",), limit=5),
    HistoryQuery(number="89787342741", limit=6),
    HistoryQuery(extensions=("270",), number="89780000001", limit=3),
    HistoryQuery(extensions=("269", "270"), number="269", limit=5),  # from or to
    HistoryQuery(direction="internal", end_reason="busy", limit=2),
    HistoryQuery(pbx="branch", extensions=("271",), limit=4),
    HistoryQuery(since_ms=1_700_000_010_000, until_ms=1_700_000_020_000, limit=8),
    HistoryQuery(extensions=("300",), since_ms=1_700_000_030_000, direction="outbound", limit=1),
    HistoryQuery(number="89780000002", end_reason="no_answer", until_ms=1_700_000_025_000),
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
async def test_history_pages_match_the_reference(storage: Storage, query: HistoryQuery) -> None:
    calls = random_calls(160)
    for start in range(0, len(calls), 50):
        await storage.calls.add(calls[start : start + 50])
    rows = {c.call_id: await _row_of(storage, c) for c in calls}
    expected = sorted(
        (c for c in calls if matches(c, query)),
        key=lambda c: (c.started_ms, rows[c.call_id]),
        reverse=True,
    )
    assert await all_pages(storage, query) == [c.call_id for c in expected]


async def _row_of(storage: Storage, call: CallRecord) -> int:
    return int(
        await storage.db.fetch_value(
            "SELECT id FROM calls WHERE pbx = :pbx AND call_id = :call_id",
            {"pbx": call.pbx, "call_id": call.call_id},
        )
    )


async def test_no_extensions_means_no_calls(storage: Storage) -> None:
    await storage.calls.add([record("a", 1)])
    assert await storage.calls.history(HistoryQuery(extensions=())) == []


async def test_purge_deletes_old_calls_in_batches(storage: Storage) -> None:
    await storage.calls.add(
        [record(f"old{i}", 1_000 + i, extensions=("269", "270")) for i in range(25)]
        + [record("new", 5_000)]
    )
    assert await storage.calls.purge(2_000, batch=10) == 25
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM calls") == 1
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM call_extensions") == 1
    assert await storage.calls.purge(2_000) == 0


async def test_a_key_is_made_once_and_shared(storage: Storage) -> None:
    key = await storage.keys.get("history-cursor")
    assert len(key) == 32
    # Another instance (its own KeyStore, same database) reads the same key.
    other = KeyStore(storage.db, random_bytes=lambda size: b"\x01" * size)
    assert await other.get("history-cursor") == key
    assert await other.get("another") == b"\x01" * 32


async def test_the_writer_writes_in_batches_and_counts_what_it_drops(storage: Storage) -> None:
    converted: list[int] = []

    def convert(index: int) -> CallRecord:
        converted.append(index)
        return record(f"w{index % 30}", 1_000 + index)  # 60 offers, 30 distinct calls

    writer = CallHistoryWriter(storage.calls, convert, queue_size=100, batch_size=7)
    async with writer:
        for index in range(60):
            assert writer.offer(index)
        await writer.drained(10)
        assert writer.written == 30
        assert converted == list(range(60))
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM calls") == 30

    full = CallHistoryWriter(storage.calls, convert, queue_size=3)
    # Not started: nothing takes items out, so the fourth is refused.
    assert [full.offer(i) for i in range(4)] == [True, True, True, False]
    assert full.dropped == 1 and full.queued == 3


async def test_the_writer_purges_what_the_retention_expires(storage: Storage) -> None:
    day = 86_400_000
    now_ms = 100 * day
    await storage.calls.add([record("old", now_ms - 91 * day), record("young", now_ms - day)])
    writer = CallHistoryWriter(
        storage.calls,
        lambda item: item,
        retention_ms=90 * day,
        clock=lambda: now_ms / 1000,
    )
    async with writer:
        # The purge runs once at start, then every purge_interval.
        await wait_until(lambda: writer.purged == 1)
    assert [r[0] for r in await storage.db.fetch_all("SELECT call_id FROM calls")] == ["young"]


async def test_a_conversion_bug_loses_one_call_not_the_writer(storage: Storage) -> None:
    def convert(item: int) -> CallRecord:
        if item == 1:
            raise ValueError("bug")
        return record(f"ok{item}", item)

    async with CallHistoryWriter(storage.calls, convert) as writer:
        for item in (0, 1, 2):
            writer.offer(item)
        await writer.drained(10)
    assert writer.failed == 1 and writer.written == 2


async def test_a_batch_is_one_transaction_of_four_jobs(storage: Storage) -> None:
    calls = [record(f"b{i}", i, extensions=("269", "270")) for i in range(50)]
    statements = storage.db.statements
    assert await storage.calls.add(calls) == 50
    if storage.db.dialect.backend == "sqlite":
        # BEGIN, the 50 calls' INSERT, their 100 extension rows, COMMIT.
        assert storage.db.statements - statements == 4
    assert await storage.db.fetch_value("SELECT COUNT(*) FROM call_extensions") == 100


async def test_the_writer_lingers_until_a_batch_is_full(storage: Storage) -> None:
    writer = CallHistoryWriter(
        storage.calls, lambda item: record(f"f{item}", item), batch_size=5, flush_interval=60
    )
    async with writer:
        for item in range(7):
            writer.offer(item)
        # Five make a batch at once; the other two wait for company (up to a minute).
        await wait_until(lambda: writer.written == 5)
        await storage.db.fetch_value("SELECT COUNT(*) FROM calls")  # a round trip later:
        assert writer.written == 5 and writer.queued == 2 and writer.pending == 2
        # Leaving the block writes them without waiting for the interval.
    assert writer.written == 7 and writer.pending == 0


async def test_the_writer_writes_when_the_oldest_call_has_waited_the_interval(
    storage: Storage,
) -> None:
    async with CallHistoryWriter(
        storage.calls, lambda item: record(f"t{item}", item), flush_interval=0.02
    ) as writer:
        writer.offer(1)
        await wait_until(lambda: writer.written == 1)  # no flush, no full batch: the timer
        assert writer.pending == 0


async def test_flush_writes_what_is_queued_now(storage: Storage) -> None:
    writer = CallHistoryWriter(
        storage.calls, lambda item: record(f"q{item}", item), batch_size=3, flush_interval=60
    )
    assert await writer.flush(0.01)  # nothing pending: at once
    async with writer:
        for item in range(8):
            writer.offer(item)
        statements = storage.db.statements
        assert await writer.flush(10)
        # All eight, in batches of three (3 + 3 + 2), the last one without lingering.
        assert writer.written == 8 and writer.pending == 0
        if storage.db.dialect.backend == "sqlite":
            assert storage.db.statements - statements == 3 * 4
        # Flushes that wait together are all answered.
        writer.offer(8)
        first = asyncio.create_task(writer.flush(10))
        await asyncio.sleep(0)  # the first flush is waiting
        writer.offer(9)
        assert await asyncio.gather(first, writer.flush(10)) == [True, True]
        assert writer.written == 10 and writer.pending == 0


async def test_flush_gives_up_after_its_timeout(storage: Storage) -> None:
    writer = CallHistoryWriter(storage.calls, lambda item: record(f"n{item}", item))
    writer.offer(1)  # not started: nothing will write it
    assert not await writer.flush(0.01)
    assert writer.pending == 1


@pytest.mark.parametrize("storage_backend", ["sqlite"])
@pytest.mark.parametrize("interval", [-0.1, 60.5, float("nan"), float("inf")])
def test_the_flush_interval_is_bounded(storage: Storage, interval: float) -> None:
    with pytest.raises(ValueError, match="flush_interval must be between 0 and 60 s"):
        CallHistoryWriter(storage.calls, lambda item: record("x", 1), flush_interval=interval)


def _ids(rows: Iterable[tuple[object, ...]]) -> list[object]:
    return [row[0] for row in rows]


@pytest.mark.parametrize("interval", [0.0, 60.0])
async def test_queued_calls_are_flushed_at_shutdown(storage: Storage, interval: float) -> None:
    writer = CallHistoryWriter(
        storage.calls, lambda item: record(str(item), item), flush_interval=interval
    )
    async with writer:
        for item in range(20):
            writer.offer(item)
        # Not drained here: leaving the block must flush.
    assert writer.written == 20 and writer.dropped == 0
    assert len(_ids(await storage.db.fetch_all("SELECT id FROM calls"))) == 20


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own, since it gets stopped."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_the_writer_retries_while_the_database_is_down(
    own_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls that end during an outage are kept in the queue and written once the
    database is back; nobody who offered them waited."""
    short = dataclasses.replace(
        TEST_SETTINGS, connect_timeout=0.5, acquire_timeout=1.0, query_timeout=1.0
    )
    url = await create_pg_database(own_cluster)
    async with open_storage(url, short) as storage:
        writer = CallHistoryWriter(
            storage.calls, lambda item: record(f"o{item}", item), retry_initial=0.05, retry_max=0.2
        )
        async with writer:
            await asyncio.to_thread(lambda: own_cluster.stop(remove=False, mode="fast"))
            assert all(writer.offer(item) for item in range(5))  # never blocks
            await asyncio.to_thread(own_cluster.start)  # the same port again
            await writer.drained(30)
        assert writer.written == 5 and writer.dropped == 0
        assert await storage.db.fetch_value("SELECT COUNT(*) FROM calls") == 5
    assert "call history: cannot write 5 calls" in caplog.text  # it did fail first
    assert own_cluster.password not in caplog.text
