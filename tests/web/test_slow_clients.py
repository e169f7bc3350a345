"""A WebSocket client that stops reading is dropped; everyone else keeps receiving."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import ADMIN, ApiClient, WsClient
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.app import METRICS_KEY
from vwell_pbx.web.server import RunningServer


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    # A small queue so that the kernel's socket buffers cannot hide the slow reader.
    return {"limits": {"ws_queue_size": 50}}


def _drain(ws: WsClient) -> int:
    drained = 0
    while not ws.events.empty():
        ws.events.get_nowait()
        drained += 1
    return drained


async def test_slow_reader_is_dropped_others_keep_receiving(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    fast = await api.ws()
    await fast.call("onEvent", creds=ADMIN, name="UserEvent")
    slow = await api.session.ws_connect(server.ws_url, max_msg_size=0)
    await slow.send_str(
        orjson.dumps({"method": "onEvent", "argument": {**ADMIN, "name": "UserEvent"}}).decode()
    )
    await slow.receive(timeout=5)  # its answer; from now on it never reads
    payload = "x" * 8000
    total = 2000
    received = 0
    for index in range(total):
        simulator.emit(
            Message.build(
                ("Event", "UserEvent"),
                ("UserEvent", "load"),
                ("Seq", str(index)),
                ("Payload", payload),
            )
        )
        if index % 50 == 0:
            await asyncio.sleep(0)
            received += _drain(fast)
    while received < total:
        await fast.next_event(within=5)
        received += 1
    assert received == total
    assert server.api.bus.stats.dropped > 0
    assert server.app[METRICS_KEY].slow_clients._value.get() == 1
    # What the kernel had buffered is still readable; then the connection ends.
    closed = await slow.receive(timeout=5)
    while closed.type is aiohttp.WSMsgType.TEXT:
        closed = await slow.receive(timeout=5)
    assert closed.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.ERROR,
    )
    await fast.close()
    await slow.close()
