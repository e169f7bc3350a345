"""A PBX that answers garbage, closes mid-message or floods events: the scripted AMI
server with a behaviour written for each misbehaviour (a real socket, not a mock of our
code)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, ApiClient, add_test_users, make_config
from tests.support.ami_peer import Behaviour, PeerConnection, ScriptedPbx, answer
from tests.support.envelopes import assert_envelope
from tests.support.waiting import until
from vwell_pbx.events.filters import EventFilter
from vwell_pbx.protocol import encode_message
from vwell_pbx.web.server import RunningServer, serving

pytestmark = pytest.mark.slow  # fault injection: garbage, half messages, a flood


@contextlib.asynccontextmanager
async def server_for(
    peer: ScriptedPbx, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, ApiClient]]:
    config = make_config(tmp_path, peer.port)
    await add_test_users(config)
    async with serving(config) as server, aiohttp.ClientSession() as session:
        yield server, ApiClient(server, session)


async def _ping_answer(
    api: ApiClient, within: float = 2.0, ami_timeout_ms: int = 1000
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await asyncio.wait_for(
        api.post("send", callbackAwait=True, timeout=ami_timeout_ms, fields={"action": "Ping"}),
        within + 0.5,
    )
    assert loop.time() - started < within + 0.5
    return assert_envelope(result)


def misbehaving(behaviour: Behaviour) -> ScriptedPbx:
    """A scripted PBX that does ``behaviour`` on every connection (with the test
    configuration's AMI login)."""
    return ScriptedPbx(behaviour, username="admin", secret="admin")


async def _garbage(connection: PeerConnection) -> None:
    if connection.number % 2:
        connection.send(b"\x00\xff\xfe garbage \x01\x02" * 50 + b"\r\n" + b"A" * 100_000)
    else:
        await connection.log_in()
        connection.send(b"Event: Newchannel\r\n" + b"no colon here \x07\r\n" * 3 + b"\r\n")
    await connection.writer.drain()
    await connection.reader.read(1)


async def test_garbage_from_the_pbx(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with misbehaving(_garbage) as peer, server_for(peer, tmp_path) as (server, api):
        client = server.clients["office"]
        await until(lambda: len(peer.connections) >= 4, within=10)
        for _ in range(5):
            result = await _ping_answer(api, within=0.0)
            assert result["errCode"] == "pbx_unavailable", result
        async with api.session.get(server.http_url + "/health") as response:
            assert response.status == 503
            assert (await response.json())["pbx"][0]["lastError"]
        assert client.state.reconnects >= 3
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("vwell_pbx.ami")]
    assert any("protocol error" in m or "login failed" in m or "banner" in m for m in warnings), (
        warnings
    )
    record("faults.garbage_peer", connections=len(peer.connections))


async def _half_message(connection: PeerConnection) -> None:
    await connection.log_in()
    action = await connection.next_action()
    if action is None:
        return
    # Half an answer and half an event, then the connection goes.
    connection.send(answer(action)[:20] + b"\r\nEvent: Newchan")
    await connection.writer.drain()


# Each round costs one reconnect (the client's backoff, 0.25-0.5 s): every round does
# the same thing, so a few show that the client survives it repeatedly.
HALF_MESSAGE_ROUNDS = 8


async def test_pbx_closes_mid_message(tmp_path: Path) -> None:
    async with misbehaving(_half_message) as peer, server_for(peer, tmp_path) as (server, api):
        client = server.clients["office"]
        codes: dict[str, int] = {}
        for _ in range(HALF_MESSAGE_ROUNDS):
            with contextlib.suppress(TimeoutError):
                await client.wait_connected(5)
            result = await _ping_answer(api)
            assert result["errCode"] in ("pbx_unavailable", "timeout"), result
            codes[result["errCode"]] = codes.get(result["errCode"], 0) + 1
        assert codes.get("pbx_unavailable", 0) > 0
        assert len(peer.connections) >= 2
    record(
        "faults.closes_mid_message",
        requests=HALF_MESSAGE_ROUNDS,
        connections=len(peer.connections),
    )


FLOOD = 30_000
FLOOD_PING_WITHIN = 15.0  # seconds; a liveness bound (see test_event_flood)


async def _flood(connection: PeerConnection) -> None:
    await connection.log_in()
    writer = connection.writer

    async def respond() -> None:
        while (action := await connection.next_action()) is not None:
            writer.write(answer(action))

    responder = asyncio.create_task(respond())
    await asyncio.wait_for(connection.pbx.go.wait(), 10)  # once the test has subscribed
    try:
        event = encode_message(
            [
                ("Event", "Newchannel"),
                ("Privilege", "call,all"),
                ("Channel", "SIP/269-1"),
                ("CallerIDNum", "269"),
            ]
        )
        for index in range(FLOOD):
            writer.write(event)
            if index % 500 == 0:
                await writer.drain()
                await asyncio.sleep(0)
        await writer.drain()
        await responder
    finally:
        responder.cancel()


async def test_event_flood(tmp_path: Path) -> None:
    async with misbehaving(_flood) as peer, server_for(peer, tmp_path) as (server, api):
        client = server.clients["office"]
        # Count every flooded event that reached the bus, whoever still listens: the
        # WebSockets below may rightly be dropped as too slow during the flood.
        seen = [0]
        stop_counting = server.api.bus.listen(
            EventFilter.from_spec("Newchannel"), lambda _event: seen.__setitem__(0, seen[0] + 1)
        )
        reader = await api.ws()
        assert (await reader.call("onEvent", creds=AGENT, name="Newchannel"))["err"] is None
        idle = await api.session.ws_connect(server.ws_url)  # subscribes, never reads
        await idle.send_json({"method": "onEvent", "argument": {**ADMIN, "name": "*"}})
        await client.wait_connected(5)
        peer.go.set()
        worst = 0.0
        loop = asyncio.get_running_loop()
        received = 0
        # The Ping's answer queues behind the flood on the AMI stream, so how long it
        # takes is CPU time, not correctness (a loaded CI core makes it seconds): what
        # this proves is that requests keep being answered, without error, while the
        # reader works through the backlog. The worst round trip is recorded, not
        # asserted; the generous bounds are liveness, not speed.
        while seen[0] < FLOOD // 2:
            started = loop.time()
            answer = await _ping_answer(api, within=FLOOD_PING_WITHIN, ami_timeout_ms=15_000)
            assert answer["err"] is None, answer
            worst = max(worst, loop.time() - started)
            while not reader.events.empty():
                reader.events.get_nowait()
                received += 1
        assert client.connected
        async with api.session.get(server.http_url + "/health") as response:
            assert response.status == 200
        await until(lambda: seen[0] >= FLOOD, within=30)
        stop_counting()
        await idle.close()
        await reader.close()
    record(
        "faults.event_flood",
        events=FLOOD,
        worst_ping_s=round(worst, 3),
        dropped=server.api.bus.stats.dropped,
    )
