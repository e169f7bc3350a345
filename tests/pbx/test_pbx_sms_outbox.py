"""The durable outbox against the real simulator, a real AMI client and a real database
(SQLite and PostgreSQL): each verdict's status, retries and their bound, expiry, pacing,
two senders sharing one database, a dead owner's SMS, and a clean stop mid-send."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.storage.fixtures import TEST_SETTINGS
from tests.support.waiting import until
from vwell_pbx.ami import AmiClient, AmiSettings
from vwell_pbx.pbx.sms import OutboxSettings, SmsOutbox, make_sms_backend
from vwell_pbx.pbx.sms.outbox import STOPPED_ERROR
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import SmsRow, Storage, StorageUrl, open_storage

#: Test-sized timings: an AMI answer is fast on loopback; a lease outlives it comfortably.
FAST = OutboxSettings(
    interval=0.0,
    retry_seconds=0.05,
    lease_seconds=2.0,
    poll_seconds=0.05,
    answer_seconds=1.0,
    report_seconds=2.0,
    stop_seconds=0.5,
)

Outbox = SmsOutbox[SmsRow]
MakeOutbox = Callable[..., Awaitable[tuple[PbxSimulator, Outbox, list[str]]]]


async def connected_client(port: int) -> AmiClient:
    client = AmiClient(
        AmiSettings(
            host="127.0.0.1",
            port=port,
            username="admin",
            secret="admin",
            name="office",
            connect_timeout=2.0,
            login_timeout=2.0,
            backoff_initial=0.1,
            backoff_max=0.2,
        )
    )
    await client.start()
    await client.wait_connected(5)
    return client


@pytest.fixture
async def make_outbox(storage: Storage, make_pbx: Any) -> AsyncIterator[MakeOutbox]:
    """``sim, outbox, statuses = await make_outbox(backend="yeastar", **settings)``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            backend: str = "yeastar",
            span: str = "2",
            sim_options: dict[str, Any] | None = None,
            **settings: Any,
        ) -> tuple[PbxSimulator, Outbox, list[str]]:
            sim, client = await make_pbx(**(sim_options or {}))
            statuses: list[str] = []
            outbox: Outbox = SmsOutbox(
                storage.sms,
                OutboxSettings(**{**_fields(FAST), **settings}),
                owner="owner-1",
                on_change=lambda row: statuses.append(row.status),
            )
            outbox.add_pbx("office", make_sms_backend(client, backend=backend, span=span), client)
            await outbox.start()
            stack.push_async_callback(outbox.aclose)
            return sim, outbox, statuses

        yield make


def _fields(settings: OutboxSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


async def send(outbox: Outbox, text: str = "hello", *, within: float = 5.0, **extra: Any) -> SmsRow:
    row, created = await outbox.enqueue("office", "100", text, login="Agent", login2="A", **extra)
    assert created
    final = await outbox.wait_final(row.sms_id, within)
    assert final is not None
    return final


@pytest.mark.parametrize(
    ("backend", "span", "pbx_id"),
    [("yeastar", "2", False), ("yeastar-tg", "2", True), ("dongle", "dongle0", True)],
)
async def test_a_queued_sms_is_sent_and_each_status_announced(
    make_outbox: MakeOutbox, backend: str, span: str, pbx_id: bool
) -> None:
    sim, outbox, statuses = await make_outbox(backend=backend, span=span)
    row = await send(outbox, 'Привет "мир"')
    assert (row.status, row.attempts, row.error, row.span) == ("sent", 1, None, span)
    assert (row.pbx_sms_id is not None) == pbx_id
    assert statuses == ["queued", "sending", "sent"]
    assert [(s.number, s.text, s.ok) for s in sim.sms_sent] == [("100", 'Привет "мир"', True)]


async def test_a_busy_span_is_retried_with_backoff(make_outbox: MakeOutbox) -> None:
    sim, outbox, statuses = await make_outbox()
    sim.fail_sms("busy")
    row = await send(outbox)
    assert (row.status, row.attempts) == ("sent", 2)
    assert statuses == ["queued", "sending", "queued", "sending", "sent"]
    assert [s.ok for s in sim.sms_sent] == [False, True]
    first, second = (s.at for s in sim.sms_sent)
    assert second - first >= FAST.retry_seconds * 0.9


async def test_retries_are_bounded(make_outbox: MakeOutbox) -> None:
    sim, outbox, _ = await make_outbox(max_attempts=3)
    sim.fail_sms("busy", 10)
    row = await send(outbox)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.error is not None and "not sent after 3 attempts" in row.error
    assert "not ready" in row.error  # the PBX's own reason, the last one
    assert len(sim.sms_sent) == 3


async def test_a_retry_never_outlives_the_expiry(make_outbox: MakeOutbox) -> None:
    sim, outbox, _ = await make_outbox(max_attempts=50, expire_seconds=0.3, retry_seconds=0.1)
    sim.fail_sms("busy", 100)
    row = await send(outbox)
    assert row.status == "failed" and row.error is not None and "expired" in row.error


async def test_a_refusal_fails_at_once(make_outbox: MakeOutbox) -> None:
    sim, outbox, _ = await make_outbox()
    sim.fail_sms("error")
    row = await send(outbox)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error is not None and "rejected" in row.error


async def test_a_lost_answer_is_unknown_and_never_resent(make_outbox: MakeOutbox) -> None:
    sim, outbox, statuses = await make_outbox(answer_seconds=0.3)
    sim.fail_sms("no_answer")
    row = await send(outbox)
    assert row.status == "unknown" and row.error is not None
    assert "not sent again" in row.error
    await asyncio.sleep(0)  # (no wait: nothing else is queued, nothing else happens)
    assert [(s.ok, s.answered) for s in sim.sms_sent] == [(True, False)]
    assert statuses == ["queued", "sending", "unknown"]


@pytest.mark.parametrize(("backend", "span"), [("yeastar-tg", "2"), ("dongle", "dongle0")])
async def test_a_failed_delivery_report(make_outbox: MakeOutbox, backend: str, span: str) -> None:
    sim, outbox, _ = await make_outbox(backend=backend, span=span)
    sim.fail_sms("report_failed")
    row = await send(outbox)
    assert row.status == "failed" and row.accepted_at is not None
    assert row.detail is not None and "Status" in row.detail


async def test_pacing_per_lane(make_outbox: MakeOutbox) -> None:
    sim, outbox, _ = await make_outbox(interval=0.2)
    rows = [
        (await outbox.enqueue("office", "100", f"m{i}", login="Agent", login2="A"))[0]
        for i in range(4)
    ]
    for row in rows:
        final = await outbox.wait_final(row.sms_id, 5)
        assert final is not None and final.status == "sent"
    assert [s.text for s in sim.sms_sent] == ["m0", "m1", "m2", "m3"]  # in order
    gaps = [b.at - a.at for a, b in itertools.pairwise(sim.sms_sent)]
    assert all(gap >= 0.19 for gap in gaps), gaps


async def test_wait_final_returns_the_status_it_has_when_time_is_up(
    make_outbox: MakeOutbox,
) -> None:
    _, outbox, _ = await make_outbox(sim_options={"sms_answer_delay": 0.5})
    row, _ = await outbox.enqueue("office", "100", "slow", login="Agent", login2="A")
    early = await outbox.wait_final(row.sms_id, 0.1)
    assert early is not None and early.status in ("queued", "sending")
    late = await outbox.wait_final(row.sms_id, 5)
    assert late is not None and late.status == "sent"


async def test_the_same_key_concurrently_is_one_sms(make_outbox: MakeOutbox) -> None:
    sim, outbox, _ = await make_outbox()
    results = await asyncio.gather(
        *(
            outbox.enqueue("office", "100", f"t{i}", login="Agent", login2="A", key="order-1")
            for i in range(8)
        )
    )
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({row.sms_id for row, _ in results}) == 1
    final = await outbox.wait_final(results[0][0].sms_id, 5)
    assert final is not None and final.status == "sent"
    assert len(sim.sms_sent) == 1


async def test_a_clean_stop_mid_send_reports_unknown(storage: Storage, make_pbx: Any) -> None:
    sim, client = await make_pbx(sms_answer_delay=1.0)
    outbox: Outbox = SmsOutbox(storage.sms, FAST, owner="stopping")
    outbox.add_pbx("office", make_sms_backend(client, backend="yeastar", span="2"), client)
    await outbox.start()
    row, _ = await outbox.enqueue("office", "100", "in flight", login="Agent", login2="A")
    await until(lambda: len(sim.actions_received) > 0 and _sending(sim), within=5)
    await outbox.aclose()  # stop_seconds (0.5) is shorter than the PBX takes
    final = await storage.sms.get(row.sms_id)
    assert final is not None and (final.status, final.error) == ("unknown", STOPPED_ERROR)


def _sending(sim: PbxSimulator) -> bool:
    return any((a.get("Command") or "").startswith("gsm send sms") for a in sim.actions_received)


async def test_a_dead_owners_sms_are_taken_over_after_the_lease(
    storage: Storage, make_pbx: Any
) -> None:
    sim, client = await make_pbx()
    store = storage.sms
    now = time.time()
    rows = []
    for index, text in enumerate(("claimed", "in flight", "still queued")):
        done = await store.enqueue(
            sms_id=f"{index:032x}",
            pbx="office",
            tel="100",
            text=text,
            backend="yeastar",
            span="2",
            login="Agent",
            login2="A",
            client_key=None,
            now=now - 10 + index,
            expires_at=now + 600,
            key_since=0,
            max_per_user=10,
            max_total=10,
        )
        assert done.row is not None
        rows.append(done.row)
    # A run that died (SIGKILL): it had claimed one SMS and was sending another.
    dead = {"until": now + 1.0}
    await store.db.execute(
        "UPDATE sms_messages SET claimed_by = 'dead', lease_until = :until WHERE sms_id = :id",
        {**dead, "id": rows[0].sms_id},
    )
    await store.db.execute(
        "UPDATE sms_messages SET claimed_by = 'dead', lease_until = :until, "
        "status = 'sending', attempts = 1 WHERE sms_id = :id",
        {**dead, "id": rows[1].sms_id},
    )
    statuses: dict[str, list[str]] = {}
    outbox: Outbox = SmsOutbox(
        store,
        FAST,
        owner="successor",
        on_change=lambda row: statuses.setdefault(row.text, []).append(row.status),
    )
    outbox.add_pbx("office", make_sms_backend(client, backend="yeastar", span="2"), client)
    await outbox.start()
    try:
        await until(lambda: len(sim.sms_sent) >= 2 and "in flight" in statuses, within=10)
    finally:
        await outbox.aclose()
    # The queued one went at once; the claimed one only after the dead run's lease.
    assert [s.text for s in sim.sms_sent] == ["still queued", "claimed"]
    assert sim.sms_sent[1].at >= now + 1.0
    assert statuses["in flight"] == ["unknown"]  # never resent
    for row in rows:
        final = await store.get(row.sms_id)
        assert final is not None
        assert final.status == ("unknown" if final.text == "in flight" else "sent")


async def test_two_senders_sharing_one_database_send_each_sms_once_paced(
    storage_url: StorageUrl, make_pbx: Any
) -> None:
    """Two instances: their own database connections, their own AMI connections to the
    one PBX, one outbox table. SMS queued through both are each sent once, and the span
    never sends two within the interval, whichever instance sends."""
    sim, first_client = await make_pbx()
    second_client = await connected_client(sim.port)
    interval = 0.15
    settings = OutboxSettings(**{**_fields(FAST), "interval": interval})
    async with contextlib.AsyncExitStack() as stack:
        outboxes: list[Outbox] = []
        for name, client in (("one", first_client), ("two", second_client)):
            storage = await stack.enter_async_context(open_storage(storage_url, TEST_SETTINGS))
            outbox: Outbox = SmsOutbox(storage.sms, settings, owner=name)
            outbox.add_pbx("office", make_sms_backend(client, backend="yeastar", span="2"), client)
            await outbox.start()
            stack.push_async_callback(outbox.aclose)
            outboxes.append(outbox)
        stack.push_async_callback(second_client.close)
        ids = []
        for index in range(12):
            row, _ = await outboxes[index % 2].enqueue(
                "office", "100", f"sms {index}", login="Agent", login2="A"
            )
            ids.append(row.sms_id)
        finals = [await outboxes[0].wait_final(sms_id, 15) for sms_id in ids]
    assert [f.status for f in finals if f is not None] == ["sent"] * 12
    texts = [s.text for s in sim.sms_sent]
    assert sorted(texts) == sorted(f"sms {i}" for i in range(12))  # each once
    gaps = [b.at - a.at for a, b in itertools.pairwise(sim.sms_sent)]
    assert min(gaps) >= interval * 0.95, gaps
    senders = {f.sms_id: f for f in finals if f is not None}
    assert len(senders) == 12


async def test_a_hung_pbx_costs_at_most_one_unknown(make_outbox: MakeOutbox) -> None:
    """The PBX stops answering but keeps the connection open: the SMS in flight is
    unknown; the next ones wait until a Ping is answered again, then go out."""
    sim, outbox, _ = await make_outbox(answer_seconds=0.3, poll_seconds=0.1)
    first = await send(outbox, "before")
    assert first.status == "sent"
    sim.mute = True
    rows = [
        (await outbox.enqueue("office", "100", f"during {i}", login="Agent", login2="A"))[0]
        for i in range(3)
    ]
    lost = await outbox.wait_final(rows[0].sms_id, 5)
    assert lost is not None and lost.status == "unknown"
    # The hang goes on while the outbox probes it: the lost SMS was one read the hung
    # PBX threw away, and each Ping since is another. Two unanswered Pings later the
    # next SMS must still be queued: without the Ping check, it would have been sent
    # into the hang and ended unknown too.
    ignored = sim.ignored_reads
    await until(lambda: sim.ignored_reads >= ignored + 2, within=10)
    still = await outbox.store.get(rows[1].sms_id)
    assert still is not None and still.status == "queued"
    sim.mute = False
    finals = [await outbox.wait_final(row.sms_id, 10) for row in rows]
    assert [f.status for f in finals if f is not None] == ["unknown", "sent", "sent"]
    assert [s.text for s in sim.sms_sent] == ["before", "during 1", "during 2"]
