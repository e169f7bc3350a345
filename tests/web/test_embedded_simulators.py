"""``[[pbx]] simulator = true``: nothing else needed, and never on a port that is taken.

The simulators are real (loopback TCP); "taken" ports are held by real listening
sockets; the last test runs ``vwell-pbx serve`` as a process.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vwell_pbx.config import AppConfig, ConfigError
from vwell_pbx.web.server import embedded_simulators, serving


def lab_config(tmp_path: Path, *pbx: dict[str, Any]) -> AppConfig:
    """A configuration on free loopback ports whose ``[[pbx]]`` tables are ``pbx``."""
    return AppConfig.model_validate(
        {
            "server": {"http": "127.0.0.1:0", "ws": ""},
            "users": {"database": str(tmp_path / "users.sqlite3")},
            "pbx": list(pbx),
            "demo": {"traffic_per_minute": 0},
        }
    )


@pytest.fixture(params=["listening", "bound"])
def taken_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback port held by a real socket: listening (as a running Asterisk's is:
    the simulator sees that something answers) or only bound (binding fails)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        if request.param == "listening":
            holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A loopback port that nothing listens on (bound a moment ago, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_simulator_true_alone_is_enough(tmp_path: Path) -> None:
    config = lab_config(
        tmp_path, {"name": "lab", "simulator": True}, {"name": "two", "simulator": True}
    )
    async with embedded_simulators(config) as running:
        ports = [pbx.port for pbx in running.pbx]
        assert 0 not in ports and len(set(ports)) == 2  # each its own free port
        secrets = [pbx.secret.get_secret_value() for pbx in running.pbx if pbx.secret]
        assert len(secrets) == 2 and len(set(secrets)) == 2 and all(len(s) >= 20 for s in secrets)
        assert {pbx.host for pbx in running.pbx} == {"127.0.0.1"}
        async with serving(running, wait_for_pbx=5) as server:
            assert all(client.connected for client in server.clients.values())


async def test_an_explicit_free_port_is_used_as_given(tmp_path: Path, free_port: int) -> None:
    config = lab_config(
        tmp_path, {"name": "lab", "simulator": True, "port": free_port, "secret": "lab-secret"}
    )
    async with embedded_simulators(config) as running:
        (pbx,) = running.pbx
        assert pbx.port == free_port
        assert pbx.secret is not None and pbx.secret.get_secret_value() == "lab-secret"
        async with serving(running, wait_for_pbx=5) as server:
            assert server.clients["lab"].connected


async def test_an_explicit_port_that_is_taken_fails_naming_the_field(
    tmp_path: Path, taken_port: int
) -> None:
    config = lab_config(
        tmp_path,
        {"name": "real", "host": "10.0.0.1", "username": "u", "secret": "s"},
        {"name": "lab", "simulator": True, "port": taken_port},
    )
    with pytest.raises(ConfigError) as info:
        async with embedded_simulators(config):
            raise AssertionError("started on a taken port")
    assert info.value.field == "pbx[1].port"
    assert str(info.value).startswith("pbx[1].port: the embedded simulator cannot listen on ")
    assert f"127.0.0.1:{taken_port}" in str(info.value)


async def test_no_simulator_no_change(tmp_path: Path) -> None:
    real = {"name": "real", "host": "10.0.0.1", "username": "u", "secret": "s"}
    config = lab_config(tmp_path, real)
    async with embedded_simulators(config) as running:
        assert running is config


async def _serve_process(config_path: Path, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vwell_pbx.cli",
        "serve",
        "--config",
        str(config_path),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(30):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.slow  # a server process
async def test_serve_refuses_to_start_on_a_taken_port(tmp_path: Path, taken_port: int) -> None:
    path = tmp_path / "app-config.toml"
    path.write_text(
        f'[server]\nhttp = "127.0.0.1:0"\nws = ""\n'
        f'[[pbx]]\nname = "lab"\nsimulator = true\nport = {taken_port}\n',
        encoding="utf-8",
    )
    code, output = await _serve_process(path, tmp_path)
    assert code == 1, output
    assert f"pbx[0].port: the embedded simulator cannot listen on 127.0.0.1:{taken_port}" in output
    assert "Traceback" not in output
