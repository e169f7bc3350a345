"""`vwell-pbx serve` as a real process: configuration errors, a real PBX configuration,
graceful shutdown on SIGTERM (close frames, AMI Logoff), and demo mode."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support import AGENT, add_test_users, make_config
from tests.support.simulator import fast_simulator

pytestmark = pytest.mark.slow  # server processes

SERVE = [sys.executable, "-m", "vwell_pbx.cli", "serve"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


async def _start(args: list[str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *SERVE, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


async def _read_until(process: asyncio.subprocess.Process, marker: str, within: float = 20) -> str:
    """The process's output up to and including the line containing ``marker``."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(within):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError("the server exited early:\n" + "".join(seen))
            seen.append(line)
            if marker in line:
                return "".join(seen)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


async def _stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        out, _ = await process.communicate()
    return out.decode()


async def test_invalid_configuration_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[pbx]]\nname = "office"\nhost = "127.0.0.1"\nport = "x"\nusername = "u"\nsecret = "s"\n',
        encoding="utf-8",
    )
    process = await _start(["--config", str(config)], tmp_path)
    async with asyncio.timeout(20):
        out, _ = await process.communicate()
    assert process.returncode == 1
    assert "pbx[0].port" in out.decode()


async def test_sigterm_closes_websockets_and_logs_off(tmp_path: Path) -> None:
    http_port, ws_port = _free_port(), _free_port()
    async with fast_simulator() as simulator:
        config = make_config(tmp_path, simulator.port)
        await add_test_users(config)
        path = tmp_path / "app-config.toml"
        path.write_text(
            f'[server]\nhttp = "127.0.0.1:{http_port}"\nws = "127.0.0.1:{ws_port}"\n'
            f'[storage]\nurl = "{config.storage.resolved_url}"\n'
            f'[[pbx]]\nname = "office"\nhost = "127.0.0.1"\nport = {simulator.port}\n'
            'username = "admin"\nsecret = "admin"\n',
            encoding="utf-8",
        )
        process = await _start(["--config", str(path)], tmp_path)
        try:
            await _read_until(process, "connected to")
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"ws://127.0.0.1:{ws_port}/api")
                await ws.send_json(
                    {
                        "method": "send",
                        "argument": {**AGENT, "callbackAwait": True, "fields": {"action": "Ping"}},
                    }
                )
                answer = await ws.receive_json(timeout=10)
                assert answer["err"] is None, answer
                # A process that runs one server freezes its start-up heap out of the
                # garbage collector's passes (web.server.freeze_startup_heap).
                async with session.get(f"http://127.0.0.1:{http_port}/metrics") as response:
                    metrics = await response.text()
                frozen = _metric(metrics, "vwell_gc_frozen_objects")
                assert frozen > 10_000, metrics
                process.send_signal(signal.SIGTERM)
                closing = await ws.receive(timeout=10)
                assert closing.type is aiohttp.WSMsgType.CLOSE
                assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
            output = await _stop(process)
        finally:
            if process.returncode is None:
                process.kill()
        assert process.returncode == 0, output
        assert any(a.name.lower() == "logoff" for a in simulator.actions_received)
        assert "admin" not in output.split("connected to")[-1]  # no secret in the log


@pytest.mark.skipif(not _ports_free(8930, 8931), reason="demo ports 8930/8931 are in use")
async def test_demo_mode_without_configuration(tmp_path: Path) -> None:
    process = await _start([], tmp_path)
    try:
        banner = await _read_until(process, "Ctrl+C stops")
        assert "DEMO MODE" in banner
        assert "Simulated calls start about 6 times a minute: mostly incoming GSM" in banner
        assert "89e495e7941cf9e40e6980d14a16bf023ccd4c91" in banner
        curl_line = next(line for line in banner.splitlines() if "curl '" in line)
        url = curl_line.split("'")[1]
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                answer = await response.json()
            assert answer["err"] is None, answer
            assert answer["event"]["Ping"] == "Pong"
            async with session.get("http://127.0.0.1:8930/health") as response:
                assert response.status == 200
        assert (tmp_path / "data" / "vwell.sqlite3").is_file()
    finally:
        output = await _stop(process)
    assert process.returncode == 0, output


async def test_simulator_true_in_a_configuration_file(tmp_path: Path) -> None:
    http_port = _free_port()
    path = tmp_path / "app-config.toml"
    path.write_text(
        f'[server]\nhttp = "127.0.0.1:{http_port}"\nws = ""\n'
        '[[pbx]]\nname = "lab"\nhost = "127.0.0.1"\nport = 0\nusername = "lab"\n'
        'secret = "lab-secret"\nsimulator = true\n'
        "[demo]\ntraffic_per_minute = 0\n",
        encoding="utf-8",
    )
    process = await _start(["--config", str(path)], tmp_path)
    try:
        await _read_until(process, "connected to")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{http_port}/health") as response,
        ):
            health = await response.json()
        assert response.status == 200, health
        assert health["pbx"][0]["name"] == "lab"
        assert health["pbx"][0]["status"] == "connected"
    finally:
        output = await _stop(process)
    assert process.returncode == 0, output
    assert "lab-secret" not in output
