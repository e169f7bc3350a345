"""The external user directory's exceptions.

::

    VwellError
    ├── QueryError (directory.query)   the configured query cannot be used
    └── StorageError (storage.errors)
        └── StorageUnavailable
            └── DirectoryUnavailable   the directory's database is down, too slow, or
                                       refused the query: the API answers `unavailable`

A directory that is down is "unavailable", whatever the reason (connection refused,
timeout, authentication, a query the database rejects): a client can only retry, and
the server's log says what happened. Messages never hold a password or a client's
login: the location is the DSN without its password.
"""

from __future__ import annotations

from vwell_pbx.storage.errors import StorageUnavailable

__all__ = ["DirectoryUnavailable"]


class DirectoryUnavailable(StorageUnavailable):
    """The user directory cannot answer now (see the log for why); retrying may help."""
