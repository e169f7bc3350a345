"""Storage URLs: ``sqlite:PATH`` or ``postgresql://USER@HOST:PORT/DATABASE``.

A password may come from the URL itself or separately (the configuration's
``[storage] password`` / ``VWELL_PBX_STORAGE_PASSWORD``); either way it is held as a
``SecretStr`` and ``str()``/``repr()`` of a ``StorageUrl`` show it as ``***``. Error
messages about a URL never quote the text that was given (it may hold a password).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from vwell_pbx.storage.errors import StorageUrlError

__all__ = ["Backend", "StorageUrl"]

Backend = Literal["sqlite", "postgresql"]

_PG_SCHEMES = ("postgresql", "postgres")
_FORM = "expected sqlite:PATH or postgresql://USER@HOST[:PORT]/DATABASE"


@dataclass(frozen=True, slots=True)
class StorageUrl:
    """A parsed storage URL. Build it with ``StorageUrl.parse``."""

    backend: Backend
    path: Path | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    password: SecretStr | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, *, base_dir: Path | None = None) -> StorageUrl:
        """Parse ``text``; a relative SQLite path is resolved against ``base_dir``.

        Raises ``StorageUrlError`` saying what the right form is (never quoting ``text``).
        """
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep:
            raise StorageUrlError(f"storage url: {_FORM}")
        if scheme == "sqlite":
            return cls._parse_sqlite(rest, base_dir)
        if scheme in _PG_SCHEMES:
            return cls._parse_postgresql(text)
        raise StorageUrlError(f"storage url: unknown backend {scheme[:20]!r}; {_FORM}")

    @classmethod
    def sqlite(cls, path: Path) -> StorageUrl:
        """The URL of the SQLite file ``path``."""
        return cls(backend="sqlite", path=path)

    @classmethod
    def _parse_sqlite(cls, rest: str, base_dir: Path | None) -> StorageUrl:
        if rest.startswith("//"):  # sqlite:///abs/path, the URL form of an absolute path
            rest = rest[2:]
        if not rest or any(c in rest for c in "\0\r\n"):
            raise StorageUrlError(
                "storage url: sqlite: needs a file path, e.g. sqlite:data/vwell.sqlite3"
            )
        path = Path(rest).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return cls(backend="sqlite", path=path)

    @classmethod
    def _parse_postgresql(cls, text: str) -> StorageUrl:
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port
        except ValueError:
            raise StorageUrlError(f"storage url: the port is not a number; {_FORM}") from None
        database = urllib.parse.unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database or "/" in database:
            raise StorageUrlError(f"storage url: a host and a database are required; {_FORM}")
        password = parts.password
        options = tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        return cls(
            backend="postgresql",
            host=parts.hostname,
            port=port,
            user=urllib.parse.unquote(parts.username) if parts.username else None,
            database=database,
            options=options,
            password=SecretStr(urllib.parse.unquote(password)) if password else None,
        )

    def with_password(self, password: SecretStr | str | None) -> StorageUrl:
        """This URL with ``password`` (a ``None`` or empty password keeps the current one)."""
        if isinstance(password, str):
            password = SecretStr(password)
        if password is None or not password.get_secret_value():
            return self
        return replace(self, password=password)

    def dsn(self) -> str:
        """The libpq connection URL *without* the password (PostgreSQL only)."""
        if self.backend != "postgresql":
            raise StorageUrlError("storage url: dsn() is for PostgreSQL URLs")
        return self._render(password_text=None)

    def _render(self, *, password_text: str | None) -> str:
        if self.backend == "sqlite":
            return f"sqlite:{self.path}"
        user = urllib.parse.quote(self.user, safe="") if self.user else ""
        if user and password_text is not None:
            user += ":" + password_text
        auth = f"{user}@" if user else ""
        host = f"[{self.host}]" if self.host and ":" in self.host else (self.host or "")
        port = f":{self.port}" if self.port is not None else ""
        db = urllib.parse.quote(self.database or "", safe="")
        query = f"?{urllib.parse.urlencode(self.options)}" if self.options else ""
        return f"postgresql://{auth}{host}{port}/{db}{query}"

    def redacted(self) -> str:
        """The URL for logs, errors and ``/health``: a password shows as ``***``."""
        return self._render(password_text="***" if self.password is not None else None)

    def __str__(self) -> str:
        return self.redacted()

    def secrets(self) -> tuple[str, ...]:
        """Texts that must never appear in a message (used to scrub driver errors)."""
        if self.password is None or not self.password.get_secret_value():
            return ()
        value = self.password.get_secret_value()
        return (value, urllib.parse.quote(value, safe=""))
