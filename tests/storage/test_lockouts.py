"""LockoutStore on both backends: upsert, lookup of keys in force, restore, purge."""

from __future__ import annotations

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
    found = await store.find(keys, now=1002.0)
    assert {(f.kind, f.failures, f.locked_until) for f in found} == {
        ("login", 6, 1003.0),
        ("address", 20, 1010.0),
    }
    assert [f.kind for f in await store.find(keys, now=1005.0)] == ["address"]
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
