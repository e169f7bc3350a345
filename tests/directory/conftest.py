"""Fixtures of the SQL user directory's tests (tests/directory/crm.py has the rest).

- ``mariadb`` (session): one throw-away MariaDB server (tests/directory/mariadb.py);
  skipped without ``mariadb-server``, except under CI, where that is a failure.
- ``crm``: parametrised over ``postgresql`` and ``mariadb``, so every test that asks
  for it runs on both: a new database with ``crm_users`` and a user allowed to read it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.directory.crm import CrmDatabase, mariadb_crm, postgresql_crm
from tests.directory.mariadb import MariaDbServer, mariadb_binaries


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    """The session's MariaDB server."""
    if mariadb_binaries() is None:
        message = "MariaDB is not installed (bash test.sh installs Debian's mariadb-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = MariaDbServer.create()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.slow),
        pytest.param("mariadb", marks=pytest.mark.slow),
    ]
)
async def crm(request: pytest.FixtureRequest) -> AsyncIterator[CrmDatabase]:
    """A CRM database with ``crm_users`` (empty) on each kind of server."""
    if request.param == "postgresql":
        database = await postgresql_crm(request.getfixturevalue("pg_cluster"))
    else:
        database = await mariadb_crm(request.getfixturevalue("mariadb"))
    try:
        yield database
    finally:
        if database._pg_admin is not None:
            await database._pg_admin.close()
