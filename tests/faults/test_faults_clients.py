"""Clients that misbehave: leave mid-request, send half a frame or half a body, stop
reading. After they leave nothing remains: subscriptions, open WebSockets, the
per-address counter, AMI pending actions and asyncio tasks are back to their baseline."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import orjson
import pytest

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, ApiClient
from tests.support.waiting import until
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.app import PER_ADDRESS_KEY, SOCKETS_KEY
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # fault injection: churn, floods, cancellations


async def _baseline(api: ApiClient) -> int:
    ws = await api.ws()  # warm every lazy path once (auth cache, sender tasks ...)
    assert (await ws.call("send", callbackAwait=True, fields={"action": "Ping"}))["err"] is None
    await ws.close()
    server = api.server
    await until(lambda: not server.app[SOCKETS_KEY] and not server.app[PER_ADDRESS_KEY])
    await asyncio.sleep(0.05)
    return len(asyncio.all_tasks())


async def _back_to_baseline(api: ApiClient, tasks: int) -> None:
    server = api.server
    client = server.clients["office"]

    def state() -> dict[str, Any]:
        stats = server.api.bus.stats
        return {
            "subscriptions": stats.subscriptions,
            "subscribers": stats.subscribers,
            "websockets": len(server.app[SOCKETS_KEY]),
            "per_address": dict(server.app[PER_ADDRESS_KEY]),
            "ami_pending": len(client._pending),
            "tasks": len(asyncio.all_tasks()),
        }

    clean = {
        "subscriptions": 0,
        "subscribers": 0,
        "websockets": 0,
        "per_address": {},
        "ami_pending": 0,
    }
    try:
        await until(
            lambda: {**state(), "tasks": 0} == {**clean, "tasks": 0} and state()["tasks"] <= tasks,
            within=10,
        )
    except AssertionError:
        extra = [t.get_coro() for t in asyncio.all_tasks()]
        raise AssertionError(f"left behind: {state()} (baseline tasks {tasks}): {extra}") from None


async def _raw_upgrade(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.ws_url.removeprefix("ws://").removesuffix("/api").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _masked_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = (
        bytes([0x81, 0x80 | length])
        if length < 126
        else bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    )
    return header + mask + body


async def test_disconnect_mid_request(api: ApiClient, simulator: PbxSimulator) -> None:
    tasks = await _baseline(api)
    simulator.mute = True  # requests stay in flight
    pbx = api.server.clients["office"]
    for _ in range(5):
        pending = len(pbx._pending)
        ws = await api.ws()
        await ws.call("onEvent", name="Newchannel")
        await ws.send(
            {
                "method": "send",
                "argument": {
                    **AGENT,
                    "callbackAwait": True,
                    "timeout": 30_000,
                    "fields": {"action": "Ping"},
                },
            }
        )
        await ws.send({"method": "dial", "argument": {**AGENT, "from": "269", "to": "100"}})
        # Close once both wait for the PBX (their actions are pending in the AMI client).
        await until(lambda n=pending + 2: len(pbx._pending) >= n, what="both requests pending")
        await ws.close()
    # An HTTP client that gives up while its request waits for the PBX: its request is
    # cancelled (test_an_http_client_that_leaves_cancels_its_request shows it alone).
    pending = len(pbx._pending)
    request = asyncio.create_task(
        api.post("send", callbackAwait=True, timeout=1500, fields={"action": "Ping"})
    )
    await until(lambda: len(pbx._pending) > pending, what="the HTTP request pending")
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    simulator.mute = False  # the keepalive Ping lost meanwhile ends by its own timeout
    await _back_to_baseline(api, tasks)


async def test_an_http_client_that_leaves_cancels_its_request(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    client = server.clients["office"]

    def waiting() -> list[str]:
        return [entry.action for entry in client._pending.values() if entry.action == "CoreStatus"]

    simulator.mute = True  # the PBX never answers: the request would wait 30 s
    body = orjson.dumps(
        {
            "method": "send",
            "argument": {
                **AGENT,
                "callbackAwait": True,
                "timeout": 30_000,
                "fields": {"action": "CoreStatus"},
            },
        }
    )
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    await until(lambda: waiting() == ["CoreStatus"])  # written to the PBX, awaited
    writer.close()  # the client leaves
    await until(lambda: waiting() == [], within=5)  # long before the 30 s timeout
    simulator.mute = False
    assert (await api.post("send", callbackAwait=True, fields={"action": "Ping"}))["err"] is None


async def test_half_frames_and_half_bodies(api: ApiClient, server: RunningServer) -> None:
    tasks = await _baseline(api)
    frame = _masked_frame(
        orjson.dumps({"method": "onEvent", "argument": {**AGENT, "name": "Newchannel"}})
    )
    for cut in (1, 2, 6, len(frame) // 2, len(frame) - 1):
        _, writer = await _raw_upgrade(server)
        writer.write(
            _masked_frame(
                orjson.dumps({"method": "onEvent", "argument": {**AGENT, "name": "Hangup"}})
            )
        )  # one whole request: a subscription
        writer.write(frame[:cut])  # then half of the next frame
        await writer.drain()
        await until(lambda: server.api.bus.stats.subscriptions >= 1)
        writer.transport.abort()
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    for _ in range(3):  # a POST that announces 1000 bytes and sends 10
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"method":'
        )
        await writer.drain()
        writer.transport.abort()
    await _back_to_baseline(api, tasks)
    assert (await api.post("send", fields={"action": "Ping"}))["err"] is None


async def test_client_that_stops_reading(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    tasks = await _baseline(api)
    _, writer = await _raw_upgrade(server)
    writer.write(
        _masked_frame(
            orjson.dumps({"method": "onEvent", "argument": {**ADMIN, "name": "UserEvent"}})
        )
    )
    await writer.drain()
    await until(lambda: server.api.bus.stats.subscriptions == 1)
    # It never reads again: the kernel buffers fill, then its queue overflows.
    payload = "x" * 4000
    sent = 0
    while server.app[SOCKETS_KEY] and sent < 20_000:
        for _ in range(200):
            simulator.emit(Message.build(("Event", "UserEvent"), ("Payload", payload)))
        sent += 200
        await asyncio.sleep(0.01)
    await _back_to_baseline(api, tasks)
    assert server.api.bus.stats.dropped > 0
    writer.transport.abort()
    record("faults.slow_reader", events_until_dropped=sent)


@pytest.mark.parametrize("server_overrides", [{"limits": {"max_ws_per_address": 5}}])
async def test_connection_churn_keeps_the_address_counter_exact(
    api: ApiClient, server: RunningServer
) -> None:
    tasks = await _baseline(api)
    for _ in range(10):
        sockets = [await api.session.ws_connect(server.ws_url) for _ in range(5)]
        for ws in sockets:
            await ws.close()
        await until(lambda: not server.app[PER_ADDRESS_KEY])
    await _back_to_baseline(api, tasks)
    answers: list[Any] = []
    ws = await api.ws()
    answers.append(await ws.call("send", fields={"action": "Ping"}))
    await ws.close()
    assert answers[0]["err"] is None
