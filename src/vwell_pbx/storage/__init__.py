"""Storage: one database (SQLite or PostgreSQL) for users, lock-outs, calls, SMS and keys.

::

    async with open_storage(url, settings) as storage:  # migrates to the latest schema
        row = await storage.users.get("Agent", "Иванов И.И.")

``open_storage`` opens the backend named by the URL (``sqlite:PATH`` or
``postgresql://...``), applies pending migrations (``upgrade=True``) or only checks
the version, and closes every connection at the end of the block. Repositories are
small and domain-named (``UserStore``, ``LockoutStore``, ``CallStore``, ``KeyStore``,
``SmsStore``); they speak SQL through the ``Database`` interface and never see which
backend runs it. Backend modules (``sqlite``, ``postgres``) are imported only when used.

This layer sits beside the others: it imports nothing of the server but the exception
root. See docs/architecture.md ("Storage") for the design and how to add a table.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from vwell_pbx.storage.calls import (
    CallHistoryWriter,
    CallRecord,
    CallStore,
    HistoryPosition,
    HistoryQuery,
    StoredCall,
)
from vwell_pbx.storage.database import ChangeFeed, Database, Transaction
from vwell_pbx.storage.errors import (
    IntegrityViolation,
    SchemaError,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    StorageNotEmpty,
    StorageTimeout,
    StorageUnavailable,
    StorageUrlError,
)
from vwell_pbx.storage.keys import KeyStore
from vwell_pbx.storage.lockouts import LockoutStore, StoredLockout
from vwell_pbx.storage.migrations import (
    LATEST,
    SchemaStatus,
    refuse_newer,
    schema_status,
    upgrade,
)
from vwell_pbx.storage.settings import StorageSettings
from vwell_pbx.storage.sms import (
    Enqueued,
    SmsHistoryQuery,
    SmsRow,
    SmsStore,
    SmsVisibility,
)
from vwell_pbx.storage.url import StorageUrl
from vwell_pbx.storage.users import UserRow, UserStore

__all__ = [
    "LATEST",
    "CallHistoryWriter",
    "CallRecord",
    "CallStore",
    "ChangeFeed",
    "Database",
    "Enqueued",
    "HistoryPosition",
    "HistoryQuery",
    "IntegrityViolation",
    "KeyStore",
    "LockoutStore",
    "SchemaError",
    "SchemaStatus",
    "SchemaTooNew",
    "SmsHistoryQuery",
    "SmsRow",
    "SmsStore",
    "SmsVisibility",
    "Storage",
    "StorageBusy",
    "StorageError",
    "StorageNotEmpty",
    "StorageSettings",
    "StorageTimeout",
    "StorageUnavailable",
    "StorageUrl",
    "StorageUrlError",
    "StoredCall",
    "StoredLockout",
    "Transaction",
    "UserRow",
    "UserStore",
    "open_database",
    "open_storage",
    "schema_status",
    "upgrade",
]


async def open_database(url: StorageUrl, settings: StorageSettings | None = None) -> Database:
    """Connect to ``url`` (no migration). Close the result with ``aclose``."""
    settings = settings or StorageSettings()
    if url.backend == "sqlite":
        from vwell_pbx.storage.sqlite import open_sqlite  # noqa: PLC0415 (lazy backend)

        return await open_sqlite(url, settings)
    from vwell_pbx.storage.postgres import open_postgres  # noqa: PLC0415 (lazy backend)

    return await open_postgres(url, settings)


@dataclass(frozen=True, slots=True)
class Storage:
    """An open database and its repositories."""

    db: Database
    users: UserStore
    lockouts: LockoutStore
    calls: CallStore
    keys: KeyStore
    sms: SmsStore
    schema: SchemaStatus

    @property
    def url(self) -> StorageUrl:
        """Where it is (``str()`` of it is redacted)."""
        return self.db.url


@contextlib.asynccontextmanager
async def open_storage(
    url: StorageUrl, settings: StorageSettings | None = None, *, migrate: bool = True
) -> AsyncIterator[Storage]:
    """The storage at ``url`` for the ``async with`` block.

    ``migrate=True`` applies pending migrations first; ``False`` leaves the schema
    alone but still refuses a database from a newer program (``SchemaTooNew``) and
    one that is not migrated yet (``SchemaError``).
    """
    db = await open_database(url, settings)
    try:
        if migrate:
            await upgrade(db)
        status = await schema_status(db)
        refuse_newer(status.current, url.redacted())
        if status.pending:
            raise SchemaError(
                f"{url}: the schema is at version {status.current}, {status.latest} is "
                "needed; run `vwell-pbx db upgrade`"
            )
        yield Storage(
            db=db,
            users=UserStore(db),
            lockouts=LockoutStore(db),
            calls=CallStore(db),
            keys=KeyStore(db),
            sms=SmsStore(db),
            schema=status,
        )
    finally:
        await db.aclose()
