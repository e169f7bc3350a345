"""PBX faults with the real simulator: restart on the same port, refused connections,
a PBX that accepts but never answers. The server stays up, answers fast, reconnects,
keeps subscriptions, and says so on /health and in the log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.support import ApiClient
from tests.support.simulator import fast_simulator
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # fault injection: a PBX that hangs, refuses, restarts

SLACK = 0.5  # seconds an answer may take beyond the request's own timeout


def new_simulator(port: int) -> PbxSimulator:
    """A fresh PBX on the same address (a restarted Asterisk)."""
    return fast_simulator(port=port)


async def _health(api: ApiClient) -> tuple[int, dict[str, Any]]:
    async with api.session.get(api.server.http_url + "/health") as response:
        return response.status, dict(await response.json())


async def _timed(api: ApiClient, within: float, **argument: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await asyncio.wait_for(api.post("send", **argument), within + SLACK)
    assert loop.time() - started <= within + SLACK
    return answer


async def test_restart_on_the_same_port(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = server.clients["office"]
    ws = await api.ws()
    assert (await ws.call("onEvent", name="Newchannel"))["err"] is None
    port = simulator.port
    await simulator.stop()
    await until(lambda: not client.connected)
    answer = await _timed(api, 0.0, callbackAwait=True, fields={"action": "Ping"})
    assert answer["errCode"] == "pbx_unavailable" and "not connected" in answer["err"]
    status, health = await _health(api)
    assert status == 503 and health["status"] == "degraded"
    assert health["pbx"][0]["status"] in ("down", "connecting")
    assert health["pbx"][0]["lastError"]
    reconnects = client.state.reconnects
    restarted = new_simulator(port)
    async with restarted:
        await client.wait_connected(10)
        assert client.state.reconnects > reconnects
        assert (await _timed(api, 5, callbackAwait=True, fields={"action": "Ping"}))["err"] is None
        status, health = await _health(api)
        assert status == 200 and health["pbx"][0]["status"] == "connected"
        # The subscription made before the restart still delivers.
        await restarted.incoming_call("+79787342741")
        assert (await ws.next_event())["name"] == "Newchannel"
        await ws.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("vwell_pbx.ami")]
    assert any("connection lost" in m for m in messages), messages
    assert sum("connected to" in m for m in messages) >= 1


async def test_refused_connections_back_off(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    client = server.clients["office"]
    port = simulator.port
    await simulator.stop()
    await until(lambda: not client.connected)
    loop = asyncio.get_running_loop()
    started, first = loop.time(), client.state.reconnects
    await until(lambda: client.state.reconnects >= first + 3, within=10)
    # reconnect_max = 0.5 s in the test configuration: three attempts take a while but
    # not long; meanwhile every request fails at once.
    for _ in range(20):
        answer = await _timed(api, 0.0, callbackAwait=True, fields={"action": "Ping"})
        assert answer["errCode"] == "pbx_unavailable"
    assert loop.time() - started >= 0.2
    status, health = await _health(api)
    assert status == 503 and "connect failed" in (health["pbx"][0]["lastError"] or "")
    async with new_simulator(port):
        await client.wait_connected(10)
        assert (await api.post("send", callbackAwait=True, fields={"action": "Ping"}))[
            "err"
        ] is None


async def test_pbx_that_stops_answering(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = server.clients["office"]
    simulator.mute = True
    # Awaited requests end with `timeout` at their own deadline, never later.
    answers = await asyncio.gather(
        *(
            _timed(api, 1.0, callbackAwait=True, timeout=1000, fields={"action": "Ping"})
            for _ in range(5)
        )
    )
    assert {a["errCode"] for a in answers} == {"timeout"}
    # The keepalive Ping goes unanswered too: the client drops the connection itself.
    await until(lambda: not client.connected, within=12)
    answer = await _timed(api, 0.0, callbackAwait=True, fields={"action": "Ping"})
    assert answer["errCode"] == "pbx_unavailable"
    assert any("Ping" in r.getMessage() for r in caplog.records)
    # Still muted: it accepts TCP but sends no banner; logins time out and are retried.
    await asyncio.sleep(0.2)
    assert not client.connected
    simulator.mute = False
    await client.wait_connected(15)
    assert (await api.post("send", callbackAwait=True, fields={"action": "Ping"}))["err"] is None
