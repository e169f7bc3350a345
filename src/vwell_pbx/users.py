"""The user directory: an embedded SQLite file of logins, roles and password hashes.

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
it verified is still the row in the file: any change (password, role, removal) is
seen by the next request, also when made by another process (the CLI).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vwell_pbx.errors import VwellError

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
SCHEMA_VERSION = 1
_MAX_NAME = 256
_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_EXTENSION_RE = re.compile(r"[0-9A-Za-z+*#_.-]{1,32}")

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    login TEXT NOT NULL,
    login2 TEXT NOT NULL,
    role TEXT NOT NULL,
    extensions TEXT NOT NULL DEFAULT '[]',
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    n INTEGER NOT NULL,
    r INTEGER NOT NULL,
    p INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (login, login2)
);
"""

_COLUMNS = "login, login2, role, extensions, version, created, updated, salt, hash, n, r, p"


class UserDirectory:
    """Users in a SQLite file (WAL mode, so the CLI can write while the server reads).

    Safe to call from several threads (one connection behind a lock); each call is
    short except ``verify`` and the hashing in ``add``/``set_sha1``, which run scrypt
    outside the lock. Call ``close`` when done (or use it as a context manager).
    """

    def __init__(
        self,
        path: Path,
        *,
        hasher: Hasher = scrypt_hasher,
        random_bytes: Callable[[int], bytes] = os.urandom,
        now: Callable[[], str] = _now_iso,
        scrypt_params: tuple[int, int, int] = (SCRYPT_N, SCRYPT_R, SCRYPT_P),
    ) -> None:
        self.path = path
        self._hasher = hasher
        self._random_bytes = random_bytes
        self._now = now
        self._params = scrypt_params
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise UserDirectoryError(f"{path}: cannot open the user database: {exc}") from None
        try:
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserDirectoryError(f"{path}: not a usable user database: {exc}") from None
        except BaseException:
            self._db.close()
            raise
        # Hash of a random secret: verify() of an unknown user costs the same as of a
        # known one, so timing does not reveal which logins exist.
        self._dummy_salt = random_bytes(_SALT_BYTES)

    def _init_schema(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                row = self._db.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                    )
                elif row[0] > SCHEMA_VERSION:
                    raise UserDirectoryError(
                        f"{self.path}: schema version {row[0]} is newer than this program's "
                        f"({SCHEMA_VERSION}); upgrade vwell-pbx-srv"
                    )
                self._db.execute(
                    "INSERT OR IGNORE INTO counters (name, value) VALUES ('version', 0)"
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> UserDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _names(login: str, login2: str) -> tuple[str, str]:
        names = (normalize_login(login), normalize_login(login2))
        for label, value in zip(("login", "login2"), names, strict=True):
            if not value.strip():
                raise UserDataError(f"{label} must not be empty")
            if len(value) > _MAX_NAME:
                raise UserDataError(f"{label} must be at most {_MAX_NAME} characters")
            if any(unicodedata.category(c) == "Cc" for c in value):
                raise UserDataError(f"{label} must not contain control characters")
        return names

    @staticmethod
    def _sha1(sha1_hex: str) -> str:
        value = normalize_sha1(sha1_hex)
        if value is None:
            raise UserDataError("the SHA-1 must be 40 hexadecimal digits")
        return value

    @staticmethod
    def _extensions(extensions: Iterable[str]) -> tuple[str, ...]:
        result = tuple(dict.fromkeys(extensions))
        for ext in result:
            if not _EXTENSION_RE.fullmatch(ext):
                raise UserDataError(
                    f"extension {ext!r} must be 1-32 of: letters, digits, + * # _ . -"
                )
        return result

    @staticmethod
    def _role(role: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", role):
            raise UserDataError(f"role {role!r} must be 1-64 letters, digits, '_', '.', '-'")
        return role

    def _hash(self, sha1: str) -> tuple[bytes, bytes, int, int, int]:
        n, r, p = self._params
        salt = self._random_bytes(_SALT_BYTES)
        return salt, self._hasher(sha1.encode("ascii"), salt, n, r, p), n, r, p

    def _next_version(self) -> int:
        # Called inside a write transaction.
        self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'version'")
        row = self._db.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()
        return int(row[0])

    @staticmethod
    def _record(row: tuple[Any, ...]) -> UserRecord:
        login, login2, role, ext, version, created, updated, salt, hash_, n, r, p = row
        return UserRecord(
            login=str(login),
            login2=str(login2),
            role=str(role),
            extensions=tuple(str(e) for e in json.loads(str(ext))),
            version=int(version),
            created=str(created),
            updated=str(updated),
            salt=bytes(salt),
            hash=bytes(hash_),
            n=int(n),
            r=int(r),
            p=int(p),
        )

    # -- public API ----------------------------------------------------------------

    def add(
        self,
        login: str,
        login2: str,
        *,
        sha1_hex: str,
        role: str = DEFAULT_ROLE,
        extensions: Iterable[str] = (),
    ) -> UserRecord:
        """Add a user. Raises ``UserExists`` or ``UserDataError``."""
        login, login2 = self._names(login, login2)
        sha1 = self._sha1(sha1_hex)
        exts = self._extensions(extensions)
        role = self._role(role)
        salt, digest, n, r, p = self._hash(sha1)  # slow: outside the lock
        now = self._now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._next_version()
                self._db.execute(
                    f"INSERT INTO users ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        login,
                        login2,
                        role,
                        json.dumps(exts),
                        version,
                        now,
                        now,
                        salt,
                        digest,
                        n,
                        r,
                        p,
                    ),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise UserExists(f"user {login!r} / {login2!r} already exists") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return UserRecord(login, login2, role, exts, version, now, now, salt, digest, n, r, p)

    def _update(self, login: str, login2: str, assignments: str, values: tuple[object, ...]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._next_version()
                cursor = self._db.execute(
                    f"UPDATE users SET {assignments}, version = ?, updated = ? "
                    "WHERE login = ? AND login2 = ?",
                    (*values, version, self._now(), login, login2),
                )
                if cursor.rowcount == 0:
                    self._db.execute("ROLLBACK")
                    raise UserNotFound(f"no user {login!r} / {login2!r}")
                self._db.execute("COMMIT")
            except UserNotFound:
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return version

    def set_sha1(self, login: str, login2: str, *, sha1_hex: str) -> int:
        """Change a user's password (given as its SHA-1); returns the new version."""
        login, login2 = self._names(login, login2)
        salt, digest, n, r, p = self._hash(self._sha1(sha1_hex))
        return self._update(
            login, login2, "salt = ?, hash = ?, n = ?, r = ?, p = ?", (salt, digest, n, r, p)
        )

    def update(
        self,
        login: str,
        login2: str,
        *,
        role: str | None = None,
        extensions: Iterable[str] | None = None,
    ) -> int:
        """Change a user's role and/or extensions; returns the new version."""
        login, login2 = self._names(login, login2)
        parts: list[str] = []
        values: list[object] = []
        if role is not None:
            parts.append("role = ?")
            values.append(self._role(role))
        if extensions is not None:
            parts.append("extensions = ?")
            values.append(json.dumps(self._extensions(extensions)))
        if not parts:
            raise UserDataError("nothing to change: give a role or extensions")
        return self._update(login, login2, ", ".join(parts), tuple(values))

    def remove(self, login: str, login2: str) -> bool:
        """Remove a user; ``False`` if there was none."""
        login, login2 = self._names(login, login2)
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM users WHERE login = ? AND login2 = ?", (login, login2)
            )
        return cursor.rowcount > 0

    def list(self) -> list[UserRecord]:
        """Every user, ordered by login then login2."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM users ORDER BY login, login2"
            ).fetchall()
        return [self._record(row) for row in rows]

    def get(self, login: str, login2: str) -> UserRecord | None:
        """The user ``(login, login2)`` or ``None``. Invalid names are simply not found."""
        try:
            login, login2 = self._names(login, login2)
        except UserDataError:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE login = ? AND login2 = ?", (login, login2)
            ).fetchone()
        return None if row is None else self._record(row)

    def current_version(self, login: str, login2: str) -> int | None:
        """The user's version (one indexed lookup), or ``None`` if removed."""
        login, login2 = normalize_login(login), normalize_login(login2)
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM users WHERE login = ? AND login2 = ?", (login, login2)
            ).fetchone()
        return None if row is None else int(row[0])

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
