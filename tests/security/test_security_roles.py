"""Roles over real sockets: dangerous actions, wildcard roles, event rules, ownership."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.security.security_figures import assert_envelope, record
from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient, add_user
from vwell_pbx.pbx.channels import ChannelRegistry
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import RunningServer

WILD = {"login": "wild", "login2": "W", "sha1": sha1_of_password("wild-pw")}
EXPLICIT = {"login": "ops", "login2": "O", "sha1": sha1_of_password("ops-pw")}

DANGEROUS: list[dict[str, Any]] = [
    {"action": "Command", "command": "core restart now"},
    {"action": "Originate", "channel": "SIP/269", "application": "System", "data": "id"},
    {"action": "Originate", "channel": "SIP/269", "application": "TrySystem", "data": "id"},
    {"action": "UpdateConfig", "srcfilename": "sip.conf", "dstfilename": "sip.conf"},
    {"action": "GetConfig", "filename": "manager.conf"},
    {"action": "ModuleLoad", "module": "res_x.so", "loadtype": "load"},
    {"action": "Reload"},
    {"action": "Restart"},
    {"action": "ShowDialPlan"},
    {"action": "Getvar", "variable": "SHELL(id)"},
    {"action": "Setvar", "variable": "X", "value": "${SHELL(reboot)}"},
    {"action": "DBPut", "family": "cf", "key": "269", "val": "89001234567"},
]


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """A wildcard role and one that names two dangerous actions literally."""
    return {
        "roles": {
            "wild": {"methods": ["*"], "actions": ["*"], "events": ["*"]},
            "ops": {"extends": "supervisor", "actions": ["Command", "Originate:System"]},
        },
        "limits": {"requests_per_second": 1000, "burst": 1000},
    }


async def _add(
    server: RunningServer, creds: dict[str, str], role: str, extensions: tuple[str, ...] = ()
) -> None:
    await add_user(server.config, creds, role=role, extensions=extensions)


async def _nothing_reached(
    api: ApiClient, simulator: PbxSimulator, creds: dict[str, str], fields: dict[str, Any]
) -> dict[str, Any]:
    before = len(simulator.actions_received)
    answer = assert_envelope(await api.post("send", creds=creds, callbackAwait=True, fields=fields))
    assert answer["errCode"] == "forbidden", (fields, answer)
    assert fields["action"].lower() in answer["err"].lower(), answer  # names what is refused
    assert not [a for a in simulator.actions_received[before:] if a.name.lower() != "ping"], (
        "a refused action reached the PBX"
    )
    return answer


async def test_dangerous_actions_need_an_explicit_role(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    await _add(server, WILD, "wild")
    await _add(server, EXPLICIT, "ops")
    tried = 0
    for creds in (AGENT, SUPERVISOR, WILD):
        for fields in DANGEROUS:
            await _nothing_reached(api, simulator, creds, fields)
            tried += 1
    # The explicit role gets exactly the two entries it names, nothing else.
    ok = await api.post(
        "send",
        creds=EXPLICIT,
        callbackAwait=True,
        fields={"action": "Command", "command": "core show version"},
    )
    assert ok["err"] is None, ok
    system = await api.post("send", creds=EXPLICIT, callbackAwait=True, fields=DANGEROUS[1])
    assert system["errCode"] != "forbidden", system
    for fields in DANGEROUS[2:]:
        await _nothing_reached(api, simulator, EXPLICIT, fields)
        tried += 1
    # Admin may send them (the simulator answers what it knows, errors for the rest).
    for fields in DANGEROUS:
        answer = assert_envelope(
            await api.post("send", creds=ADMIN, callbackAwait=True, fields=fields)
        )
        assert answer["errCode"] != "forbidden", (fields, answer)
        tried += 1
    # Session actions are refused for everyone, admin included.
    for action in ("Logoff", "Events", "Filter", "Login", "Challenge"):
        answer = await api.post("send", creds=ADMIN, fields={"action": action})
        assert answer["errCode"] == "forbidden", answer
        tried += 1
    record("roles.dangerous_actions", requests=tried + 2)


async def test_operator_and_supervisor_permissions(api: ApiClient, simulator: PbxSimulator) -> None:
    assert (await api.post("send", callbackAwait=True, fields={"action": "CoreShowChannels"}))[
        "err"
    ] is None
    for fields in (
        {
            "action": "Originate",
            "channel": "SIP/269",
            "exten": "100",
            "context": "default",
            "priority": 1,
            "async": True,
        },
        {"action": "Hangup", "channel": "SIP/269-1"},
        {"action": "Redirect", "channel": "SIP/269-1", "exten": "1"},
    ):
        await _nothing_reached(api, simulator, AGENT, fields)
    denied = await api.post("dispatchEvent", event={"name": "x"})
    assert denied["errCode"] == "forbidden" and "dispatchEvent" in denied["err"]
    normal = await api.post(
        "send",
        creds=SUPERVISOR,
        callbackAwait=True,
        fields={
            "action": "Originate",
            "channel": "SIP/269",
            "exten": "100",
            "context": "default",
            "priority": 1,
            "async": True,
        },
    )
    assert normal["err"] is None, normal
    await _nothing_reached(api, simulator, SUPERVISOR, DANGEROUS[1])
    assert (await api.post("dispatchEvent", creds=SUPERVISOR, event={"name": "x"}))["err"] is None


SECURITY_EVENTS = [
    Message.build(
        ("Event", "SuccessfulAuth"),
        ("Privilege", "security,all"),
        ("Service", "AMI"),
        ("AccountID", "admin"),
        ("RemoteAddress", "IPV4/TCP/x"),
    ),
    Message.build(
        ("Event", "InvalidPassword"), ("Privilege", "security,all"), ("AccountID", "admin")
    ),
    Message.build(("Event", "ChallengeSent"), ("Privilege", "security,all")),
    Message.build(("Event", "CustomSecurity"), ("Privilege", "security,all")),
]


async def _events_until_marker(ws: Any, marker: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        event = await ws.next_event(within=5)
        if event.get("Marker") == marker:
            return seen
        seen.append(event)


async def test_event_rules_keep_security_events_from_non_admins(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    operator, supervisor, admin = await api.ws(), await api.ws(), await api.ws()
    for ws, creds in ((operator, AGENT), (supervisor, SUPERVISOR), (admin, ADMIN)):
        assert (await ws.call("onEvent", creds=creds, name="*"))["err"] is None
    for event in SECURITY_EVENTS:
        simulator.emit(event)
    simulator.emit(Message.build(("Event", "UserEvent"), ("UserEvent", "x"), ("Seq", "1")))
    # An event every role may see ends the batch (a connection keeps the bus's order).
    simulator.emit(
        Message.build(
            ("Event", "Newchannel"),
            ("Privilege", "call,all"),
            ("Channel", "SIP/1-1"),
            ("Marker", "end"),
        )
    )
    seen_operator = await _events_until_marker(operator, "end")
    seen_supervisor = await _events_until_marker(supervisor, "end")
    seen_admin = await _events_until_marker(admin, "end")
    assert seen_operator == [], seen_operator  # no security events, no UserEvent
    assert [e["name"] for e in seen_supervisor] == ["UserEvent"]
    assert [e["name"] for e in seen_admin] == [
        "SuccessfulAuth",
        "InvalidPassword",
        "ChallengeSent",
        "CustomSecurity",
        "UserEvent",
    ]
    for ws in (operator, supervisor, admin):
        await ws.close()


@pytest.mark.parametrize(
    "server_overrides",
    [{"roles": {"operator": {"extends": "operator", "own_extensions_only": True}}}],
)
async def test_ownership_rules_for_dial_and_redirect(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    # Operator Agent owns 269 (tests.support); supervisors are not bound.
    ok = await api.post("dial", **{"from": "269", "to": "100"})
    assert ok["err"] is None, ok
    before = len(simulator.actions_received)
    other = await api.post("dial", **{"from": "267", "to": "100"})
    assert other["errCode"] == "forbidden" and "267" in other["err"], other
    mine = await simulator.incoming_call("+79787342741", to="269", hold=10)
    theirs = await simulator.incoming_call("+79787342742", to="267", hold=10)
    channels = server.api.default_link.channels
    await _until(lambda: channels.involves(mine, ("269",)) and channels.involves(theirs, ("267",)))
    for channel in (theirs, "YSGSM/99-99", "SIP/269-00000001&x"):
        refused = await api.post("redirect", channel=channel, toTel="100")
        assert refused["errCode"] == "forbidden", refused
        assert "not in a live call of your extensions" in refused["err"]
    mixed = await api.post("redirect", channel=mine, extraChannel=theirs, toTel="100")
    assert mixed["errCode"] == "forbidden" and "extraChannel" in mixed["err"]
    assert not [
        a
        for a in simulator.actions_received[before:]
        if a.name.lower() in ("originate", "redirect")
    ]
    allowed = await api.post("redirect", channel=mine, toTel="100")
    assert allowed["err"] is None, allowed
    boss = await api.post("redirect", creds=SUPERVISOR, channel=theirs, toTel="100")
    assert boss["err"] is None, boss
    # After the calls end the channels are forgotten; memory stays bounded.
    await _until(lambda: channels.calls == 0 and len(channels) == 0, within=15)


async def _until(condition: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


def test_channel_registry_is_bounded_and_follows_dials() -> None:
    registry = ChannelRegistry(max_channels=50)
    for index in range(500):  # Hangups missed: memory stays bounded anyway
        registry.observe(
            Message.build(
                ("Event", "Newchannel"),
                ("Channel", f"SIP/1-{index}"),
                ("Uniqueid", str(index)),
                ("Linkedid", str(index)),
            )
        )
    assert len(registry) == 50 and registry.calls == 50
    # Asterisk 1.8 / Yeastar: no Linkedid; the Dial event joins the two legs.
    registry.observe(
        Message.build(
            ("Event", "Newchannel"),
            ("Channel", "YSGSM/11-1"),
            ("CallerIDNum", "269"),
            ("Uniqueid", "a"),
        )
    )
    assert not registry.involves("YSGSM/11-1", ("269",))  # caller ID is not trusted
    registry.observe(
        Message.build(("Event", "Newchannel"), ("Channel", "SIP/269-7"), ("Uniqueid", "b"))
    )
    registry.observe(
        Message.build(
            ("Event", "Dial"),
            ("SubEvent", "Begin"),
            ("Channel", "YSGSM/11-1"),
            ("Destination", "SIP/269-7"),
        )
    )
    assert registry.involves("YSGSM/11-1", ("269",))
    assert not registry.involves("YSGSM/11-1", ("267",))
    registry.observe(Message.build(("Event", "Hangup"), ("Channel", "SIP/269-7")))
    assert not registry.involves("YSGSM/11-1", ("269",))
    registry.clear()
    assert len(registry) == 0 and registry.calls == 0


OWN = {"login": "own", "login2": "O", "sha1": sha1_of_password("own-pw")}


@pytest.mark.parametrize(
    "server_overrides",
    [
        {
            "roles": {"own": {"extends": "supervisor", "own_extensions_only": True}},
            "limits": {"requests_per_second": 1000, "burst": 1000},
        }
    ],
)
async def test_ownership_applies_to_channels_named_in_send(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    # A supervisor's actions (Hangup, Redirect, Bridge, Originate, ...) bound to 269.
    await _add(server, OWN, "own", ("269",))
    mine = await simulator.incoming_call("+79787342741", to="269", hold=10)
    theirs = await simulator.incoming_call("+79787342742", to="267", hold=10)
    channels = server.api.default_link.channels
    await _until(lambda: channels.involves(mine, ("269",)) and channels.involves(theirs, ("267",)))

    refused: list[tuple[dict[str, Any], str]] = [
        ({"action": "Hangup", "channel": theirs}, "fields.channel"),
        ({"action": "Hangup", "Channel": "/.*/"}, "fields.Channel"),  # Asterisk's regex form
        ({"action": "Hangup", "CHANNEL": "YSGSM/99-99"}, "fields.CHANNEL"),
        ({"action": "Redirect", "Channel": mine, "ExtraChannel": theirs, "Exten": "1"}, "Extra"),
        ({"action": "Bridge", "Channel1": mine, "Channel2": theirs}, "fields.Channel2"),
        ({"action": "Park", "Channel": mine, "TimeoutChannel": theirs}, "TimeoutChannel"),
        ({"action": "Getvar", "Channel": theirs, "Variable": "CALLERID(num)"}, "fields.Channel"),
        ({"action": "Hangup", "Channel": [mine, theirs]}, "fields.Channel"),  # repeated header
        ({"action": "Originate", "Channel": "SIP/267", "Exten": "100"}, "device"),
        ({"action": "Originate", "Channel": "Local/267@from-internal", "Exten": "1"}, "device"),
    ]
    for fields, named in refused:
        answer = await _nothing_reached(api, simulator, OWN, fields)
        assert "argument.fields." in answer["err"] and named in answer["err"], answer

    allowed: list[dict[str, Any]] = [
        {"action": "Status"},  # names no channel
        {"action": "Getvar", "Channel": mine, "Variable": "CALLERID(num)"},
        {"action": "Originate", "Channel": "SIP/269", "Exten": "100", "Context": "default"},
        {"action": "Redirect", "Channel": mine, "Exten": "100", "Context": "default"},
    ]
    for fields in allowed:
        before = len(simulator.actions_received)
        answer = assert_envelope(
            await api.post("send", creds=OWN, callbackAwait=True, fields=fields)
        )
        assert answer["errCode"] != "forbidden", (fields, answer)
        sent = [a.name.lower() for a in simulator.actions_received[before:]]
        assert fields["action"].lower() in sent, (fields, sent)
    # The same actions are not bound for a supervisor.
    boss = await api.post(
        "send", creds=SUPERVISOR, callbackAwait=True, fields={"action": "Hangup", "channel": theirs}
    )
    assert boss["err"] is None, boss


async def test_every_value_of_a_repeated_header_is_checked(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    # A dangerous value first in a list used to pass: the check saw only the last one.
    for variables in (["B=${SHELL(id)}", "A=1"], ["A=1", "B=${SHELL(id)}"]):
        fields = {
            "action": "Originate",
            "channel": "SIP/269",
            "exten": "100",
            "context": "default",
            "Variable": variables,
        }
        answer = await _nothing_reached(api, simulator, SUPERVISOR, fields)
        assert "SHELL" in answer["err"], answer
