"""Several PBXs: a request picks one with `pbx`, events say which PBX they came from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import ApiClient, add_test_users, make_config
from tests.support.simulator import fast_simulator
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer, serving


@pytest.fixture
async def branch() -> AsyncIterator[PbxSimulator]:
    async with fast_simulator() as sim:
        yield sim


@pytest.fixture
async def two_pbx_server(
    tmp_path: Path, simulator: PbxSimulator, branch: PbxSimulator
) -> AsyncIterator[RunningServer]:
    config = make_config(
        tmp_path,
        simulator.port,
        pbx=[
            {
                "name": "office",
                "host": "127.0.0.1",
                "port": simulator.port,
                "username": "admin",
                "secret": "admin",
                "auth": "md5",
            },
            {
                "name": "branch",
                "host": "127.0.0.1",
                "port": branch.port,
                "username": "admin",
                "secret": "admin",
                "auth": "plain",
            },
        ],
    )
    await add_test_users(config)
    async with serving(config, wait_for_pbx=5) as running:
        yield running


async def test_request_picks_the_pbx_and_events_name_it(
    two_pbx_server: RunningServer, simulator: PbxSimulator, branch: PbxSimulator
) -> None:
    async with aiohttp.ClientSession() as session:
        api = ApiClient(two_pbx_server, session)
        answer = await api.post("dial", pbx="branch", **{"from": "269", "to": "100"})
        assert answer["err"] is None, answer
        assert any(a.name == "Originate" for a in branch.actions_received)
        assert not any(a.name == "Originate" for a in simulator.actions_received)

        answer = await api.post("dial", **{"from": "269", "to": "100"})  # the first PBX
        assert answer["err"] is None, answer
        assert any(a.name == "Originate" for a in simulator.actions_received)

        unknown = await api.post("dial", pbx="nowhere", **{"from": "269", "to": "100"})
        assert unknown["errCode"] == "bad_request"
        assert "office" in unknown["err"] and "branch" in unknown["err"]

        ws = await api.ws()
        await ws.call("onEvent", event={"name": "Newchannel", "Context": "DID_trunk_11"})
        await branch.incoming_call("+79787342741")
        event = await ws.next_event()
        assert event["pbx"] == "branch"
        await simulator.incoming_call("+79787342741")
        event = await ws.next_event()
        while event["pbx"] == "branch":  # the branch call's other legs
            event = await ws.next_event()
        assert event["pbx"] == "office"
        await ws.close()

        async with session.get(two_pbx_server.http_url + "/health") as response:
            health = await response.json()
        assert [p["name"] for p in health["pbx"]] == ["office", "branch"]
        assert all(p["status"] == "connected" for p in health["pbx"])
