"""Several real ``vwell-pbx serve`` processes on one PostgreSQL: the test harness.

A :class:`Deployment` is what an operator runs behind a load balancer: N server
processes, each with its own configuration file, its own HTTP port (the WebSocket is
served on it too) and its own AMI connection, all with one ``[storage] url``. The
password reaches them through ``VWELL_PBX_STORAGE_PASSWORD``, as in production, so a
test can check that it never appears in their logs. Nothing is a mock: the processes
are the product's entry point, the database is the session's throw-away PostgreSQL
cluster, and the PBX is the simulator, on loopback.

::

    deployment = Deployment(tmp_path, storage_url)  # storage_url carries the password
    a = deployment.add("a", pbx_port=sim.port)  # config overrides: overrides={...}
    b = deployment.add("b", pbx_port=sim.port)
    await deployment.start()  # in parallel; each until /health is ok
    await a.post("whoami", creds=AGENT)
    ws = await b.ws()  # a tests.support.WsClient
    code, out = await deployment.cli("user", "add", ...)  # the CLI, on the same database
    await a.kill()  # SIGKILL; a.stop() is SIGTERM
    await deployment.aclose()  # stops whatever still runs

Each process writes its output to ``<folder>/<name>/server.log`` (:meth:`ServerProcess.log`).
A process that exits before it is ready fails the test with the end of that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support import WsClient, deep_merge, until
from vwell_pbx.storage import StorageUrl

__all__ = ["Deployment", "ServerProcess", "free_port", "toml_text"]

CLI = [sys.executable, "-m", "vwell_pbx.cli"]
#: How long a server process may take to start (imports, storage, AMI login) on a
#: shared two-core machine.
START_SECONDS = 45.0
STOP_SECONDS = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_text(data: Mapping[str, Any]) -> str:
    """A configuration dict as TOML: top-level tables, lists of tables (``[[pbx]]``) and
    values; deeper tables are written inline."""
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, list) and body and all(isinstance(t, Mapping) for t in body):
            for table in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        elif isinstance(body, Mapping):
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items())
        else:
            lines.insert(0, f"{section} = {_toml_value(body)}")
    return "\n".join(lines) + "\n"


class ServerProcess:
    """One ``vwell-pbx serve`` process of a :class:`Deployment`."""

    def __init__(self, name: str, folder: Path, config: dict[str, Any], env: Mapping[str, str]):
        self.name = name
        self.folder = folder
        self.config = config
        self.env = dict(env)
        self.http_port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[WsClient] = []
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        """Its configuration file."""
        return self.folder / "app-config.toml"

    @property
    def log_path(self) -> Path:
        """Where its standard output and error go."""
        return self.folder / "server.log"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket API (served on the HTTP port)."""
        return f"ws://127.0.0.1:{self.http_port}/api"

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.returncode is None

    def log(self) -> str:
        """Everything it printed so far."""
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def write_config(self) -> None:
        """Write the configuration file with the current port."""
        self.config["server"] = {
            **self.config.get("server", {}),
            "http": f"127.0.0.1:{self.http_port}",
            "ws": "",
        }
        self.config_path.write_text(toml_text(self.config), encoding="utf-8")

    async def start(self, within: float = START_SECONDS) -> None:
        """Start it and wait until ``/health`` says it is ready (a free port is chosen,
        again if another process took it first)."""
        for _ in range(3):
            self.http_port = free_port()
            self.write_config()
            with self.log_path.open("ab") as log:
                self.process = await asyncio.create_subprocess_exec(
                    *CLI, "serve", "--config", str(self.config_path),
                    cwd=self.folder, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            try:
                await self.wait_ready(within)
                return
            except _PortTaken:
                continue
        raise AssertionError(f"{self.name}: no free port after three tries")

    async def wait_ready(self, within: float = START_SECONDS) -> None:
        """Until ``/health`` answers 200 (every PBX connected, the database up)."""

        async def ready() -> bool:
            if not self.running:
                text = self.log()
                if "address already in use" in text.lower():
                    raise _PortTaken
                raise AssertionError(f"{self.name} exited early:\n{text[-3000:]}")
            try:
                status, _ = await self.health()
            except aiohttp.ClientError:
                return False
            return status == 200

        await until(ready, within, what=f"{self.name} to be ready", every=0.1)

    async def session(self) -> aiohttp.ClientSession:
        """This instance's HTTP client session (closed by :meth:`close_clients`)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        return self._session

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /health``: the status code and the body."""
        session = await self.session()
        async with session.get(self.http_url + "/health") as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, str]:
        """``GET path``: the status code and the text."""
        session = await self.session()
        async with session.get(self.http_url + path) as response:
            return response.status, await response.text()

    async def post(
        self, method: str, *, creds: Mapping[str, str] | None, **argument: Any
    ) -> dict[str, Any]:
        """One request over HTTP POST; the answer envelope."""
        session = await self.session()
        envelope = {"method": method, "argument": {**(creds or {}), **argument}}
        async with session.post(self.http_url + "/api", json=envelope) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    async def ws(self) -> WsClient:
        """A WebSocket API client connected to this instance."""
        session = await self.session()
        client = WsClient(await session.ws_connect(self.ws_url))
        self._sockets.append(client)
        return client

    async def close_clients(self) -> None:
        """Close the WebSockets and the HTTP session opened through this object."""
        for client in self._sockets:
            with contextlib.suppress(Exception):
                await client.close()
        self._sockets.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop(self, within: float = STOP_SECONDS) -> int | None:
        """SIGTERM, as a service manager stops it; its exit code (killed if it hangs)."""
        await self.close_clients()
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                return await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{self.name} did not stop within {within} s") from None

    async def kill(self) -> int | None:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        await self.close_clients()
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.kill()
        return await process.wait()


class _PortTaken(Exception):
    """The chosen port was taken before the server bound it."""


class Deployment:
    """Server processes sharing one PostgreSQL database; see the module docstring."""

    def __init__(
        self, root: Path, storage_url: StorageUrl, *, env: Mapping[str, str] | None = None
    ):
        if storage_url.backend != "postgresql":
            raise ValueError("several instances share a PostgreSQL database")
        self.root = root
        self.storage_url = storage_url
        password = storage_url.password.get_secret_value() if storage_url.password else ""
        self.password = password
        self.env = {
            **os.environ,
            "VWELL_PBX_STORAGE_PASSWORD": password,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("VWELL_PBX_CONFIG", None)
        self.env.pop("VWELL_PBX_STORAGE_URL", None)
        self.servers: dict[str, ServerProcess] = {}

    def base_config(self, name: str, pbx_port: int) -> dict[str, Any]:
        """The configuration every instance starts from (tests merge their overrides)."""
        return {
            "server": {"http": "127.0.0.1:0", "ws": ""},
            # The URL without the password: it comes from the environment.
            "storage": {"url": self.storage_url.dsn(), "listen_check_seconds": 1},
            "users": {"throttle_after": 3},
            "instances": {"name": name},
            "pbx": [
                {
                    "name": "office",
                    "host": "127.0.0.1",
                    "port": pbx_port,
                    "username": "admin",
                    "secret": "admin",
                    "ping_interval": 2,
                    "connect_timeout": 2,
                    "reconnect_max": 0.5,
                }
            ],
            "sms": {"interval_seconds": 0},
        }

    def add(
        self, name: str, *, pbx_port: int, overrides: Mapping[str, Any] | None = None
    ) -> ServerProcess:
        """Declare an instance (not started): its folder, configuration and environment."""
        if name in self.servers:
            raise ValueError(f"an instance called {name!r} exists already")
        config = deep_merge(self.base_config(name, pbx_port), overrides or {})
        server = ServerProcess(name, self.root / name, config, self.env)
        self.servers[name] = server
        return server

    async def start(self, *names: str) -> None:
        """Start these instances (default: every one not running) in parallel."""
        chosen = (
            [self.servers[n] for n in names]
            if names
            else [s for s in self.servers.values() if not s.running]
        )
        await asyncio.gather(*(server.start() for server in chosen))

    async def cli(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        """Run ``vwell-pbx ARGS --config <the first instance's file>``: exit code, output."""
        first = next(iter(self.servers.values()))
        if not first.config_path.exists():
            first.write_config()
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, "--config", str(first.config_path),
            cwd=first.folder, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, _ = await process.communicate(None if stdin is None else stdin.encode())
        assert process.returncode is not None
        return process.returncode, out.decode()

    def logs(self) -> str:
        """Every instance's log, one after the other."""
        return "\n".join(f"--- {s.name}\n{s.log()}" for s in self.servers.values())

    async def aclose(self) -> None:
        """Stop every instance still running (SIGTERM, then SIGKILL if one hangs)."""
        results = await asyncio.gather(
            *(server.stop() for server in self.servers.values()), return_exceptions=True
        )
        errors: Sequence[BaseException] = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
