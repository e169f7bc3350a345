"""Brute force throttling (per address and per login, growing delay, one failure message)
and credential scans of everything the server logs and answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient, add_test_users, make_config
from tests.support.envelopes import assert_envelope
from tests.support.simulator import fast_simulator
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer, serving

AMI_SECRET = "Ami-S3cret-Zq9-never-logged"
PASSWORDS = ("root-pw", "boss-pw")  # ADMIN's and SUPERVISOR's (AGENT's is "demo")
WRONG_SHA1 = "0123456789abcdef0123456789abcdef01234567"


async def test_failures_look_the_same_whatever_was_wrong(api: ApiClient) -> None:
    answers = [
        await api.post("send", creds={**AGENT, "sha1": WRONG_SHA1}, fields={"action": "Ping"}),
        await api.post("send", creds={**AGENT, "login": "Nobody"}, fields={"action": "Ping"}),
        await api.post("send", creds={**AGENT, "login2": "Nobody"}, fields={"action": "Ping"}),
        await api.post("send", creds={**AGENT, "sha1": "not-hex"}, fields={"action": "Ping"}),
    ]
    assert {(a["err"], a["errCode"]) for a in answers} == {
        ("login, login2 or sha1 is wrong", "auth_failed")
    }


async def _until_not_locked(api: ApiClient, creds: dict[str, str], within: float) -> None:
    async def unlocked() -> bool:
        answer = await api.post("send", creds=creds, fields={"action": "Ping"})
        return answer["errCode"] != "rate_limited"

    await until(unlocked, within, what=f"{creds['login']} to be unlocked", every=0.05)


async def test_login_throttle_grows(api: ApiClient) -> None:
    # throttle_after = 3 (tests.support): the 3rd failure locks 1 s, the next 2 s, ...
    wrong = {**SUPERVISOR, "sha1": WRONG_SHA1}
    codes = [
        (await api.post("send", creds=wrong, fields={"action": "Ping"}))["errCode"]
        for _ in range(3)
    ]
    assert codes == ["auth_failed"] * 3
    locked = await api.post("send", creds=wrong, fields={"action": "Ping"})
    assert locked["errCode"] == "rate_limited", locked
    first = locked["retryAfter"]
    # The right password is refused too while the login is locked: no oracle.
    right = await api.post("send", creds=SUPERVISOR, fields={"action": "Ping"})
    assert right["errCode"] == "rate_limited"
    assert 0 < first <= 1.0
    await _until_not_locked(api, wrong, within=3)  # that attempt failed again: longer
    second = (await api.post("send", creds=wrong, fields={"action": "Ping"}))["retryAfter"]
    assert 1.0 < second <= 2.0, (first, second)
    # Another login from the same address is not locked (below the address threshold).
    assert (await api.post("send", creds=ADMIN, fields={"action": "Ping"}))["err"] is None
    record("credentials.login_throttle", first_lock_s=first, second_lock_s=second)


@pytest.mark.parametrize("server_overrides", [{"users": {"throttle_after_address": 10}}])
async def test_address_throttle_spans_logins(api: ApiClient) -> None:
    for index in range(10):  # ten different logins, one failure each
        answer = await api.post(
            "send", creds={**AGENT, "login": f"guess{index}"}, fields={"action": "Ping"}
        )
        assert answer["errCode"] == "auth_failed"
    locked = await api.post("send", creds=ADMIN, fields={"action": "Ping"})
    assert locked["errCode"] == "rate_limited" and locked["retryAfter"] > 0
    record("credentials.address_throttle", logins_tried=10)


# --- credential scan ----------------------------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[PbxSimulator]:
    """This module's PBX has a distinctive secret, so any leak of it can be found."""
    async with fast_simulator(secret=AMI_SECRET) as sim:
        yield sim


@pytest.fixture
async def server(
    tmp_path: Path, simulator: PbxSimulator, server_overrides: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    """The server with plain-text AMI login (the secret itself goes over the wire)."""
    config = make_config(tmp_path, simulator.port, **server_overrides)
    pbx = config.pbx[0].model_copy(update={"secret": SecretStr(AMI_SECRET), "auth": "plain"})
    config = config.model_copy(update={"pbx": (pbx,)})
    await add_test_users(config)
    async with serving(config, wait_for_pbx=5) as running:
        yield running


async def test_no_credential_in_logs_or_answers(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[dict[str, Any]] = []
    # Successful and failed logins over every transport, a throttled one, a bad form.
    for creds in (
        AGENT,
        ADMIN,
        SUPERVISOR,
        {**AGENT, "sha1": WRONG_SHA1},
        {**ADMIN, "sha1": SUPERVISOR["sha1"]},
        {**SUPERVISOR, "login": "x"},
    ):
        answers.append(
            await api.post("send", creds=creds, callbackAwait=True, fields={"action": "Ping"})
        )
        answers.append(
            await api.get_b64({"method": "dial", "argument": {**creds, "from": "269", "to": "100"}})
        )
    for _ in range(4):
        answers.append(
            await api.post("send", creds={**ADMIN, "sha1": WRONG_SHA1}, fields={"action": "Ping"})
        )
    ws = await api.ws()
    answers.append(
        await ws.call("send", creds={**AGENT, "sha1": WRONG_SHA1}, fields={"action": "Ping"})
    )
    answers.append(await ws.call("send", fields={"action": "Command", "command": "x"}))
    answers.append(
        await ws.call("send", creds=SUPERVISOR, fields={"action": "Login", "secret": "x"})
    )
    await ws.close()
    async with api.session.post(api.url, data=b"{not json") as response:
        answers.append(await response.json())
    # The server logs in to the PBX again (plain text: the secret is on the wire).
    client = server.clients["office"]
    simulator.drop_connections()
    await until(lambda: not client.connected, 10, what="the AMI connection to drop")
    await client.wait_connected(10)
    async with api.session.get(server.http_url + "/health") as response:
        health = await response.text()
    secrets = {AMI_SECRET, *PASSWORDS, AGENT["sha1"], ADMIN["sha1"], SUPERVISOR["sha1"], WRONG_SHA1}
    secrets |= {s.upper() for s in secrets}
    scanned = 0
    for rec in caplog.records:
        if rec.name.startswith("vwell_pbx.simulator"):
            continue  # the stand-in PBX is not the product
        text = rec.getMessage() + (rec.exc_text or "") + repr(rec.args)
        scanned += 1
        for secret in secrets:
            assert secret not in text, (rec.name, rec.levelname, rec.getMessage())
    for answer in answers:
        assert_envelope(answer)
        for secret in secrets:
            assert secret not in str(answer), answer
    for secret in secrets:
        assert secret not in health
        assert secret not in repr(server.config)
    assert scanned > 10 and any("login failed" in r.getMessage() for r in caplog.records)
    assert any("connected to" in r.getMessage() for r in caplog.records)  # the PBX login
    record(
        "credentials.log_scan",
        log_records=scanned,
        answers=len(answers),
        secrets_looked_for=len(secrets),
    )


async def test_websocket_reauth_cannot_escalate(api: ApiClient) -> None:
    ws = await api.ws()
    assert (await ws.call("send", fields={"action": "Ping"}))["err"] is None
    wrong_admin = await ws.call(
        "send",
        creds={**ADMIN, "sha1": WRONG_SHA1},
        fields={"action": "Command", "command": "core show version"},
    )
    assert wrong_admin["errCode"] == "auth_failed"
    still_operator = await ws.call(
        "send", creds=None, fields={"action": "Command", "command": "core show version"}
    )
    assert still_operator["errCode"] == "forbidden"
    await ws.close()
    assert isinstance(ws.ws, aiohttp.ClientWebSocketResponse)
