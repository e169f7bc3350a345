"""Messages between processes (PostgreSQL's LISTEN/NOTIFY) and what ``/health`` reads
from a database: pool use and the listening connection's state."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.fixtures import TEST_SETTINGS, create_pg_database
from tests.storage.pg_cluster import PgCluster
from tests.support import until
from vwell_pbx.storage import Storage, StorageError, StorageUrl, open_storage
from vwell_pbx.storage.database import MAX_MESSAGE_BYTES


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> StorageUrl:
    """An empty database on the session's cluster."""
    return await create_pg_database(pg_cluster)


async def test_messages_reach_every_listener_together_and_in_order(pg_url: StorageUrl) -> None:
    async with (
        open_storage(pg_url, TEST_SETTINGS) as sender,
        open_storage(pg_url, TEST_SETTINGS) as receiver,
    ):
        got_there: list[str] = []
        got_here: list[str] = []
        receiver.db.listen("relay_test", got_there.append)
        sender.db.listen("relay_test", got_here.append)
        await until(lambda: receiver.db.listener_state().status == "listening", 5)
        await until(lambda: sender.db.listener_state().status == "listening", 5)
        big = "ё" * (MAX_MESSAGE_BYTES // 2)  # two bytes each: at the limit
        await sender.db.send("relay_test", ["one", big, "three"])
        await sender.db.send("relay_test", ["four"])
        await until(lambda: len(got_there) == 4, 5, what="four messages")
        assert got_there == ["one", big, "three", "four"]
        await until(lambda: len(got_here) == 4, 5, what="the sender's own copies")
        state = receiver.db.listener_state()
        assert state.channels == ("relay_test",)
        assert state.reconnects == 0


async def test_a_message_too_large_for_notify_is_refused_before_sending(
    pg_url: StorageUrl,
) -> None:
    async with open_storage(pg_url, TEST_SETTINGS) as storage:
        got: list[str] = []
        storage.db.listen("relay_test", got.append)
        await until(lambda: storage.db.listener_state().status == "listening", 5)
        with pytest.raises(StorageError, match=f"at most {MAX_MESSAGE_BYTES} bytes"):
            await storage.db.send("relay_test", ["fine", "x" * (MAX_MESSAGE_BYTES + 1)])
        with pytest.raises(StorageError, match="NUL"):
            await storage.db.send("relay_test", ["a\0b"])
        await storage.db.send("relay_test", ["after"])
        await until(lambda: got == ["after"], 5, what="only the message sent whole")


async def test_a_dropped_listening_connection_resumes_and_says_so(pg_url: StorageUrl) -> None:
    async with open_storage(pg_url, TEST_SETTINGS) as storage:
        got: list[str] = []
        resumed: list[bool] = []
        storage.db.listen("relay_test", got.append, lambda: resumed.append(True))
        await until(lambda: storage.db.listener_state().status == "listening", 5)
        assert resumed == []  # the first LISTEN is not a resume
        await storage.db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vwell-pbx listener' AND datname = current_database()"
        )
        await until(lambda: resumed == [True], 10, what="listening again")
        state = storage.db.listener_state()
        assert state.status == "listening"
        assert state.reconnects == 1
        assert state.last_error
        await storage.db.send("relay_test", ["again"])
        await until(lambda: got == ["again"], 5)


async def test_pool_use_counts_busy_connections(storage: Storage) -> None:
    use = storage.db.pool_use()
    assert use.max >= use.open >= 1
    assert use.busy == 0
    backend = storage.db.dialect.backend
    if backend == "postgresql":
        slow = asyncio.create_task(storage.db.execute("SELECT pg_sleep(0.5)"))
        await until(lambda: storage.db.pool_use().busy == 1, 5, what="a busy connection")
        await slow
        assert storage.db.pool_use().busy == 0
    assert storage.db.listener_state().status == "unused"
    storage.users.changes()  # watching the users starts the listener on PostgreSQL
    if backend == "postgresql":
        await until(lambda: storage.db.listener_state().status == "listening", 5)
    else:
        assert storage.db.listener_state().status == "unused"
        assert not storage.db.supports_messages
        with pytest.raises(StorageError, match="need PostgreSQL"):
            await storage.db.send("relay_test", ["x"])
