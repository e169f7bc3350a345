"""Kill and restart the PBX many times while clients keep sending.

Every request is answered exactly once (none lost, none duplicated), within its own
deadline, with success, ``pbx_unavailable`` or ``timeout`` only; a subscription made
before the first restart still delivers after the last. 20 restarts in CI; the soak
variant (``VWELL_SOAK=1``) does 200.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient, WsClient
from tests.support.envelopes import assert_envelope
from tests.support.simulator import fast_simulator
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # fault injection: PBX restarts under load

TIMEOUT_MS = 1000
DEADLINE = TIMEOUT_MS / 1000 + 1.5  # the request's own timeout plus slack
ALLOWED = {None, "pbx_unavailable", "timeout"}


class Traffic:
    """Clients sending Pings in a loop; every answer is checked and counted."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.codes: Counter[str] = Counter()
        self.sent = 0
        self.answered = 0
        self.worst = 0.0

    def _take(self, answer: dict[str, Any], started: float) -> None:
        assert_envelope(answer)
        assert answer["errCode"] in ALLOWED, answer
        self.answered += 1
        self.codes[answer["errCode"] or "ok"] += 1
        self.worst = max(self.worst, asyncio.get_running_loop().time() - started)

    async def pause(self) -> None:
        # Pacing, not waiting for a condition: a failed request comes back at once, and
        # a user's next click is not a busy loop.
        await asyncio.sleep(0.01)

    async def over_websocket(self, ws: WsClient, creds: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            started = loop.time()
            self.sent += 1
            # WsClient.call matches by reqId: a duplicate answer would be "unmatched".
            answer = await ws.call(
                "send",
                creds=creds,
                within=DEADLINE,
                callbackAwait=True,
                timeout=TIMEOUT_MS,
                fields={"action": "Ping"},
            )
            self._take(answer, started)
            await self.pause()

    async def over_http(self, api: ApiClient, creds: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            started = loop.time()
            self.sent += 1
            answer = await asyncio.wait_for(
                api.post(
                    "send",
                    creds=creds,
                    callbackAwait=True,
                    timeout=TIMEOUT_MS,
                    fields={"action": "Ping"},
                ),
                DEADLINE,
            )
            self._take(answer, started)
            await self.pause()


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """The clients send as fast as answers come: no per-user rate limit in the way."""
    return {"limits": {"requests_per_second": 100_000, "burst": 100_000}}


def _simulator(port: int) -> PbxSimulator:
    return fast_simulator(port=port)


async def restart_loop(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, restarts: int, name: str
) -> None:
    client = server.clients["office"]
    rng = random.Random(4)
    watcher = await api.ws()
    assert (await watcher.call("onEvent", name="Newchannel"))["err"] is None
    sockets = [await api.ws() for _ in range(3)]
    traffic = Traffic()
    senders = [
        asyncio.create_task(traffic.over_websocket(ws, creds))
        for ws, creds in zip(sockets, (AGENT, SUPERVISOR, ADMIN), strict=True)
    ]
    senders += [asyncio.create_task(traffic.over_http(api, creds)) for creds in (AGENT, ADMIN)]
    port = simulator.port
    current = simulator
    survived = 0
    try:
        for index in range(restarts):
            await until(lambda: traffic.answered > 0 or any(s.done() for s in senders))
            how = index % 3
            if how == 0:
                await current.stop()  # the PBX process dies
            elif how == 1:
                current.drop_connections()  # connections reset, the PBX stays
                await current.stop()
            else:
                current.mute = True  # hangs first, then dies
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await current.stop()
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            current = _simulator(port)
            await current.start()
            if index % 2 == 0:  # else traffic meets the PBX half-way up
                await client.wait_connected(10)
                served = traffic.codes["ok"]
                await until(lambda s=served: traffic.codes["ok"] >= s + 3, within=10)
            survived += 1
            for sender in senders:
                if sender.done():
                    sender.result()  # re-raise what went wrong
        await client.wait_connected(10)
        await current.incoming_call("+79787342741")
        event = await watcher.next_event(within=10)
        assert event["name"] == "Newchannel"
    finally:
        traffic.stop.set()
        results = await asyncio.gather(*senders, return_exceptions=True)
        for ws in (*sockets, watcher):
            await ws.close()
        await current.stop()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    assert all(not ws.unmatched for ws in sockets), "an answer came twice or unasked"
    assert traffic.answered == traffic.sent  # every request answered exactly once
    assert traffic.worst <= DEADLINE
    assert traffic.codes["ok"] > 0 and traffic.codes["pbx_unavailable"] > 0, traffic.codes
    record(
        name,
        restarts_survived=survived,
        requests=traffic.sent,
        answered=traffic.answered,
        worst_answer_s=round(traffic.worst, 3),
        **{f"answers_{k}": v for k, v in sorted(traffic.codes.items())},
    )


@pytest.mark.timeout(120)
async def test_restart_loop(api: ApiClient, server: RunningServer, simulator: PbxSimulator) -> None:
    await restart_loop(api, server, simulator, 20, "faults.restart_loop")


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_restart_loop_soak(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    await restart_loop(api, server, simulator, 200, "faults.restart_loop_soak")
