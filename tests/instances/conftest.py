"""Fixtures of the several-instances tests: a fresh PostgreSQL database and a
``Deployment`` of server processes on it (tests/instances/harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.instances.harness import Deployment
from tests.storage.fixtures import create_pg_database
from tests.storage.pg_cluster import PgCluster


@pytest.fixture
async def deployment(tmp_path: Path, pg_cluster: PgCluster) -> AsyncIterator[Deployment]:
    """An empty deployment on a new database of the session's cluster: ``add`` instances,
    then ``start`` them. Every instance still running is stopped afterwards."""
    url = await create_pg_database(pg_cluster)
    deployed = Deployment(tmp_path, url)
    try:
        yield deployed
    finally:
        await deployed.aclose()
