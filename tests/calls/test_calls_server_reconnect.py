"""Never stuck: the live calls after the AMI connection drops, after the PBX restarts
mid-call, and when the server starts while a call is in progress, in both dialects.

After every (re)connect the server reads the PBX's channel list and rebuilds its live
calls from it: a call whose channels are gone ends with ``endReason: unknown`` (and is
stored), a call that went on is kept, a call it did not know is reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.calls.server_support import events_until, eventually, names, settle, subscribe
from tests.support import SUPERVISOR, ApiClient, add_test_users, make_config
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer, serving


@pytest.fixture(params=["asterisk20", "yeastar"])
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[PbxSimulator]:
    """The simulator in each dialect."""
    async with PbxSimulator(
        username="admin",
        secret="admin",
        auth_failure_delay=0.05,
        call_step_delay=0.01,
        dialect=request.param,
    ) as sim:
        yield sim


def _live(server: RunningServer) -> Any:
    calls = server.api.links["office"].calls
    assert calls is not None
    return calls


async def _active(api: ApiClient) -> list[dict[str, Any]]:
    answer = await api.post("calls", creds=SUPERVISOR)
    assert answer["err"] is None, answer
    calls: list[dict[str, Any]] = answer["calls"]
    return calls


async def test_a_pbx_restart_mid_call_ends_the_call_as_unknown(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    ws = await api.ws()
    await subscribe(ws, SUPERVISOR, name="call.*")
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=60)
    answered = (await events_until(ws, "call.answered"))[-1]
    live = _live(server)
    before = live.reconciles

    # The PBX restarts: the call's channels die with it, and no Hangup is ever sent.
    await simulator.stop()
    await simulator.start()

    ended = (await events_until(ws, "call.ended"))[-1]
    assert live.reconciles > before
    assert ended["callId"] == answered["callId"]
    assert ended["endReason"] == "unknown" and ended["status"] == "ended"
    assert ended["channels"] == []
    (rest,) = await settle(api, ws)
    assert rest == []  # no call.missed: nobody knows what happened
    assert await _active(api) == []

    async def stored() -> bool:
        history = await api.post("callHistory", creds=SUPERVISOR)
        return [c["endReason"] for c in history["calls"]] == ["unknown"]

    await eventually(stored)
    await ws.close()


async def test_a_dropped_connection_keeps_a_call_that_goes_on(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    ws = await api.ws()
    await subscribe(ws, SUPERVISOR, name="call.*")
    channel = await simulator.incoming_call("+79787342741", span=11, to="269", hold=60)
    answered = (await events_until(ws, "call.answered"))[-1]
    live = _live(server)
    before = live.reconciles

    simulator.drop_connections()  # the PBX stays up, and so does the call
    await eventually(lambda: _reconciled_since(live, before))
    (still,) = await _active(api)
    assert (still["callId"], still["status"]) == (answered["callId"], "up")
    (rest,) = await settle(api, ws)
    assert rest == []  # the rebuilt call is the known one: nothing new to report

    # The call ends after the reconnect: its end is seen as it happens.
    found = simulator.engine.find(channel)
    assert found is not None
    simulator.engine.hangup(found, 16)
    ended = (await events_until(ws, "call.ended"))[-1]
    assert (ended["callId"], ended["endReason"]) == (answered["callId"], "completed")
    assert await _active(api) == []
    await ws.close()


async def _reconciled_since(live: Any, before: int) -> bool:
    return bool(live.reconciles > before)


async def test_a_call_in_progress_at_start_is_rebuilt(
    tmp_path: Path, simulator: PbxSimulator
) -> None:
    """The server starts while a call is up: the first channel list reports it."""
    channel = await simulator.incoming_call("+79787342741", span=11, to="269", hold=60)
    config = make_config(tmp_path, simulator.port)
    await add_test_users(config)
    async with serving(config, wait_for_pbx=5) as server, aiohttp.ClientSession() as session:
        api = ApiClient(server, session)
        ws = await api.ws()
        answer = await subscribe(ws, SUPERVISOR, name="call.*")

        async def rebuilt() -> bool:
            return len(await _active(api)) == 1

        await eventually(rebuilt)
        (call,) = await _active(api)
        assert (call["status"], call["direction"], call["fromNumber"], call["extension"]) == (
            "up",
            "inbound",
            "89787342741",
            "269",
        )
        assert call["answeredAt"] is not None  # estimated from the channels' age
        pushed = answer["calls"] or (await events_until(ws, "call.answered"))[-1:]
        assert [c["callId"] for c in pushed] == [call["callId"]]

        found = simulator.engine.find(channel)
        assert found is not None
        simulator.engine.hangup(found, 16)
        events = await events_until(ws, "call.ended")
        assert names(events)[-1] == "call.ended"
        assert (events[-1]["callId"], events[-1]["endReason"]) == (call["callId"], "completed")
        await ws.close()
