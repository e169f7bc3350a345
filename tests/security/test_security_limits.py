"""Every documented bound, reached over real sockets: what happens past it, and that the
server keeps serving afterwards. Plus TLS (https:// and wss://) from configuration."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, ApiClient, add_test_users, make_config
from tests.support.envelopes import assert_envelope
from tests.support.waiting import until
from vwell_pbx.config import LimitsConfig
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.app import PER_ADDRESS_KEY, SOCKETS_KEY
from vwell_pbx.web.server import RunningServer, serving


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 2):  # the envelope and its argument are two levels
        value = [value]
    return value


async def test_defaults_are_the_documented_ones() -> None:
    limits = LimitsConfig()
    assert (
        limits.max_body_bytes,
        limits.ws_max_message_bytes,
        limits.json_max_depth,
        limits.send_max_fields,
        limits.max_subscriptions,
        limits.max_inflight,
        limits.max_ws_per_address,
        limits.ws_queue_size,
        limits.requests_per_second,
        limits.burst,
        limits.max_wait_ms,
        limits.default_wait_ms,
        limits.sms_per_minute_user,
    ) == (1024 * 1024, 256 * 1024, 32, 64, 100, 32, 200, 1000, 20.0, 40, 60_000, 15_000, 10)


async def test_body_size_and_json_depth(api: ApiClient, server: RunningServer) -> None:
    big = {
        "method": "send",
        "argument": {**AGENT, "fields": {"action": "Ping"}, "pad": "x" * (1024 * 1024)},
    }
    async with api.session.post(api.url, json=big) as response:
        assert response.status == 413
        answer = assert_envelope(await response.json())
        assert answer["errCode"] == "bad_request" and "1048576" in answer["err"]
    deep = {"method": "send", "argument": {**AGENT, "fields": {"action": "Ping"}, "x": _nested(33)}}
    ok_depth = {
        "method": "send",
        "argument": {**AGENT, "fields": {"action": "Ping"}, "x": _nested(32)},
    }
    assert (await api.get_b64(ok_depth))["err"] is None
    for answer in (await api.get_b64(deep), await _post_raw(api, orjson.dumps(deep))):
        assert answer["errCode"] == "bad_request" and "deeper than 32" in answer["err"], answer
    # Far deeper than any parser's recursion: refused as bad JSON, the server unharmed.
    very_deep = b'{"method": "send", "argument": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    answer = await _post_raw(api, very_deep)
    assert answer["errCode"] == "bad_request", answer
    ws = await api.ws()
    await ws.send(deep)
    deep_answer = await _next_answer(ws)
    assert deep_answer["errCode"] == "bad_request"
    assert (await ws.call("send", fields={"action": "Ping"}))["err"] is None
    await ws.close()


async def _post_raw(api: ApiClient, body: bytes) -> dict[str, Any]:
    async with api.session.post(
        api.url, data=body, headers={"Content-Type": "application/json"}
    ) as response:
        return assert_envelope(await response.json())


async def _next_answer(ws: Any) -> dict[str, Any]:
    await until(lambda: ws.unmatched, what="an answer without a reqId")
    answer: dict[str, Any] = ws.unmatched.pop(0)
    return assert_envelope(answer)


async def test_websocket_message_size(api: ApiClient, server: RunningServer) -> None:
    raw = await api.session.ws_connect(server.ws_url)
    await raw.send_str(
        orjson.dumps(
            {
                "method": "send",
                "argument": {**AGENT, "fields": {"action": "Ping"}, "pad": "x" * (256 * 1024)},
            }
        ).decode()
    )
    message = await raw.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    assert raw.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await until(lambda: len(server.app[SOCKETS_KEY]) == 0)
    assert (await api.post("send", fields={"action": "Ping"}))["err"] is None


async def test_send_field_count(api: ApiClient, simulator: PbxSimulator) -> None:
    before = len(simulator.actions_received)
    fields = {"action": "CoreSettings", **{f"X-{i}": str(i) for i in range(64)}}
    answer = await api.post("send", creds=ADMIN, callbackAwait=True, fields=fields)
    assert answer["errCode"] == "bad_request" and "at most 64" in answer["err"], answer
    assert [a for a in simulator.actions_received[before:] if a.name != "Ping"] == []
    fields.pop("X-63")
    assert (await api.post("send", creds=ADMIN, callbackAwait=True, fields=fields))[
        "errCode"
    ] != "bad_request"


@pytest.mark.parametrize("server_overrides", [{"limits": {"max_subscriptions": 5}}])
async def test_subscriptions_per_connection(api: ApiClient, server: RunningServer) -> None:
    ws = await api.ws()
    for index in range(5):
        assert (await ws.call("onEvent", name=f"E{index}"))["err"] is None
    over = await ws.call("onEvent", name="E5")
    assert over["errCode"] == "rate_limited" and "at most 5" in over["err"]
    assert (await ws.call("rmEvent", name="E0"))["removed"] == 1
    assert (await ws.call("onEvent", name="E5"))["err"] is None
    assert server.api.bus.stats.subscriptions == 5
    await ws.close()
    await until(lambda: server.api.bus.stats.subscriptions == 0)


@pytest.mark.parametrize("server_overrides", [{"limits": {"max_inflight": 2}}])
async def test_inflight_requests_per_connection(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    ws = await api.ws()
    assert (await ws.call("send", fields={"action": "Ping"}))["err"] is None  # logged in
    simulator.mute = True  # answers stop: requests stay in flight until their timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = [
        asyncio.create_task(
            ws.call("send", creds=None, callbackAwait=True, timeout=800, fields={"action": "Ping"})
        )
        for _ in range(2)
    ]
    # Both are written (in order) before the third; their tasks have run to the answer.
    await until(lambda: len(ws.answers) == 2, what="the two slow requests on the wire")
    third = await ws.call("send", creds=None, fields={"action": "Ping"})
    assert third["errCode"] == "rate_limited" and "at most 2" in third["err"]
    assert loop.time() - started < 0.5  # refused at once, not queued
    for answer in await asyncio.gather(*slow):
        assert answer["errCode"] == "timeout", answer
    assert loop.time() - started < 0.8 + 0.7  # each within its timeout plus slack
    simulator.mute = False
    await ws.close()


@pytest.mark.parametrize("server_overrides", [{"limits": {"max_ws_per_address": 3}}])
async def test_websockets_per_address(api: ApiClient, server: RunningServer) -> None:
    sockets = [await api.session.ws_connect(server.ws_url) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.session.ws_connect(server.ws_url)
    assert refused.value.status == 429
    await sockets.pop().close()
    await until(lambda: server.app[PER_ADDRESS_KEY].get("127.0.0.1", 0) == 2)
    sockets.append(await api.session.ws_connect(server.ws_url))
    for ws in sockets:
        await ws.close()
    await until(lambda: not server.app[PER_ADDRESS_KEY])


@pytest.mark.parametrize("server_overrides", [{"limits": {"requests_per_second": 5, "burst": 5}}])
async def test_request_rate_per_user(api: ApiClient) -> None:
    codes = [(await api.post("send", fields={"action": "Ping"}))["errCode"] for _ in range(6)]
    assert codes[:5] == [None] * 5 and codes[5] == "rate_limited", codes
    # Another user has a bucket of their own.
    assert (await api.post("send", creds=ADMIN, fields={"action": "Ping"}))["err"] is None
    await _until_ok(api)  # one token comes back after 1/5 s


async def _until_ok(api: ApiClient) -> None:
    async def accepted() -> bool:
        return (await api.post("send", fields={"action": "Ping"}))["err"] is None

    await until(accepted, 3, what="a request token", every=0.05)


@pytest.mark.parametrize("server_overrides", [{"limits": {"sms_per_minute_user": 2}}])
async def test_sms_per_minute_per_user(api: ApiClient) -> None:
    answers = [await api.post("gsmSendSMS", tel="100", msg=f"m{i}", key=f"k{i}") for i in range(3)]
    assert [a["errCode"] for a in answers] == [None, None, "rate_limited"], answers
    refused = answers[2]
    assert "sms_per_minute_user" in refused["err"]
    assert 0 < refused["retryAfter"] <= 60
    # A repeated key is its first SMS again, not one more SMS: the rate does not refuse it.
    again = await api.post("gsmSendSMS", tel="100", msg="m0", key="k0")
    assert again["err"] is None and again["duplicate"] is True
    assert again["smsId"] == answers[0]["smsId"]
    assert (await api.post("gsmSendSMS", creds=ADMIN, tel="100", msg="x"))["err"] is None


@pytest.mark.parametrize(
    "server_overrides", [{"sms": {"interval_seconds": 0.25, "outbox_max_per_user": 3}}]
)
async def test_sms_pacing_per_span_and_outbox_bound(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    answers = await asyncio.gather(
        *(api.post("gsmSendSMS", creds=ADMIN, tel="100", msg=f"paced {i}") for i in range(4))
    )
    codes = sorted(a["errCode"] or a["status"] for a in answers)
    assert codes == ["queued", "queued", "queued", "sms_queue_full"], answers  # 3 per user
    full = next(a for a in answers if a["errCode"])
    assert "outbox_max_per_user" in full["err"]
    await until(lambda: len(simulator.sms_sent) >= 3, within=10)
    arrivals = [sms.at for sms in simulator.sms_sent]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.2 for gap in gaps), gaps  # one span sends one SMS at a time
    # Once sent, they no longer count: the user may queue again.
    again = await api.post("gsmSendSMS", creds=ADMIN, tel="100", msg="after")
    assert again["status"] == "queued", again


# --- TLS ----------------------------------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="the openssl command is needed to make a test certificate "
    "(and the cryptography package is not installed)",
)
async def test_tls_for_http_and_websocket(tmp_path: Path, simulator: PbxSimulator) -> None:
    cert, key = await asyncio.to_thread(_self_signed, tmp_path)
    config = make_config(
        tmp_path, simulator.port, server={"tls_cert": str(cert), "tls_key": str(key)}
    )
    await add_test_users(config)
    trust = ssl.create_default_context(cafile=str(cert))
    async with serving(config, wait_for_pbx=5) as server, aiohttp.ClientSession() as session:
        assert server.http_url.startswith("https://") and server.ws_url.startswith("wss://")
        envelope = {
            "method": "send",
            "argument": {**AGENT, "callbackAwait": True, "fields": {"action": "Ping"}},
        }
        async with session.post(server.http_url + "/api", json=envelope, ssl=trust) as response:
            assert (await response.json())["err"] is None
        ws = await session.ws_connect(server.ws_url, ssl=trust)
        await ws.send_str(orjson.dumps(envelope).decode())
        assert orjson.loads((await ws.receive(timeout=5)).data)["err"] is None
        await ws.close()
        # A client that does not trust the certificate, or speaks plain HTTP, gets nothing.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(server.http_url + "/health")
        plain = server.http_url.replace("https://", "http://") + "/health"
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain) as response:
                await response.read()
    record("tls", https=1, wss=1)
