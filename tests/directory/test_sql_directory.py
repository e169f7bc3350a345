"""``[users] backend = "sql"``: the real server checks credentials against a CRM's own
table, on PostgreSQL and on MariaDB (every test runs on both).

Users log in with what the CRM stores; role and extensions come from its columns;
injection payloads in ``login``/``login2`` change nothing, match nothing and log
nothing secret; the query runs read-only; a directory that is down answers
``unavailable`` quickly while cached users go on; a password changed in the CRM is
noticed within the cache time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.directory.crm import CRM_QUERY, CrmDatabase, directory_overrides
from tests.support import ApiClient, assert_envelope, make_config, until
from tests.support.cable import Cable
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import serving

IVANOV = {"login": "Agent", "login2": "Иванов И.И.", "sha1": sha1_of_password("пароль")}
PETROV = {"login": "Agent", "login2": "Петров П.П.", "sha1": sha1_of_password("other")}


@contextlib.asynccontextmanager
async def _server(
    tmp_path: Path, simulator: PbxSimulator, crm: CrmDatabase, **options: Any
) -> AsyncIterator[ApiClient]:
    config = make_config(tmp_path, simulator.port, **directory_overrides(crm, **options))
    async with serving(config, wait_for_pbx=5) as running, aiohttp.ClientSession() as session:
        yield ApiClient(running, session)


async def _crm_users(crm: CrmDatabase) -> None:
    await crm.add_user(
        IVANOV["login"], IVANOV["login2"], IVANOV["sha1"].upper(), role="supervisor",
        phones="269, 270;b@d",
    )  # fmt: skip
    await crm.add_user(PETROV["login"], PETROV["login2"], PETROV["sha1"])


async def test_crm_users_log_in_with_their_role_and_extensions(
    tmp_path: Path, simulator: PbxSimulator, crm: CrmDatabase
) -> None:
    await _crm_users(crm)
    async with _server(tmp_path, simulator, crm) as api:
        me = await api.post("whoami", creds=IVANOV)
        assert_envelope(me)
        assert (me["login"], me["login2"], me["role"]) == ("Agent", "Иванов И.И.", "supervisor")
        assert me["extensions"] == ["269", "270"]  # "b@d" is not an extension
        other = await api.post("whoami", creds={**PETROV, "sha1": PETROV["sha1"].upper()})
        assert_envelope(other)
        assert (other["role"], other["extensions"]) == ("operator", [])  # default_role
        for creds in (
            {**IVANOV, "sha1": PETROV["sha1"]},
            {**IVANOV, "login2": "Сидоров С.С."},
            {**IVANOV, "login": "agent"},  # PostgreSQL compares case-sensitively; see below
            {**IVANOV, "sha1": "not-a-sha1"},
        ):
            answer = await api.post("whoami", creds=creds)
            if creds["login"] == "agent" and crm.kind == "mariadb":
                # MariaDB's default collation ignores case: the CRM's own rule decides.
                assert_envelope(answer)
                continue
            assert answer["errCode"] == "auth_failed", (creds, answer)


async def test_the_user_commands_refuse_politely(tmp_path: Path, crm: CrmDatabase) -> None:
    from vwell_pbx.cli import main

    config = tmp_path / "app-config.toml"
    config.write_text(
        '[users]\nbackend = "sql"\n'
        f'dsn = "{crm.dsn()}"\nquery = "{CRM_QUERY}"\n'
        '[[pbx]]\nname = "office"\nhost = "127.0.0.1"\nusername = "u"\nsecret = "s"\n',
        encoding="utf-8",
    )
    for args in (
        ["user", "add", "A", "B", "--password", "x"],
        ["user", "list"],
        ["user", "passwd", "A", "B", "--password", "y"],
        ["user", "remove", "A", "B"],
    ):
        assert main([*args, "--config", str(config)]) == 1
    assert await crm.rows() == []


INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 -- ",
    "Agent' -- ",
    "Agent'; DELETE FROM crm_users; --",
    "\\' OR 1=1 #",
    "Agent\\",
    "%' OR login LIKE '%",
    "' UNION SELECT pass_sha1, role, phones FROM crm_users -- ",
    '" OR ""="',
    "Agent\u02bc OR 1=1 -- ",  # a modifier letter apostrophe
    "x' OR login = 'Agent",
]


@pytest.mark.parametrize("field", ["login", "login2"])
async def test_injection_payloads_change_nothing_match_nothing_and_log_nothing_secret(
    tmp_path: Path,
    simulator: PbxSimulator,
    crm: CrmDatabase,
    field: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _crm_users(crm)
    before = await crm.rows()
    caplog.set_level(logging.DEBUG)
    async with _server(tmp_path, simulator, crm, extra={"auth_cache_seconds": 0}) as api:
        for payload in INJECTIONS:
            # With the sha1 of a real user: a payload that matched any row would log in.
            for sha1 in (IVANOV["sha1"], PETROV["sha1"]):
                creds = {**IVANOV, field: payload, "sha1": sha1}
                answer = await api.post("whoami", creds=creds)
                assert answer["errCode"] in ("auth_failed", "rate_limited"), (payload, answer)
        assert_envelope(await api.post("whoami", creds=PETROV))  # the table still works
    assert await crm.rows() == before
    logged = caplog.text
    for secret in (IVANOV["sha1"], PETROV["sha1"], IVANOV["sha1"].upper(), crm.password):
        assert secret not in logged


async def test_the_query_runs_read_only(
    tmp_path: Path, simulator: PbxSimulator, crm: CrmDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    await _crm_users(crm)
    before = await crm.rows()
    if crm.kind == "postgresql":
        query = (
            "WITH gone AS (DELETE FROM crm_users RETURNING login) "
            "SELECT pass_sha1 AS sha1 FROM crm_users WHERE login = :login AND login2 = :login2"
        )
        # Even the owner of the table would be stopped: grant the reader the right too.
        await crm.execute(f"GRANT DELETE ON crm_users TO {crm.reader}")
    else:
        await crm.execute(
            "DELIMITER //\n"
            "CREATE FUNCTION wipe(l VARCHAR(256)) RETURNS VARCHAR(256) MODIFIES SQL DATA "
            "BEGIN DELETE FROM crm_users; RETURN l; END//\n"
            "DELIMITER ;"
        )
        await crm.execute(f"GRANT DELETE ON {crm.database}.crm_users TO '{crm.reader}'@'127.0.0.1'")
        query = (
            "SELECT pass_sha1 AS sha1 FROM crm_users "
            "WHERE login = wipe(:login) AND login2 = :login2"
        )
    async with _server(tmp_path, simulator, crm, query=query) as api:
        answer = await api.post("whoami", creds=IVANOV)
        assert answer["errCode"] == "unavailable", answer
        # The client learns nothing about the directory's database; the log says why.
        assert answer["err"] == "the user directory is unavailable; try again later"
    assert await crm.rows() == before
    assert "read-only" in caplog.text.lower() or "read only" in caplog.text.lower()


async def test_a_directory_that_is_down_answers_unavailable_quickly(
    tmp_path: Path, simulator: PbxSimulator, crm: CrmDatabase
) -> None:
    await _crm_users(crm)
    async with (
        Cable("127.0.0.1", crm.port) as cable,
        _server(tmp_path, simulator, crm, port=cable.port) as api,
    ):
        assert_envelope(await api.post("whoami", creds=IVANOV))  # cached from now on
        sidorov = {**PETROV, "login2": "Сидоров С.С."}
        await crm.add_user(sidorov["login"], sidorov["login2"], sidorov["sha1"])
        # Each mode with a user not verified yet (the one before is cached by then).
        for mode, user in (("reset", PETROV), ("silent", sidorov)):
            cable.cut(mode)
            started = time.monotonic()
            answer = await api.post("whoami", creds=user)
            took = time.monotonic() - started
            assert answer["errCode"] == "unavailable", answer
            assert answer["err"] == "the user directory is unavailable; try again later"
            # connect_timeout and query_timeout are 1 s here: never a hang.
            assert took < 4.5, (mode, took)
            # The next request does not even try for a second: at once.
            started = time.monotonic()
            assert (await api.post("whoami", creds=user))["errCode"] == "unavailable"
            assert time.monotonic() - started < 0.5
            # A user already verified goes on while the directory is down.
            assert_envelope(await api.post("whoami", creds=IVANOV))
            cable.mend()

            async def back(user: dict[str, str] = user) -> bool:
                return (await api.post("whoami", creds=user))["err"] is None

            await until(back, 10, what="the directory to answer again", every=0.2)


async def test_a_password_changed_in_the_crm_is_noticed_within_the_cache_time(
    tmp_path: Path, simulator: PbxSimulator, crm: CrmDatabase
) -> None:
    await _crm_users(crm)
    async with _server(tmp_path, simulator, crm, extra={"auth_cache_seconds": 1}) as api:
        ws = await api.ws()
        assert_envelope(await ws.call("whoami", creds=IVANOV))
        assert_envelope(await ws.call("whoami", creds=None))  # the session's login
        new_sha1 = sha1_of_password("new")
        await crm.set_sha1(IVANOV["login"], new_sha1)
        await crm.execute("SELECT 1")

        async def old_refused() -> bool:
            return (await api.post("whoami", creds=IVANOV))["errCode"] == "auth_failed"

        await until(old_refused, 5, what="the old password to be refused", every=0.1)
        assert_envelope(await api.post("whoami", creds={**IVANOV, "sha1": new_sha1}))

        async def session_ended() -> bool:
            return (await ws.call("whoami", creds=None))["errCode"] == "auth_failed"

        await until(session_ended, 5, what="the WebSocket's login to end", every=0.1)
        await ws.close()
