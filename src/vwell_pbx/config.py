"""Configuration: a TOML file validated into frozen pydantic models.

The section and key names (``[server] http``, ``[[pbx]] host``, ``[sms] backend``, ...)
are a contract with users' deployment scripts; more keys may be added around them,
never renamed. Every model forbids
unknown keys so that a typo (``prot = 5038``) stops start-up instead of being ignored.

Where the configuration comes from (``find_config_path``): ``--config``, else the
``VWELL_PBX_CONFIG`` environment variable, else ``./config/app-config.toml`` if it
exists, else nothing, which means demo mode (``demo_config``). A path that was named
explicitly but does not exist is an error, never a silent fall-back to demo mode.

Secrets (AMI secrets, the server-to-server secret, the demo password) are
``SecretStr``: they never appear in ``repr``/``str`` of a model nor in a
``ConfigError`` message (pydantic's messages are taken without the input, and the
checks of secret fields never quote the value; other checks may quote what they
reject, such as an origin or a listen address).
Environment variables override secrets so they need not be written into the file:

- ``VWELL_PBX_SERVER_SECRET`` -> ``server.secret``
- ``VWELL_PBX_PBX_<NAME>_SECRET`` -> ``pbx[i].secret`` for the PBX called NAME
  (upper-cased, every character other than A-Z and 0-9 replaced by ``_``)
- ``VWELL_PBX_PBX_SECRET`` -> the first PBX's secret (the per-name variable wins)
- ``VWELL_PBX_WEBHOOK_<NAME>_SECRET`` -> ``webhooks[i].secret`` for the webhook called
  NAME (its ``name``, or ``webhook1``, ``webhook2``, ... by position; upper-cased, other
  characters than A-Z and 0-9 replaced by ``_``)
- ``VWELL_PBX_STORAGE_URL`` -> ``storage.url`` (the whole URL, password included if any)
- ``VWELL_PBX_STORAGE_PASSWORD`` -> ``storage.password`` (the database password)
- ``VWELL_PBX_USERS_PASSWORD`` -> ``users.password`` (the SQL user directory's password)

Relative paths in the file (``storage.url`` for SQLite, ``users.database``,
``server.tls_cert``, ``server.tls_key``) are resolved against the folder of the
configuration file, not the working directory.

The storage (``[storage] url``) defaults to ``sqlite:data/vwell.sqlite3``. Earlier
releases kept users in ``[users] database`` (default ``data/users.sqlite3``); that file
keeps working as the whole storage: when ``[storage] url`` is not set, an explicit
``[users] database`` is the SQLite storage, and without either the default file is
used, unless only the earlier default ``data/users.sqlite3`` exists (then that one).
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vwell_pbx.calls.rules import DEFAULT_EXTENSIONS, DEFAULT_TRUNKS, CallRules
from vwell_pbx.calls.tracker import TrackerLimits
from vwell_pbx.directory.backends import DirectoryDsn, DirectorySettings, DsnError
from vwell_pbx.directory.query import DirectoryQuery, QueryError
from vwell_pbx.errors import VwellError
from vwell_pbx.events.bus import DEFAULT_RESUME_GRACE
from vwell_pbx.events.filters import EventFilter, FilterError
from vwell_pbx.events.replay import DEFAULT_REPLAY_BYTES, DEFAULT_REPLAY_SIZE
from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.storage.calls import MAX_FLUSH_INTERVAL
from vwell_pbx.storage.errors import StorageUrlError
from vwell_pbx.storage.settings import StorageSettings
from vwell_pbx.storage.url import StorageUrl

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "SIMULATOR_HOST",
    "SIMULATOR_USERNAME",
    "AppConfig",
    "CallsConfig",
    "ConfigError",
    "DemoConfig",
    "DialConfig",
    "EventRuleConfig",
    "EventStreamConfig",
    "EventsConfig",
    "InstancesConfig",
    "LimitsConfig",
    "PbxConfig",
    "PhoneConfig",
    "RedirectConfig",
    "RoleConfig",
    "ServerConfig",
    "SmsConfig",
    "StorageConfig",
    "UsersConfig",
    "WebhookConfig",
    "demo_config",
    "find_config_path",
    "load_config",
    "parse_listen_address",
    "pbx_secret_env_name",
    "render_template",
    "webhook_name",
    "webhook_secret_env_name",
]

#: Looked for (relative to the working directory) when neither ``--config`` nor
#: ``VWELL_PBX_CONFIG`` names a file.
DEFAULT_CONFIG_PATH = Path("config") / "app-config.toml"

CONFIG_ENV = "VWELL_PBX_CONFIG"
SERVER_SECRET_ENV = "VWELL_PBX_SERVER_SECRET"
FIRST_PBX_SECRET_ENV = "VWELL_PBX_PBX_SECRET"
STORAGE_URL_ENV = "VWELL_PBX_STORAGE_URL"
STORAGE_PASSWORD_ENV = "VWELL_PBX_STORAGE_PASSWORD"
USERS_PASSWORD_ENV = "VWELL_PBX_USERS_PASSWORD"
#: The default storage's folder (relative to the configuration file's) and file names:
#: the current one, and the earlier releases' user file (still used if it is the only one).
DEFAULT_DATA_DIR = Path("data")
DEFAULT_STORAGE_FILE = "vwell.sqlite3"
LEGACY_USERS_FILE = "users.sqlite3"

_MIB = 1024 * 1024
_KIB = 1024


class ConfigError(VwellError):
    """The configuration cannot be used; the message names the file and the field.

    ``field`` is the dotted path of the first offending field (``pbx[0].port``), or
    ``None`` when the problem is the file itself (missing, not TOML). ``problems``
    lists every ``(field, message)`` found, so that one run reports them all.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        field: str | None = None,
        problems: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.field = field
        self.problems = problems


class _Model(BaseModel):
    # frozen: the configuration is read once and shared by every layer; nobody may
    # change it behind the others' backs. extra="forbid": typos are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:8930"`` for IPv6) into ``(host, port)``.

    Port 0 means "any free port" (useful in tests). Raises ``ValueError`` with a
    message saying what the right form is.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT such as 0.0.0.0:8930, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::]:8930, got {value!r}")
    if not host:
        raise ValueError(f"the host is missing (use 0.0.0.0 for all addresses), got {value!r}")
    return host, port


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the configuration file's folder."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    return path


_ORIGIN_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$")


class ServerConfig(_Model):
    """``[server]``: listeners, CORS, logging, TLS and the server-to-server secret."""

    http: str = "0.0.0.0:8930"
    ws: str = "0.0.0.0:8931"
    cors_origins: tuple[str, ...] = ("*",)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["plain", "json"] = "plain"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    secret: SecretStr | None = None
    public_url: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("ws")
    @classmethod
    def _check_ws(cls, value: str) -> str:
        if value:  # "" disables the separate WebSocket listener
            parse_listen_address(value)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN_RE.match(origin):
                raise ValueError(
                    f'{origin!r} is not an origin; write "*" or scheme://host[:port] '
                    'such as "https://crm.example.com"'
                )
        return value

    @field_validator("log_level", "proxy_header", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (CIDR) such as 127.0.0.1 "
                    "or 10.0.0.0/8"
                ) from None
        return value

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _resolve_tls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve(value, info)
        if not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator("secret")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together (or neither)")
        return self

    @property
    def http_address(self) -> tuple[str, int]:
        """``(host, port)`` of the HTTP listener."""
        return parse_listen_address(self.http)

    @property
    def ws_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the separate WebSocket listener, or ``None`` if disabled."""
        return parse_listen_address(self.ws) if self.ws else None


PositiveInt = Annotated[int, Field(gt=0)]


class LimitsConfig(_Model):
    """``[limits]``: every bound the server enforces, with its documented default."""

    max_body_bytes: PositiveInt = 1 * _MIB
    ws_max_message_bytes: PositiveInt = 256 * _KIB
    json_max_depth: PositiveInt = 32
    send_max_fields: PositiveInt = 64
    max_subscriptions: PositiveInt = 100
    max_inflight: PositiveInt = 32
    max_ws_per_address: PositiveInt = 200
    ws_queue_size: PositiveInt = 1000
    requests_per_second: Annotated[float, Field(gt=0)] = 20.0
    burst: PositiveInt = 40
    max_wait_ms: PositiveInt = 60_000
    default_wait_ms: PositiveInt = 15_000
    sms_per_minute_user: PositiveInt = 10

    @model_validator(mode="after")
    def _default_within_max(self) -> LimitsConfig:
        if self.default_wait_ms > self.max_wait_ms:
            raise ValueError(
                f"default_wait_ms ({self.default_wait_ms}) must not exceed "
                f"max_wait_ms ({self.max_wait_ms})"
            )
        return self


class EventStreamConfig(_Model):
    """``[event_stream]``: ``GET /api/events`` (Server-Sent Events).

    ``replay_size`` is the earlier name of ``[events] replay_size`` (the stream's replay
    is now the one every transport resumes from); it is still read, when ``[events]``
    does not set ``replay_size`` itself.
    """

    heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    replay_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    retry_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 3000


class EventsConfig(_Model):
    """``[events]``: event ids and resuming after a reconnect (``onEvent`` ``since``,
    ``Last-Event-ID``)."""

    replay_size: Annotated[int, Field(ge=1, le=1_000_000)] = DEFAULT_REPLAY_SIZE
    replay_bytes: Annotated[int, Field(ge=1024, le=1 << 31)] = DEFAULT_REPLAY_BYTES
    resume_grace_seconds: Annotated[float, Field(ge=0, le=86_400)] = DEFAULT_RESUME_GRACE


#: With ``[users] backend = "sql"`` nothing tells the server about changed users, so a
#: cached verification is trusted at most this long.
MAX_SQL_CACHE_SECONDS = 3600.0


class UsersConfig(_Model):
    """``[users]``: where users are, login throttling and the credential cache.

    ``database`` is the earlier releases' user file; it now means "the SQLite storage"
    when ``[storage] url`` is not set (see the module docstring).

    ``backend = "local"`` (the default) keeps users in the storage, managed with
    ``vwell-pbx user``. ``backend = "sql"`` reads them from another application's
    database (``directory``): ``dsn`` says where (PostgreSQL or MySQL/MariaDB; the
    ``password`` better from ``VWELL_PBX_USERS_PASSWORD``), ``query`` how (a SELECT with
    ``:login`` and ``:login2`` returning a ``sha1`` column, optionally ``role`` and
    ``extensions``); ``pool_size``, ``connect_timeout`` and ``query_timeout`` bound its
    connections, and ``default_role`` is the role of users the query gives none.
    """

    database: Path | None = None
    auth_cache_seconds: Annotated[float, Field(ge=0)] = 60.0
    throttle_after: PositiveInt = 5
    throttle_after_address: PositiveInt = 20
    throttle_max_seconds: Annotated[float, Field(gt=0)] = 300.0
    throttle_forget_seconds: Annotated[float, Field(gt=0)] = 900.0
    backend: Literal["local", "sql"] = "local"
    dsn: str | None = None
    password: SecretStr | None = None
    query: str | None = None
    default_role: str = "operator"
    pool_size: Annotated[int, Field(ge=1, le=100)] = 4
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    query_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0

    @field_validator("database")
    @classmethod
    def _resolve_database(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        if value:
            try:
                DirectoryDsn.parse(value)
            except DsnError as exc:
                raise ValueError(str(exc)) from None
        return value or None

    @field_validator("query")
    @classmethod
    def _check_query(cls, value: str | None) -> str | None:
        if value:
            try:
                DirectoryQuery.parse(value)
            except QueryError as exc:
                raise ValueError(str(exc)) from None
        return value or None

    @field_validator("password")
    @classmethod
    def _empty_password_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("default_role")
    @classmethod
    def _check_role(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("use 1-64 letters, digits, '_', '.', '-'")
        return value

    @model_validator(mode="after")
    def _sql_needs_dsn_and_query(self) -> UsersConfig:
        if self.backend != "sql":
            return self
        missing = [name for name in ("dsn", "query") if getattr(self, name) is None]
        if missing:
            raise ValueError(f'backend = "sql" needs {" and ".join(missing)}')
        if self.auth_cache_seconds > MAX_SQL_CACHE_SECONDS:
            raise ValueError(
                f'with backend = "sql" auth_cache_seconds is at most {MAX_SQL_CACHE_SECONDS:g}'
                " (the directory cannot tell the server about changed users)"
            )
        return self

    def directory_dsn(self) -> DirectoryDsn:
        """The directory's DSN with its password (``backend = "sql"`` only)."""
        if self.dsn is None:
            raise ConfigError("users.dsn is not set")
        return DirectoryDsn.parse(self.dsn).with_password(self.password)

    def directory_query(self) -> DirectoryQuery:
        """The checked query (``backend = "sql"`` only)."""
        if self.query is None:
            raise ConfigError("users.query is not set")
        return DirectoryQuery.parse(self.query)

    def directory_settings(self) -> DirectorySettings:
        """The directory's connection bounds."""
        return DirectorySettings(
            pool_size=self.pool_size,
            connect_timeout=self.connect_timeout,
            query_timeout=self.query_timeout,
        )


PositiveFloat = Annotated[float, Field(gt=0)]


class StorageConfig(_Model):
    """``[storage]``: the one database of users, lock-outs, call history and SMS.

    ``url`` is ``sqlite:PATH`` or ``postgresql://USER@HOST:PORT/DATABASE``; after
    validation it is never ``None`` (``AppConfig`` fills in the default) and carries the
    ``password`` if one is configured. Its ``str()`` is redacted.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, arbitrary_types_allowed=True
    )

    url: StorageUrl | None = None
    password: SecretStr | None = None
    pool_size: PositiveInt = 4
    pool_min: Annotated[int, Field(ge=0)] = 1
    connect_timeout: PositiveFloat = 5.0
    acquire_timeout: PositiveFloat = 5.0
    query_timeout: PositiveFloat = 10.0
    busy_timeout: PositiveFloat = 5.0
    queue_size: PositiveInt = 256
    listen_check_seconds: PositiveFloat = 5.0

    @field_validator("url", mode="before")
    @classmethod
    def _parse_url(cls, value: object, info: ValidationInfo) -> object:
        if value is None or isinstance(value, StorageUrl):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a string such as sqlite:data/vwell.sqlite3")
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        try:
            return StorageUrl.parse(value, base_dir=base if isinstance(base, Path) else None)
        except StorageUrlError as exc:
            raise ValueError(str(exc).removeprefix("storage url: ")) from None

    @field_validator("password")
    @classmethod
    def _empty_password_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="after")
    def _pool_bounds(self) -> StorageConfig:
        if self.pool_min > self.pool_size:
            raise ValueError(
                f"pool_min ({self.pool_min}) must not exceed pool_size ({self.pool_size})"
            )
        return self

    @property
    def resolved_url(self) -> StorageUrl:
        """``url`` (always set once the configuration is validated)."""
        if self.url is None:
            raise ConfigError("storage.url is not resolved (validate through AppConfig)")
        return self.url

    def settings(self) -> StorageSettings:
        """The storage layer's view of these keys."""
        return StorageSettings(
            pool_size=self.pool_size,
            pool_min=self.pool_min,
            connect_timeout=self.connect_timeout,
            acquire_timeout=self.acquire_timeout,
            query_timeout=self.query_timeout,
            busy_timeout=self.busy_timeout,
            queue_size=self.queue_size,
            listen_check_seconds=self.listen_check_seconds,
        )


_CHANNEL_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSTANCE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class InstancesConfig(_Model):
    """``[instances]``: several server instances sharing one PostgreSQL storage.

    With a PostgreSQL ``[storage] url`` and ``relay_events``, a ``dispatchEvent`` sent
    to one instance reaches the subscribers of every instance through ``channel``
    (PostgreSQL ``LISTEN``/``NOTIFY``). With SQLite there is one instance and nothing
    to relay. ``name`` only labels this instance (``/health``, logs); it defaults to
    the host name.
    """

    name: str | None = None
    relay_events: bool = True
    channel: str = "vwell_events"
    max_event_bytes: Annotated[int, Field(ge=256, le=1024 * _KIB)] = 64 * _KIB
    relay_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _INSTANCE_NAME_RE.fullmatch(value):
            raise ValueError(
                "use 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        return value or None

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str) -> str:
        if not _CHANNEL_RE.fullmatch(value):
            raise ValueError(
                "use 1-63 lower-case letters, digits and '_', not starting with a digit "
                "(a PostgreSQL channel name)"
            )
        if value == "vwell_users":
            raise ValueError("vwell_users is the channel of user changes; choose another")
        return value


def default_storage_url(data_dir: Path) -> StorageUrl:
    """``data_dir/vwell.sqlite3``, or ``data_dir/users.sqlite3`` if only that one exists."""
    path = data_dir / DEFAULT_STORAGE_FILE
    legacy = data_dir / LEGACY_USERS_FILE
    if not path.exists() and legacy.is_file():
        return StorageUrl.sqlite(legacy)
    return StorageUrl.sqlite(path)


_PBX_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def pbx_secret_env_name(name: str) -> str:
    """The environment variable that overrides the secret of the PBX called ``name``."""
    return "VWELL_PBX_PBX_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_SECRET"


SIMULATOR_HOST = "127.0.0.1"
"""Where an embedded simulator listens (loopback only) and its client connects."""

SIMULATOR_USERNAME = "vwell"
"""The AMI user of an embedded simulator whose ``[[pbx]]`` names none."""


class PbxConfig(_Model):
    """``[[pbx]]``: one AMI connection; the first one is the default.

    With ``simulator = true`` only ``name`` is needed: ``host`` (ignored: the simulator
    listens on ``SIMULATOR_HOST``), ``username`` (``SIMULATOR_USERNAME``) and ``port``
    (0: a free loopback port chosen at start) get defaults, and a missing ``secret`` is
    made up at start (``web.server.embedded_simulators``). An explicit ``port`` is used
    as given, and start-up fails if it is taken.
    """

    name: str
    host: str
    port: Annotated[int, Field(ge=0, le=65535)] = 5038
    username: str
    secret: SecretStr | None = None
    auth: Literal["md5", "plain"] = "md5"
    tls: bool = False
    ping_interval: Annotated[float, Field(gt=0)] = 20.0
    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    reconnect_max: Annotated[float, Field(gt=0)] = 30.0
    simulator: bool = False

    @model_validator(mode="before")
    @classmethod
    def _simulator_defaults(cls, data: Any) -> Any:
        # Before validation, so that host and username stay required for a real PBX.
        if isinstance(data, dict) and data.get("simulator") is True:
            return {"host": SIMULATOR_HOST, "username": SIMULATOR_USERNAME, "port": 0, **data}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _PBX_NAME_RE.match(value):
            raise ValueError(
                "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("host", "username")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in "\r\n\0"):
            raise ValueError("must be a non-empty single line")
        return value

    @model_validator(mode="after")
    def _check_secret_and_port(self) -> PbxConfig:
        if self.port == 0 and not self.simulator:
            raise ValueError("port 0 is only allowed for the embedded simulator")
        if self.secret is None or not self.secret.get_secret_value():
            if not self.simulator:
                raise ValueError(
                    f"secret is required: write it here or set {pbx_secret_env_name(self.name)}"
                )
        elif any(c in self.secret.get_secret_value() for c in "\r\n\0"):
            raise ValueError("secret must not contain CR, LF or NUL")
        return self


_TEMPLATE_FIELDS = frozenset({"from", "to"})


def _check_template(template: str) -> str:
    """Accept a template whose only placeholders are ``{from}`` and ``{to}``."""
    if any(c in template for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template ({exc}); write {{{{ and }}}} for literal braces") from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in _TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(
                f"unknown placeholder {{{field}}}: only {{from}} and {{to}} are allowed"
            )
    return template


def render_template(template: str, *, from_: str, to: str) -> str:
    """Fill a validated dial/redirect template with the normalised numbers."""
    return template.format_map({"from": from_, "to": to})


def _stringify(value: object) -> object:
    # TOML users write `priority = 1`; AMI wants text either way.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DialConfig(_Model):
    """``[dial]``: the Originate built by the ``dial`` method (templates)."""

    channel: str = "SIP/{from}"
    context: str = "DLPN_DialPlan{from}"
    exten: str = "{to}"
    priority: str = "1"
    callerid: str = "{to}"
    timeout_ms: PositiveInt = 30_000
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_text(cls, value: object) -> object:
        return _stringify(value)

    @field_validator("channel", "context", "exten", "priority", "callerid")
    @classmethod
    def _check_templates(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("variables")
    @classmethod
    def _check_variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key, template in value.items():
            if not key or any(c in key for c in "=:\r\n\0 "):
                raise ValueError(f"variable name {key!r} must be non-empty without '=', ':', space")
            _check_template(template)
        return value


class RedirectConfig(_Model):
    """``[redirect]``: where the ``redirect`` method sends a channel (Exten is ``toTel``)."""

    context: str = "default"
    priority: str = "1"

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_text(cls, value: object) -> object:
        return _stringify(value)

    @field_validator("context", "priority")
    @classmethod
    def _check_templates(cls, value: str) -> str:
        return _check_template(value)


class SmsConfig(_Model):
    """``[sms]``: the SMS backend of ``gsmSendSMS``, the durable outbox and the inbox.

    See ``vwell_pbx.pbx.sms.outbox`` and ``inbox`` for what each bound does, and
    docs/sms.md. ``queue_size`` bounded the in-memory queue of earlier releases; it is
    still accepted so that existing files load, and no longer used (the outbox's bounds
    are ``outbox_max`` and ``outbox_max_per_user``).
    """

    backend: Literal["yeastar", "yeastar-tg", "dongle"] = "yeastar"
    span: int | str = "auto"
    interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    queue_size: PositiveInt = 100
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    expire_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = 60.0
    retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    outbox_max: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    outbox_max_per_user: Annotated[int, Field(ge=1, le=10_000_000)] = 200
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 60.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    answer_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    report_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    inbox_part_seconds: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    inbox_pending_max: Annotated[int, Field(ge=1, le=100_000)] = 256
    inbox_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000

    @model_validator(mode="after")
    def _lease_outlives_an_answer(self) -> SmsConfig:
        if self.lease_seconds <= self.answer_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be longer than answer_seconds "
                f"({self.answer_seconds:g}): a claim must outlive one AMI answer"
            )
        return self

    @field_validator("span", mode="before")
    @classmethod
    def _check_span(cls, value: object, info: ValidationInfo) -> object:
        backend = info.data.get("backend")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError('span must be "auto", a span number or a device name')
        if backend == "dongle":
            if not isinstance(value, str) or value == "auto" or not re.fullmatch(r"[\w.-]+", value):
                raise ValueError('the dongle backend needs span = a device name such as "dongle0"')
            return value
        if isinstance(value, str) and value != "auto":
            if not value.isdigit():
                raise ValueError(f'span must be "auto" or a span number for {backend}')
            value = int(value)
        if isinstance(value, int) and value < 0:
            raise ValueError("span must not be negative")
        return value


_PHONE_CHARS = frozenset("+0123456789*#")


class PhoneConfig(_Model):
    """``[phone]``: number normalisation rules (``pbx.numbers``)."""

    rewrite: tuple[tuple[str, str], ...] = (("+7", "8"),)
    allow_internal: bool = True

    @field_validator("rewrite")
    @classmethod
    def _check_rewrite(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for prefix, replacement in value:
            if not prefix or not set(prefix) <= _PHONE_CHARS:
                raise ValueError(f"prefix {prefix!r} must be non-empty and use only + 0-9 * #")
            if not set(replacement) <= _PHONE_CHARS:
                raise ValueError(f"replacement {replacement!r} may use only + 0-9 * #")
        return value


class CallsConfig(_Model):
    """``[calls]``: the call tracker (live calls, call events) and the call history.

    ``trunks`` and ``extensions`` are the tracker's channel patterns
    (``vwell_pbx.calls.CallRules``); the ``max_*`` keys and ``originate_ttl`` its bounds
    (``TrackerLimits``); the rest say how ended calls are stored and kept.
    """

    enabled: bool = True
    trunks: tuple[str, ...] = DEFAULT_TRUNKS
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    retention_days: Annotated[int, Field(ge=0, le=36_500)] = 90
    purge_interval_seconds: Annotated[float, Field(gt=0)] = 3600.0
    reconcile_interval_seconds: Annotated[float, Field(ge=0)] = 600.0
    list_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0
    history_queue_size: PositiveInt = 10_000
    history_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200
    history_flush_seconds: Annotated[float, Field(ge=0, le=MAX_FLUSH_INTERVAL)] = 0.5
    max_calls: PositiveInt = 2_000
    max_channels: PositiveInt = 10_000
    max_transfers: PositiveInt = 16
    max_rang: PositiveInt = 64
    max_pending_originates: PositiveInt = 1_000
    originate_ttl: Annotated[float, Field(gt=0)] = 900.0
    max_recent_ids: PositiveInt = 4_096

    @field_validator("trunks", "extensions")
    @classmethod
    def _check_patterns(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for position, pattern in enumerate(value):
            if not pattern.strip():
                raise ValueError(f"{info.field_name}[{position}] must be a non-empty glob pattern")
        return value

    def rules(self, phone: PhoneRules) -> CallRules:
        """The tracker's channel rules, with ``phone`` for showing numbers."""
        return CallRules(trunks=self.trunks, extensions=self.extensions, phone=phone)

    def limits(self) -> TrackerLimits:
        """The tracker's bounds."""
        return TrackerLimits(
            max_calls=self.max_calls,
            max_channels=self.max_channels,
            max_transfers=self.max_transfers,
            max_rang=self.max_rang,
            max_pending_originates=self.max_pending_originates,
            originate_ttl=self.originate_ttl,
            max_recent_ids=self.max_recent_ids,
        )

    @property
    def retention_ms(self) -> int | None:
        """How long ended calls are kept, in ms; ``None`` (``retention_days = 0``): forever."""
        return self.retention_days * 86_400_000 if self.retention_days else None


class EventRuleConfig(_Model):
    """One event rule of a role: a name pattern and optional field equalities.

    Values are case-insensitive ``fnmatch`` patterns; a list means any of them;
    ``{extension}`` stands for any of the user's own extensions.
    """

    name: str = "*"
    fields: dict[str, str | list[str]] = Field(default_factory=dict)


class RoleConfig(_Model):
    """``[roles.NAME]``: what a role may do. See ``vwell_pbx.api.roles``."""

    methods: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    events: tuple[str | EventRuleConfig, ...] = ()
    own_extensions_only: bool = False
    own_calls_only: bool | None = None
    admin: bool = False
    extends: str | None = None
    sms_spans: tuple[str, ...] = ()
    sms_all: bool | None = None

    @field_validator("sms_spans", mode="before")
    @classmethod
    def _span_names(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value
        names = []
        for item in value:
            text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            if not isinstance(text, str) or not re.fullmatch(r"\*|[\w.-]{1,64}", text):
                raise ValueError(
                    f'entries must be span numbers, device names or "*", got {item!r:.40}'
                )
            names.append(text)
        return tuple(names)

    @field_validator("methods", "actions")
    @classmethod
    def _non_empty_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not item.strip():
                raise ValueError("entries must be non-empty")
        return value


class DemoConfig(_Model):
    """``[demo]``: the demo user and the simulated traffic of demo mode."""

    login: str = "Agent"
    login2: str = "Иванов И.И."
    password: SecretStr = SecretStr("demo")
    traffic_per_minute: Annotated[float, Field(ge=0)] = 6.0
    seed: int | None = None


_WEBHOOK_URL_RE = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$")


def webhook_name(name: str | None, position: int) -> str:
    """A webhook's name: its own, or ``webhook1``, ``webhook2``, ... by ``position``
    (counted from 1 in the order of the tables)."""
    return name or f"webhook{position}"


def webhook_secret_env_name(name: str) -> str:
    """The environment variable that overrides the secret of the webhook called ``name``."""
    return "VWELL_PBX_WEBHOOK_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_SECRET"


class WebhookConfig(_Model):
    """``[[webhooks]]``: POST matching events to a URL (see ``vwell_pbx.web.webhooks``).

    ``event`` is ``onEvent``'s filter object: ``name`` plus field filters (empty: every
    event). Deliveries carry ``X-Vwell-Signature: sha256=<hex HMAC-SHA256 of the body>``
    when ``secret`` is set; failed ones are retried ``max_retries`` times with backoff
    (``retry_seconds`` doubling up to ``retry_max_seconds``); at most ``queue_size``
    events wait, later ones are dropped and counted.
    """

    url: str
    name: str | None = None
    event: dict[str, str | int | float | bool | list[str | int | float | bool]] = Field(
        default_factory=dict
    )
    secret: SecretStr | None = None
    timeout: Annotated[float, Field(gt=0)] = 10.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 5
    retry_seconds: Annotated[float, Field(gt=0)] = 1.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 300.0
    queue_size: PositiveInt = 1000

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not _WEBHOOK_URL_RE.match(value):
            raise ValueError(f"expected an http:// or https:// URL, got {value[:80]!r}")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("use 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("event")
    @classmethod
    def _check_event(cls, value: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in value.items() if k.lower() != "name"}
        names = [v for k, v in value.items() if k.lower() == "name"]
        if names and not isinstance(names[0], str):
            raise ValueError("event.name must be a string")
        try:
            EventFilter.from_spec(names[0] if names else None, fields)
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("secret")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None


class AppConfig(_Model):
    """The whole configuration file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    users: UsersConfig = Field(default_factory=UsersConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)  # after users: see below
    pbx: tuple[PbxConfig, ...]
    dial: DialConfig = Field(default_factory=DialConfig)
    redirect: RedirectConfig = Field(default_factory=RedirectConfig)
    sms: SmsConfig = Field(default_factory=SmsConfig)
    phone: PhoneConfig = Field(default_factory=PhoneConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    event_stream: EventStreamConfig = Field(default_factory=EventStreamConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    instances: InstancesConfig = Field(default_factory=InstancesConfig)

    @model_validator(mode="after")
    def _earlier_replay_size(self) -> AppConfig:
        """``[event_stream] replay_size`` is the earlier name of ``[events] replay_size``."""
        earlier = self.event_stream.replay_size
        if earlier is None:
            return self
        if "replay_size" in self.events.model_fields_set:
            raise ValueError(
                "event_stream.replay_size and events.replay_size are both set; "
                "event_stream.replay_size is the earlier name: keep only events.replay_size"
            )
        events = self.events.model_copy(update={"replay_size": earlier})
        object.__setattr__(self, "events", events)  # frozen model, still being built
        return self

    @field_validator("pbx")
    @classmethod
    def _check_pbx(cls, value: tuple[PbxConfig, ...]) -> tuple[PbxConfig, ...]:
        if not value:
            raise ValueError("at least one [[pbx]] table is required")
        seen: dict[str, str] = {}
        for pbx in value:
            # Case-insensitive because the environment variable names upper-case them.
            key = pbx_secret_env_name(pbx.name)
            if key in seen:
                raise ValueError(f"PBX names must be unique: {seen[key]!r} and {pbx.name!r}")
            seen[key] = pbx.name
        return value

    @field_validator("webhooks")
    @classmethod
    def _check_webhook_names(cls, value: tuple[WebhookConfig, ...]) -> tuple[WebhookConfig, ...]:
        seen: dict[str, str] = {}
        for position, webhook in enumerate(value, start=1):
            name = webhook_name(webhook.name, position)
            # Also unique as environment variable names, which upper-case them.
            key = webhook_secret_env_name(name)
            if key in seen:
                raise ValueError(f"webhook names must be unique: {seen[key]!r} and {name!r}")
            seen[key] = name
        return value

    @field_validator("storage")
    @classmethod
    def _resolve_storage(cls, value: StorageConfig, info: ValidationInfo) -> StorageConfig:
        users = info.data.get("users")
        legacy = users.database if isinstance(users, UsersConfig) else None
        url = value.url
        if url is not None and legacy is not None:
            raise ValueError(
                "url and users.database are both set; users.database is the earlier name "
                "of the SQLite storage: remove it (`vwell-pbx db copy` moves its users)"
            )
        if url is None:
            base = info.context.get("base_dir") if isinstance(info.context, dict) else None
            url = (
                StorageUrl.sqlite(legacy)
                if legacy is not None
                else default_storage_url((base if isinstance(base, Path) else Path()) / "data")
            )
        return value.model_copy(update={"url": url.with_password(value.password)})

    @field_validator("roles")
    @classmethod
    def _check_role_names(cls, value: dict[str, RoleConfig]) -> dict[str, RoleConfig]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"role name {name!r}: use letters, digits, '_', '.', '-'")
        return value

    @property
    def is_demo(self) -> bool:
        """True when every PBX is the embedded simulator."""
        return all(p.simulator for p in self.pbx)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Overlay secrets from the environment onto the raw TOML data (before validation)."""
    for variable, section, key in (
        (STORAGE_URL_ENV, "storage", "url"),
        (STORAGE_PASSWORD_ENV, "storage", "password"),
        (USERS_PASSWORD_ENV, "users", "password"),
    ):
        if env.get(variable):
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = env[variable]
    server_secret = env.get(SERVER_SECRET_ENV)
    if server_secret:
        server = data.setdefault("server", {})
        if isinstance(server, dict):
            server["secret"] = server_secret
    pbxs = data.get("pbx")
    for index, pbx in enumerate(pbxs if isinstance(pbxs, list) else ()):
        if not isinstance(pbx, dict):
            continue
        name = pbx.get("name")
        secret = env.get(pbx_secret_env_name(name)) if isinstance(name, str) else None
        if not secret and index == 0:
            secret = env.get(FIRST_PBX_SECRET_ENV)
        if secret:
            pbx["secret"] = secret
    webhooks = data.get("webhooks")
    for position, webhook in enumerate(webhooks if isinstance(webhooks, list) else (), start=1):
        if not isinstance(webhook, dict):
            continue
        given = webhook.get("name")
        name = webhook_name(given if isinstance(given, str) else None, position)
        secret = env.get(webhook_secret_env_name(name))
        if secret:
            webhook["secret"] = secret


def _validate(
    data: Mapping[str, Any], *, base_dir: Path | None, source: str, path: Path | None
) -> AppConfig:
    try:
        return AppConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append((_format_loc(tuple(err["loc"])), msg))
        lines = [f"{source}: {field}: {msg}" for field, msg in problems]
        raise ConfigError(
            "\n".join(lines), path=path, field=problems[0][0], problems=tuple(problems)
        ) from None


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read, validate and return the configuration in ``path``.

    ``env`` (default ``os.environ``) supplies the secret overrides listed in the
    module docstring. Raises ``ConfigError`` naming the file and each bad field.
    """
    env = os.environ if env is None else env
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found", path=path) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=path) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the file is not UTF-8 text", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", path=path) from None
    _apply_env(data, env)
    return _validate(data, base_dir=path.resolve().parent, source=str(path), path=path)


def demo_config(data_dir: Path, *, env: Mapping[str, str] | None = None) -> AppConfig:
    """The configuration of demo mode: the embedded simulator, everything on loopback.

    The storage is ``data_dir / "vwell.sqlite3"`` (or the ``users.sqlite3`` that earlier
    releases' demo created there, if only that exists); the simulator takes the
    ``simulator = true`` defaults (a free loopback port, a secret made up at start).
    """
    data: dict[str, Any] = {
        "server": {"http": "127.0.0.1:8930", "ws": "127.0.0.1:8931"},
        "pbx": [{"name": "demo", "simulator": True}],
    }
    _apply_env(data, os.environ if env is None else env)
    if "url" not in data.get("storage", {}):
        data.setdefault("storage", {})["url"] = default_storage_url(data_dir.absolute())
    return _validate(data, base_dir=None, source="demo configuration", path=None)


def find_config_path(
    cli_value: str | None, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """Where the configuration is: ``--config``, ``VWELL_PBX_CONFIG``, the default file.

    Returns ``None`` (demo mode) only when nothing was named and the default file does
    not exist. Raises ``ConfigError`` when a named file does not exist, so that a typo
    never starts the server in demo mode.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    for origin, value in (("--config", cli_value), (CONFIG_ENV, env.get(CONFIG_ENV))):
        if value:
            path = Path(value)
            if not path.is_absolute():
                path = cwd / path
            if not path.is_file():
                raise ConfigError(
                    f"{value}: configuration file not found (named by {origin})", path=path
                )
            return path
    default = cwd / DEFAULT_CONFIG_PATH
    return default if default.is_file() else None
