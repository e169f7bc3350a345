"""The real server on each storage backend, over real sockets: authenticated requests,
user changes made by the CLI in another process seen at once, lock-outs that survive a
restart."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.storage.fixtures import wait_until
from tests.support import AGENT, ApiClient, add_test_users, make_config
from vwell_pbx.config import AppConfig
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import StorageUrl
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import serving

VWELL_PBX = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "vwell-pbx"


def storage_overrides(url: StorageUrl) -> dict[str, Any]:
    if url.backend == "sqlite":
        return {"url": f"sqlite:{url.path}"}
    assert url.password is not None
    return {"url": url.dsn(), "password": url.password.get_secret_value()}


@pytest.fixture
async def config(storage_url: StorageUrl, simulator: PbxSimulator, tmp_path: Path) -> AppConfig:
    config = make_config(tmp_path, simulator.port, storage=storage_overrides(storage_url))
    await add_test_users(config)
    return config


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def _ping(api: ApiClient, creds: dict[str, str]) -> dict[str, Any]:
    return await api.post("send", creds=creds, callbackAwait=True, fields={"action": "Ping"})


async def cli(config_file: Path, url: StorageUrl, *args: str) -> tuple[int, str]:
    """``vwell-pbx ARGS --config FILE`` in its own process; the password via the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VWELL_PBX_")}
    if url.password is not None:
        env["VWELL_PBX_STORAGE_PASSWORD"] = url.password.get_secret_value()
    process = await asyncio.create_subprocess_exec(
        str(VWELL_PBX),
        *args,
        "--config",
        str(config_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return int(process.returncode or 0), out.decode()


def config_file(tmp_path: Path, url: StorageUrl) -> Path:
    path = tmp_path / "cli-config.toml"
    target = f"sqlite:{url.path}" if url.backend == "sqlite" else url.dsn()
    path.write_text(
        f'[storage]\nurl = "{target}"\n'
        '[[pbx]]\nname = "office"\nhost = "127.0.0.1"\nusername = "u"\nsecret = "s"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.slow  # CLI processes
async def test_authenticated_request_then_cli_changes_are_seen_at_once(
    config: AppConfig, storage_url: StorageUrl, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with serving(config, wait_for_pbx=5) as server:
        api = ApiClient(server, session)
        assert (await _ping(api, AGENT))["err"] is None
        assert (await _ping(api, AGENT))["err"] is None  # from the cache
        directory = server.api.authenticator.directory
        await wait_until(lambda: directory.generation() is not None)
        cli_config = config_file(tmp_path, storage_url)

        before = directory.generation()
        code, out = await cli(
            cli_config, storage_url, "user", "passwd", AGENT["login"], AGENT["login2"],
            "--password", "new-pw",
        )  # fmt: skip
        assert code == 0, out
        # SQLite: at once; PostgreSQL: once the NOTIFY arrived (milliseconds).
        await wait_until(lambda: directory.generation() != before)
        refused = await _ping(api, AGENT)
        assert refused["errCode"] == "auth_failed"
        renewed = {**AGENT, "sha1": sha1_of_password("new-pw")}
        assert (await _ping(api, renewed))["err"] is None

        before = directory.generation()
        code, out = await cli(cli_config, storage_url, "user", "remove", AGENT["login"],
                              AGENT["login2"])  # fmt: skip
        assert code == 0, out
        await wait_until(lambda: directory.generation() != before)
        assert (await _ping(api, renewed))["errCode"] == "auth_failed"


@pytest.mark.slow  # a CLI process
async def test_a_websocket_session_ends_when_its_user_is_removed_elsewhere(
    config: AppConfig, storage_url: StorageUrl, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with serving(config, wait_for_pbx=5) as server:
        api = ApiClient(server, session)
        ws = await api.ws()
        try:
            assert (await ws.call("send", fields={"action": "Ping"}, callbackAwait=True))[
                "err"
            ] is None
            # Later requests on the socket omit the credentials.
            answer = await ws.call(
                "send", creds=None, fields={"action": "Ping"}, callbackAwait=True
            )
            assert answer["err"] is None
            directory = server.api.authenticator.directory
            await wait_until(lambda: directory.generation() is not None)
            before = directory.generation()
            code, out = await cli(config_file(tmp_path, storage_url), storage_url, "user",
                                  "remove", AGENT["login"], AGENT["login2"])  # fmt: skip
            assert code == 0, out
            await wait_until(lambda: directory.generation() != before)
            answer = await ws.call(
                "send", creds=None, fields={"action": "Ping"}, callbackAwait=True
            )
            assert answer["errCode"] == "auth_failed"
        finally:
            await ws.close()


async def test_lockouts_survive_a_server_restart(
    config: AppConfig, session: aiohttp.ClientSession
) -> None:
    wrong = {**AGENT, "sha1": sha1_of_password("guess")}
    async with serving(config, wait_for_pbx=5) as server:
        api = ApiClient(server, session)
        for _ in range(3):  # make_config: throttle_after = 3
            assert (await _ping(api, wrong))["errCode"] == "auth_failed"
        assert (await _ping(api, AGENT))["errCode"] == "rate_limited"
    async with serving(config, wait_for_pbx=5) as restarted:
        api = ApiClient(restarted, session)
        assert (await _ping(api, AGENT))["errCode"] == "rate_limited"


async def test_the_password_never_reaches_the_logs(
    config: AppConfig,
    storage_url: StorageUrl,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    async with serving(config, wait_for_pbx=5) as server:
        api = ApiClient(server, session)
        assert (await _ping(api, AGENT))["err"] is None
        async with session.get(server.http_url + "/health") as response:
            health = await response.text()
    assert "storage:" in caplog.text  # the start-up line names the storage...
    if storage_url.password is not None:  # ...without its password
        secret = storage_url.password.get_secret_value()
        assert secret not in caplog.text
        assert secret not in health
