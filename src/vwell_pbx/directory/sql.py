"""``SqlDirectory``: users read from another application's database, as the original did.

The original product read its users from the CRM's own tables: the account
(``login``), the person (``login2``) and the hex SHA-1 of the password ("in Fabula
format"), exactly what clients send as ``sha1``. ``[users] backend = "sql"`` does the
same with one configured query (``directory.query``) whose first row gives:

- ``sha1`` (required): the password's SHA-1 as 40 hex digits (any case), or its 20
  raw bytes; anything else matches no password (and is logged, without the value);
- ``role`` (optional): a role name; missing, empty or not a valid name: the
  configured ``default_role``;
- ``extensions`` (optional): the user's own extensions, as a list (PostgreSQL array),
  a JSON array, or text separated by commas, semicolons or spaces.

The comparison with the client's SHA-1 is constant-time. Nothing is written to the
directory. The authenticator caches successful checks as for local users; since such
a database tells nobody about its changes, ``generation()`` moves every
``recheck_seconds`` instead, and then a cached user is looked up again: a user whose
password, role or extensions changed (their *version*, an HMAC of those values with
a per-process key, differs) or who was removed is refused from then on. While the
directory is down, cached users stay valid until their cache entry expires
(``[users] auth_cache_seconds``); everyone else gets ``unavailable``.

Names are checked before any query: NFC-normalised, 1-256 characters, no control
characters; a name that fails is simply not found (no query is made).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from vwell_pbx.directory.backends import DirectoryBackend
from vwell_pbx.directory.errors import DirectoryUnavailable

__all__ = ["DirectoryAccount", "SqlDirectory"]

log = logging.getLogger(__name__)

_MAX_NAME: Final = 256
_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")
_ROLE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EXTENSION_RE = re.compile(r"[0-9A-Za-z+*#_.-]{1,32}")
_SEPARATORS = re.compile(r"[,;\s]+")
#: How long a directory that failed is not asked again (requests fail at once meanwhile).
DOWN_SECONDS: Final = 1.0
#: Users whose last known version is kept, for cached users while the directory is down.
MAX_REMEMBERED: Final = 10_000


@dataclass(frozen=True, slots=True)
class DirectoryAccount:
    """One user as the directory's query returned it; the SHA-1 is left out of ``repr``."""

    login: str
    login2: str
    role: str
    extensions: tuple[str, ...]
    version: int
    sha1: bytes = field(repr=False)


def _name(value: str) -> str | None:
    value = unicodedata.normalize("NFC", value)
    if not value.strip() or len(value) > _MAX_NAME:
        return None
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return None
    return value


def _sha1_bytes(value: object) -> bytes | None:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        if len(value) == 20:
            return bytes(value)
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and _SHA1_RE.fullmatch(value.strip()):
        return bytes.fromhex(value.strip())
    return None


def _extensions(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    items: list[Any]
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, str) and value.strip().startswith("["):
        try:
            loaded = json.loads(value)
        except ValueError:
            loaded = []
        items = loaded if isinstance(loaded, list) else []
    else:
        items = _SEPARATORS.split(str(value))
    texts = (str(item).strip() for item in items if item is not None)
    return tuple(dict.fromkeys(t for t in texts if _EXTENSION_RE.fullmatch(t)))


class SqlDirectory:
    """The users of an external database; see the module docstring.

    The interface is the one ``api.auth.Authenticator`` uses: ``generation``,
    ``get``, ``current_version``, ``verify`` (cheap here: ``slow_verify`` is false).
    ``clock`` is monotonic seconds; ``key`` (default: random) keys the versions.
    """

    slow_verify = False

    def __init__(
        self,
        backend: DirectoryBackend,
        *,
        default_role: str = "operator",
        recheck_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        key: bytes | None = None,
        down_seconds: float = DOWN_SECONDS,
    ) -> None:
        self.backend = backend
        self.default_role = default_role
        self._recheck = recheck_seconds
        self._clock = clock
        self._key = key or os.urandom(32)
        self._down_seconds = down_seconds
        self._down_until = 0.0
        self._down_reason = ""
        self._known: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._dummy = os.urandom(20)
        self._warned_sha1 = False

    @property
    def location(self) -> str:
        """Where the users are, for messages (the DSN without its password)."""
        return self.backend.dsn.redacted()

    def generation(self) -> int | None:
        """Moves every ``recheck_seconds`` (``None``, "ask every time", if that is 0)."""
        if self._recheck <= 0:
            return None
        return int(self._clock() // self._recheck)

    async def _row(self, login: str, login2: str) -> dict[str, Any] | None:
        now = self._clock()
        if now < self._down_until:
            raise DirectoryUnavailable(self._down_reason)
        try:
            return await self.backend.lookup(login, login2)
        except DirectoryUnavailable as exc:
            self._down_until = self._clock() + self._down_seconds
            self._down_reason = f"{exc.detail} (not asked again for {self._down_seconds:g} s)"
            log.warning("%s", exc.detail)
            raise

    async def get(self, login: str, login2: str) -> DirectoryAccount | None:
        """The user ``(login, login2)``, or ``None``. Raises ``DirectoryUnavailable``."""
        names = (_name(login), _name(login2))
        if names[0] is None or names[1] is None:
            return None
        row = await self._row(names[0], names[1])
        account = None if row is None else self._account(names[0], names[1], row)
        key = (names[0], names[1])
        if account is None:
            self._known.pop(key, None)
            return None
        self._known[key] = account.version
        self._known.move_to_end(key)
        while len(self._known) > MAX_REMEMBERED:
            self._known.popitem(last=False)
        return account

    def _account(self, login: str, login2: str, row: dict[str, Any]) -> DirectoryAccount | None:
        if "sha1" not in row:
            detail = (
                f"user directory {self.location}: the query returns no column named sha1 "
                "(write e.g. SELECT password_hash AS sha1, ...)"
            )
            log.error("%s", detail)
            raise DirectoryUnavailable(detail)
        sha1 = _sha1_bytes(row["sha1"])
        if sha1 is None:
            if not self._warned_sha1:
                self._warned_sha1 = True
                log.warning(
                    "user directory %s: a sha1 value is not 40 hex digits (nor 20 bytes); "
                    "such users cannot log in",
                    self.location,
                )
            return None
        role_value = row.get("role")
        role = str(role_value).strip() if role_value is not None else ""
        if not _ROLE_RE.fullmatch(role):
            role = self.default_role
        extensions = _extensions(row.get("extensions"))
        material = b"\0".join(
            (sha1, role.encode(), ",".join(extensions).encode("utf-8", "surrogatepass"))
        )
        version = int.from_bytes(hmac.new(self._key, material, hashlib.sha256).digest()[:6])
        return DirectoryAccount(login, login2, role, extensions, version, sha1)

    async def current_version(self, login: str, login2: str) -> int | None:
        """The user's version now, or ``None`` if the directory no longer has them.

        While the directory is down, the last version seen (so cached users stay valid
        until their cache entry expires); ``DirectoryUnavailable`` for others.
        """
        try:
            account = await self.get(login, login2)
        except DirectoryUnavailable:
            names = (_name(login), _name(login2))
            known = self._known.get((names[0] or "", names[1] or ""))
            if known is None:
                raise
            return known
        return None if account is None else account.version

    def verify(self, record: DirectoryAccount | None, sha1_hex: str) -> bool:
        """Whether ``sha1_hex`` is the user's SHA-1 (constant-time; ``False`` for none)."""
        given = _sha1_bytes(sha1_hex.strip()) if len(sha1_hex) <= 64 else None
        expected = record.sha1 if record is not None else self._dummy
        equal = hmac.compare_digest(given or self._dummy, expected)
        return record is not None and given is not None and equal

    async def aclose(self) -> None:
        """Close the directory's connections."""
        await self.backend.aclose()
