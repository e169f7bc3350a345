"""An instance that dies (SIGKILL) or is stopped (SIGTERM) takes nothing with it: the
database frees its connections, the other instance goes on, and it rejoins when it is
started again."""

from __future__ import annotations

import pytest

from tests.instances.harness import Deployment
from tests.support import assert_envelope, until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password

pytestmark = pytest.mark.slow  # server processes

SENDER = {"login": "crm", "login2": "CRM", "sha1": sha1_of_password("crm-pw")}


async def _connections(deployment: Deployment, instance: str) -> int:
    async with open_storage(deployment.storage_url) as storage:
        value = await storage.db.fetch_value(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE :name",
            {"name": f"vwell-pbx {instance}%"},
        )
    return int(value)


async def test_a_killed_instance_frees_its_connections_and_rejoins(
    deployment: Deployment, simulator: PbxSimulator
) -> None:
    async with open_storage(deployment.storage_url) as storage:
        await UserDirectory(storage.users).add(
            SENDER["login"], SENDER["login2"], sha1_hex=SENDER["sha1"], role="supervisor"
        )
    a = deployment.add("a", pbx_port=simulator.port)
    b = deployment.add("b", pbx_port=simulator.port)
    await deployment.start()
    assert await _connections(deployment, "b") >= 2  # its pool and its LISTEN connection

    assert await b.kill() == -9

    async def b_freed() -> bool:
        return await _connections(deployment, "b") == 0

    await until(b_freed, 10, what="PostgreSQL to drop the killed instance's connections", every=0.1)
    status, health = await a.health()
    assert status == 200, health
    ws = await a.ws()
    assert_envelope(await ws.call("onEvent", creds=SENDER, name="after.*"))
    assert_envelope(await a.post("dispatchEvent", creds=SENDER, event={"name": "after.kill"}))
    assert (await ws.next_event(10))["name"] == "after.kill"

    await deployment.start("b")  # the same configuration, a new process
    ws_b = await b.ws()
    assert_envelope(await ws_b.call("onEvent", creds=SENDER, name="after.*"))
    assert_envelope(await a.post("dispatchEvent", creds=SENDER, event={"name": "after.rejoin"}))
    assert (await ws_b.next_event(10))["name"] == "after.rejoin"

    assert await b.stop() == 0  # SIGTERM: a clean stop
    await until(b_freed, 10, what="a stopped instance's connections to be closed", every=0.1)
    assert deployment.password not in deployment.logs()
