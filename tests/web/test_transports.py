"""The original product's own examples (copied in tests/data/seed/), byte for byte as a
browser sends them, plus CORS and limits."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import aiohttp
import orjson

from tests.support import AGENT, ApiClient

# What jQuery 3's $.param produces for the original's $.post example, jquery_post.js
# (encodeURIComponent, spaces as "+", brackets percent-encoded, nested objects in bracket notation).
SEED_JQUERY_BODY = (
    "method=send"
    "&argument%5Blogin%5D=Agent"
    "&argument%5Blogin2%5D=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2+%D0%98.%D0%98."
    "&argument%5Bsha1%5D=89e495e7941cf9e40e6980d14a16bf023ccd4c91"
    "&argument%5BreqId%5D=0.7265512341"
    "&argument%5BcallbackAwait%5D=1"
    "&argument%5Bfields%5D%5Baction%5D=ping"
    "&argument%5Bfields%5D%5BactionId%5D=0.123456"
)


async def test_seed_jquery_post_form(api: ApiClient) -> None:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        "Origin": "http://crm.example",
        "X-Requested-With": "XMLHttpRequest",
    }
    async with api.session.post(
        api.url, data=SEED_JQUERY_BODY.encode(), headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        body = await response.json()
    assert body["err"] is None, body
    assert body["reqId"] == "0.7265512341"
    assert body["actionId"] == "0.123456"
    assert body["event"]["Response"] == "Success"
    assert body["event"]["Ping"] == "Pong"
    assert body["event"]["ActionID"] == "0.123456"


async def test_seed_fb64json_get_with_cyrillic_login2(api: ApiClient) -> None:
    # The original's xhr_fb64json.js: Base64.encode(JSON.stringify({...})) appended to the
    # URL unescaped.
    envelope = {
        "method": "send",
        "argument": {
            "login": "Agent",
            "login2": "Иванов И.И.",
            "sha1": AGENT["sha1"],
            "fields": {"action": "ping", "actionId": 0.5},
            "reqId": "0.42",
        },
    }
    text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    b64 = base64.b64encode(text.encode("utf-8")).decode()
    assert "+" in b64 or "/" in b64 or "=" in b64  # characters a raw URL mangles
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with api.session.get(f"{api.url}?fb64json={b64}", headers=headers) as response:
        body = await response.json()
    assert body["err"] is None, body
    assert body["reqId"] == "0.42"
    assert body["actionId"] == "0.5"  # a number on input; AMI ids are text
    assert body["event"]["Ping"] == "Pong"


async def test_fb64json_url_safe_without_padding(api: ApiClient) -> None:
    envelope = {
        "method": "send",
        "argument": {**AGENT, "callbackAwait": True, "fields": {"Action": "Ping"}},
    }
    b64 = base64.urlsafe_b64encode(orjson.dumps(envelope)).decode().rstrip("=")
    async with api.session.get(f"{api.url}?fb64json={b64}") as response:
        body = await response.json()
    assert body["err"] is None, body


async def test_seed_websocket_example(api: ApiClient) -> None:
    ws = await api.ws()
    frame = json.dumps(
        {
            "method": "send",
            "argument": {
                "login": "Agent",
                "login2": "Иванов И.И.",
                "sha1": AGENT["sha1"],
                "reqId": "0.31",
                "callbackAwait": 1,
                "fields": {"action": "ping", "actionId": 0.77},
            },
        },
        ensure_ascii=False,
    )
    await ws.ws.send_str(frame)
    message = await ws.ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.TEXT
    body = json.loads(message.data)
    assert body["err"] is None and body["reqId"] == "0.31"
    assert body["event"]["Ping"] == "Pong"
    await ws.close()


async def test_websocket_on_the_http_port(api: ApiClient) -> None:
    ws = await api.ws(api.server.http_url.replace("http", "ws") + "/api")
    answer = await ws.call("send", callbackAwait=True, fields={"action": "Ping"})
    assert answer["err"] is None
    await ws.close()


async def test_get_with_bracket_query(api: ApiClient) -> None:
    query = "&".join(
        f"{quote(k)}={quote(v)}"
        for k, v in [
            ("method", "send"),
            ("argument[login]", "Agent"),
            ("argument[login2]", "Иванов И.И."),
            ("argument[sha1]", AGENT["sha1"]),
            ("argument[callbackAwait]", "1"),
            ("argument[fields][action]", "Ping"),
            ("argument[reqId]", "q1"),
        ]
    )
    async with api.session.get(f"{api.url}?{query}") as response:
        body = await response.json()
    assert body["err"] is None and body["reqId"] == "q1"


async def test_multipart_post(api: ApiClient) -> None:
    form = aiohttp.FormData()
    for key, value in [
        ("method", "send"),
        ("argument[login]", "Agent"),
        ("argument[login2]", "Иванов И.И."),
        ("argument[sha1]", AGENT["sha1"]),
        ("argument[callbackAwait]", "true"),
        ("argument[fields][action]", "Ping"),
    ]:
        form.add_field(key, value)
    async with api.session.post(api.url, data=form) as response:
        body = await response.json()
    assert body["err"] is None, body


async def test_post_form_with_fb64json_field(api: ApiClient) -> None:
    envelope = {
        "method": "send",
        "argument": {**AGENT, "callbackAwait": 1, "fields": {"action": "Ping"}, "reqId": 7},
    }
    b64 = base64.b64encode(orjson.dumps(envelope)).decode()
    async with api.session.post(api.url, data={"fb64json": b64, "method": "ignored"}) as resp:
        body = await resp.json()
    assert body["err"] is None and body["reqId"] == 7


async def test_cors_preflight(api: ApiClient) -> None:
    headers = {
        "Origin": "http://crm.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with api.session.options(api.url, headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == "content-type"


async def test_malformed_bodies_answer_bad_request(api: ApiClient) -> None:
    cases = [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"method=send&argument=1&argument[x]=2", "application/x-www-form-urlencoded"),
        (b"fb64json=%%%%", "application/x-www-form-urlencoded"),
        (b'{"method": "send", "argument": "x"}', "application/json"),
        (b"[" * 100 + b"]" * 100, "application/json"),
    ]
    for body, content_type in cases:
        async with api.session.post(
            api.url, data=body, headers={"Content-Type": content_type}
        ) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["errCode"] == "bad_request", (body, answer)
        assert answer["err"] and "Traceback" not in answer["err"]


async def test_body_over_the_limit(api: ApiClient) -> None:
    big = b'{"method": "send", "argument": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
    async with api.session.post(
        api.url, data=big, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        answer = await response.json()
    assert answer["errCode"] == "bad_request"


async def test_health_and_metrics(api: ApiClient) -> None:
    async with api.session.get(api.server.http_url + "/health") as response:
        assert response.status == 200
        health = await response.json()
    assert health["status"] == "ok"
    assert health["pbx"][0]["name"] == "office"
    assert health["pbx"][0]["status"] == "connected"
    await api.post("send", callbackAwait=True, fields={"action": "Ping"})
    async with api.session.get(api.server.http_url + "/metrics") as response:
        text = await response.text()
    assert 'vwell_requests_total{code="ok",method="send"}' in text
    assert 'vwell_pbx_up{pbx="office"} 1.0' in text


async def test_sms_outcomes_are_counted(api: ApiClient) -> None:
    sent = await api.post("gsmSendSMS", tel="+7 100 200 30 40", msg="hi", wait=True)
    assert sent["status"] == "sent", sent
    assert (await api.post("gsmSendSMS", tel="12a", msg="hi"))["errCode"] == "bad_request"
    async with api.session.get(api.server.http_url + "/metrics") as response:
        text = await response.text()
    assert 'vwell_sms_total{status="sent"} 1.0' in text
    assert 'vwell_sms_total{status="refused"} 1.0' in text
    for status in ("queued", "sending", "sent"):  # each status change of the SMS
        assert f'vwell_sms_status_total{{status="{status}"}} 1.0' in text
