"""``/health`` and ``/metrics`` show the database, on each backend, without its password;
a database that stops answering makes ``/health`` say so (503) within its probe bound,
and it recovers by itself."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests.storage.fixtures import create_pg_database
from tests.storage.pg_cluster import PgCluster
from tests.storage.test_server_storage import storage_overrides
from tests.support import add_test_users, make_config, until
from tests.support.cable import Cable
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import LATEST, StorageUrl
from vwell_pbx.web.server import serving


async def test_health_shows_the_database(
    storage_url: StorageUrl, simulator: PbxSimulator, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        simulator.port,
        storage=storage_overrides(storage_url),
        instances={"name": "unit-1"},
    )
    await add_test_users(config)
    async with (
        serving(config, wait_for_pbx=5) as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(server.http_url + "/health") as response:
            health = await response.json()
            assert response.status == 200, health
        database = health["database"]
        assert database["backend"] == storage_url.backend
        assert database["reachable"] is True
        assert database["schemaVersion"] == LATEST
        assert database["error"] is None
        assert database["pool"]["max"] == config.storage.pool_size + (
            1 if storage_url.backend == "sqlite" else 0  # SQLite: the readers and the writer
        )
        assert health["instance"]["name"] == "unit-1"
        if storage_url.backend == "postgresql":
            assert database["location"] == storage_url.dsn()
            assert database["listener"]["status"] == "listening"
            assert health["instance"]["relay"]["channel"] == "vwell_events"
        else:
            assert database["location"] == f"sqlite:{storage_url.path}"
            assert database["listener"]["status"] == "unused"
            assert health["instance"]["relay"] is None  # one instance: nothing to relay
        async with session.get(server.http_url + "/metrics") as response:
            metrics = await response.text()
        assert "vwell_storage_up 1.0" in metrics
        assert "vwell_storage_statements_total" in metrics
        if storage_url.password is not None:
            secret = storage_url.password.get_secret_value()
            assert secret not in str(health) + metrics


async def test_health_says_when_the_database_stops_answering(
    pg_cluster: PgCluster, simulator: PbxSimulator, tmp_path: Path
) -> None:
    url = await create_pg_database(pg_cluster)
    async with Cable("127.0.0.1", pg_cluster.port) as cable:
        through = StorageUrl.parse(f"postgresql://vwell@127.0.0.1:{cable.port}/{url.database}")
        through = through.with_password(url.password)
        config = make_config(
            tmp_path,
            simulator.port,
            storage={**storage_overrides(through), "connect_timeout": 1, "query_timeout": 1},
        )
        async with (
            serving(config, wait_for_pbx=5) as server,
            aiohttp.ClientSession() as session,
        ):

            async def health() -> tuple[int, dict[str, object]]:
                async with session.get(server.http_url + "/health") as response:
                    return response.status, await response.json()

            assert (await health())[0] == 200
            cable.cut("silent")  # the connections are gone; new ones get no answer
            answers: list[tuple[int, dict[str, object]]] = []

            async def degraded() -> bool:
                started = time.monotonic()
                answers.append(await health())
                assert time.monotonic() - started < 4  # the probe is bounded (2 s)
                database = answers[-1][1]["database"]
                assert isinstance(database, dict)
                return database["reachable"] is False

            # The last probe is reused for a second, so the next ones tell. (The lost
            # LISTEN connection may make it 503 even before.)
            await until(degraded, 10, what="/health to find the database gone", every=0.2)
            assert answers[-1][0] == 503
            body = answers[-1][1]
            assert body["status"] == "degraded"
            database = body["database"]
            assert isinstance(database, dict)
            assert database["reachable"] is False
            assert database["error"]
            cable.mend()

            async def healthy() -> bool:
                return (await health())[0] == 200

            await until(healthy, 20, what="/health to recover", every=0.2)
