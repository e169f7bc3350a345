"""LockoutStore on both backends: upsert, lookup of keys in force, restore, purge."""

from __future__ import annotations

import asyncio

from vwell_pbx.storage import Storage, StoredLockout
from vwell_pbx.storage.lockouts import login_key


async def test_save_find_recent_purge(storage: Storage) -> None:
    store = storage.lockouts
    agent = login_key("Agent", "Иванов И.И.")
    await store.save(
        [
            StoredLockout("login", agent, 5, locked_until=1001.0, last_failure=1000.0),
            StoredLockout("address", "192.0.2.1", 20, locked_until=1010.0, last_failure=1000.0),
        ]
    )
    # Saving again replaces (one row per key).
    await store.save([StoredLockout("login", agent, 6, locked_until=1003.0, last_failure=1001.0)])
    keys = [("login", agent), ("address", "192.0.2.1")]
    found = await store.find(keys, since=999.0)
    assert {(f.kind, f.failures, f.locked_until) for f in found} == {
        ("login", 6, 1003.0),
        ("address", 20, 1010.0),
    }
    # Only the login failed after 1000.5.
    assert [f.kind for f in await store.find(keys, since=1000.5)] == ["login"]
    recent = await store.recent(since=0.0, limit=10)
    assert [f.kind for f in recent] == ["login", "address"]  # newest failure first
    assert len(await store.recent(since=0.0, limit=1)) == 1
    assert await store.purge(before=1000.5) == 1  # the address's last failure was at 1000
    await store.clear("login", agent)
    assert await store.recent(since=0.0, limit=10) == []


def test_login_keys_are_printable_ascii() -> None:
    key = login_key("a\x00b", "Петров\ud800")
    assert key.isascii()
    assert "\x00" not in key


async def test_failures_are_counted_atomically_and_forgotten_when_stale(storage: Storage) -> None:
    store = storage.lockouts
    key = login_key("Agent", "Петров")
    counts = await asyncio.gather(
        *(store.count_failure("login", key, now=1000.0, forget_before=0.0) for _ in range(8))
    )
    assert sorted(counts) == list(range(1, 9))  # eight instances at once: eight answers
    [counted] = await store.find([("login", key)], since=0.0)
    assert (counted.failures, counted.locked_until) == (8, 0.0)  # a count, not a lock-out
    # The last failure (1000) is before forget_before: the count starts again.
    assert await store.count_failure("login", key, now=2000.0, forget_before=1500.0) == 1


async def test_a_stored_lockout_is_only_ever_extended(storage: Storage) -> None:
    store = storage.lockouts
    key = login_key("Agent", "")
    await store.save([StoredLockout("login", key, 7, locked_until=1004.0, last_failure=1000.0)])
    # Another instance's shorter lock-out, written last, does not shorten it.
    await store.save([StoredLockout("login", key, 6, locked_until=1002.0, last_failure=1000.0)])
    [found] = await store.find([("login", key)], since=0.0)
    assert (found.failures, found.locked_until) == (7, 1004.0)
