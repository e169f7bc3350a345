"""Login throughput with the SQL user directory (``[users] backend = "sql"``), cold and
cached, on PostgreSQL and on MariaDB; the local directory (scrypt) for comparison.

    PYTHONPATH=.:src .venv/bin/python -m bench.directory_logins [--quick]

It starts a throw-away PostgreSQL cluster and a throw-away MariaDB server
(``tests/storage/pg_cluster``, ``tests/directory/mariadb``) on loopback, puts 10,000
users into a CRM-like table on each, and measures two things:

- **the check itself** (``Authenticator`` on ``SqlDirectory``, in this process): what a
  login costs the server's event loop. *Cold*: every login is another user and the
  cache is off (``auth_cache_seconds = 0``), so each one is a query; *cached*: 100
  users logging in again and again with the cache on (a hit costs no query while the
  recheck window has not moved). By 1 task (latency) and 16 concurrent tasks
  (throughput; the directory's pool has 4 connections, the default).
- **the whole server** (``vwell-pbx serve`` in its own process, pinned to one core):
  ``whoami`` over ``POST /api`` from 16 keep-alive HTTP clients on the other core, cold
  and cached, as above.

Figures: operations per second, latency p50/p99, and this process's CPU per login for
the in-process part. The machine's core count is printed. Nothing here asserts
anything; docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pydantic import SecretStr

from bench.common import CORES, LOAD_CPU, ROOT, SERVER_CPU, percentile, pin_self, print_table
from tests.directory.mariadb import MariaDbServer
from tests.storage.pg_cluster import PgCluster, free_port
from vwell_pbx.api.auth import Authenticator, LoginThrottle
from vwell_pbx.directory import (
    DirectoryDsn,
    DirectoryQuery,
    DirectorySettings,
    SqlDirectory,
    open_backend,
)
from vwell_pbx.storage import StorageUrl, open_storage
from vwell_pbx.users import UserDirectory

USERS = 10_000
HOT_USERS = 100
CONCURRENCY = 16
TABLE = (
    "CREATE TABLE crm_users (login VARCHAR(64) NOT NULL, login2 VARCHAR(64) NOT NULL, "
    "pass_sha1 VARCHAR(40) NOT NULL, role VARCHAR(32), phones VARCHAR(64), "
    "PRIMARY KEY (login, login2))"
)
QUERY = (
    "SELECT pass_sha1 AS sha1, role, phones AS extensions FROM crm_users "
    "WHERE login = :login AND login2 = :login2"
)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _user(i: int) -> dict[str, str]:
    return {"login": "Agent", "login2": f"Оператор {i:05d}", "sha1": _sha1(f"pw-{i}")}


def _rows() -> list[tuple[str, str, str, str, str]]:
    return [
        (u["login"], u["login2"], u["sha1"], "operator", str(200 + i % 500))
        for i, u in enumerate(map(_user, range(USERS)))
    ]


async def _postgres_crm(cluster: PgCluster) -> DirectoryDsn:
    admin = await asyncpg.connect(cluster.url(), password=cluster.password)
    try:
        await admin.execute("DROP DATABASE IF EXISTS crm")
        await admin.execute("CREATE DATABASE crm TEMPLATE template0")
    finally:
        await admin.close()
    conn = await asyncpg.connect(cluster.url("crm"), password=cluster.password)
    try:
        await conn.execute(TABLE)
        await conn.copy_records_to_table("crm_users", records=_rows())
        await conn.execute("ANALYZE crm_users")
    finally:
        await conn.close()
    dsn = DirectoryDsn.parse(cluster.url("crm"))
    return dsn.with_password(SecretStr(cluster.password))


def _mariadb_crm(server: MariaDbServer) -> DirectoryDsn:
    values = ",".join(
        "('{}','{}','{}','{}','{}')".format(*row) for row in _rows()
    )  # our own constants: no quote in them
    server.sql(
        f"CREATE DATABASE crm CHARACTER SET utf8mb4; USE crm; {TABLE};"
        f"INSERT INTO crm_users VALUES {values};"
        "CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'bench-pw';"
        "GRANT SELECT ON crm.* TO 'bench'@'127.0.0.1';"
    )
    dsn = DirectoryDsn.parse(f"mysql://bench@127.0.0.1:{server.port}/crm")
    return dsn.with_password(SecretStr("bench-pw"))


async def _measure(
    login: Callable[[int], Awaitable[object]], *, tasks: int, seconds: float
) -> dict[str, float]:
    """Run ``login(i)`` from ``tasks`` tasks for ``seconds``; ops/s, latency, CPU/op."""
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await login(next(counter))
            latencies.append(time.perf_counter() - started)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    return {
        "logins/s": len(latencies) / elapsed,
        "p50 ms": percentile(latencies, 0.5) * 1000,
        "p99 ms": percentile(latencies, 0.99) * 1000,
        "CPU µs/login": cpu / max(1, len(latencies)) * 1e6,
    }


def _authenticator(directory: Any, cache_seconds: float) -> Authenticator:
    return Authenticator(
        directory,
        cache_seconds=cache_seconds,
        throttle=LoginThrottle(),
        max_cache_entries=USERS,
    )


async def _in_process(name: str, directory: Any, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mode, cache in (("cold", 0.0), ("cached", 600.0)):
        auth = _authenticator(directory, cache)
        users = USERS if mode == "cold" else HOT_USERS
        for index in range(HOT_USERS if mode == "cached" else 0):  # warm the cache
            u = _user(index)
            await auth.authenticate(u["login"], u["login2"], u["sha1"], "127.0.0.1")

        async def login(i: int, auth: Authenticator = auth, users: int = users) -> None:
            u = _user(i % users)
            await auth.authenticate(u["login"], u["login2"], u["sha1"], "127.0.0.1")

        for tasks in (1, CONCURRENCY):
            figures = await _measure(login, tasks=tasks, seconds=seconds)
            rows.append({"directory": name, "mode": mode, "tasks": tasks, **figures})
    return rows


async def _local_directory(folder: Path, seconds: float) -> list[dict[str, Any]]:
    """The local directory (scrypt) on SQLite, for comparison: 100 users."""
    async with open_storage(StorageUrl.sqlite(folder / "local.sqlite3")) as storage:
        directory = UserDirectory(storage.users)
        for i in range(HOT_USERS):
            u = _user(i)
            await directory.add(u["login"], u["login2"], sha1_hex=u["sha1"])
        rows = []
        for mode, cache in (("cold", 0.0), ("cached", 600.0)):
            auth = _authenticator(directory, cache)
            for i in range(HOT_USERS if mode == "cached" else 0):
                u = _user(i)
                await auth.authenticate(u["login"], u["login2"], u["sha1"], "127.0.0.1")

            async def login(i: int, auth: Authenticator = auth) -> None:
                u = _user(i % HOT_USERS)
                await auth.authenticate(u["login"], u["login2"], u["sha1"], "127.0.0.1")

            for tasks in (1, CONCURRENCY):
                figures = await _measure(login, tasks=tasks, seconds=seconds)
                rows.append(
                    {"directory": "local (scrypt)", "mode": mode, "tasks": tasks, **figures}
                )
        return rows


@contextlib.asynccontextmanager
async def _server(folder: Path, dsn: DirectoryDsn, cache_seconds: float) -> AsyncIterator[str]:
    """``vwell-pbx serve`` reading ``dsn``'s users, pinned to ``SERVER_CPU``."""
    port = free_port()
    config = folder / f"server-{port}.toml"
    config.write_text(
        f'[server]\nhttp = "127.0.0.1:{port}"\nws = ""\nlog_level = "warning"\n'
        f'[storage]\nurl = "sqlite:{folder / f"s-{port}.sqlite3"}"\n'
        "[limits]\nrequests_per_second = 1000000\nburst = 1000000\n"
        f'[users]\nbackend = "sql"\ndsn = "{dsn.redacted()}"\nquery = "{QUERY}"\n'
        f"auth_cache_seconds = {cache_seconds}\n"
        # No PBX is needed for whoami: this one is never reachable.
        f'[[pbx]]\nname = "none"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        'username = "u"\nsecret = "s"\nreconnect_max = 30\n',
        encoding="utf-8",
    )
    env = {**os.environ, "VWELL_PBX_USERS_PASSWORD": dsn.secret() or ""}
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(ROOT / "src")))
    process = await asyncio.create_subprocess_exec(
        "taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "vwell_pbx.cli", "serve",
        "--config", str(config), env=env, cwd=folder,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/health") as response:
                        await response.read()
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()


async def _over_http(
    folder: Path, name: str, dsn: DirectoryDsn, seconds: float
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mode, cache in (("cold", 0), ("cached", 600)):
        users = USERS if mode == "cold" else HOT_USERS
        async with _server(folder, dsn, cache) as url:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def login(
                    i: int, session: aiohttp.ClientSession = session, users: int = users
                ) -> None:
                    body = json.dumps({"method": "whoami", "argument": _user(i % users)})
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as response:
                        answer = await response.json()
                    if answer["err"] is not None:
                        raise RuntimeError(answer["err"])

                for i in range(HOT_USERS):  # warm up (and fill the cache when it is on)
                    await login(i)
                figures = await _measure(login, tasks=CONCURRENCY, seconds=seconds)
        figures.pop("CPU µs/login")  # this process is the client here
        rows.append({"directory": name, "mode": mode, "HTTP clients": CONCURRENCY, **figures})
    return rows


async def main(quick: bool) -> None:
    seconds = 1.5 if quick else 5.0
    print(f"machine: {CORES} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    pin_self(LOAD_CPU)
    cluster = await asyncio.to_thread(PgCluster.create)
    mariadb = await asyncio.to_thread(MariaDbServer.create)
    folder = Path(tempfile.mkdtemp(prefix="vwell-bench-dir-"))
    try:
        dsns = {
            "postgresql": await _postgres_crm(cluster),
            "mariadb": await asyncio.to_thread(_mariadb_crm, mariadb),
        }
        in_process: list[dict[str, Any]] = []
        for name, dsn in dsns.items():
            backend = await open_backend(dsn, DirectoryQuery.parse(QUERY), DirectorySettings())
            try:
                in_process += await _in_process(name, SqlDirectory(backend), seconds)
            finally:
                await backend.aclose()
        in_process += await _local_directory(folder, seconds)
        print_table("The check itself (Authenticator, in one process)", in_process)
        http: list[dict[str, Any]] = []
        for name, dsn in dsns.items():
            http += await _over_http(folder, name, dsn, seconds)
        print_table(f"The whole server (whoami over POST /api, server on CPU {SERVER_CPU})", http)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        await asyncio.to_thread(mariadb.stop)
        await asyncio.to_thread(cluster.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1.5 s per figure instead of 5")
    asyncio.run(main(parser.parse_args().quick))
