"""Shared fixtures: the real PBX simulator on loopback and the real server in front of it.

Nothing here is a mock: ``server`` is the product started by ``web.server.serving`` on
free loopback ports, talking AMI over TCP to ``simulator``; ``api`` speaks HTTP and
WebSocket to it with aiohttp's client.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import ApiClient, add_test_users, fast_simulator, make_config
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer, serving

# The storage fixtures (pg_cluster, backend, storage_url, storage) for every test folder.
pytest_plugins = ["tests.storage.fixtures"]


@pytest.fixture
async def simulator() -> AsyncIterator[PbxSimulator]:
    """A PBX simulator on a free loopback port with test-sized delays."""
    async with fast_simulator() as sim:
        yield sim


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """Override in a test module to change the server's configuration."""
    return {}


@pytest.fixture
async def server(
    tmp_path: Path, simulator: PbxSimulator, server_overrides: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    """The real server, logged in to ``simulator``, with the test users."""
    config = make_config(tmp_path, simulator.port, **server_overrides)
    await add_test_users(config)
    async with serving(config, wait_for_pbx=5) as running:
        yield running


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[ApiClient]:
    """A client for ``server``; WebSockets opened through it are closed afterwards."""
    async with aiohttp.ClientSession() as session:
        yield ApiClient(server, session)


#: Fixtures that start a database server of their own (a throw-away PostgreSQL or
#: MariaDB): a test that needs one is ``slow`` without saying so itself. The storage and
#: directory fixtures that pick PostgreSQL or MariaDB by parameter mark that parameter.
DATABASE_SERVER_FIXTURES = frozenset({"pg_cluster", "own_cluster", "mariadb"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that needs a database server (``DATABASE_SERVER_FIXTURES``);
    skip ``soak`` tests (the long variants, registered in pyproject.toml) unless
    ``VWELL_SOAK=1``."""
    for item in items:
        if DATABASE_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("VWELL_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: run with VWELL_SOAK=1 (see CONTRIBUTING.md)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
