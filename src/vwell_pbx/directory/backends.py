"""The directory's database drivers: PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql).

Each backend runs the one configured query (``directory.query``) for a login and
answers the first row as ``{column name (lower-case): value}``, or ``None``. What they
share:

- **Read-only.** PostgreSQL sessions start with ``default_transaction_read_only = on``
  and every lookup runs in ``BEGIN READ ONLY``; MySQL/MariaDB sessions run
  ``SET SESSION TRANSACTION READ ONLY`` when they connect and every lookup runs in
  ``START TRANSACTION READ ONLY``. A query that tries to write fails in the database.
  Give the directory's database user ``SELECT`` only, too.
- **Parameters only.** The login and login2 travel as the query's parameters: asyncpg
  sends them separately from the SQL text (``$1``, ``$2``); aiomysql has no
  server-side parameters and quotes them itself, for the connection's character set
  (utf8mb4, and honouring ``NO_BACKSLASH_ESCAPES``). Nothing of ours builds SQL text
  from a client's values.
- **Every wait is bounded.** Opening a connection (``connect_timeout``), the query
  (``query_timeout``: asyncpg cancels it on the server; MariaDB's
  ``max_statement_time`` / MySQL's ``max_execution_time`` stop it there too), and the
  whole lookup including the wait for a free connection (their sum plus one second).
  A connection whose lookup was cut short is closed, never reused.
- **One kind of failure.** Any driver error (refused, timed out, authentication, a
  query the database rejects) becomes ``DirectoryUnavailable``, with the DSN shown
  without its password and the password scrubbed from the driver's text.

Pools are created without connections (``min`` 0), so the server starts even while
the directory is down, and answers ``unavailable`` until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import asyncpg
from pydantic import SecretStr

from vwell_pbx.directory.errors import DirectoryUnavailable
from vwell_pbx.directory.query import DirectoryQuery

if TYPE_CHECKING:
    import asyncpg.pool

__all__ = [
    "DirectoryBackend",
    "DirectoryDsn",
    "DirectorySettings",
    "DsnError",
    "MysqlDirectory",
    "PostgresDirectory",
    "open_backend",
]

log = logging.getLogger(__name__)

Kind = Literal["postgresql", "mysql"]
_SCHEMES: Final[Mapping[str, Kind]] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_DEFAULT_PORTS: Final[Mapping[Kind, int]] = {"postgresql": 5432, "mysql": 3306}
_FORM = "expected postgresql://USER@HOST[:PORT]/DATABASE or mysql://USER@HOST[:PORT]/DATABASE"
APPLICATION_NAME = "vwell-pbx directory"


class DsnError(ValueError):
    """The directory's DSN cannot be used (the message never quotes it: it may hold a
    password)."""


@dataclass(frozen=True, slots=True)
class DirectoryDsn:
    """Where the directory is. ``str()`` never shows the password."""

    kind: Kind
    host: str
    port: int
    database: str
    user: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    password: SecretStr | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> DirectoryDsn:
        """``DsnError`` says what the right form is."""
        scheme = text.partition(":")[0].strip().lower()
        kind = _SCHEMES.get(scheme)
        if kind is None:
            raise DsnError(f"unknown database kind; {_FORM}")
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise DsnError(f"the port is not a number; {_FORM}") from None
        database = urllib.parse.unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database or "/" in database:
            raise DsnError(f"a host and a database are required; {_FORM}")
        options = tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        if kind == "mysql":
            unknown = sorted({k for k, _ in options} - {"unix_socket"})
            if unknown:
                raise DsnError(f"unknown option {unknown[0]!r} (MySQL takes unix_socket)")
        return cls(
            kind=kind,
            host=parts.hostname,
            port=port or _DEFAULT_PORTS[kind],
            database=database,
            user=urllib.parse.unquote(parts.username) if parts.username else None,
            options=options,
            password=(SecretStr(urllib.parse.unquote(parts.password)) if parts.password else None),
        )

    def with_password(self, password: SecretStr | None) -> DirectoryDsn:
        """This DSN with ``password`` (``None`` or empty keeps the current one)."""
        if password is None or not password.get_secret_value():
            return self
        return replace(self, password=password)

    def redacted(self) -> str:
        """The DSN without the password, for logs, errors and ``/health``."""
        scheme = "postgresql" if self.kind == "postgresql" else "mysql"
        user = urllib.parse.quote(self.user, safe="") + "@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?{urllib.parse.urlencode(self.options)}" if self.options else ""
        database = urllib.parse.quote(self.database, safe="")
        return f"{scheme}://{user}{host}:{self.port}/{database}{query}"

    def __str__(self) -> str:
        return self.redacted()

    def secret(self) -> str | None:
        """The password, for the driver."""
        return self.password.get_secret_value() if self.password else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    """Bounds of the directory's connections (``[users]`` keys)."""

    pool_size: int = 4
    connect_timeout: float = 3.0
    query_timeout: float = 3.0

    @property
    def lookup_timeout(self) -> float:
        """The most one lookup may take, waiting for a connection included."""
        return self.connect_timeout + self.query_timeout + 1.0


class DirectoryBackend(Protocol):
    """One database driver behind the directory."""

    dsn: DirectoryDsn

    async def lookup(self, login: str, login2: str) -> dict[str, Any] | None:
        """The query's first row for these names (lower-case column names), or ``None``.
        Raises ``DirectoryUnavailable``."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class _Failures:
    """Driver exceptions to ``DirectoryUnavailable`` (password scrubbed, text bounded)."""

    def __init__(self, dsn: DirectoryDsn) -> None:
        self._where = dsn.redacted()
        secret = dsn.secret()
        self._secrets = (secret, urllib.parse.quote(secret, safe="")) if secret else ()

    def convert(self, exc: BaseException, what: str) -> DirectoryUnavailable:
        if isinstance(exc, TimeoutError):
            return DirectoryUnavailable(f"user directory {self._where}: {what} timed out")
        text = str(exc) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return DirectoryUnavailable(f"user directory {self._where}: {what} failed: {text[:300]}")


def _values(order: Sequence[str], login: str, login2: str) -> list[str]:
    given = {"login": login, "login2": login2}
    return [given[name] for name in order]


class PostgresDirectory:
    """The directory on PostgreSQL, through an asyncpg pool."""

    def __init__(self, dsn: DirectoryDsn, query: DirectoryQuery, settings: DirectorySettings):
        self.dsn = dsn
        self._sql, self._order = query.render("numbered")
        self._settings = settings
        self._failures = _Failures(dsn)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def start(self) -> None:
        """Create the pool (no connection is opened yet)."""
        settings = self._settings
        self._pool = await asyncpg.create_pool(
            dsn=self.dsn.redacted(),
            password=self.dsn.secret(),
            min_size=0,
            max_size=settings.pool_size,
            timeout=settings.connect_timeout,
            command_timeout=settings.query_timeout,
            max_inactive_connection_lifetime=60.0,
            server_settings={
                "application_name": APPLICATION_NAME,
                "default_transaction_read_only": "on",
                "statement_timeout": str(int(settings.query_timeout * 1000)),
            },
        )

    async def lookup(self, login: str, login2: str) -> dict[str, Any] | None:
        if self._pool is None:
            raise DirectoryUnavailable(f"user directory {self.dsn}: closed")
        settings = self._settings
        try:
            async with (
                asyncio.timeout(settings.lookup_timeout),
                self._pool.acquire(timeout=settings.lookup_timeout) as conn,
                conn.transaction(readonly=True),
            ):
                row = await conn.fetchrow(
                    self._sql, *_values(self._order, login, login2), timeout=settings.query_timeout
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise self._failures.convert(exc, "the lookup") from None
        return None if row is None else {str(k).lower(): v for k, v in row.items()}

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._settings.query_timeout)
            except TimeoutError:
                pool.terminate()


class MysqlDirectory:
    """The directory on MySQL or MariaDB, through an aiomysql pool."""

    def __init__(self, dsn: DirectoryDsn, query: DirectoryQuery, settings: DirectorySettings):
        self.dsn = dsn
        self._sql, self._order = query.render("pyformat")
        self._settings = settings
        self._failures = _Failures(dsn)
        self._pool: Any = None  # aiomysql.Pool (the package has no type information)
        self._ready: weakref.WeakSet[Any] = weakref.WeakSet()  # connections set up

    async def start(self) -> None:
        """Create the pool (no connection is opened yet)."""
        import aiomysql  # noqa: PLC0415 (only installations with a MySQL directory use it)

        options = dict(self.dsn.options)
        self._pool = await aiomysql.create_pool(
            host=self.dsn.host,
            port=self.dsn.port,
            user=self.dsn.user or "",
            password=self.dsn.secret() or "",
            db=self.dsn.database,
            unix_socket=options.get("unix_socket"),
            minsize=0,
            maxsize=self._settings.pool_size,
            connect_timeout=self._settings.connect_timeout,
            autocommit=True,
            charset="utf8mb4",
            init_command="SET SESSION TRANSACTION READ ONLY",
            pool_recycle=60,
        )

    async def _set_up(self, conn: Any) -> None:
        """Once per connection: stop a long query on the server side too."""
        if conn in self._ready:
            return
        seconds = self._settings.query_timeout
        async with conn.cursor() as cur:
            if "mariadb" in str(conn.get_server_info()).lower():
                await cur.execute(f"SET SESSION max_statement_time = {seconds:.3f}")
            else:
                await cur.execute(f"SET SESSION max_execution_time = {int(seconds * 1000)}")
        self._ready.add(conn)

    async def lookup(self, login: str, login2: str) -> dict[str, Any] | None:
        import pymysql  # noqa: PLC0415 (aiomysql's own dependency)

        if self._pool is None:
            raise DirectoryUnavailable(f"user directory {self.dsn}: closed")
        conn: Any = None
        done = False
        try:
            async with asyncio.timeout(self._settings.lookup_timeout):
                conn = await self._pool.acquire()
                await self._set_up(conn)
                async with conn.cursor() as cur:
                    await cur.execute("START TRANSACTION READ ONLY")
                    await cur.execute(self._sql, _values(self._order, login, login2))
                    row = await cur.fetchone()
                    names = [str(d[0]).lower() for d in cur.description or ()]
                    await cur.execute("ROLLBACK")
            done = True
        except (pymysql.MySQLError, OSError, TimeoutError, RuntimeError) as exc:
            raise self._failures.convert(exc, "the lookup") from None
        finally:
            if conn is not None:
                if not done:  # cut short: its state is unknown, never reuse it
                    conn.close()
                with contextlib.suppress(Exception):
                    await self._pool.release(conn)
        return None if row is None else dict(zip(names, row, strict=False))

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), self._settings.query_timeout)
            except TimeoutError:
                pool.terminate()


async def open_backend(
    dsn: DirectoryDsn, query: DirectoryQuery, settings: DirectorySettings
) -> DirectoryBackend:
    """The backend for ``dsn``'s kind, its pool created (no connection opened yet)."""
    backend: PostgresDirectory | MysqlDirectory
    if dsn.kind == "postgresql":
        backend = PostgresDirectory(dsn, query, settings)
    else:
        backend = MysqlDirectory(dsn, query, settings)
    await backend.start()
    return backend
