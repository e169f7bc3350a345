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
the server's log says what happened (``detail``). Neither holds a password; the
location in ``detail`` is the DSN without it.
"""

from __future__ import annotations

from vwell_pbx.storage.errors import StorageUnavailable

__all__ = ["DirectoryUnavailable"]


class DirectoryUnavailable(StorageUnavailable):
    """The user directory cannot answer now; retrying may help.

    Its message, which the client sees, says only that; ``detail`` says why (the DSN
    without its password and the driver's words), for the server's log: a client, who
    may not even be logged in, learns nothing about the directory's database.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("the user directory is unavailable; try again later")
        self.detail = detail
