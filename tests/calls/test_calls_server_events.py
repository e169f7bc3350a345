"""Call events from the running server, against the PBX simulator in both dialects.

The server runs on loopback, logged in to the simulator over TCP; a supervisor's real
WebSocket subscribes ``call.*``. Each scenario is played by the simulator and the
pushed call events are compared with what happened; ``calls`` is asked during the
call, ``callHistory`` after it, and ``dial`` with ``wait`` names the call it made.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.calls.replay import CALL_FIELDS
from tests.calls.server_support import (
    call_object,
    events_until,
    eventually,
    names,
    settle,
    subscribe,
)
from tests.support import AGENT, SUPERVISOR, ApiClient, WsClient
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer


@pytest.fixture(params=["asterisk20", "yeastar"])
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[PbxSimulator]:
    """The simulator in each dialect (Asterisk 20, and Yeastar MyPBX's 1.8)."""
    async with PbxSimulator(
        username="admin",
        secret="admin",
        auth_failure_delay=0.05,
        call_step_delay=0.01,
        dialect=request.param,
    ) as sim:
        yield sim


@pytest.fixture
async def watcher(api: ApiClient, server: RunningServer) -> AsyncIterator[WsClient]:
    """A supervisor's WebSocket subscribed to every call event."""
    ws = await api.ws()
    answer = await subscribe(ws, SUPERVISOR, name="call.*")
    assert answer["calls"] == []  # no call yet: the answer still says so
    # The first channel list was read (or the calls above would not be trustworthy).
    await eventually(lambda: _reconciled(server))
    yield ws
    await ws.close()


async def _reconciled(server: RunningServer) -> bool:
    link = server.api.links["office"]
    return link.calls is not None and link.calls.reconciles >= 1


def _same_call(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Every event is one whole call object plus its name, all about one call."""
    for event in events:
        assert tuple(call_object(event)) == CALL_FIELDS, event
    assert len({event["callId"] for event in events}) == 1
    assert {event["pbx"] for event in events} == {"office"}
    return events[-1]


async def test_incoming_gsm_call_answered(
    api: ApiClient, watcher: WsClient, simulator: PbxSimulator
) -> None:
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=2.0)
    (ringing, answered) = await events_until(watcher, "call.answered")
    assert (ringing["name"], answered["name"]) == ("call.ringing", "call.answered")
    assert ringing["status"] == "ringing" and ringing["answeredAt"] is None
    assert answered["status"] == "up" and answered["answeredAt"] is not None

    # During the call: the supervisor sees it with the same object.
    during = await api.post("calls", creds=SUPERVISOR)
    assert during["err"] is None, during
    (live,) = during["calls"]
    assert live["callId"] == answered["callId"] and live["status"] == "up"
    assert sorted(live["channels"]) == sorted(answered["channels"])

    ended = (await events_until(watcher, "call.ended"))[-1]
    (rest,) = await settle(api, watcher)
    assert rest == []  # answered: no call.missed
    last = _same_call([ringing, answered, ended])
    assert {
        key: last[key]
        for key in ("direction", "fromNumber", "toNumber", "extension", "trunk", "endReason")
    } == {
        "direction": "inbound",
        "fromNumber": "89787342741",  # normalised by the [phone] rules (+7 -> 8)
        "toNumber": "269",
        "extension": "269",
        "trunk": "YSGSM/11",
        "endReason": "completed",
    }
    assert last["status"] == "ended" and last["channels"] == []
    assert last["talkSeconds"] > 0 and last["originated"] is False
    assert (await api.post("calls", creds=SUPERVISOR))["calls"] == []

    # After the end: the history has the call as it was pushed last.
    async def stored() -> bool:
        answer = await api.post("callHistory", creds=SUPERVISOR)
        return answer["calls"] == [call_object(last)]

    await eventually(stored)


async def test_incoming_call_nobody_answers_is_missed(
    api: ApiClient, watcher: WsClient, simulator: PbxSimulator
) -> None:
    await simulator.incoming_call("+79787342741", span=11, to="269", answer=False, hold=0.3)
    events = await events_until(watcher, "call.ended")
    (rest,) = await settle(api, watcher)
    events += rest
    assert names(events) == ["call.ringing", "call.ended", "call.missed"]
    last = _same_call(events)
    assert last["endReason"] == "cancelled" and last["answeredAt"] is None
    assert last["extension"] == "269" and last["talkSeconds"] == 0


async def test_dial_answered_names_its_call(api: ApiClient, watcher: WsClient) -> None:
    answer = await api.post("dial", **{"from": "269"}, to="270", wait=True)
    assert answer["err"] is None and answer["outcome"] == "answered", answer
    events = await events_until(watcher, "call.ended")
    (rest,) = await settle(api, watcher)
    assert rest == []
    assert names(events) == ["call.ringing", "call.answered", "call.ended"]
    last = _same_call(events)
    assert answer["callId"] == last["callId"]
    assert last["originated"] is True and last["actionId"] == answer["actionId"]
    assert (last["direction"], last["fromNumber"], last["toNumber"]) == ("internal", "269", "270")
    assert [e["extension"] for e in events] == ["270", "270", "270"]
    assert last["endReason"] == "completed"


async def test_dial_from_a_busy_phone_names_its_call(api: ApiClient, watcher: WsClient) -> None:
    # 900 is busy in the simulator: the Originate fails (Reason 5) before the phone
    # rings; on Yeastar's 1.8 only the phone's channel and its Hangup 17 tell of it.
    answer = await api.post("dial", **{"from": "900"}, to="269", wait=True)
    assert answer["err"] is None and answer["outcome"] == "busy", answer
    events = await events_until(watcher, "call.ended")
    (rest,) = await settle(api, watcher)
    assert rest == []  # the click-to-call's own phone never misses it
    assert names(events) == ["call.ended"]
    last = _same_call(events)
    assert answer["callId"] == last["callId"]
    assert (last["originated"], last["actionId"]) == (True, answer["actionId"])
    assert (last["fromNumber"], last["toNumber"], last["extension"]) == ("900", "269", "900")
    assert (last["endReason"], last["answeredAt"], last["ringSeconds"]) == ("busy", None, 0)


async def test_dial_to_an_outside_number(api: ApiClient, watcher: WsClient) -> None:
    answer = await api.post(
        "dial", creds=AGENT, **{"from": "269"}, to="+7 978 123-45-67", wait=True
    )
    assert answer["err"] is None and answer["outcome"] == "answered", answer
    events = await events_until(watcher, "call.ended")
    last = _same_call(events)
    assert answer["callId"] == last["callId"]
    assert (last["direction"], last["fromNumber"], last["toNumber"]) == (
        "outbound",
        "269",
        "89781234567",
    )
    assert last["originated"] is True and last["endReason"] == "completed"


async def test_call_events_reach_the_event_stream_too(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    """``GET /api/events`` (Server-Sent Events) with a call event filter."""
    argument = {**SUPERVISOR, "event": {"name": "call.*", "extension": "269"}}
    params = {"fb64json": base64.b64encode(orjson.dumps({"argument": argument})).decode()}
    async with aiohttp.ClientSession() as session:
        response = await session.get(server.http_url + "/api/events", params=params)
        assert response.status == 200, await response.text()
        await simulator.incoming_call("+79787342741", span=11, to="270", hold=0.05)
        await simulator.incoming_call("+79787342741", span=11, to="269", hold=0.05)
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not got or got[-1]["name"] != "call.ended":
                line = (await response.content.readline()).decode()
                if line.startswith("data: "):
                    got.append(orjson.loads(line.removeprefix("data: ")))
        response.close()
    assert names(got) == ["call.ringing", "call.answered", "call.ended"]
    assert {event["extension"] for event in got} == {"269"}  # 270's call filtered out
