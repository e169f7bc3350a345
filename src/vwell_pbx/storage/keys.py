"""``KeyStore``: random secrets the server needs to share across restarts and instances.

A key is created once, on first use, and then read by every process that uses the same
database, so what one instance signs (a ``callHistory`` page cursor) another accepts,
also after a restart. Creation is ``INSERT ... ON CONFLICT DO NOTHING`` followed by a
read, so two instances starting together agree on one key. Keys are cached in memory
after the first read; they never change. Their values never reach a log or an error.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from vwell_pbx.storage.database import Database
from vwell_pbx.storage.errors import StorageError

__all__ = ["KEY_BYTES", "KeyStore"]

KEY_BYTES = 32
"""Size of a new key (256 bits)."""


class KeyStore:
    """The ``server_keys`` table of one database."""

    def __init__(
        self, db: Database, *, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self.db = db
        self._random_bytes = random_bytes
        self._cache: dict[str, bytes] = {}

    async def get(self, name: str) -> bytes:
        """The key called ``name``, created (``KEY_BYTES`` random bytes) if absent."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        await self.db.execute(
            "INSERT INTO server_keys (name, secret) VALUES (:name, :secret) "
            "ON CONFLICT (name) DO NOTHING",
            {"name": name, "secret": self._random_bytes(KEY_BYTES)},
        )
        value = await self.db.fetch_value(
            "SELECT secret FROM server_keys WHERE name = :name", {"name": name}
        )
        if not isinstance(value, bytes | bytearray | memoryview) or not bytes(value):
            raise StorageError(f"server key {name!r} could not be read back")
        key = bytes(value)
        self._cache[name] = key
        return key
