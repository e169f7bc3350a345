"""Hypothesis-driven fuzz of envelopes over HTTP and WebSocket against the real server.

Envelopes are random JSON values, or ``{"method", "argument"}`` with a random or real
method name and arguments drawn from that method's schema (right keys, random values),
``send`` fields with real action names (dangerous ones included) and random headers.
Every answer must be a well-formed envelope with a documented ``errCode`` and never
``internal``; afterwards nothing the simulator received may be forbidden for the
caller's role (or be a session action, or carry CR/LF/NUL in a header).

Hypothesis runs in a worker thread and submits each request to the event loop that
serves the server and the simulator (``run_coroutine_threadsafe``), so its shrinking
works unchanged while the loop keeps running.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.security_figures import record
from tests.support import AGENT, SUPERVISOR, ApiClient
from tests.support.envelopes import assert_envelope
from vwell_pbx.api.registry import METHODS
from vwell_pbx.api.roles import BUILTIN_ROLES, SESSION_ACTIONS
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # fuzzed envelopes on every transport

EXAMPLES = 200
T = TypeVar("T")

ACTIONS = (
    "Ping",
    "CoreSettings",
    "CoreShowChannels",
    "Status",
    "Getvar",
    "Setvar",
    "Originate",
    "Redirect",
    "Hangup",
    "Command",
    "UpdateConfig",
    "GetConfig",
    "ModuleLoad",
    "Reload",
    "Restart",
    "ShowDialPlan",
    "DBPut",
    "Logoff",
    "Events",
    "Filter",
    "Login",
    "Challenge",
    "Agi",
    "MixMonitor",
    "UserEvent",
    "QueueAdd",
)
HEADERS = (
    "Channel",
    "Exten",
    "Context",
    "Priority",
    "Application",
    "Data",
    "Variable",
    "Command",
    "Async",
    "Timeout",
    "CallerID",
    "Filename",
    "Value",
)
NASTY_TEXT = st.sampled_from(
    [
        "System",
        "TrySystem",
        "SHELL(id)",
        "${SHELL(reboot)}",
        "core restart now",
        "\r\nAction: Command",
        "\n",
        "\0",
        "\u2028",
        '"',
        "\\",
        "SIP/269",
        "269",
        "+7 978 734 27 41",
    ]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    NASTY_TEXT,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
header_values = st.one_of(
    scalars, st.lists(st.one_of(st.text(max_size=20), NASTY_TEXT), max_size=3), json_values
)
send_fields = st.builds(
    lambda action, extra: {"action": action, **extra},
    st.one_of(st.sampled_from(ACTIONS), st.text(max_size=12)),
    st.dictionaries(
        st.one_of(st.sampled_from(HEADERS), st.text(max_size=12)), header_values, max_size=5
    ),
)


phone = st.one_of(
    st.sampled_from(["269", "267", "+7 100 200 30 40", "100", "*97#"]),
    st.text("0123456789+*# -()", max_size=14),
)
event_names = st.one_of(
    st.sampled_from(["Newchannel", "*", "", "Hangup", "SuccessfulAuth"]), st.text(max_size=12)
)
# Plausible values per method argument, so that many requests get past validation and
# reach the methods (and the PBX); each is mixed with arbitrary JSON below.
VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "send": {
        "fields": send_fields,
        "callbackAwait": st.booleans(),
        "timeout": st.integers(-5, 3000),
    },
    "dial": {
        "from": phone,
        "to": phone,
        "timeout": st.integers(0, 400_000),
        "wait": st.just(False),
    },
    "redirect": {
        "channel": st.sampled_from(["YSGSM/11-1", "SIP/269-00000001", "Local/1@x;1"]),
        "toTel": phone,
        "extraChannel": st.text(max_size=20),
    },
    "gsmSendSMS": {
        "tel": phone,
        "msg": st.one_of(st.text(min_size=1, max_size=60), NASTY_TEXT),
        "wait": st.just(False),
        "timeout": st.integers(1, 3000),
    },
    "onEvent": {
        "name": event_names,
        "event": st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    },
    "onceEvent": {"name": event_names},
    "rmEvent": {"name": event_names, "subscriptionId": st.text(max_size=8), "all": st.booleans()},
    "dispatchEvent": {
        "event": st.builds(
            lambda n, d: {**d, "name": n},
            event_names,
            st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        )
    },
}


def _argument_strategy(method: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = METHODS[method].schema
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {"pbx": st.one_of(st.just("office"), json_values)}
    for name, info in schema.model_fields.items():
        key = info.alias or name
        if key in ("login", "login2", "sha1", "secret", "pbx"):
            continue
        valid = VALID.get(method, {}).get(key, json_values)
        mixed = st.one_of(valid, valid, valid, json_values)
        (required if info.is_required() else optional)[key] = mixed
    return st.fixed_dictionaries(required, optional=optional)


def envelopes(creds: dict[str, str]) -> st.SearchStrategy[Any]:
    credentials = st.one_of(
        st.just(creds),
        st.just(creds),
        st.just(creds),
        st.just({}),
        st.fixed_dictionaries(
            {
                "login": st.one_of(st.just(creds["login"]), json_values),
                "login2": json_values,
                "sha1": json_values,
            }
        ),
    )
    method_calls = st.sampled_from(sorted(METHODS)).flatmap(
        lambda method: st.builds(
            lambda cred, arg, req: {"method": method, "argument": {**arg, **cred, "reqId": req}},
            credentials,
            _argument_strategy(method),
            scalars,
        )
    )
    other = st.one_of(
        json_values,
        st.builds(lambda m, a: {"method": m, "argument": a}, json_values, json_values),
    )
    return st.one_of(method_calls, method_calls, method_calls, other)


def _dumps(value: Any) -> bytes:
    # The standard library, not orjson: it also writes integers beyond 64 bits.
    return json.dumps(value, ensure_ascii=False).encode()


class LoopBridge:
    """Runs coroutines on the test's event loop from Hypothesis's worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


async def _post(api: ApiClient, envelope: Any) -> dict[str, Any]:
    async with api.session.post(
        api.url, data=_dumps(envelope), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status in (200, 400), response.status
        return dict(await response.json())


async def _get(api: ApiClient, envelope: Any) -> dict[str, Any]:
    b64 = base64.b64encode(_dumps(envelope)).decode()
    async with api.session.get(api.url, params={"fb64json": b64}) as response:
        assert response.status in (200, 400), response.status
        return dict(await response.json())


async def _ws(ws: aiohttp.ClientWebSocketResponse, envelope: Any) -> dict[str, Any]:
    await ws.send_bytes(_dumps(envelope))
    while True:
        message = await ws.receive(timeout=15)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        data = orjson.loads(message.data)
        if "errCode" in data and "err" in data:
            return dict(data)


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """Fuzzing sends many bad logins quickly: keep throttling out of the way."""
    return {
        "users": {"throttle_after": 1_000_000, "throttle_after_address": 1_000_000},
        "limits": {
            "requests_per_second": 1_000_000,
            "burst": 1_000_000,
            "sms_per_minute_user": 1_000_000,
            "max_wait_ms": 3000,
            "default_wait_ms": 3000,
        },
    }


def _check_received(actions: list[Message], role_name: str) -> int:
    role = BUILTIN_ROLES[role_name]
    for action in actions:
        for key, value in action.headers:
            assert not any(c in key + value for c in "\r\n\0"), action
        name = action.name.casefold()
        assert name not in SESSION_ACTIONS, action
        if role.check_action(action.to_dict()) is None:
            continue
        # Not allowed through `send`: then it must be what a method makes itself.
        if name == "originate":  # dial: the configured template, never an application
            assert action.get("Application") is None, action
            assert (action.get("Channel") or "").startswith("SIP/"), action
        elif name == "redirect":
            assert action.get("Context") == "default", action
        elif name == "command":
            assert (action.get("Command") or "").startswith(("gsm send sms ", "gsm show span")), (
                action
            )
        else:
            raise AssertionError(f"{role_name} made the PBX receive {action}")
    return len(actions)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", ["http", "ws"])
@pytest.mark.parametrize("role_name", ["operator", "supervisor"])
async def test_fuzzed_envelopes(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator, transport: str, role_name: str
) -> None:
    creds = {"operator": AGENT, "supervisor": SUPERVISOR}[role_name]
    bridge = LoopBridge(asyncio.get_running_loop())
    ws = await api.session.ws_connect(server.ws_url) if transport == "ws" else None
    before = len(simulator.actions_received)
    counts = {"examples": 0, "answers": 0}
    codes: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(envelope=envelopes(creds), via_get=st.booleans())
    def one(envelope: Any, via_get: bool) -> None:
        counts["examples"] += 1
        if ws is not None:
            answer = bridge.run(_ws(ws, envelope))
        elif via_get:
            answer = bridge.run(_get(api, envelope))
        else:
            answer = bridge.run(_post(api, envelope))
        assert_envelope(answer)
        counts["answers"] += 1
        code = answer["errCode"] or "ok"
        codes[code] = codes.get(code, 0) + 1

    await asyncio.to_thread(one)
    # AMI answers in order: once this Ping is answered, every earlier write has arrived.
    barrier = await api.post("send", callbackAwait=True, fields={"action": "Ping"})
    assert barrier["err"] is None, barrier
    received = _check_received(simulator.actions_received[before:], role_name)
    if ws is not None:
        await ws.close()
    assert counts["answers"] == counts["examples"] >= EXAMPLES
    assert codes.get("ok", 0) > 0 and len(codes) >= 3, codes  # the fuzz reached methods
    record(
        f"fuzz.{transport}.{role_name}",
        examples=counts["examples"],
        pbx_actions_checked=received,
        **{f"answers_{k}": v for k, v in sorted(codes.items())},
    )
