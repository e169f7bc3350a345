"""AMI header and command injection through every string argument of every method.

Each payload (CR, LF, a blank line, a whole second action, quotes, backslashes, ``&``
and ``;`` in channel names, NUL, a long string, Unicode line separators, a dialplan
function call) goes into every string argument that ``api.registry.METHODS`` declares,
into the keys and values of ``send``'s ``fields`` and of event objects, and into the
credentials, over HTTP POST, HTTP GET ``fb64json`` and WebSocket. After each request:

- the answer is a well-formed envelope with a documented ``errCode``, never ``internal``;
- what reached the simulator (the real AMI stream) is at most the one action the method
  makes, of the expected kind, allowed for the caller's role, never a session action,
  with no header value containing CR, LF or NUL and no header the caller did not send.
"""

from __future__ import annotations

import base64
import itertools
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.security.security_figures import record
from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient
from tests.support.envelopes import assert_envelope
from vwell_pbx.api.registry import METHODS
from vwell_pbx.api.roles import BUILTIN_ROLES, SESSION_ACTIONS
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # every string argument of every method, on every transport

SERVER_SECRET = "srv-Secret-For-Injection-7"

PAYLOADS: dict[str, str] = {
    "cr": "269\r",
    "lf": "269\n",
    "blank_line": "269\r\n\r\n",
    "second_action": "269\r\nAction: Command\r\nCommand: core restart now\r\n\r\n",
    "lf_action": "\nAction: Command\nCommand: core restart now\n\n",
    "double_quote": '269" ; core restart now ; "',
    "single_quote": "269'",
    "backslash": "269\\",
    "backslash_quote": '\\"\r\nAction: Command\\',
    "ampersand": "SIP/269-00000001&SIP/267-00000002",
    "semicolon": "Local/269@from-internal-00000001;1",
    "nul": "269\0Action: Command",
    "long": "9" * 3000,
    "line_separator": "269\u2028Action: Command",
    "paragraph_separator": "269\u2029",
    "next_line": "269\x85Action: Command",
    "tab": "\tAction: Command",
    "header_like": "Action: Command",
    "dialplan_function": "${SHELL(reboot)}",
    "percent_crlf": "%0d%0aAction: Command",
    "empty": "",
    "blank": "   ",
}

# Base arguments that make each method valid; the target replaces one piece of it.
BASE: dict[str, dict[str, Any]] = {
    "send": {"fields": {"action": "CoreSettings"}, "callbackAwait": True},
    "dial": {"from": "269", "to": "100"},
    "redirect": {"channel": "YSGSM/11-1", "toTel": "267"},
    # wait: the outbox sends after answering; waiting makes the answer follow the send.
    "gsmSendSMS": {"tel": "100", "msg": "hello", "wait": True},
    "smsStatus": {"smsId": "0123456789abcdef0123456789abcdef"},
    "smsHistory": {"direction": "out"},
    "onEvent": {"name": "Newchannel"},
    "onceEvent": {"name": "Newchannel"},
    "rmEvent": {"name": "Newchannel"},
    "dispatchEvent": {"event": {"name": "crmNote"}},
    "whoami": {},
    "calls": {},
    "callHistory": {},
}
CALLER: dict[str, dict[str, str]] = {"dispatchEvent": SUPERVISOR}
# Actions each method may make on the caller's behalf (beyond what `send` carries).
METHOD_ACTIONS: dict[str, tuple[str, ...]] = {
    "dial": ("originate",),
    "redirect": ("redirect",),
    "gsmSendSMS": ("command",),
}
MAX_ACTIONS = {"send": 1, "dial": 1, "redirect": 1, "gsmSendSMS": 3}
CREDENTIAL_KEYS = ("login", "login2", "sha1", "secret", "pbx")


@dataclass(frozen=True)
class Target:
    """Where a payload goes: ``apply(argument, payload)`` mutates a copy of the base."""

    method: str
    name: str
    apply: Callable[[dict[str, Any], str], None]
    creds: dict[str, str]


def _set(key: str) -> Callable[[dict[str, Any], str], None]:
    def apply(argument: dict[str, Any], payload: str) -> None:
        argument[key] = payload

    return apply


def _set_in(outer: str, key: str, prefix: str = "") -> Callable[[dict[str, Any], str], None]:
    def apply(argument: dict[str, Any], payload: str) -> None:
        argument[outer] = {**argument.get(outer, {}), key: prefix + payload}

    return apply


def _key_in(outer: str, prefix: str) -> Callable[[dict[str, Any], str], None]:
    def apply(argument: dict[str, Any], payload: str) -> None:
        argument[outer] = {**argument.get(outer, {}), prefix + payload: "x"}

    return apply


def _list_in(outer: str, key: str) -> Callable[[dict[str, Any], str], None]:
    def apply(argument: dict[str, Any], payload: str) -> None:
        argument[outer] = {**argument.get(outer, {}), key: ["A=1", payload]}

    return apply


def _is_text(annotation: object) -> bool:
    text = str(annotation)
    return "str" in text and not text.startswith("dict")


def targets_of(method: str) -> list[Target]:
    """Every string argument of ``method`` (from its schema) plus nested keys/values."""
    schema = METHODS[method].schema
    creds = CALLER.get(method, AGENT)
    found: list[Target] = []
    for name, info in schema.model_fields.items():
        key = info.alias or name
        if key in CREDENTIAL_KEYS:
            continue  # common to every method: covered once, through `send`
        if _is_text(info.annotation):
            found.append(Target(method, key, _set(key), creds))
        elif str(info.annotation).startswith("dict"):
            if method == "send":
                found += [
                    Target(method, "fields.action", _set_in(key, "action", "CoreSettings"), creds),
                    Target(method, "fields.<key>", _key_in(key, "X-Test"), creds),
                    Target(method, "fields.<value>", _set_in(key, "X-Test"), creds),
                    Target(method, "fields.actionId", _set_in(key, "actionId"), creds),
                    Target(method, "fields.<list item>", _list_in(key, "Variable"), creds),
                ]
            else:
                found += [
                    Target(method, f"{key}.name", _set_in(key, "name"), creds),
                    Target(method, f"{key}.<key>", _key_in(key, "Field"), creds),
                    Target(method, f"{key}.<value>", _set_in(key, "CallerIDNum"), creds),
                ]
    if method == "send":
        found += [Target(method, key, _set(key), AGENT) for key in CREDENTIAL_KEYS]
        found.append(Target(method, "reqId", _set("reqId"), AGENT))
        # The same action-carrying targets as an admin: no role makes injection possible.
        found += [
            Target(method, f"{t.name} (admin)", t.apply, ADMIN)
            for t in list(found)
            if t.name.startswith("fields.")
        ]
    return found


def _squash(text: str) -> str:
    return "".join(c for c in text if not (c.isspace() or unicodedata.category(c)[0] == "C"))


def _is_keepalive(action: Message) -> bool:
    return action.name.lower() == "ping" and {k.lower() for k, _ in action.headers} <= {
        "action",
        "actionid",
    }


def check_actions(
    target: Target,
    argument: dict[str, Any],
    new: list[Message],
    *,
    answer: dict[str, Any],
    simulator: PbxSimulator,
    sms_before: int,
) -> None:
    """What reached the PBX is exactly what the method may make for this caller."""
    actions = [a for a in new if not _is_keepalive(a)]
    assert len(actions) <= MAX_ACTIONS.get(target.method, 0), (target, actions)
    role = BUILTIN_ROLES[
        {"Agent": "operator", "root": "admin", "boss": "supervisor"}[target.creds["login"]]
    ]
    for action in actions:
        for key, value in action.headers:
            assert not any(c in key + value for c in "\r\n\0"), (target, action)
        assert action.name.casefold() not in SESSION_ACTIONS, (target, action)
        if target.method == "send":
            assert role.check_action(action.to_dict()) is None, (target, action)
            sent_keys = {k.lower() for k in argument["fields"]} | {"actionid"}
            assert {k.lower() for k, _ in action.headers} <= sent_keys, (target, action)
        else:
            assert action.name.lower() in METHOD_ACTIONS[target.method], (target, action)
            if target.method == "gsmSendSMS":
                command = action.get("Command") or ""
                assert command.startswith(("gsm send sms ", "gsm show span")), command
            if target.method == "dial":
                assert action.get("Application") is None, action
    if target.method == "gsmSendSMS" and answer["err"] is None:
        sent = simulator.sms_sent[-1]
        assert len(simulator.sms_sent) == sms_before + 1
        # The PBX decoded exactly the text inside the quotes: nothing escaped them.
        assert _squash(sent.text) == _squash(argument["msg"]), (sent, argument)
        assert "\r" not in sent.text and "\n" not in sent.text


class Transport:
    """One request, one answer, over HTTP POST, HTTP GET fb64json or a WebSocket."""

    def __init__(self, kind: str, api: ApiClient, ws: aiohttp.ClientWebSocketResponse | None):
        self.kind = kind
        self.api = api
        self.ws = ws

    async def ask(self, envelope: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "post":
            async with self.api.session.post(self.api.url, json=envelope) as response:
                assert response.status == 200, await response.text()
                return dict(await response.json())
        if self.kind == "get":
            b64 = base64.urlsafe_b64encode(orjson.dumps(envelope)).decode()
            async with self.api.session.get(f"{self.api.url}?fb64json={b64}") as response:
                assert response.status == 200, await response.text()
                return dict(await response.json())
        assert self.ws is not None
        await self.ws.send_bytes(orjson.dumps(envelope))
        while True:  # requests are sequential: the next answer is ours; skip pushed events
            message = await self.ws.receive(timeout=10)
            assert message.type is aiohttp.WSMsgType.TEXT, message
            data = orjson.loads(message.data)
            if "errCode" in data and "err" in data:
                return dict(data)


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """Injection runs thousands of requests: no throttling or rate limits in the way."""
    return {
        "server": {"secret": SERVER_SECRET},
        "users": {"throttle_after": 1_000_000, "throttle_after_address": 1_000_000},
        "limits": {
            "requests_per_second": 1_000_000,
            "burst": 1_000_000,
            "sms_per_minute_user": 1_000_000,
            "max_wait_ms": 5000,
            "default_wait_ms": 5000,
        },
    }


def _cases(method: str) -> Iterator[tuple[Target, str, str]]:
    for target, (label, payload) in itertools.product(targets_of(method), PAYLOADS.items()):
        yield target, label, payload


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["post", "get", "ws"])
@pytest.mark.parametrize("method", sorted(BASE))
async def test_injection_through_every_string_argument(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, method: str, transport: str
) -> None:
    assert set(BASE) == set(METHODS), "a new method needs its base arguments here"
    ws = await api.session.ws_connect(server.ws_url) if transport == "ws" else None
    channel = await simulator.incoming_call("+79787342741", hold=30)  # a live target
    BASE["redirect"]["channel"] = channel
    sender = Transport(transport, api, ws)
    tried = 0
    codes: dict[str, int] = {}
    for number, (target, label, payload) in enumerate(_cases(method)):
        argument: dict[str, Any] = {
            **target.creds,
            "reqId": f"i{number}",
            **orjson.loads(orjson.dumps(BASE[method])),
        }
        target.apply(argument, payload)
        envelope = {"method": method, "argument": argument}
        before, sms_before = len(simulator.actions_received), len(simulator.sms_sent)
        answer = assert_envelope(await sender.ask(envelope))
        if target.name != "reqId":
            assert answer["reqId"] == f"i{number}", (target, label, answer)
        code = answer["errCode"] or "ok"
        codes[code] = codes.get(code, 0) + 1
        check_actions(
            target,
            argument,
            simulator.actions_received[before:],
            answer=answer,
            simulator=simulator,
            sms_before=sms_before,
        )
        if (
            any(c in payload for c in "\r\n\0")
            and target.name.startswith("fields.")
            and not target.name.startswith("fields.actionId")
        ):
            # A CR, LF or NUL in an AMI header is refused before anything is written
            # (the client's actionId never goes on the wire: it is only echoed).
            assert answer["errCode"] in ("bad_request", "forbidden"), (target, label, answer)
        tried += 1
    if ws is not None:
        await ws.close()
    assert tried == len(targets_of(method)) * len(PAYLOADS)
    record(
        f"injection.{method}.{transport}",
        inputs=tried,
        targets=len(targets_of(method)),
        payloads=len(PAYLOADS),
        **{f"answers_{k}": v for k, v in sorted(codes.items())},
    )
