"""SmsStore on both backends: the outbox's transitions, claims and pacing, idempotency
keys under concurrency, quotas, recovery after a dead owner, the inbox's duplicates,
and history with visibility and cursors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.storage.fixtures import TEST_SETTINGS
from vwell_pbx.storage import (
    SmsHistoryQuery,
    SmsRow,
    SmsStore,
    SmsVisibility,
    Storage,
    StorageUrl,
    open_storage,
)

T0 = 1_700_000_000.0
_ids = itertools.count(1)


def new_id() -> str:
    return f"{next(_ids):032x}"


async def enqueue(store: SmsStore, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "sms_id": new_id(),
        "pbx": "office",
        "tel": "100",
        "text": "hello",
        "backend": "yeastar",
        "span": "2",
        "login": "Agent",
        "login2": "A",
        "client_key": None,
        "now": T0,
        "expires_at": T0 + 3600,
        "key_since": T0 - 86400,
        "max_per_user": 100,
        "max_total": 1000,
    }
    values.update(extra)
    return await store.enqueue(**values)


async def claim(store: SmsStore, owner: str = "A", **extra: Any) -> SmsRow | float | None:
    values: dict[str, Any] = {
        "pbx": "office",
        "lane": "office/span 2",
        "owner": owner,
        "now": T0,
        "interval": 10.0,
        "lease": 60.0,
    }
    values.update(extra)
    return await store.claim(**values)


@pytest.fixture
async def store(storage: Storage) -> SmsStore:
    await storage.sms.ensure_lane("office/span 2")
    return storage.sms


async def test_enqueue_stores_a_queued_sms(store: SmsStore) -> None:
    done = await enqueue(store, tel="81002003040", text="Привет")
    assert done.outcome == "created"
    row = done.row
    assert (row.direction, row.status, row.number, row.text, row.attempts) == (
        "out",
        "queued",
        "81002003040",
        "Привет",
        0,
    )
    assert (row.created_at, row.next_attempt_at, row.expires_at) == (T0, T0, T0 + 3600)
    assert await store.get(row.sms_id) == row
    assert await store.get("f" * 32) is None


async def test_a_key_returns_the_first_sms_within_its_window(store: SmsStore) -> None:
    first = await enqueue(store, client_key="order-17")
    again = await enqueue(store, client_key="order-17", text="other text")
    assert (again.outcome, again.row.sms_id) == ("existing", first.row.sms_id)
    other_user = await enqueue(store, client_key="order-17", login2="B")
    assert other_user.outcome == "created"
    # A day later the key is free again, and now names the new SMS.
    later = await enqueue(store, client_key="order-17", now=T0 + 90000, key_since=T0 + 3600)
    assert later.outcome == "created" and later.row.sms_id != first.row.sms_id
    repeat = await enqueue(store, client_key="order-17", now=T0 + 90001, key_since=T0 + 3601)
    assert repeat.row.sms_id == later.row.sms_id


async def test_the_same_key_concurrently_from_two_instances_makes_one_sms(
    storage_url: StorageUrl,
) -> None:
    async with (
        open_storage(storage_url, TEST_SETTINGS) as one,
        open_storage(storage_url, TEST_SETTINGS) as two,
    ):
        results = await asyncio.gather(
            *(enqueue(s.sms, client_key="k", text=f"t{i}") for i, s in enumerate([one, two] * 5))
        )
        outcomes = sorted(r.outcome for r in results)
        assert outcomes == ["created"] + ["existing"] * 9
        assert len({r.row.sms_id for r in results}) == 1
        count = await one.db.fetch_value("SELECT COUNT(*) FROM sms_messages")
        assert count == 1


async def test_full_outbox_per_user_and_in_all_stores_nothing(store: SmsStore) -> None:
    for _ in range(2):
        assert (await enqueue(store, max_per_user=2)).outcome == "created"
    assert (await enqueue(store, max_per_user=2)).outcome == "user_full"
    assert (await enqueue(store, login="Other", max_total=3)).outcome == "created"
    assert (await enqueue(store, login="Third", max_total=3)).outcome == "total_full"
    # A full outbox still answers a repeated key with its first SMS.
    keyed = await enqueue(store, login="Other", client_key="x", max_total=10)
    assert (await enqueue(store, login="Other", client_key="x", max_total=1)).outcome == (
        "existing"
    )
    assert keyed.outcome == "created"
    count = await store.db.fetch_value("SELECT COUNT(*) FROM sms_messages")
    assert count == 4


async def test_claims_are_paced_per_lane(store: SmsStore) -> None:
    first = (await enqueue(store)).row
    second = (await enqueue(store, now=T0 + 1)).row
    got = await claim(store, now=T0 + 1)
    assert isinstance(got, SmsRow) and got.sms_id == first.sms_id
    assert got.claimed_by == "A" and got.lease_until == T0 + 61
    # The lane is busy while A sends, for everyone.
    assert await claim(store, owner="B", now=T0 + 2) == pytest.approx(59)
    sending = await store.start_sending(first.sms_id, owner="A", now=T0 + 2, lease=60)
    assert sending is not None and (sending.status, sending.attempts) == ("sending", 1)
    await store.lane_done("office/span 2", owner="A", sent_at=T0 + 3)
    # Then the next SMS waits `interval` after the end of that send.
    assert await claim(store, owner="B", now=T0 + 5) == pytest.approx(8)
    got = await claim(store, owner="B", now=T0 + 13)
    assert isinstance(got, SmsRow) and got.sms_id == second.sms_id
    await store.lane_done("office/span 2", owner="B", sent_at=None)  # nothing was sent
    assert await claim(store, owner="B", now=T0 + 13) is None  # B's claim holds it; idle


async def test_only_the_owner_moves_its_sms(store: SmsStore) -> None:
    row = (await enqueue(store)).row
    assert isinstance(await claim(store, now=T0 + 1), SmsRow)
    assert await store.start_sending(row.sms_id, owner="B", now=T0 + 2, lease=60) is None
    assert await store.start_sending(row.sms_id, owner="A", now=T0 + 2, lease=60) is not None
    assert (
        await store.finish(
            row.sms_id, owner="B", now=T0 + 3, status="sent", error=None, detail=None
        )
        is None
    )
    done = await store.finish(
        row.sms_id, owner="A", now=T0 + 3, status="sent", error=None, detail="ok", span="3"
    )
    assert done is not None
    assert (done.status, done.span, done.detail, done.done_at, done.claimed_by) == (
        "sent",
        "3",
        "ok",
        T0 + 3,
        None,
    )
    # A final status is final: no owner can move it again.
    assert await store.retry_later(row.sms_id, owner="A", now=T0 + 4, at=T0 + 9, error="x") is None


async def test_retry_puts_it_back_in_the_queue_for_later(store: SmsStore) -> None:
    row = (await enqueue(store)).row
    await claim(store, now=T0)
    await store.start_sending(row.sms_id, owner="A", now=T0, lease=60)
    retried = await store.retry_later(
        row.sms_id, owner="A", now=T0 + 1, at=T0 + 30, error="GSM span 2 is not ready"
    )
    assert retried is not None
    assert (retried.status, retried.error, retried.next_attempt_at) == (
        "queued",
        "GSM span 2 is not ready",
        T0 + 30,
    )
    await store.lane_done("office/span 2", owner="A", sent_at=T0 + 1)
    assert await claim(store, owner="B", now=T0 + 20) == pytest.approx(10)  # not due yet
    got = await claim(store, owner="B", now=T0 + 30)
    assert isinstance(got, SmsRow) and got.attempts == 1


async def test_a_dead_owners_sms_are_taken_over_or_reported_unknown(store: SmsStore) -> None:
    claimed = (await enqueue(store)).row
    in_flight = (await enqueue(store, pbx="branch")).row
    accepted = (await enqueue(store, pbx="third")).row
    await store.ensure_lane("branch/span 2")
    await store.ensure_lane("third/span 2")
    await claim(store, now=T0)
    for pbx, row in (("branch", in_flight), ("third", accepted)):
        await claim(store, pbx=pbx, lane=f"{pbx}/span 2", now=T0)
        await store.start_sending(row.sms_id, owner="A", now=T0, lease=60)
    await store.record_acceptance(
        accepted.sms_id, owner="A", now=T0 + 1, span="2", pbx_sms_id="77", detail="awaiting"
    )
    # Owner A dies. Before its lease ends nothing changes, and nobody else claims.
    assert await store.recover(now=T0 + 30, expired_error="e", lost_error="lost") == []
    assert not isinstance(await claim(store, owner="B", now=T0 + 30), SmsRow)
    changed = await store.recover(now=T0 + 61, expired_error="e", lost_error="lost")
    by_id = {row.sms_id: row for row in changed}
    assert set(by_id) == {in_flight.sms_id, accepted.sms_id}
    assert (by_id[in_flight.sms_id].status, by_id[in_flight.sms_id].error) == ("unknown", "lost")
    assert (by_id[accepted.sms_id].status, by_id[accepted.sms_id].pbx_sms_id) == ("sent", "77")
    # The claimed but unsent one is simply claimed again, by B.
    got = await claim(store, owner="B", now=T0 + 61)
    assert isinstance(got, SmsRow) and got.sms_id == claimed.sms_id


async def test_expired_sms_fail(store: SmsStore) -> None:
    row = (await enqueue(store, expires_at=T0 + 10)).row
    assert await claim(store, now=T0 + 10) is None  # never claimed once expired
    changed = await store.recover(now=T0 + 10, expired_error="expired", lost_error="x")
    assert [(r.sms_id, r.status, r.error) for r in changed] == [(row.sms_id, "failed", "expired")]


async def test_release_on_a_clean_stop(store: SmsStore) -> None:
    queued = (await enqueue(store)).row
    sending = (await enqueue(store, pbx="branch")).row
    await store.ensure_lane("branch/span 2")
    await claim(store, now=T0)
    await claim(store, pbx="branch", lane="branch/span 2", now=T0)
    await store.start_sending(sending.sms_id, owner="A", now=T0, lease=60)
    changed = await store.release("A", now=T0 + 1, error="stopped")
    assert [(r.sms_id, r.status, r.error) for r in changed] == [
        (sending.sms_id, "unknown", "stopped")
    ]
    got = await claim(store, owner="B", now=T0 + 1)  # the lane and the SMS are free at once
    assert isinstance(got, SmsRow) and got.sms_id == queued.sms_id


async def test_renew_keeps_the_lease_alive(store: SmsStore) -> None:
    row = (await enqueue(store)).row
    await claim(store, now=T0)
    await store.start_sending(row.sms_id, owner="A", now=T0, lease=60)
    await store.renew("A", sms_ids=[row.sms_id], lanes=["office/span 2"], until=T0 + 120)
    assert await store.recover(now=T0 + 100, expired_error="e", lost_error="l") == []
    assert await claim(store, owner="B", now=T0 + 100) == pytest.approx(20)  # lane still busy
    # Only what the owner names is renewed: an SMS it gave up on runs out of lease.
    await store.renew("A", sms_ids=[], lanes=[], until=T0 + 500)
    changed = await store.recover(now=T0 + 121, expired_error="e", lost_error="lost")
    assert [(r.sms_id, r.status) for r in changed] == [(row.sms_id, "unknown")]


async def test_two_instances_claiming_at_once_claim_each_sms_once(
    storage_url: StorageUrl,
) -> None:
    async with (
        open_storage(storage_url, TEST_SETTINGS) as one,
        open_storage(storage_url, TEST_SETTINGS) as two,
    ):
        lanes = [f"pbx{i}/span 2" for i in range(6)]
        for lane in lanes:
            await one.sms.ensure_lane(lane)
        for i in range(6):
            await enqueue(one.sms, pbx=f"pbx{i}")
        attempts = [
            claim(s.sms, owner=name, pbx=f"pbx{i}", lane=lanes[i], interval=0)
            for i in range(6)
            for s, name in ((one, "one"), (two, "two"))
        ]
        results = await asyncio.gather(*attempts)
        claimed = [r for r in results if isinstance(r, SmsRow)]
        assert len(claimed) == 6  # each lane's SMS once, whichever instance won
        assert len({r.sms_id for r in claimed}) == 6


async def test_incoming_duplicates_only_across_owners(store: SmsStore) -> None:
    async def add(owner: str, now: float, text: str = "hi") -> tuple[SmsRow, bool]:
        return await store.add_incoming(
            sms_id=new_id(),
            pbx="office",
            span="2",
            from_number="89780000000",
            text=text,
            pbx_time="2024-01-01 00:00:00",
            raw=None,
            undecodable=False,
            partial=False,
            parts=1,
            detail=None,
            dedupe_key="same event",
            owner=owner,
            now=now,
            dedupe_since=now - 60,
        )

    first, stored = await add("A", T0)
    assert stored
    assert (first.direction, first.status, first.number) == ("in", "received", "89780000000")
    copy, stored = await add("B", T0 + 1)  # instance B got the same event
    assert not stored and copy.sms_id == first.sms_id
    again, stored = await add("A", T0 + 2)  # the same owner: a second, real SMS
    assert stored and again.sms_id != first.sms_id
    late, stored = await add("B", T0 + 100)  # outside the window: a new SMS
    assert stored and late.sms_id != first.sms_id


async def _history_rows(store: SmsStore) -> list[SmsRow]:
    rows = []
    for index in range(5):
        rows.append((await enqueue(store, now=T0 + index, tel=f"10{index % 2}")).row)
    row, _ = await store.add_incoming(
        sms_id=new_id(),
        pbx="office",
        span="3",
        from_number="MTS",
        text="in",
        pbx_time=None,
        raw=None,
        undecodable=False,
        partial=False,
        parts=1,
        detail=None,
        dedupe_key="k",
        owner="A",
        now=T0 + 10,
        dedupe_since=T0,
    )
    other = (await enqueue(store, now=T0 + 11, login="Other")).row
    return [*rows, row, other]


@pytest.fixture
async def history(store: SmsStore) -> AsyncIterator[list[SmsRow]]:
    yield await _history_rows(store)


async def test_history_newest_first_with_a_cursor(store: SmsStore, history: list[SmsRow]) -> None:
    everything = SmsVisibility(everything=True)
    page = await store.history(SmsHistoryQuery(visibility=everything, limit=3))
    assert [r.sms_id for r in page] == [r.sms_id for r in reversed(history)][:3]
    last = page[-1]
    rest = await store.history(
        SmsHistoryQuery(visibility=everything, before=(last.created_at, last.row_id), limit=10)
    )
    assert [r.sms_id for r in page + rest] == [r.sms_id for r in reversed(history)]


async def test_history_filters_and_visibility(store: SmsStore, history: list[SmsRow]) -> None:
    mine = SmsVisibility(login="Agent", login2="A")
    own = await store.history(SmsHistoryQuery(visibility=mine))
    assert {r.sms_id for r in own} == {r.sms_id for r in history[:5]}
    with_span = SmsVisibility(login="Agent", login2="A", spans=("3",))
    assert len(await store.history(SmsHistoryQuery(visibility=with_span))) == 6
    every_span = SmsVisibility(login="Agent", login2="A", all_spans=True)
    inbox = await store.history(SmsHistoryQuery(visibility=every_span, direction="in"))
    assert [r.number for r in inbox] == ["MTS"]
    everything = SmsVisibility(everything=True)
    by_number = await store.history(SmsHistoryQuery(visibility=everything, number="101"))
    assert [r.number for r in by_number] == ["101", "101"]
    timed = await store.history(
        SmsHistoryQuery(visibility=everything, since=T0 + 1, until=T0 + 3, statuses=("queued",))
    )
    assert [r.created_at for r in timed] == [T0 + 2, T0 + 1]
    assert await store.history(SmsHistoryQuery(visibility=everything, statuses=("sent",))) == []


async def test_the_rate_per_user_counts_the_stored_sms_of_the_window(store: SmsStore) -> None:
    rate = {"rate_since": T0 - 60, "max_since": 2}
    for offset in (-50.0, -10.0):  # two SMS within the last minute
        assert (await enqueue(store, now=T0 + offset)).outcome == "created"
    refused = await enqueue(store, **rate)
    assert (refused.outcome, refused.row) == ("user_rate", None)
    # The window has room again when the older of the two leaves it: at T0 - 50 + 60.
    assert refused.retry_at == pytest.approx(T0 + 10)
    # Another user, and this user at that time, may store.
    assert (await enqueue(store, login="Other", **rate)).outcome == "created"
    later = {"now": T0 + 10.5, "rate_since": T0 - 49.5, "max_since": 2}
    assert (await enqueue(store, **later)).outcome == "created"
    # A repeated key answers its first SMS and is not refused by the rate.
    keyed = await enqueue(store, client_key="k", now=T0 + 11, rate_since=T0 - 49, max_since=9)
    again = await enqueue(store, client_key="k", now=T0 + 12, rate_since=T0 - 48, max_since=1)
    assert (again.outcome, again.row.sms_id) == ("existing", keyed.row.sms_id)
