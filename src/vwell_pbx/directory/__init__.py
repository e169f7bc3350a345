"""The external user directory: users read from another application's database.

``[users] backend = "sql"`` makes the server check credentials against a table of a
CRM (PostgreSQL, MySQL or MariaDB) with one configured, parameterised, read-only query,
as the original product did, instead of its own user table::

    query = DirectoryQuery.parse(
        "SELECT pass AS sha1 FROM staff WHERE login = :login AND fio = :login2"
    )
    backend = await open_backend(DirectoryDsn.parse(dsn), query, DirectorySettings())
    directory = SqlDirectory(backend, default_role="operator", recheck_seconds=60)
    account = await directory.get("Agent", "Иванов И.И.")  # None: no such user

- ``query``: checking and rendering the administrator's query (``:login``, ``:login2``);
- ``backends``: the drivers (asyncpg, aiomysql), read-only sessions, bounded waits;
- ``sql``: ``SqlDirectory``, the rules: columns, constant-time comparison, versions for
  the authenticator's cache, behaviour while the database is down;
- ``errors``: ``DirectoryUnavailable`` (answered ``unavailable``).

This part sits beside ``users`` (the local directory): it imports the exception root
and the storage layer's errors, nothing else of the server.
"""

from vwell_pbx.directory.backends import (
    DirectoryBackend,
    DirectoryDsn,
    DirectorySettings,
    DsnError,
    open_backend,
)
from vwell_pbx.directory.errors import DirectoryUnavailable
from vwell_pbx.directory.query import DirectoryQuery, QueryError
from vwell_pbx.directory.sql import DirectoryAccount, SqlDirectory

__all__ = [
    "DirectoryAccount",
    "DirectoryBackend",
    "DirectoryDsn",
    "DirectoryQuery",
    "DirectorySettings",
    "DirectoryUnavailable",
    "DsnError",
    "QueryError",
    "SqlDirectory",
    "open_backend",
]
