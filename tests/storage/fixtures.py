"""Storage fixtures, loaded for the whole suite (``pytest_plugins`` in tests/conftest.py).

- ``pg_cluster`` (session): one throw-away PostgreSQL cluster for the run
  (``pg_cluster.PgCluster``). Without PostgreSQL installed the tests that need it are
  skipped, except under CI (``CI`` set), where that is a failure: ``test.sh`` installs it.
- ``storage_backend`` / ``storage_url``: parametrised over ``sqlite`` and ``postgresql``, so a
  test that asks for ``storage_url`` runs on both; each gets an empty database of its
  own (a file in ``tmp_path``, or ``CREATE DATABASE`` on the cluster).
- ``storage``: that database opened and migrated, with short test timeouts.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.storage.pg_cluster import PgCluster, pg_bindir
from vwell_pbx.storage import Storage, StorageSettings, StorageUrl, open_storage

#: Timeouts short enough that a test about a hang fails fast, long enough for a busy CI.
TEST_SETTINGS = StorageSettings(
    pool_size=4,
    pool_min=1,
    connect_timeout=5.0,
    acquire_timeout=5.0,
    query_timeout=10.0,
    busy_timeout=5.0,
    queue_size=256,
    listen_check_seconds=1.0,
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster."""
    bindir = pg_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (bash test.sh installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster.create(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()


async def create_pg_database(cluster: PgCluster) -> StorageUrl:
    """A new empty database on ``cluster``; its URL carries the password."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(cluster.url(), password=cluster.password)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    finally:
        await conn.close()
    return StorageUrl.parse(cluster.url(name)).with_password(cluster.password)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


async def drop_pg_database(cluster: PgCluster, url: StorageUrl) -> None:
    """Drop a database made by ``create_pg_database`` (its connections are cut).

    Each one is a copy of template0 (about 8 MB of files): a session creates a few
    hundred, and leaving them all for the cluster's removal made that take half a minute.
    """
    conn = await asyncpg.connect(cluster.url(), password=cluster.password)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def storage_url(
    storage_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StorageUrl]:
    """An empty database of ``storage_backend`` (a PostgreSQL one is dropped afterwards)."""
    if storage_backend == "sqlite":
        yield StorageUrl.sqlite(tmp_path / "vwell.sqlite3")
        return
    cluster = request.getfixturevalue("pg_cluster")
    url = await create_pg_database(cluster)
    yield url
    await drop_pg_database(cluster, url)


@pytest.fixture
async def storage(storage_url: StorageUrl) -> AsyncIterator[Storage]:
    """``storage_url`` opened and migrated."""
    async with open_storage(storage_url, TEST_SETTINGS) as opened:
        yield opened


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for ``condition()`` to hold (checked every 5 ms), at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)
