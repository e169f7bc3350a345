"""Call history written by two real ``vwell-pbx serve`` processes on one PostgreSQL,
both connected to the same PBX: each sees every call end and offers to write it, the
database keeps each call once, and ``callHistory`` answers the same from both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.instances.harness import Deployment, ServerProcess
from tests.support import WsClient, assert_envelope, until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password

pytestmark = pytest.mark.slow  # server processes

SUPERVISOR = {"login": "boss", "login2": "Boss", "sha1": sha1_of_password("boss-pw")}


async def _history(server: ServerProcess) -> list[dict[str, Any]]:
    answer = await server.post("callHistory", creds=SUPERVISOR, limit=1000)
    assert_envelope(answer)
    assert answer["next"] is None, answer
    calls: list[dict[str, Any]] = answer["calls"]
    return calls


def _drain(ws: WsClient, into: dict[str, dict[str, Any]]) -> None:
    """Move the ``call.ended`` events ``ws`` received so far into ``into`` (by callId)."""
    while not ws.events.empty():
        event = ws.events.get_nowait()
        if event.get("name") == "call.ended":
            assert event["callId"] not in into, event  # one call.ended per call
            into[event["callId"]] = {k: v for k, v in event.items() if k not in ("name", "eventId")}


async def test_each_call_is_stored_once_and_history_is_the_same_from_both(
    deployment: Deployment, simulator: PbxSimulator
) -> None:
    async with open_storage(deployment.storage_url) as storage:
        await UserDirectory(storage.users).add(
            SUPERVISOR["login"],
            SUPERVISOR["login2"],
            sha1_hex=SUPERVISOR["sha1"],
            role="supervisor",
        )
    a = deployment.add("a", pbx_port=simulator.port)
    b = deployment.add("b", pbx_port=simulator.port)
    await deployment.start()
    watchers = {}
    for server in (a, b):
        ws = await server.ws()
        assert_envelope(await ws.call("onEvent", creds=SUPERVISOR, name="call.ended"))
        watchers[server.name] = ws

    played = [
        await simulator.scenario("inbound", caller="+79787342741", to="269", talk=0.1),
        await simulator.scenario("inbound", caller="+79780000001", to="270", outcome="missed"),
        await simulator.scenario("internal", caller="269", to="267", talk=0.1),
        await simulator.scenario("ring_group", caller="269", answer_by="268", talk=0.1),
        await simulator.scenario("blind_transfer", caller="269", to="267", talk=0.1),
        await simulator.scenario("attended_transfer", caller="269", to="267", talk=0.1),
    ]
    await asyncio.gather(*(run.wait(timeout=30) for run in played))
    # Click-to-call of one phone through each instance, the second while the first
    # call still lasts: each instance knows only its own Originate, the other one sees
    # that call as any call of the PBX.
    dialled = {}
    for server in (a, b):
        answer = await server.post("dial", creds=SUPERVISOR, **{"from": "269"}, to="270", wait=True)
        assert_envelope(answer)
        assert answer["outcome"] == "answered", answer
        dialled[server.name] = answer
    assert dialled["a"]["callId"] != dialled["b"]["callId"], dialled
    expected = {run.linkedid for run in played} | {d["callId"] for d in dialled.values()}

    ended: dict[str, dict[str, dict[str, Any]]] = {"a": {}, "b": {}}

    async def all_stored() -> bool:
        for name, ws in watchers.items():
            _drain(ws, ended[name])
        # Each instance writes the calls it has waiting before it answers (read your
        # writes): once both saw every call end, asking both has both write them all.
        # Until b has written, a click-to-call of b's may still show a's record of it.
        await _history(b)
        stored = {call["callId"] for call in await _history(a)}
        return set(ended["a"]) == set(ended["b"]) == stored == expected

    await until(all_stored, 30, what="every call ended at both and stored", every=0.2)
    history = await _history(a)
    assert await _history(b) == history  # one history, whichever instance is asked
    async with open_storage(deployment.storage_url) as storage:
        rows = await storage.db.fetch_value("SELECT COUNT(*) FROM calls")
    assert rows == len(history) == len(expected)  # each call stored once
    for call in history:  # as one of the instances saw it end (their clocks differ a bit)
        assert call in (ended["a"][call["callId"]], ended["b"][call["callId"]]), call
    # Each instance marks its own click-to-call, and only its own.
    for name, answer in dialled.items():
        for seen_by, calls in ended.items():
            mine = calls[answer["callId"]]
            ours = seen_by == name
            assert (mine["originated"], mine["actionId"]) == (
                (True, answer["actionId"]) if ours else (False, None)
            ), (seen_by, mine)
    # The history keeps the dialling instance's record of each click-to-call, whichever
    # instance wrote the call first.
    stored = {call["callId"]: call for call in history}
    for name, answer in dialled.items():
        assert stored[answer["callId"]] == ended[name][answer["callId"]], name
    assert deployment.password not in deployment.logs()
