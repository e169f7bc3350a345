"""PostgreSQL that is absent, silent or stopped mid-run: a clear error in bounded time,
never a hang, and recovery when it comes back."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.storage.fixtures import TEST_SETTINGS, create_pg_database, wait_until
from tests.storage.pg_cluster import PgCluster, free_port, pg_bindir
from vwell_pbx.storage import (
    StorageUnavailable,
    StorageUrl,
    open_storage,
)
from vwell_pbx.users import UserDirectory

SHORT = dataclasses.replace(
    TEST_SETTINGS, connect_timeout=0.5, acquire_timeout=1.0, query_timeout=1.0
)


async def test_nothing_listening_is_a_clear_error_at_once() -> None:
    url = StorageUrl.parse(f"postgresql://vwell@127.0.0.1:{free_port()}/x").with_password("pw-77")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        async with open_storage(url, SHORT):
            pass
    assert time.monotonic() - started < 3
    assert "postgresql://vwell:***@127.0.0.1" in str(info.value)
    assert "pw-77" not in str(info.value)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_server_times_out_instead_of_hanging(silent_port: int) -> None:
    url = StorageUrl.parse(f"postgresql://vwell@127.0.0.1:{silent_port}/x")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="timed out"):
        async with open_storage(url, SHORT):
            pass
    assert time.monotonic() - started < 5


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own, since it gets stopped."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_stopped_mid_run_fails_fast_then_recovers(own_cluster: PgCluster) -> None:
    url = await create_pg_database(own_cluster)
    async with open_storage(url, SHORT) as storage:
        directory = UserDirectory(storage.users, scrypt_params=(16, 8, 1))
        await directory.add("Agent", "A", sha1_hex="0" * 40)
        await wait_until(lambda: directory.generation() is not None)

        await asyncio.to_thread(lambda: own_cluster.stop(remove=False, mode="fast"))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as info:
            await directory.get("Agent", "A")
        assert time.monotonic() - started < 5
        assert own_cluster.password not in str(info.value)
        # Change notifications are gone: callers must ask the database (and fail closed).
        await wait_until(lambda: directory.generation() is None, within=10)

        await asyncio.to_thread(own_cluster.start)  # the same port again
        record = await directory.get("Agent", "A")
        assert record is not None
        await wait_until(lambda: directory.generation() is not None, within=20)


async def test_changes_during_a_listener_outage_are_not_missed(
    pg_cluster: PgCluster,
) -> None:
    from vwell_pbx.api.auth import Authenticator, AuthFailed, LoginThrottle

    url = await create_pg_database(pg_cluster)
    async with open_storage(url, TEST_SETTINGS) as storage, open_storage(url, TEST_SETTINGS) as cli:
        directory = UserDirectory(storage.users, scrypt_params=(16, 8, 1))
        await directory.add("Agent", "A", sha1_hex="1" * 40)
        await wait_until(lambda: directory.generation() is not None)
        auth = Authenticator(directory, cache_seconds=60, throttle=LoginThrottle())
        await auth.authenticate("Agent", "A", "1" * 40, "192.0.2.1")  # cached now
        before = directory.generation()
        # The LISTEN connection is killed; once the server noticed (at once here: the
        # socket closes; a silently dead one takes up to listen_check_seconds plus
        # query_timeout), a removal is seen whether the listener is still down
        # (generation None: ask the database) or back (every generation moved).
        await storage.db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vwell-pbx listener' AND datname = current_database()"
        )
        await wait_until(lambda: directory.generation() != before)
        await UserDirectory(cli.users).remove("Agent", "A")
        with pytest.raises(AuthFailed):
            await auth.authenticate("Agent", "A", "1" * 40, "192.0.2.1")
        await wait_until(lambda: directory.generation() not in (None, before), within=10)


async def test_the_server_answers_unavailable_while_its_database_is_down(
    own_cluster: PgCluster, tmp_path: Path
) -> None:
    """A request that needs the database while PostgreSQL is stopped answers the
    documented ``unavailable`` code in bounded time (never ``internal``, never a hang),
    and the same request succeeds once the database is back."""
    import aiohttp

    from tests.support import AGENT, ApiClient, add_test_users, make_config
    from vwell_pbx.simulator import PbxSimulator
    from vwell_pbx.web.server import serving

    url = await create_pg_database(own_cluster)
    assert url.password is not None
    storage = {
        "url": url.dsn(),
        "password": url.password.get_secret_value(),
        "connect_timeout": 0.5,
        "acquire_timeout": 1.0,
        "query_timeout": 1.0,
    }
    async with PbxSimulator(username="admin", secret="admin") as simulator:
        config = make_config(tmp_path, simulator.port, storage=storage)
        await add_test_users(config)
        async with serving(config, wait_for_pbx=5) as server, aiohttp.ClientSession() as http:
            api = ApiClient(server, http)
            stranger = {**AGENT, "login": "Nobody"}  # never cached: needs the database
            ping = {"callbackAwait": True, "fields": {"action": "Ping"}}
            assert (await api.post("send", creds=stranger, **ping))["errCode"] == "auth_failed"

            await asyncio.to_thread(lambda: own_cluster.stop(remove=False, mode="fast"))
            started = time.monotonic()
            answer = await api.post("send", creds=stranger, **ping)
            assert answer["errCode"] == "unavailable", answer
            assert time.monotonic() - started < 5
            assert own_cluster.password not in str(answer)

            await asyncio.to_thread(own_cluster.start)  # the pool reconnects on next use
            answer = await api.post("send", creds=AGENT, **ping)
            assert answer["err"] is None, answer
