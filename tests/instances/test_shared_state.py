"""Three real server processes on one PostgreSQL share their state: users (added,
changed and removed with the CLI), failed-login counts and lock-outs, and ``dispatchEvent``, which
reaches the subscribers of every instance exactly once. ``/health`` shows the database
and never its password.

The three instances (``a``, ``b``, ``c``) run for the whole module, each with its own
AMI connection to one simulator; every test uses logins of its own, so the tests do
not depend on their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.instances.harness import Deployment, ServerProcess
from tests.storage.fixtures import create_pg_database
from tests.storage.pg_cluster import PgCluster
from tests.support import WsClient, assert_envelope, fast_simulator, until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import LATEST, StorageUrl, open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SENDER = {"login": "crm", "login2": "Сервер CRM", "sha1": sha1_of_password("crm-pw")}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def simulator() -> AsyncIterator[PbxSimulator]:
    """One PBX that every instance logs in to."""
    async with fast_simulator() as sim:
        yield sim


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trio(
    tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster, simulator: PbxSimulator
) -> AsyncIterator[Deployment]:
    """Instances a, b and c on one new database, with the supervisor ``SENDER``."""
    url = await create_pg_database(pg_cluster)
    async with open_storage(url) as storage:
        await UserDirectory(storage.users).add(
            SENDER["login"], SENDER["login2"], sha1_hex=SENDER["sha1"], role="supervisor"
        )
    deployment = Deployment(tmp_path_factory.mktemp("trio"), url)
    for name in ("a", "b", "c"):
        deployment.add(name, pbx_port=simulator.port)
    try:
        await deployment.start()
        yield deployment
    finally:
        await deployment.aclose()


def _server(trio: Deployment, name: str) -> ServerProcess:
    return trio.servers[name]


async def _subscribe(server: ServerProcess, name: str = "crm.*") -> WsClient:
    ws = await server.ws()
    answer = await ws.call("onEvent", creds=SENDER, name=name)
    assert_envelope(answer)
    return ws


async def _drain_until(ws: WsClient, name: str, within: float = 10) -> list[dict[str, Any]]:
    """The events ``ws`` receives up to and including the first called ``name``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            event = await ws.events.get()
            seen.append(event)
            if event.get("name") == name:
                return seen


async def test_health_shows_the_shared_database_and_never_its_password(
    trio: Deployment,
) -> None:
    for name, server in trio.servers.items():
        status, health = await server.health()
        assert status == 200, (health["database"]["listener"], health["pbx"])
        database = health["database"]
        assert database["backend"] == "postgresql"
        assert database["reachable"] is True
        assert database["schemaVersion"] == LATEST == database["schemaLatest"]
        assert database["location"] == trio.storage_url.dsn()
        assert database["pool"]["max"] == 4
        assert 0 <= database["pool"]["busy"] <= database["pool"]["open"] <= 4
        assert database["listener"]["status"] == "listening"
        assert set(database["listener"]["channels"]) == {"vwell_users", "vwell_events"}
        assert health["instance"]["name"] == name
        assert health["instance"]["relay"]["channel"] == "vwell_events"
        status, metrics = await server.get("/metrics")
        assert status == 200
        assert "vwell_storage_up 1.0" in metrics
        assert 'vwell_storage_connections{backend="postgresql",state="max"} 4.0' in metrics
        assert "vwell_storage_listener_up 1.0" in metrics
        assert 'vwell_relay_events_total{outcome="sent"}' in metrics
        assert trio.password not in str(health) + metrics
    assert trio.password not in trio.logs()


async def test_a_user_added_with_the_cli_logs_in_at_every_instance_at_once(
    trio: Deployment,
) -> None:
    creds = {"login": "Agent7", "login2": "Сидоров С.С.", "sha1": sha1_of_password("one")}
    code, out = await trio.cli(
        "user", "add", creds["login"], creds["login2"], "--password", "one", "--extension", "207"
    )
    assert code == 0, out
    for name in ("a", "b", "c"):  # no wait: the row is in the shared database
        answer = await _server(trio, name).post("whoami", creds=creds)
        assert_envelope(answer)
        assert answer["extensions"] == ["207"]

    # Every instance has it cached now; a password changed elsewhere ends that at once
    # (each instance hears of the change through LISTEN/NOTIFY).
    code, out = await trio.cli(
        "user", "passwd", creds["login"], creds["login2"], "--password", "two"
    )
    assert code == 0, out
    new = {**creds, "sha1": sha1_of_password("two")}
    for name in ("a", "b", "c"):
        server = _server(trio, name)

        async def old_refused(server: ServerProcess = server) -> bool:
            answer = await server.post("whoami", creds=creds)
            return answer["errCode"] == "auth_failed"

        await until(old_refused, 5, what=f"{name} to refuse the old password", every=0.05)
        assert_envelope(await server.post("whoami", creds=new))

    code, out = await trio.cli("user", "remove", creds["login"], creds["login2"])
    assert code == 0, out
    for name in ("a", "b", "c"):
        server = _server(trio, name)

        async def gone(server: ServerProcess = server) -> bool:
            answer = await server.post("whoami", creds=new)
            return answer["errCode"] == "auth_failed"

        await until(gone, 5, what=f"{name} to refuse a removed user", every=0.05)


async def test_a_login_locked_out_at_one_instance_is_locked_out_at_the_others(
    trio: Deployment,
) -> None:
    password = "right"
    creds = {"login": "Locked", "login2": "Out", "sha1": sha1_of_password(password)}
    code, out = await trio.cli(
        "user", "add", creds["login"], creds["login2"], "--password", password
    )
    assert code == 0, out
    wrong = {**creds, "sha1": sha1_of_password("wrong")}
    a, b, c = (_server(trio, name) for name in ("a", "b", "c"))
    for _ in range(3):  # throttle_after = 3: the third failure locks the login
        answer = await a.post("whoami", creds=wrong)
        assert answer["errCode"] == "auth_failed", answer
    assert (await a.post("whoami", creds=wrong))["errCode"] == "rate_limited"
    # The other instances never saw a failure, yet refuse even the right password now.
    for server in (b, c):
        answer = await server.post("whoami", creds=creds)
        assert answer["errCode"] == "rate_limited", answer
        assert answer["retryAfter"] > 0


async def test_failed_logins_at_different_instances_count_together(trio: Deployment) -> None:
    password = "spread"
    creds = {"login": "Spread", "login2": "Guesses", "sha1": sha1_of_password(password)}
    code, out = await trio.cli(
        "user", "add", creds["login"], creds["login2"], "--password", password
    )
    assert code == 0, out
    wrong = {**creds, "sha1": sha1_of_password("wrong")}
    a, b, c = (_server(trio, name) for name in ("a", "b", "c"))
    # One guess at each instance: none saw three, yet the third locks (throttle_after = 3).
    for server in (a, b, c):
        answer = await server.post("whoami", creds=wrong)
        assert answer["errCode"] == "auth_failed", answer
    for server in (a, b, c):
        answer = await server.post("whoami", creds=creds)
        assert answer["errCode"] == "rate_limited", answer


async def test_dispatch_event_reaches_every_instance_once(trio: Deployment) -> None:
    subscribers = {name: await _subscribe(server) for name, server in trio.servers.items()}
    a, b = _server(trio, "a"), _server(trio, "b")
    sent = await a.post(
        "dispatchEvent", creds=SENDER, event={"name": "crm.note", "text": "привет", "n": 1}
    )
    assert_envelope(sent)
    assert sent["delivered"] == 1  # a's own subscriber; the others are counted on theirs
    # One instance's events arrive everywhere in the order it sent them (events from
    # different instances have no order between them).
    assert_envelope(await a.post("dispatchEvent", creds=SENDER, event={"name": "crm.done"}))
    for name, ws in subscribers.items():
        seen = await _drain_until(ws, "crm.done")
        assert [event["name"] for event in seen] == ["crm.note", "crm.done"], (name, seen)
        note = seen[0]
        assert note["text"] == "привет"
        assert note["n"] == 1
        assert note["origin"] == "api"
        assert (note["login"], note["login2"]) == (SENDER["login"], SENDER["login2"])
    # And from another instance; still exactly once each (nothing is re-broadcast).
    assert_envelope(await b.post("dispatchEvent", creds=SENDER, event={"name": "crm.back"}))
    assert_envelope(await b.post("dispatchEvent", creds=SENDER, event={"name": "crm.end"}))
    for name, ws in subscribers.items():
        seen = await _drain_until(ws, "crm.end")
        assert [event["name"] for event in seen] == ["crm.back", "crm.end"], (name, seen)
        assert ws.events.empty(), (name, ws.events)
    for name, server in trio.servers.items():
        _, health = await server.health()
        relay = health["instance"]["relay"]
        assert relay["dropped"] == relay["failed"] == relay["invalid"] == 0, (name, relay)
        assert relay["received"] >= 2, (name, relay)


async def test_an_event_larger_than_a_notify_travels_and_a_too_large_one_is_refused(
    trio: Deployment,
) -> None:
    b, c = _server(trio, "b"), _server(trio, "c")
    ws = await _subscribe(c, "big.*")
    text = "Ж" * 15_000 + "🙂" * 1_000  # 34 kB of UTF-8: five NOTIFY messages
    assert_envelope(
        await b.post("dispatchEvent", creds=SENDER, event={"name": "big.one", "text": text})
    )
    refused = await b.post(
        "dispatchEvent", creds=SENDER, event={"name": "big.too", "text": "x" * 70_000}
    )
    assert refused["errCode"] == "bad_request", refused
    assert "65536 bytes" in refused["err"]
    assert "instances" in refused["err"]
    assert_envelope(await b.post("dispatchEvent", creds=SENDER, event={"name": "big.end"}))
    seen = await _drain_until(ws, "big.end")
    assert [event["name"] for event in seen] == ["big.one", "big.end"]
    assert seen[0]["text"] == text


async def test_listening_again_after_the_database_dropped_the_connection(
    trio: Deployment,
) -> None:
    a, b = _server(trio, "a"), _server(trio, "b")
    _, before = await b.health()
    url: StorageUrl = trio.storage_url
    async with open_storage(url) as storage:  # as an administrator's pg_terminate_backend
        await storage.db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'vwell-pbx % listener' AND datname = current_database()"
        )

    async def relistened() -> bool:
        _, health = await b.health()
        listener = health["database"]["listener"]
        return (
            listener["status"] == "listening"
            and listener["reconnects"] > before["database"]["listener"]["reconnects"]
        )

    # Checked every second (listen_check_seconds = 1), reconnected with backoff: 15 s
    # was once not enough on a 2-core machine running the whole suite, and the cause was
    # not seen (in 40 rounds of the same termination of three storages' listeners in one
    # process on a loaded machine, the slowest relisten took 0.3 s). If it happens again,
    # the failure carries what b said: its listener state and its log (a failed reconnect
    # logs "storage: cannot LISTEN (...)").
    try:
        await until(relistened, 30, what="b to listen again", every=0.1)
    except AssertionError as timed_out:
        _, health = await b.health()
        raise AssertionError(
            f"{timed_out}\nlistener: {health['database']['listener']}\n{b.log()[-6000:]}"
        ) from None
    _, after = await b.health()
    assert after["instance"]["relay"]["gaps"] > before["instance"]["relay"]["gaps"]
    ws = await _subscribe(b, "again.*")
    assert_envelope(await a.post("dispatchEvent", creds=SENDER, event={"name": "again.ok"}))
    assert (await ws.next_event(10))["name"] == "again.ok"
