"""A CRM's database for the SQL user directory's tests: the table of users the way the
original's CRM kept them, and a read-only database user, on PostgreSQL or MariaDB."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from tests.directory.mariadb import MariaDbServer
from tests.storage.fixtures import create_pg_database
from tests.storage.pg_cluster import PgCluster

#: What the original's CRM kept: the account, the person, the password's SHA-1 in hex.
CRM_TABLE = """
CREATE TABLE crm_users (
    login VARCHAR(256) NOT NULL,
    login2 VARCHAR(256) NOT NULL,
    pass_sha1 VARCHAR(64),
    role VARCHAR(64),
    phones VARCHAR(200)
)"""

#: The directory's query for that table (role and extensions are optional columns).
CRM_QUERY = (
    "SELECT pass_sha1 AS sha1, role, phones AS extensions FROM crm_users "
    "WHERE login = :login AND login2 = :login2"
)


def _literal(value: str | None) -> str:
    """An SQL literal for the tests' own set-up values (never a client's input)."""
    if value is None:
        return "NULL"
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class CrmDatabase:
    """A CRM's database: where it is, the reader's password, and set-up helpers."""

    kind: str  # "postgresql" or "mariadb"
    host: str
    port: int
    database: str
    reader: str
    password: str
    _pg_admin: asyncpg.Connection | None = None  # type: ignore[type-arg]
    _mariadb: MariaDbServer | None = None

    def dsn(self, port: int | None = None) -> str:
        """The directory's DSN (without the password), through ``port`` if given."""
        scheme = "postgresql" if self.kind == "postgresql" else "mysql"
        return f"{scheme}://{self.reader}@{self.host}:{port or self.port}/{self.database}"

    async def execute(self, statements: str) -> None:
        """Run SQL as the database's owner (set-up only)."""
        if self._pg_admin is not None:
            await self._pg_admin.execute(statements)
        else:
            assert self._mariadb is not None
            await asyncio.to_thread(self._mariadb.sql, f"USE {self.database};\n{statements}")

    async def rows(self) -> list[tuple[str, ...]]:
        """Every row of ``crm_users`` (as text), ordered."""
        query = "SELECT login, login2, pass_sha1, role, phones FROM crm_users ORDER BY 1, 2"
        if self._pg_admin is not None:
            return [tuple(r) for r in await self._pg_admin.fetch(query)]
        assert self._mariadb is not None
        out = await asyncio.to_thread(self._mariadb.sql, f"USE {self.database}; {query}")
        return [tuple(line.split("\t")) for line in out.splitlines()]

    async def add_user(
        self,
        login: str,
        login2: str,
        sha1: str | None,
        *,
        role: str | None = None,
        phones: str | None = None,
    ) -> None:
        """Insert one CRM user (as the CRM itself would)."""
        values = ", ".join(_literal(v) for v in (login, login2, sha1, role, phones))
        await self.execute(
            f"INSERT INTO crm_users (login, login2, pass_sha1, role, phones) VALUES ({values})"
        )

    async def set_sha1(self, login: str, sha1: str) -> None:
        """Change a user's password in the CRM."""
        await self.execute(
            f"UPDATE crm_users SET pass_sha1 = {_literal(sha1)} WHERE login = {_literal(login)}"
        )


async def postgresql_crm(cluster: PgCluster) -> CrmDatabase:
    url = await create_pg_database(cluster)
    assert url.database is not None and url.password is not None
    reader = f"r_{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(12)
    admin = await asyncpg.connect(url.dsn(), password=url.password.get_secret_value())
    await admin.execute(CRM_TABLE)
    await admin.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{password}'")
    await admin.execute(f"GRANT SELECT ON crm_users TO {reader}")
    return CrmDatabase(
        "postgresql", "127.0.0.1", cluster.port, url.database, reader, password, _pg_admin=admin
    )


async def mariadb_crm(server: MariaDbServer) -> CrmDatabase:
    name = f"crm_{uuid.uuid4().hex[:12]}"
    reader = f"r_{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(12)
    await asyncio.to_thread(
        server.sql,
        f"CREATE DATABASE {name} CHARACTER SET utf8mb4; USE {name}; {CRM_TABLE};"
        f"CREATE USER '{reader}'@'127.0.0.1' IDENTIFIED BY '{password}';"
        f"GRANT SELECT, EXECUTE ON {name}.* TO '{reader}'@'127.0.0.1';",
    )
    return CrmDatabase("mariadb", "127.0.0.1", server.port, name, reader, password, _mariadb=server)


def directory_overrides(
    crm: CrmDatabase,
    *,
    query: str = CRM_QUERY,
    port: int | None = None,
    extra: dict[str, object] | None = None,
) -> dict[str, object]:
    """``[users]`` for a server reading ``crm``'s users."""
    return {
        "users": {
            "backend": "sql",
            "dsn": crm.dsn(port),
            "password": crm.password,
            "query": query,
            "connect_timeout": 1,
            "query_timeout": 1,
            **(extra or {}),
        }
    }
