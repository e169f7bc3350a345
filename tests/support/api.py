"""Test support: credentials of the test users, the test configuration, and real
HTTP/WebSocket clients for the API (aiohttp's client; nothing here is a mock)."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from vwell_pbx.config import AppConfig
from vwell_pbx.storage import open_storage
from vwell_pbx.users import UserDirectory, scrypt_hasher, sha1_of_password
from vwell_pbx.web.server import RunningServer

DEMO_SHA1 = "89e495e7941cf9e40e6980d14a16bf023ccd4c91"  # sha1("demo"), as in the README
AGENT = {"login": "Agent", "login2": "Иванов И.И.", "sha1": DEMO_SHA1}
ADMIN = {"login": "root", "login2": "Admin", "sha1": sha1_of_password("root-pw")}
SUPERVISOR = {"login": "boss", "login2": "Петров П.П.", "sha1": sha1_of_password("boss-pw")}


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``extra`` (tables merge, other values replace)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def make_config(tmp_path: Path, pbx_port: int, **overrides: Any) -> AppConfig:
    """A configuration for tests: free loopback ports, a fresh storage (SQLite)."""
    data: dict[str, Any] = {
        "server": {"http": "127.0.0.1:0", "ws": "127.0.0.1:0"},
        "storage": {"url": f"sqlite:{tmp_path / 'vwell.sqlite3'}"},
        "users": {"throttle_after": 3},
        "pbx": [
            {
                "name": "office",
                "host": "127.0.0.1",
                "port": pbx_port,
                "username": "admin",
                "secret": "admin",
                "auth": "md5",
                "ping_interval": 2,
                "connect_timeout": 2,
                "reconnect_max": 0.5,
            }
        ],
        "sms": {"interval_seconds": 0},
    }
    return AppConfig.model_validate(deep_merge(data, overrides))


#: The salt of the users that tests add (16 bytes, as the directory draws them).
_TEST_SALT = b"vwell-test-salt."


@functools.lru_cache(maxsize=256)
def _scrypt_once(secret: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The production scrypt, each answer computed once per test process.

    scrypt is slow on purpose (about 50 ms of CPU at the directory's parameters), and the
    ``server`` fixture adds three users for each of several hundred servers: hashing them
    anew every time was over half of the fast subset's CPU. With one fixed salt the same
    user gets the same real hash, with the directory's own parameters, and the server
    verifies logins against it exactly as in production.
    """
    return scrypt_hasher(secret, salt, n, r, p)


async def add_users(
    config: AppConfig, users: Iterable[tuple[Mapping[str, str], str, tuple[str, ...]]]
) -> None:
    """Add ``(creds, role, extensions)`` users to the configuration's storage, as the CLI
    would (a connection of its own)."""
    async with open_storage(config.storage.resolved_url, config.storage.settings()) as storage:
        directory = UserDirectory(
            storage.users, hasher=_scrypt_once, random_bytes=lambda size: _TEST_SALT[:size]
        )
        for creds, role, extensions in users:
            await directory.add(
                creds["login"],
                creds["login2"],
                sha1_hex=creds["sha1"],
                role=role,
                extensions=extensions,
            )


async def add_user(
    config: AppConfig,
    creds: Mapping[str, str],
    *,
    role: str,
    extensions: tuple[str, ...] = (),
) -> None:
    """Add one user to the configuration's storage, as the CLI would (its own connection)."""
    await add_users(config, [(creds, role, extensions)])


async def add_test_users(config: AppConfig) -> None:
    """Agent (operator, extension 269), root (admin) and boss (supervisor)."""
    await add_users(
        config,
        [(AGENT, "operator", ("269",)), (ADMIN, "admin", ()), (SUPERVISOR, "supervisor", ())],
    )


_req_ids = itertools.count(1)


class WsClient:
    """A WebSocket API client for tests: requests matched by reqId, events kept apart."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.answers: dict[object, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(message.data)
            if "err" in data and "errCode" in data:
                future = self.answers.pop(data.get("reqId"), None)
                if future is not None and not future.done():
                    future.set_result(data)
                else:
                    self.unmatched.append(data)
            else:
                self.events.put_nowait(data)

    async def call(
        self,
        method: str,
        *,
        creds: Mapping[str, str] | None = AGENT,
        within: float = 10,
        **argument: Any,
    ) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        req_id = f"r{next(_req_ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[req_id] = future
        await self.send(
            {"method": method, "argument": {**(creds or {}), "reqId": req_id, **argument}}
        )
        return await asyncio.wait_for(future, within)

    async def send(self, envelope: Any) -> None:
        """Send a raw envelope (or any JSON value)."""
        await self.ws.send_str(orjson.dumps(envelope).decode())

    async def next_event(self, within: float = 5) -> dict[str, Any]:
        """The next pushed event."""
        return await asyncio.wait_for(self.events.get(), within)

    async def close(self) -> None:
        """Close the connection and stop reading."""
        await self.ws.close()
        self._reader.cancel()


class ApiClient:
    """HTTP and WebSocket access to a running server."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.url = server.http_url + "/api"

    async def post(
        self, method: str, *, creds: Mapping[str, str] | None = AGENT, **argument: Any
    ) -> dict[str, Any]:
        """POST a JSON envelope."""
        envelope = {"method": method, "argument": {**(creds or {}), **argument}}
        async with self.session.post(self.url, json=envelope) as response:
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def get_b64(self, envelope: Any) -> dict[str, Any]:
        """GET with fb64json, as the original's XMLHttpRequest example does."""
        b64 = base64.b64encode(orjson.dumps(envelope)).decode()
        async with self.session.get(f"{self.url}?fb64json={b64}") as response:
            assert response.status == 200
            result: dict[str, Any] = await response.json()
            return result

    async def ws(self, url: str | None = None) -> WsClient:
        """Open a WebSocket to the WebSocket port (or ``url``)."""
        return WsClient(await self.session.ws_connect(url or self.server.ws_url))
