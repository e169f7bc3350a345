"""Roles: method, action and event permissions, dangerous actions, configured roles."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.api.role_tables import EventRuleSpec, RoleSpec
from vwell_pbx.api.roles import (
    ADMIN,
    BUILTIN_ROLES,
    DANGEROUS_ACTIONS,
    OPERATOR,
    SECURITY_EVENTS,
    SUPERVISOR,
    Role,
    RoleBook,
    UnknownRoleError,
    _header,
    _key_index,
    _values,
    danger_key,
)

SEED_METHODS = ("send", "dial", "redirect", "gsmSendSMS", "onEvent", "onceEvent", "rmEvent")


def act(action: str, **more: object) -> dict[str, object]:
    return {"Action": action, **more}


# (role, fields, allowed?)
ACTION_TABLE: list[tuple[Role, dict[str, object], bool]] = [
    (OPERATOR, act("Ping"), True),
    (OPERATOR, {"action": "ping"}, True),  # key and value case do not matter
    (OPERATOR, act("CoreShowChannels"), True),
    (OPERATOR, act("Status"), True),
    (OPERATOR, act("SIPpeers"), True),
    (OPERATOR, act("QueueStatus"), True),
    (OPERATOR, act("ExtensionState", Exten="269", Context="default"), True),
    (OPERATOR, act("Getvar", Channel="SIP/269-1", Variable="CALLERID(num)"), True),
    (OPERATOR, act("Getvar", Variable="SHELL(id)"), False),
    (OPERATOR, act("Originate", Channel="SIP/269"), False),
    (OPERATOR, act("Redirect", Channel="SIP/269-1"), False),
    (OPERATOR, act("Hangup", Channel="SIP/269-1"), False),
    (OPERATOR, act("QueueAdd"), False),
    (OPERATOR, act("Command", Command="core show version"), False),
    (OPERATOR, act("UpdateConfig"), False),
    (SUPERVISOR, act("Ping"), True),
    (SUPERVISOR, act("Originate", Channel="SIP/269", Exten="100", Context="default"), True),
    (SUPERVISOR, act("Originate", Channel="SIP/269", Application="Playback", Data="x"), True),
    (SUPERVISOR, act("Originate", Channel="SIP/269", Application="System", Data="id"), False),
    (SUPERVISOR, act("Originate", Channel="SIP/269", Application="trysystem", Data="x"), False),
    (SUPERVISOR, act("Originate", Channel="SIP/269", Application=" SYSTEM "), False),
    (SUPERVISOR, act("Originate", Application="Exec", Data="System(id)"), False),
    (SUPERVISOR, act("Originate", Application="AGI", Data="/tmp/x.sh"), False),
    (SUPERVISOR, act("Originate", Application="Set", Data="X=${SHELL(id)}"), False),
    (SUPERVISOR, act("Originate", Channel="SIP/1", Variable=["A=1", "B=${SHELL(id)}"]), False),
    (SUPERVISOR, act("Setvar", Variable="FILE(/etc/asterisk/sip.conf)", Value="x"), False),
    (SUPERVISOR, act("Setvar", Variable="FOO", Value="bar"), True),
    (SUPERVISOR, act("Redirect", Channel="SIP/1-1", Exten="2"), True),
    (SUPERVISOR, act("Hangup", Channel="SIP/1-1"), True),
    (SUPERVISOR, act("QueuePause", Interface="SIP/1"), True),
    (SUPERVISOR, act("Command", Command="core show channels"), False),
    (SUPERVISOR, act("DBPut", Family="cf", Key="1", Val="2"), False),
    (SUPERVISOR, act("ModuleLoad"), False),
    (ADMIN, act("Command", Command="core show version"), True),
    (ADMIN, act("Originate", Application="System", Data="id"), True),
    (ADMIN, act("Getvar", Variable="SHELL(id)"), True),
    (ADMIN, act("UpdateConfig"), True),
    (ADMIN, act("Logoff"), False),  # the shared session: nobody
    (ADMIN, act("Events", EventMask="off"), False),
    (ADMIN, act("Filter", Operation="Add"), False),
    (OPERATOR, {}, False),
    (OPERATOR, {"Action": ""}, False),
    (OPERATOR, {"Action": ["Ping", "Ping"]}, False),
]


@pytest.mark.parametrize(("role", "fields", "allowed"), ACTION_TABLE)
def test_action_table(role: Role, fields: dict[str, object], allowed: bool) -> None:
    message = role.check_action(fields)
    assert (message is None) is allowed, message


def test_denial_messages_say_what_is_refused() -> None:
    msg = OPERATOR.check_action(act("Command", Command="x"))
    assert msg is not None
    assert "Command" in msg
    assert "'operator'" in msg
    msg = SUPERVISOR.check_action(act("Originate", Application="System", Data="rm"))
    assert msg is not None
    assert "Application System" in msg
    assert '"Originate:System"' in msg
    msg = ADMIN.check_action(act("Logoff"))
    assert msg is not None
    assert "shared AMI session" in msg


def test_star_never_grants_dangerous_actions() -> None:
    star = Role.build("star", actions=["*"], events=["*"])
    assert star.check_action(act("Ping")) is None
    assert star.check_action(act("Originate", Channel="SIP/1", Exten="2")) is None
    for name in sorted(DANGEROUS_ACTIONS):
        assert star.check_action(act(name)) is not None, name
    assert star.check_action(act("Originate", Application="System")) is not None
    assert star.check_action(act("Getvar", Variable="SHELL(id)")) is not None
    db = Role.build("db", actions=["DB*"])
    assert db.check_action(act("DBPut")) is not None


def test_explicit_listing_grants_a_dangerous_action() -> None:
    role = Role.build("ops", actions=["Ping", "command", "Originate", "Originate:System"])
    assert role.check_action(act("Command", Command="core show version")) is None
    assert role.check_action(act("Originate", Application="System", Data="x")) is None
    # Listing one dangerous thing does not grant another.
    assert role.check_action(act("Originate", Application="AGI", Data="x")) is not None
    assert role.check_action(act("UpdateConfig")) is not None
    shell = Role.build("shell", actions=["Getvar", "Function:SHELL"])
    assert shell.check_action(act("Getvar", Variable="SHELL(id)")) is None
    assert shell.check_action(act("Getvar", Variable="FILE(/etc/passwd)")) is not None


def test_danger_key() -> None:
    assert danger_key(act("Ping")) is None
    assert danger_key({"action": "command"}) == ("command", "it can run commands or change the PBX")
    key = danger_key(act("Originate", application="TRYSYSTEM"))
    assert key is not None
    assert key[0] == "Originate:TrySystem"
    key = danger_key(act("UserEvent", Body="x=${shell(id)}"))
    assert key is not None
    assert key[0] == "Function:SHELL"
    # Words merely containing a function name are not calls.
    assert danger_key(act("UserEvent", Body="myshell(x) profile(1) env")) is None


@pytest.mark.parametrize("method", SEED_METHODS)
def test_methods_of_builtin_roles(method: str) -> None:
    assert OPERATOR.allows_method(method)
    assert OPERATOR.allows_method(method.upper())
    assert SUPERVISOR.allows_method(method)
    assert ADMIN.allows_method(method)


def test_dispatch_event_is_for_supervisors() -> None:
    assert not OPERATOR.allows_method("dispatchEvent")
    assert SUPERVISOR.allows_method("dispatchEvent")
    assert ADMIN.allows_method("anythingNew")
    assert not SUPERVISOR.allows_method("anythingNew")


EVENT_TABLE: list[tuple[Role, dict[str, str | list[str]], bool]] = [
    (OPERATOR, {"Event": "Newchannel", "Channel": "SIP/269-1"}, True),
    (OPERATOR, {"event": "HANGUP"}, True),
    (OPERATOR, {"Event": "DialBegin"}, True),
    (OPERATOR, {"Event": "OriginateResponse"}, True),
    (OPERATOR, {"Event": "ReceivedSMS"}, True),
    (OPERATOR, {"Event": "UpdateSMSSend"}, True),
    (OPERATOR, {"Event": "VarSet"}, False),
    (OPERATOR, {"Event": "FullyBooted"}, False),
    (OPERATOR, {"Event": "SuccessfulAuth", "Privilege": "security,all"}, False),
    (OPERATOR, {"name": "Newstate"}, True),  # a client-dispatched event
    (OPERATOR, {"Channel": "x"}, False),  # no name at all
    (SUPERVISOR, {"Event": "VarSet"}, True),
    (SUPERVISOR, {"Event": "QueueMemberStatus"}, True),
    (SUPERVISOR, {"Event": "InvalidPassword"}, False),
    (SUPERVISOR, {"Event": "SomethingNew", "Privilege": "security,all"}, False),
    (ADMIN, {"Event": "InvalidPassword", "Privilege": "security,all"}, True),
]


@pytest.mark.parametrize(("role", "fields", "allowed"), EVENT_TABLE)
def test_event_table(role: Role, fields: dict[str, str | list[str]], allowed: bool) -> None:
    assert role.allows_event(fields) is allowed


def test_event_rules_with_fields_and_own_extensions() -> None:
    role = Role.build(
        "own",
        events=[
            EventRuleSpec(name="Hangup", fields={"CallerIDNum": "{extension}"}),
            EventRuleSpec(name="Newchannel", fields={"channel": ["SIP/{extension}-*", "X"]}),
            EventRuleSpec(name="PeerStatus", fields={"Peer": "SIP/2*"}),
        ],
    )
    mine = ("269", "270")
    assert role.allows_event({"Event": "Hangup", "CallerIDNum": "270"}, extensions=mine)
    assert not role.allows_event({"Event": "Hangup", "CallerIDNum": "271"}, extensions=mine)
    assert not role.allows_event({"Event": "Hangup", "CallerIDNum": "270"})  # no extensions
    assert not role.allows_event({"Event": "Hangup"}, extensions=mine)  # field missing
    assert role.allows_event({"Event": "Newchannel", "Channel": "sip/269-0001"}, extensions=mine)
    assert role.allows_event({"Event": "Newchannel", "Channel": "x"}, extensions=mine)
    assert not role.allows_event({"Event": "Newchannel", "Channel": "SIP/26-1"}, extensions=mine)
    # A repeated header (a list) matches when any of its values does.
    assert role.allows_event({"Event": "PeerStatus", "Peer": ["IAX/1", "SIP/20"]})
    assert not role.allows_event({"Event": "PeerStatus", "Peer": ["IAX/1"]})


def test_security_events_need_a_literal_rule() -> None:
    role = Role.build("sec", events=["*", "InvalidPassword"])
    assert role.allows_event({"Event": "InvalidPassword"})
    assert not role.allows_event({"Event": "FailedACL"})
    wild = Role.build("wild", events=["Invalid*"])
    assert not wild.allows_event({"Event": "InvalidPassword"})


def test_own_extension_check() -> None:
    role = Role.build("o", own_extensions_only=True)
    assert role.check_extension("269", ("269",)) is None
    msg = role.check_extension("270", ("269",))
    assert msg is not None
    assert "270" in msg
    assert OPERATOR.check_extension("270", ()) is None


def test_role_book_builtins_and_unknown() -> None:
    book = RoleBook()
    assert book.names() == ["admin", "operator", "supervisor"]
    assert book.get("operator") is OPERATOR
    with pytest.raises(UnknownRoleError, match="known roles: admin, operator, supervisor"):
        book.get("manager")
    assert book.unknown(["operator", "manager", "x", "manager"]) == ["manager", "x"]
    assert set(BUILTIN_ROLES) == {"operator", "supervisor", "admin"}


def test_role_book_configured_roles() -> None:
    book = RoleBook(
        {
            "sales": RoleSpec(extends="operator", methods=("dispatchEvent",), actions=("Hangup",)),
            "operator": RoleSpec(methods=("send",), actions=("Ping",), events=("Hangup",)),
            "boss": RoleSpec(extends="sales", actions=("Command",)),
            "root": RoleSpec(methods=("*",), actions=("*",), admin=True),
            "self": RoleSpec(extends="supervisor", own_extensions_only=True),
        }
    )
    sales = book.get("sales")
    # `extends` of another configured name uses the configuration's version of it...
    assert sales.allows_method("dispatchEvent")
    assert sales.check_action(act("Hangup")) is None
    # ...and the configured "operator" replaced the built-in one.
    operator = book.get("operator")
    assert operator.allows_method("send")
    assert not operator.allows_method("dial")
    assert operator.check_action(act("CoreShowChannels")) is not None
    assert sales.allows_method("send")
    assert not sales.allows_method("dial")
    boss = book.get("boss")
    assert boss.check_action(act("Command", Command="x")) is None
    assert book.get("root").check_action(act("UpdateConfig")) is None
    me = book.get("self")
    assert me.own_extensions_only
    assert me.allows_method("dispatchEvent")


def test_extends_itself_means_the_builtin() -> None:
    book = RoleBook({"operator": RoleSpec(extends="operator", actions=("Hangup",))})
    operator = book.get("operator")
    assert operator.allows_method("dial")
    assert operator.check_action(act("Hangup")) is None
    assert operator.check_action(act("Ping")) is None


def test_bad_extends_is_reported() -> None:
    with pytest.raises(UnknownRoleError, match=r"roles\.x\.extends: no role 'nobody'"):
        RoleBook({"x": RoleSpec(extends="nobody")})
    with pytest.raises(UnknownRoleError, match="loops"):
        RoleBook({"a": RoleSpec(extends="b"), "b": RoleSpec(extends="a")})


# --- the event check's header look-ups (roles._key_index) against the plain scan ---

_KEY_SPELLINGS = (
    "Event",
    "event",
    "EVENT",
    "name",
    "Name",
    "NAME",
    "Privilege",
    "privilege",
    "PRIVILEGE",
    "CallerIDNum",
    "calleridnum",
    "Channel",
    "callId",
    "Peer",
    "ß",  # casefolds to "ss", which lower() does not do
    "SS",
    "ss",
    "\u212a",  # KELVIN SIGN: casefolds to "k"
    "k",
)
_TEXTS = st.sampled_from(
    (
        "",
        "Newchannel",
        "Hangup",
        "InvalidPassword",
        "call.ringing",
        "security,all",
        "call,all",
        " Security ",
        "270",
        "SIP/269-0001",
    )
)
_VALUES = st.one_of(
    _TEXTS, st.lists(_TEXTS, max_size=3), st.lists(_TEXTS, max_size=2).map(tuple), st.none()
)
_FIELDS = st.lists(st.tuples(st.sampled_from(_KEY_SPELLINGS), _VALUES), max_size=8).map(dict)
_ROLES = (
    OPERATOR,
    SUPERVISOR,
    ADMIN,
    Role.build(
        "fields",
        events=[
            "InvalidPassword",
            "call.*",
            EventRuleSpec(name="Hangup", fields={"CallerIDNum": "{extension}"}),
            EventRuleSpec(name="New*", fields={"channel": ["SIP/{extension}-*", "X"]}),
            EventRuleSpec(name="*", fields={"Peer": "SIP/2*"}),
        ],
    ),
)


def _scan_allows_event(role: Role, fields: dict[str, Any], extensions: tuple[str, ...]) -> bool:
    """allows_event as it was written before the key index: every header by a scan."""
    names = _values(_header(fields, "Event")) or _values(_header(fields, "name"))
    if not names:
        return False
    name = names[0]
    if role.admin:
        return True
    privilege = ",".join(_values(_header(fields, "Privilege"))).casefold()
    security = name.casefold() in SECURITY_EVENTS or "security" in (
        p.strip() for p in privilege.split(",")
    )
    rules = [rule for rule in role.events if rule.is_literal] if security else role.events
    return any(rule.matches(name, fields, extensions) for rule in rules)


@given(fields=_FIELDS, wanted=st.sampled_from(_KEY_SPELLINGS))
def test_key_index_finds_what_the_scan_finds(fields: dict[str, Any], wanted: str) -> None:
    key = _key_index(fields).get(wanted.casefold())
    assert (None if key is None else fields[key]) == _header(fields, wanted)


@given(
    fields=_FIELDS,
    role=st.sampled_from(_ROLES),
    extensions=st.sampled_from(((), ("270",), ("269", "2"))),
)
def test_allows_event_answers_as_the_scan(
    fields: dict[str, Any], role: Role, extensions: tuple[str, ...]
) -> None:
    expected = _scan_allows_event(role, fields, extensions)
    assert role.allows_event(fields, extensions=extensions) is expected
    assert role.allows_event(fields, extensions=extensions) is expected  # remembered verdict
