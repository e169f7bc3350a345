"""The storage layer's exceptions, grouped by what a caller can do about them.

::

    VwellError
    └── StorageError                 anything the database layer reports
        ├── StorageUrlError          the storage URL cannot be used (fix the configuration)
        ├── StorageUnavailable       the database cannot be reached or the connection was lost
        │   └── StorageTimeout       a connect, a free connection or a query took too long
        ├── StorageBusy              a bounded request queue is full (try again later)
        ├── SchemaError              the database's schema is not one this program can use
        │   └── SchemaTooNew         written by a newer version of the program
        ├── StorageNotEmpty          ``db copy`` refused a target that already holds rows
        └── IntegrityViolation       a unique key exists already (callers map it: UserExists)

Driver exceptions (``sqlite3.Error``, asyncpg's) are converted once, in the backend
modules, with ``raise ... from``. Messages never contain a password nor the values of
query parameters: a storage URL appears only in its redacted form.
"""

from __future__ import annotations

from vwell_pbx.errors import VwellError

__all__ = [
    "IntegrityViolation",
    "SchemaError",
    "SchemaTooNew",
    "StorageBusy",
    "StorageError",
    "StorageNotEmpty",
    "StorageTimeout",
    "StorageUnavailable",
    "StorageUrlError",
]


class StorageError(VwellError):
    """Root of the storage layer's errors."""


class StorageUrlError(StorageError):
    """The storage URL is malformed or names an unknown backend."""


class StorageUnavailable(StorageError):
    """The database cannot be reached, or the connection broke during the request."""


class StorageTimeout(StorageUnavailable):
    """Connecting, waiting for a free connection or running a query exceeded its timeout."""


class StorageBusy(StorageError):
    """A bounded request queue is full; nothing was done."""


class SchemaError(StorageError):
    """The schema cannot be used by this program (see the message)."""


class SchemaTooNew(SchemaError):
    """The database was migrated by a newer version of vwell-pbx-srv."""


class StorageNotEmpty(StorageError):
    """``db copy`` was pointed at a database that already holds rows (use --force)."""


class IntegrityViolation(StorageError):
    """A row with the same unique key already exists."""
