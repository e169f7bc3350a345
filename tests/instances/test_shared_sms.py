"""The SMS outbox shared by two real ``vwell-pbx serve`` processes on one PostgreSQL.

What is checked is what reached the PBX: the simulators run in this test process and
record every SMS they were asked to send (its text, when it arrived, over which AMI
connection: each instance's client puts its own random prefix on every ``ActionID``),
and that is compared with what ``smsHistory`` says through both instances.

- 50 SMS queued through both instances for two PBXs (two lanes) are each sent exactly
  once, and each PBX never got two sends closer than ``interval_seconds``, whichever
  instance sent them;
- an instance killed (SIGKILL) while the PBX is answering its send: the other instance
  sends the rest, but only once the dead one's lease on the lane ran out, and does not
  send the interrupted SMS again (it ends ``unknown``);
- the SMS rate per user counts the SMS stored through every instance.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from tests.instances.harness import Deployment, ServerProcess
from tests.support import assert_envelope, fast_simulator, until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.simulator.gsm import parse_send_sms
from vwell_pbx.storage import open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password

pytestmark = pytest.mark.slow  # server processes

SENDER = {"login": "crm", "login2": "CRM", "sha1": sha1_of_password("crm-pw")}
INTERVAL = 0.2
#: Test-sized outbox timings; the lease outlives an answer, as the configuration demands.
SMS = {
    "span": 2,
    "interval_seconds": INTERVAL,
    "lease_seconds": 3,
    "poll_seconds": 0.1,
    "answer_seconds": 2,
    "retry_seconds": 0.5,
}
LIMITS = {"sms_per_minute_user": 100_000, "requests_per_second": 10_000, "burst": 10_000}
FINAL = ("sent", "failed", "unknown")


def _pbx(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "username": "admin",
        "secret": "admin",
        "ping_interval": 2,
        "connect_timeout": 2,
        "reconnect_max": 0.5,
    }


def _overrides(pbxs: Mapping[str, PbxSimulator]) -> dict[str, Any]:
    return {
        "pbx": [_pbx(name, sim.port) for name, sim in pbxs.items()],
        "sms": SMS,
        "limits": LIMITS,
    }


async def _add_sender(deployment: Deployment) -> None:
    async with open_storage(deployment.storage_url) as storage:
        await UserDirectory(storage.users).add(
            SENDER["login"], SENDER["login2"], sha1_hex=SENDER["sha1"], role="supervisor"
        )


def _prefix(action_id: str | None) -> str:
    """The AMI client's part of an ``ActionID`` (``vw1a2b3c4d-17``: ``vw1a2b3c4d``)."""
    return (action_id or "").rpartition("-")[0]


def _prefixes(sim: PbxSimulator) -> set[str]:
    return {_prefix(action.action_id) for action in sim.actions_received if action.action_id}


def _sends(sim: PbxSimulator) -> list[tuple[str, str]]:
    """Every ``gsm send sms`` the simulator was asked for: (ActionID prefix, text)."""
    sends = []
    for action in sim.actions_received:
        if action.name.lower() != "command":
            continue
        parsed = parse_send_sms(action.get("Command") or "")
        if parsed is not None:
            sends.append((_prefix(action.action_id), parsed.text))
    return sends


async def _queue(
    targets: Sequence[tuple[ServerProcess, str]], texts: Sequence[str]
) -> dict[str, str]:
    """Queue ``texts[i]`` through ``targets[i % len(targets)]`` (instance, PBX name);
    the smsIds by text."""
    ids = {}
    for text, (server, pbx) in zip(texts, itertools.cycle(targets), strict=False):
        answer = await server.post("gsmSendSMS", creds=SENDER, pbx=pbx, tel="100", msg=text)
        assert_envelope(answer)
        assert answer["status"] == "queued" and answer["pbx"] == pbx, answer
        ids[text] = answer["smsId"]
    return ids


async def _history(server: ServerProcess) -> list[dict[str, Any]]:
    answer = await server.post("smsHistory", creds=SENDER, direction="out", limit=1000)
    assert_envelope(answer)
    messages: list[dict[str, Any]] = answer["messages"]
    return messages


async def _settled(server: ServerProcess, ids: Mapping[str, str], within: float) -> dict[str, str]:
    """Wait until every SMS of ``ids`` is final (asked through ``server``); statuses by text."""
    statuses: dict[str, str] = {}

    async def all_final() -> bool:
        by_id = {m["smsId"]: m["status"] for m in await _history(server)}
        statuses.clear()
        statuses.update({text: by_id.get(sms_id, "missing") for text, sms_id in ids.items()})
        return all(status in FINAL for status in statuses.values())

    await until(all_final, within, what="every SMS to be final", every=0.2)
    return statuses


def _gaps(sim: PbxSimulator) -> list[float]:
    arrivals = [sms.at for sms in sim.sms_sent]
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


@contextlib.asynccontextmanager
async def _simulators(*names: str, **options: Any) -> AsyncIterator[dict[str, PbxSimulator]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(fast_simulator(**options)) for name in names}


async def test_fifty_sms_through_two_instances_are_each_sent_once_paced_per_lane(
    deployment: Deployment,
) -> None:
    async with _simulators("office", "branch", sms_answer_delay=0.02) as pbxs:
        await _add_sender(deployment)
        port = pbxs["office"].port
        a = deployment.add("a", pbx_port=port, overrides=_overrides(pbxs))
        b = deployment.add("b", pbx_port=port, overrides=_overrides(pbxs))
        await deployment.start()
        texts = [f"shared {index:02d}" for index in range(50)]
        # Each instance stores SMS for both PBXs: a/office, b/office, a/branch, b/branch...
        ids = await _queue([(a, "office"), (b, "office"), (a, "branch"), (b, "branch")], texts)
        statuses = await _settled(a, ids, within=90)
        assert set(statuses.values()) == {"sent"}, statuses
        assert await _history(b) == await _history(a)  # one outbox, whichever is asked

        for index, (name, sim) in enumerate(pbxs.items()):
            meant = {text for i, text in enumerate(texts) if (i // 2) % 2 == index}
            reached = collections.Counter(sms.text for sms in sim.sms_sent)
            assert reached == collections.Counter(meant), name  # each once, on its own PBX
            assert all(sms.ok and sms.span == SMS["span"] for sms in sim.sms_sent), name
            # Pacing is per lane and held across instances: measured at the PBX, no two
            # sends of one span closer than the interval, whichever instance made them.
            assert min(_gaps(sim)) >= INTERVAL - 0.01, (name, _gaps(sim))
        assert deployment.password not in deployment.logs()


async def test_a_killed_instance_mid_send_the_other_sends_the_rest_after_the_lease(
    deployment: Deployment,
) -> None:
    # The PBX takes 0.5 s to answer a send, so an instance can be killed while waiting.
    async with _simulators("office", sms_answer_delay=0.5) as pbxs:
        sim = pbxs["office"]
        await _add_sender(deployment)
        servers = {
            name: deployment.add(name, pbx_port=sim.port, overrides=_overrides(pbxs))
            for name in "ab"
        }
        connection: dict[str, str] = {}  # the ActionID prefix of each instance's AMI client
        for name in servers:
            before = _prefixes(sim)
            await deployment.start(name)
            (connection[name],) = _prefixes(sim) - before
        texts = [f"kill {index:02d}" for index in range(20)]
        ids = await _queue([(servers["a"], "office"), (servers["b"], "office")], texts)

        def in_flight() -> tuple[str, str] | None:
            """(the instance, the text) of a send the PBX has not answered yet."""
            answered = {sms.text for sms in sim.sms_sent}
            waiting = [(p, text) for p, text in _sends(sim) if text not in answered]
            if len(sim.sms_sent) < 3 or not waiting:
                return None
            owner = {prefix: name for name, prefix in connection.items()}
            return owner[waiting[-1][0]], waiting[-1][1]

        await until(lambda: in_flight() is not None, 30, what="a send in flight mid-queue")
        victim, interrupted = in_flight() or ("", "")
        survivor = servers["b" if victim == "a" else "a"]
        await servers[victim].kill()
        async with open_storage(deployment.storage_url) as storage:
            lane = await storage.db.fetch_one(
                "SELECT busy_until FROM sms_lanes WHERE busy_by LIKE :victim",
                {"victim": f"{victim}/%"},
            )
        assert lane is not None and lane[0] is not None  # the dead instance holds the lane
        lease_end = float(lane[0])
        killed_at = time.time()  # the simulator's clock (SentSms.at)

        statuses = await _settled(survivor, ids, within=90)

    reached = collections.Counter(sms.text for sms in sim.sms_sent)
    assert set(reached) == set(texts) and max(reached.values()) == 1, reached  # none doubled
    # The interrupted SMS reached the PBX, but its sender died before the answer:
    # nobody knows whether it went, so it is not sent again; every other one is sent.
    assert statuses[interrupted] == "unknown", statuses
    assert {t: s for t, s in statuses.items() if t != interrupted} == {
        t: "sent" for t in texts if t != interrupted
    }
    # The survivor sent the rest, and not before the dead instance's lease ran out.
    after_kill = [s for s in sim.sms_sent if s.at > killed_at and s.text != interrupted]
    assert after_kill and min(sms.at for sms in after_kill) >= lease_end - 0.01
    survivor_sends = [text for prefix, text in _sends(sim) if prefix == connection[survivor.name]]
    assert {sms.text for sms in after_kill} <= set(survivor_sends)
    assert deployment.password not in deployment.logs()


async def test_the_sms_rate_per_user_holds_across_instances(deployment: Deployment) -> None:
    async with _simulators("office") as pbxs:
        await _add_sender(deployment)
        overrides = {**_overrides(pbxs), "limits": {**LIMITS, "sms_per_minute_user": 3}}
        a = deployment.add("a", pbx_port=pbxs["office"].port, overrides=overrides)
        b = deployment.add("b", pbx_port=pbxs["office"].port, overrides=overrides)
        await deployment.start()
        # Three SMS through two instances use up the user's minute: neither takes a fourth.
        await _queue([(a, "office"), (b, "office")], ["rate 1", "rate 2", "rate 3"])
        for server in (a, b):
            refused = await server.post("gsmSendSMS", creds=SENDER, tel="100", msg="rate 4")
            assert refused["errCode"] == "rate_limited", refused
            assert 0 < refused["retryAfter"] <= 60
        assert len(await _history(a)) == 3
