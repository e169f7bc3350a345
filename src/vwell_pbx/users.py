"""The user directory: logins, roles and password hashes, kept in the storage.

A user is identified by the pair ``(login, login2)``: ``login`` is the account
(``Agent``), ``login2`` the person within it (``Иванов И.И.``, any Unicode). Both are
stored NFC-normalised so that the same name typed on two keyboards is one user.

Clients send ``sha1``, the hex SHA-1 of the password (the original protocol). The
directory never stores the password nor that bare SHA-1 (which would be enough to log
in): it stores ``scrypt(sha1_hex_lowercase, salt=16 random bytes, n, r, p)``. The
scrypt parameters are stored per row so that they can be raised later without
invalidating existing users.

Every row has a ``version`` drawn from one counter that only grows (it survives a
remove and re-add), so ``current_version`` tells an in-memory cache whether the row
it verified is still the row in the database; and ``generation()`` (no database round
trip) moves whenever any user changed, also when another process (the CLI, another
server instance) changed it. The rows live in the storage (``vwell_pbx.storage``,
SQLite or PostgreSQL, through ``UserStore``); this module holds the rules: name
normalisation and limits, hashing, verification.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vwell_pbx.errors import VwellError
from vwell_pbx.storage import IntegrityViolation, UserRow, UserStore

__all__ = [
    "DEFAULT_ROLE",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "Hasher",
    "UserDataError",
    "UserDirectory",
    "UserDirectoryError",
    "UserExists",
    "UserNotFound",
    "UserRecord",
    "normalize_login",
    "normalize_sha1",
    "scrypt_hasher",
    "sha1_of_password",
]

DEFAULT_ROLE = "operator"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAX_NAME = 256
_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_EXTENSION_RE = re.compile(r"[0-9A-Za-z+*#_.-]{1,32}")
_ROLE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: ``hasher(secret, salt, n, r, p) -> digest``; injectable so tests can count calls.
Hasher = Callable[[bytes, bytes, int, int, int], bytes]


class UserDirectoryError(VwellError):
    """Base of the user directory's errors."""


class UserExists(UserDirectoryError):
    """``add`` was asked for a ``(login, login2)`` that is already there."""


class UserNotFound(UserDirectoryError):
    """The named ``(login, login2)`` is not in the directory."""


class UserDataError(UserDirectoryError):
    """A login, SHA-1, role or extension that cannot be stored; the message says why."""


def scrypt_hasher(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The production hasher: ``hashlib.scrypt`` with a 32-byte output."""
    # maxmem: scrypt needs 128*n*r bytes (16 MiB at the defaults); allow some headroom.
    return hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=_HASH_BYTES
    )


def sha1_of_password(password: str) -> str:
    """The hex SHA-1 of ``password`` (UTF-8), as the original's clients compute it."""
    return hashlib.sha1(password.encode("utf-8")).hexdigest()


def normalize_sha1(sha1_hex: str) -> str | None:
    """Lower-case ``sha1_hex`` if it is 40 hex digits, else ``None``."""
    value = sha1_hex.strip().lower()
    return value if _SHA1_RE.fullmatch(value) else None


def normalize_login(value: str) -> str:
    """The NFC form under which logins are stored and compared."""
    return unicodedata.normalize("NFC", value)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _names(login: str, login2: str) -> tuple[str, str]:
    """The stored form of a ``(login, login2)`` pair; ``UserDataError`` says what is wrong."""
    names = (normalize_login(login), normalize_login(login2))
    for label, value in zip(("login", "login2"), names, strict=True):
        if not value.strip():
            raise UserDataError(f"{label} must not be empty")
        if len(value) > _MAX_NAME:
            raise UserDataError(f"{label} must be at most {_MAX_NAME} characters")
        # Cc includes NUL, which PostgreSQL cannot store in text; Cs are lone
        # surrogates (possible in JSON), which are not UTF-8 at all.
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
            raise UserDataError(f"{label} must not contain control characters")
    return names


def _sha1(sha1_hex: str) -> str:
    value = normalize_sha1(sha1_hex)
    if value is None:
        raise UserDataError("the SHA-1 must be 40 hexadecimal digits")
    return value


def _extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(extensions))
    for ext in result:
        if not _EXTENSION_RE.fullmatch(ext):
            raise UserDataError(f"extension {ext!r} must be 1-32 of: letters, digits, + * # _ . -")
    return result


def _role(role: str) -> str:
    if not _ROLE_RE.fullmatch(role):
        raise UserDataError(f"role {role!r} must be 1-64 letters, digits, '_', '.', '-'")
    return role


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user as stored. The salt and hash are left out of ``repr``."""

    login: str
    login2: str
    role: str
    extensions: tuple[str, ...]
    version: int
    created: str
    updated: str
    salt: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    n: int = field(repr=False, default=SCRYPT_N)
    r: int = field(repr=False, default=SCRYPT_R)
    p: int = field(repr=False, default=SCRYPT_P)

    @classmethod
    def from_row(cls, row: UserRow) -> UserRecord:
        """The record of a stored row."""
        return cls(
            login=row.login,
            login2=row.login2,
            role=row.role,
            extensions=tuple(str(e) for e in json.loads(row.extensions)),
            version=row.version,
            created=row.created,
            updated=row.updated,
            salt=row.salt,
            hash=row.hash,
            n=row.n,
            r=row.r,
            p=row.p,
        )


class UserDirectory:
    """The users of one storage (``UserStore``), with the rules of this module.

    Reads and writes are coroutines; scrypt (in ``add``/``set_sha1``) runs in a worker
    thread, and ``verify`` is synchronous and slow, for the caller to run in one.
    ``generation()`` is synchronous and cheap (see the module docstring).
    """

    #: ``verify`` runs scrypt: the authenticator runs it in a thread, a few at a time.
    slow_verify = True

    def __init__(
        self,
        store: UserStore,
        *,
        hasher: Hasher = scrypt_hasher,
        random_bytes: Callable[[int], bytes] = os.urandom,
        now: Callable[[], str] = _now_iso,
        scrypt_params: tuple[int, int, int] = (SCRYPT_N, SCRYPT_R, SCRYPT_P),
    ) -> None:
        self.store = store
        self._hasher = hasher
        self._random_bytes = random_bytes
        self._now = now
        self._params = scrypt_params
        self._changes = store.changes()
        # Hash of a random secret: verify() of an unknown user costs the same as of a
        # known one, so timing does not reveal which logins exist.
        self._dummy_salt = random_bytes(_SALT_BYTES)

    @property
    def location(self) -> str:
        """Where the users are, for messages (a redacted storage URL)."""
        return self.store.db.url.redacted()

    def generation(self) -> int | None:
        """Moves whenever any user may have changed; ``None``: cannot tell (ask the DB)."""
        return self._changes.generation()

    async def _hash(self, sha1: str) -> tuple[bytes, bytes, int, int, int]:
        n, r, p = self._params
        salt = self._random_bytes(_SALT_BYTES)
        digest = await asyncio.to_thread(self._hasher, sha1.encode("ascii"), salt, n, r, p)
        return salt, digest, n, r, p

    async def add(
        self,
        login: str,
        login2: str,
        *,
        sha1_hex: str,
        role: str = DEFAULT_ROLE,
        extensions: Iterable[str] = (),
    ) -> UserRecord:
        """Add a user. Raises ``UserExists`` or ``UserDataError``."""
        login, login2 = _names(login, login2)
        sha1 = _sha1(sha1_hex)
        exts = _extensions(extensions)
        role = _role(role)
        salt, digest, n, r, p = await self._hash(sha1)
        now = self._now()
        row = UserRow(login, login2, role, json.dumps(exts), 0, now, now, salt, digest, n, r, p)
        try:
            version = await self.store.insert(row)
        except IntegrityViolation:
            raise UserExists(f"user {login!r} / {login2!r} already exists") from None
        return UserRecord(login, login2, role, exts, version, now, now, salt, digest, n, r, p)

    async def _update(self, login: str, login2: str, values: dict[str, object]) -> int:
        version = await self.store.update(login, login2, values, updated=self._now())
        if version is None:
            raise UserNotFound(f"no user {login!r} / {login2!r}")
        return version

    async def set_sha1(self, login: str, login2: str, *, sha1_hex: str) -> int:
        """Change a user's password (given as its SHA-1); returns the new version."""
        login, login2 = _names(login, login2)
        salt, digest, n, r, p = await self._hash(_sha1(sha1_hex))
        return await self._update(
            login, login2, {"salt": salt, "hash": digest, "n": n, "r": r, "p": p}
        )

    async def update(
        self,
        login: str,
        login2: str,
        *,
        role: str | None = None,
        extensions: Iterable[str] | None = None,
    ) -> int:
        """Change a user's role and/or extensions; returns the new version."""
        login, login2 = _names(login, login2)
        values: dict[str, object] = {}
        if role is not None:
            values["role"] = _role(role)
        if extensions is not None:
            values["extensions"] = json.dumps(_extensions(extensions))
        if not values:
            raise UserDataError("nothing to change: give a role or extensions")
        return await self._update(login, login2, values)

    async def remove(self, login: str, login2: str) -> bool:
        """Remove a user; ``False`` if there was none."""
        login, login2 = _names(login, login2)
        return await self.store.delete(login, login2)

    async def list(self) -> list[UserRecord]:
        """Every user, ordered by login then login2."""
        return [UserRecord.from_row(row) for row in await self.store.all()]

    async def get(self, login: str, login2: str) -> UserRecord | None:
        """The user ``(login, login2)`` or ``None``. Invalid names are simply not found."""
        try:
            login, login2 = _names(login, login2)
        except UserDataError:
            return None
        row = await self.store.get(login, login2)
        return None if row is None else UserRecord.from_row(row)

    async def current_version(self, login: str, login2: str) -> int | None:
        """The user's version (one indexed lookup), or ``None`` if there is no such user."""
        try:
            login, login2 = _names(login, login2)
        except UserDataError:
            return None
        return await self.store.version_of(login, login2)

    def verify(self, record: UserRecord | None, sha1_hex: str) -> bool:
        """True if ``sha1_hex`` is the user's password SHA-1 (slow: runs scrypt).

        With ``record=None`` it still runs one scrypt and returns ``False``, so that a
        caller can make an unknown user cost the same time as a wrong password.
        """
        sha1 = normalize_sha1(sha1_hex)
        if record is None or sha1 is None:
            n, r, p = self._params
            self._hasher(b"0" * 40, self._dummy_salt, n, r, p)
            return False
        digest = self._hasher(sha1.encode("ascii"), record.salt, record.n, record.r, record.p)
        return hmac.compare_digest(digest, record.hash)
