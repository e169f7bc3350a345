"""``[calls] enabled = false``: no tracker, no call events; the methods say so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.server_support import settle, subscribe
from tests.support import SUPERVISOR, ApiClient
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """The call tracker turned off."""
    return {"calls": {"enabled": False}}


async def test_without_the_tracker_there_are_no_calls(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    assert server.api.links["office"].calls is None
    ws = await api.ws()
    assert (await subscribe(ws, SUPERVISOR, name="call.*"))["calls"] == []
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=0.05)
    dialled = await api.post("dial", creds=SUPERVISOR, **{"from": "269"}, to="270", wait=True)
    assert dialled["outcome"] == "answered" and dialled["callId"] is None, dialled
    (events,) = await settle(api, ws)
    assert events == []
    answer = await api.post("calls", creds=SUPERVISOR)
    assert answer["errCode"] == "not_supported", answer
    history = await api.post("callHistory", creds=SUPERVISOR)
    assert history["err"] is None and history["calls"] == [], history  # what was stored
    await ws.close()
