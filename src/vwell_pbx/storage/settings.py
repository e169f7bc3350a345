"""Pool sizes and timeouts of a storage connection (the ``[storage]`` keys)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StorageSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    """Bounds of one storage connection; every wait has a timeout.

    - ``pool_size``: PostgreSQL: at most this many connections; SQLite: this many
      reader connections (each with its own thread) besides the one writer.
    - ``pool_min``: PostgreSQL connections kept open when idle.
    - ``connect_timeout``: seconds to open one connection.
    - ``acquire_timeout``: seconds to wait for a free connection (PostgreSQL) or for
      the writer (SQLite) before ``StorageTimeout``.
    - ``query_timeout``: seconds one statement may run before it is cancelled.
    - ``busy_timeout``: SQLite: seconds to wait for another process's write lock.
    - ``queue_size``: SQLite: statements that may wait for each connection's thread;
      past it ``StorageBusy`` is raised at once.
    - ``listen_check_seconds``: PostgreSQL: how often the LISTEN connection is checked
      (a silently dead one is noticed within about this time plus ``query_timeout``).
    - ``application_name``: PostgreSQL: how the pool's connections show in
      ``pg_stat_activity`` (the LISTEN connection adds `` listener``); a server
      instance puts its name in it.
    """

    pool_size: int = 4
    pool_min: int = 1
    connect_timeout: float = 5.0
    acquire_timeout: float = 5.0
    query_timeout: float = 10.0
    busy_timeout: float = 5.0
    queue_size: int = 256
    listen_check_seconds: float = 5.0
    application_name: str = "vwell-pbx"
