"""Every method's success and error paths, over real sockets against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer


async def test_send_ping_awaited_and_not(api: ApiClient) -> None:
    answer = await api.post("send", reqId="a", callbackAwait=True, fields={"action": "Ping"})
    assert answer["err"] is None and answer["errCode"] is None and answer["reqId"] == "a"
    assert answer["event"]["Ping"] == "Pong"
    assert "ActionID" not in answer["event"]  # the wire id never leaks
    answer = await api.post("send", fields={"action": "Ping"})
    assert answer == {"err": None, "errCode": None, "reqId": None, "written": True}


async def test_send_event_list_is_returned_whole(api: ApiClient, simulator: PbxSimulator) -> None:
    channel = await simulator.incoming_call("+79787342741", hold=5)
    answer = await api.post("send", callbackAwait=True, fields={"action": "CoreShowChannels"})
    assert answer["err"] is None, answer
    assert answer["event"]["EventList"] == "start"
    channels = [e["Channel"] for e in answer["events"]]
    assert channel in channels
    assert all(e["Event"] == "CoreShowChannel" for e in answer["events"])


async def test_send_command_output_needs_admin(api: ApiClient) -> None:
    denied = await api.post(
        "send", callbackAwait=True, fields={"action": "Command", "command": "core show version"}
    )
    assert denied["errCode"] == "forbidden"
    assert "Command" in denied["err"]
    answer = await api.post(
        "send",
        creds=ADMIN,
        callbackAwait=True,
        fields={"action": "Command", "command": "core show version"},
    )
    assert answer["err"] is None, answer
    assert answer["output"].startswith("Asterisk")


async def test_send_pbx_error_keeps_event(api: ApiClient) -> None:
    answer = await api.post(
        "send",
        creds=ADMIN,
        callbackAwait=True,
        fields={"action": "Command", "command": "no such thing"},
    )
    assert answer["errCode"] == "pbx_error"
    assert "No such command" in answer["err"]
    assert answer["event"]["Response"] == "Error"
    answer = await api.post(
        "send",
        creds=ADMIN,
        callbackAwait=True,
        fields={
            "action": "Redirect",
            "channel": "SIP/nobody-1",
            "exten": "100",
            "context": "default",
            "priority": 1,
        },
    )
    assert answer["errCode"] == "pbx_error"
    assert answer["err"] == "Channel does not exist: SIP/nobody-1"


async def test_send_list_value_becomes_repeated_header(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    answer = await api.post(
        "send",
        creds=SUPERVISOR,
        callbackAwait=True,
        fields={
            "action": "Originate",
            "channel": "SIP/267",
            "exten": "100",
            "context": "default",
            "priority": 1,
            "async": True,
            "variable": ["A=1", "B=2"],
        },
    )
    assert answer["err"] is None, answer
    sent = [a for a in simulator.actions_received if a.name.lower() == "originate"][-1]
    assert sent.get_all("variable") == ["A=1", "B=2"]
    assert sent.get("async") == "true"


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"action": "Ping\r\nAction: Command"}, "bad_request"),
        ({"action": "Ping", "X\r\nEvil": "1"}, "bad_request"),
        ({"action": "Ping", "Variable": "a\nb"}, "bad_request"),
        ({"noaction": "x"}, "bad_request"),
        ({"action": ""}, "bad_request"),
        ({"action": {"nested": 1}}, "bad_request"),
    ],
)
async def test_send_refuses_injection(
    api: ApiClient, simulator: PbxSimulator, fields: dict[str, Any], expected: str
) -> None:
    before = len(simulator.actions_received)
    answer = await api.post("send", creds=ADMIN, callbackAwait=True, fields=fields)
    assert answer["errCode"] == expected, answer
    assert len(simulator.actions_received) == before


async def test_two_clients_same_action_id(api: ApiClient) -> None:
    one, two = await api.ws(), await api.ws()
    results = await asyncio.gather(
        *(
            ws.call("send", fields={"action": "Ping", "actionId": "same"})
            for ws in (one, two)
            for _ in range(10)
        )
    )
    for result in results:
        assert result["err"] is None
        assert result["actionId"] == "same"
        assert result["event"]["ActionID"] == "same"
    assert not one.unmatched and not two.unmatched
    await one.close()
    await two.close()


async def test_dial_normalises_and_reports_outcome(api: ApiClient, simulator: PbxSimulator) -> None:
    answer = await api.post("dial", **{"from": "269", "to": "+7 (100) 200-30-40", "wait": 1})
    assert answer["err"] is None, answer
    assert answer["to"] == "81002003040"
    assert answer["outcome"] == "answered"
    assert answer["uniqueid"]
    originate = [a for a in simulator.actions_received if a.name.lower() == "originate"][-1]
    assert originate.get("Channel") == "SIP/269"
    assert originate.get("Context") == "DLPN_DialPlan269"
    assert originate.get("Exten") == "81002003040"
    assert originate.get("CallerID") == "81002003040"
    assert originate.get("Async", "").lower() in ("yes", "true")


async def test_dial_bad_numbers(api: ApiClient, simulator: PbxSimulator) -> None:
    before = len(simulator.actions_received)
    answer = await api.post("dial", **{"from": "269", "to": "12a3"})
    assert answer["errCode"] == "bad_request" and "to" in answer["err"]
    answer = await api.post("dial", **{"from": "269"})
    assert answer["errCode"] == "bad_request"
    assert answer["err"] == "argument.to is required"
    assert len(simulator.actions_received) == before


async def test_redirect_live_and_missing(api: ApiClient, simulator: PbxSimulator) -> None:
    channel = await simulator.incoming_call("+79787342741", hold=5)
    answer = await api.post("redirect", channel=channel, toTel="267")
    assert answer["err"] is None, answer
    redirect = [a for a in simulator.actions_received if a.name.lower() == "redirect"][-1]
    assert redirect.get("Channel") == channel and redirect.get("Exten") == "267"
    missing = await api.post("redirect", channel="YSGSM/99-9", toTel="267")
    assert missing["errCode"] == "pbx_error"
    assert "does not exist" in missing["err"]


async def test_sms_yeastar_auto_span(api: ApiClient, simulator: PbxSimulator) -> None:
    answer = await api.post(
        "gsmSendSMS", tel="+7 100 200 30 40", msg='He said "hi"\r\nAction: Command\\', wait=True
    )
    assert answer["err"] is None, answer
    assert (answer["tel"], answer["status"], answer["span"]) == ("81002003040", "sent", "2")
    sent = simulator.sms_sent[-1]
    assert sent.number == "81002003040"
    assert "\r" not in sent.text and "\n" not in sent.text
    # The PBX decoded exactly the text inside the quotes: nothing escaped out of them.
    assert sent.text == 'He said "hi" Action: Command\\'
    commands = [
        a
        for a in simulator.actions_received
        if a.name.lower() == "command" and (a.get("Command") or "").startswith("gsm send sms")
    ]
    assert len(commands) == 1


async def test_sms_validation(api: ApiClient) -> None:
    answer = await api.post("gsmSendSMS", tel="+7 100", msg="   ")
    assert answer["errCode"] == "bad_request"
    assert "argument.msg" in answer["err"]
    answer = await api.post("gsmSendSMS", msg="hi")
    assert answer["err"] == "argument.tel is required"


async def test_unknown_method_and_envelope_errors(api: ApiClient) -> None:
    answer = await api.post("nope")
    assert answer["errCode"] == "unknown_method"
    assert "dial" in answer["err"]
    ws = await api.ws()
    await ws.send({"argument": {"reqId": "x"}})
    answer = await asyncio.wait_for(_unmatched(ws), 5)
    assert answer["errCode"] == "bad_request" and answer["reqId"] == "x"
    await ws.close()


def _drain(ws: Any) -> int:
    drained = 0
    while not ws.events.empty():
        ws.events.get_nowait()
        drained += 1
    return drained


async def _unmatched(ws: Any) -> dict[str, Any]:
    await until(lambda: ws.unmatched, what="an answer without a reqId")
    result: dict[str, Any] = ws.unmatched.pop(0)
    return result


async def test_auth_failures_and_throttle(api: ApiClient) -> None:
    wrong = {**AGENT, "sha1": "0" * 40}
    answer = await api.post("send", creds=wrong, fields={"action": "Ping"})
    assert answer["errCode"] == "auth_failed"
    unknown = {**AGENT, "login": "Nobody"}
    answer2 = await api.post("send", creds=unknown, fields={"action": "Ping"})
    assert answer2["errCode"] == "auth_failed" and answer2["err"] == answer["err"]
    missing = await api.post("send", creds=None, fields={"action": "Ping"})
    assert missing["errCode"] == "auth_failed"
    codes = [
        (await api.post("send", creds=wrong, fields={"action": "Ping"}))["errCode"]
        for _ in range(4)
    ]
    assert codes[-1] == "rate_limited"
    # The right password of the throttled login is refused too until the lock ends.
    locked = await api.post("send", fields={"action": "Ping"})
    assert locked["errCode"] == "rate_limited"


async def test_websocket_remembers_login(api: ApiClient) -> None:
    ws = await api.ws()
    assert (await ws.call("send", creds=None, fields={"action": "Ping"}))[
        "errCode"
    ] == "auth_failed"
    assert (await ws.call("send", fields={"action": "Ping"}))["err"] is None
    answer = await ws.call("send", creds=None, callbackAwait=True, fields={"action": "Ping"})
    assert answer["err"] is None
    wrong = await ws.call("send", creds={**AGENT, "sha1": "1" * 40}, fields={"action": "Ping"})
    assert wrong["errCode"] == "auth_failed"
    await ws.close()


async def test_events_need_websocket(api: ApiClient) -> None:
    answer = await api.post("onEvent", name="Newchannel")
    assert answer["errCode"] == "not_supported"
    assert "WebSocket" in answer["err"]


async def test_on_event_with_filters(api: ApiClient, simulator: PbxSimulator) -> None:
    ws = await api.ws()
    plain = await ws.call("onEvent", name="NewChannel")
    assert plain["err"] is None and plain["subscriptionId"]
    filtered = await ws.call(
        "onEvent", event={"name": "newchannel", "callerIDnum": ["+70000000000", "+7978*"]}
    )
    assert filtered["err"] is None
    await simulator.incoming_call("+79787342741")
    event = await ws.next_event()
    assert event["name"] == "Newchannel" and event["Event"] == "Newchannel"
    assert event["CallerIDNum"] == "+79787342741"
    # One delivery per connection even though two subscriptions match.
    assert (await ws.call("rmEvent", name="newchannel"))["removed"] == 2
    _drain(ws)  # events pushed before the rmEvent answer (the call's other legs)
    await simulator.incoming_call("+79787342741")
    with pytest.raises(TimeoutError):
        await ws.next_event(within=0.5)
    await ws.close()


async def test_once_event_and_rm_by_id(api: ApiClient, simulator: PbxSimulator) -> None:
    ws = await api.ws()
    once = await ws.call("onceEvent", name="Newchannel")
    keep = await ws.call("onEvent", name="Hangup")
    assert (await ws.call("rmEvent", subscriptionId=keep["subscriptionId"]))["removed"] == 1
    await simulator.incoming_call("+79780000001")
    first = await ws.next_event()
    assert first["name"] == "Newchannel"
    assert (await ws.call("rmEvent", all=True))["removed"] == 0  # the once ended itself
    _drain(ws)
    assert ws.events.empty()
    await simulator.incoming_call("+79780000002")
    with pytest.raises(TimeoutError):
        await ws.next_event(within=0.5)
    assert once["subscriptionId"] != keep["subscriptionId"]
    await ws.close()


async def test_dispatch_event_is_marked(api: ApiClient) -> None:
    listener, sender = await api.ws(), await api.ws()
    await listener.call("onEvent", event={"name": "crmNote", "ticket": "42"})
    denied = await sender.call("dispatchEvent", event={"name": "crmNote", "ticket": "42"})
    assert denied["errCode"] == "forbidden"  # operators may not dispatch
    answer = await sender.call(
        "dispatchEvent",
        creds=SUPERVISOR,
        event={"name": "crmNote", "ticket": "42", "origin": "pbx", "login": "forged"},
    )
    assert answer["err"] is None and answer["delivered"] == 1
    event = await listener.next_event()
    assert event["name"] == "crmNote" and event["origin"] == "api"
    assert event["login"] == SUPERVISOR["login"]
    await listener.close()
    await sender.close()


async def test_pbx_down_fails_fast_and_recovers(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    ws = await api.ws()
    await ws.call("onEvent", name="Newchannel")
    client = server.clients["office"]
    simulator.mute = True
    simulator.drop_connections()
    loop = asyncio.get_running_loop()
    await until(lambda: not client.connected, what="the AMI connection to drop")
    started = loop.time()
    answer = await ws.call("send", callbackAwait=True, fields={"action": "Ping"})
    assert answer["errCode"] == "pbx_unavailable"
    assert loop.time() - started < 0.5
    async with api.session.get(server.http_url + "/health") as response:
        assert response.status == 503
    simulator.mute = False
    await client.wait_connected(10)
    assert (await ws.call("send", callbackAwait=True, fields={"action": "Ping"}))["err"] is None
    await simulator.incoming_call("+79787342741")
    assert (await ws.next_event())["name"] == "Newchannel"
    await ws.close()


@pytest.mark.parametrize(
    "action",
    ['hi" ; core stop now', "Ping Pong", "Ping;", "Коммand", "Pi\tng", "a" * 81, "Ping/x"],
)
async def test_send_refuses_what_is_not_an_action_name(
    api: ApiClient, simulator: PbxSimulator, action: str
) -> None:
    before = len(simulator.actions_received)
    answer = await api.post("send", creds=ADMIN, callbackAwait=True, fields={"action": action})
    assert answer["errCode"] == "bad_request", answer
    assert answer["err"].startswith("argument.fields.action must be an AMI action name"), answer
    assert len(simulator.actions_received) == before


async def test_send_accepts_every_real_action_name_shape(api: ApiClient) -> None:
    for action in ("Ping", "ping", "PJSIPShowEndpoints", "Queue_Status", "DAHDI-Show", " Ping "):
        answer = await api.post("send", creds=ADMIN, fields={"action": action})
        assert answer["errCode"] is None, (action, answer)


async def test_whoami_describes_the_caller_and_their_role(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    before = len(simulator.actions_received)
    agent = await api.post("whoami", reqId="w")
    assert agent["err"] is None and agent["reqId"] == "w", agent
    assert (agent["login"], agent["login2"], agent["role"]) == (
        AGENT["login"],
        AGENT["login2"],
        "operator",
    )
    assert agent["extensions"] == ["269"]
    assert set(agent["methods"]) == {
        "send",
        "dial",
        "redirect",
        "gsmSendSMS",
        "smsStatus",
        "smsHistory",
        "onEvent",
        "onceEvent",
        "rmEvent",
        "calls",
        "callHistory",
        "whoami",
    }
    assert (agent["smsAll"], agent["smsSpans"]) == (False, [])
    assert "ping" in agent["actions"] and "command" not in agent["actions"]
    assert {"name": "newchannel", "fields": {}} in agent["events"]
    assert agent["admin"] is False and agent["ownExtensionsOnly"] is False
    assert "sha1" not in agent and AGENT["sha1"] not in str(agent)
    admin = await api.post("whoami", creds=ADMIN)
    assert admin["role"] == "admin" and admin["admin"] is True
    assert "dispatchEvent" in admin["methods"] and "whoami" in admin["methods"]
    boss = await api.get_b64({"method": "whoami", "argument": SUPERVISOR})
    assert boss["role"] == "supervisor" and "dispatchEvent" in boss["methods"]
    wrong = await api.post("whoami", creds={**AGENT, "sha1": "0" * 40})
    assert wrong["errCode"] == "auth_failed"
    assert [a for a in simulator.actions_received[before:] if a.name.lower() != "ping"] == []


@pytest.mark.parametrize(
    "server_overrides", [{"roles": {"operator": {"methods": ["send"], "actions": ["Ping"]}}}]
)
async def test_whoami_is_open_to_a_role_that_lists_no_methods_but_send(api: ApiClient) -> None:
    ws = await api.ws()
    answer = await ws.call("whoami")
    assert answer["err"] is None, answer
    assert answer["methods"] == ["send", "whoami"]
    assert (await ws.call("dial", **{"from": "269", "to": "1"}))["errCode"] == "forbidden"
    # The connection remembers the login whoami proved.
    assert (await ws.call("whoami", creds=None))["login"] == AGENT["login"]
    await ws.close()
