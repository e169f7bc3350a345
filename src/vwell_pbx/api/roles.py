"""Roles: which methods a user may call, which AMI actions ``send`` may carry, and
which events the user's subscriptions may receive.

Invariants this module keeps:

1. An action that can run a shell command, read or rewrite the PBX's files or
   configuration, or load code (``DANGEROUS_ACTIONS``; ``Originate`` with a
   shell-running application such as ``System``; any value that calls a dialplan
   function such as ``SHELL()``) is allowed only when the role names it literally (its
   *danger key*, e.g. ``"Command"``, ``"Originate:System"``, ``"Function:SHELL"``) or the
   role is ``admin``. A wildcard such as ``"*"`` or ``"DB*"`` never grants one.
2. Actions that would change the server's own shared AMI session (``SESSION_ACTIONS``:
   ``Login``, ``Logoff``, ``Events``, ``Filter``, ...) are refused for every role,
   admin included: they would break the connection every other user depends on.
3. Security events (``SECURITY_EVENTS``, or any event whose ``Privilege`` names the
   ``security`` class) reach a subscriber only if the role names the event literally
   or is ``admin``, never through a wildcard.
4. Everything is case-insensitive (AMI is), and every check is a pure function of the
   role and its arguments.

Built-in roles (``BUILTIN_ROLES``): ``operator`` (the default for new users),
``supervisor`` and ``admin``. A ``[roles.NAME]`` table in the configuration adds a role
or replaces a built-in one; with ``extends = "other"`` it starts from another role
(``extends`` naming itself means the built-in of that name) and adds its own entries.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from vwell_pbx.config import EventRuleConfig, RoleConfig
from vwell_pbx.errors import VwellError

__all__ = [
    "ADMIN",
    "BUILTIN_ROLES",
    "DANGEROUS_ACTIONS",
    "OPERATOR",
    "SECURITY_EVENTS",
    "SESSION_ACTIONS",
    "SHELL_APPLICATIONS",
    "SUPERVISOR",
    "EventRule",
    "Role",
    "RoleBook",
    "UnknownRoleError",
    "danger_key",
]

#: The placeholder in event-rule values that stands for the user's own extensions.
EXTENSION_PLACEHOLDER = "{extension}"

DANGEROUS_ACTIONS = frozenset(
    name.casefold()
    for name in (
        # run shell commands / CLI
        "Command",
        "AGI",
        "MixMonitor",  # its Command option runs a shell command after recording
        "Monitor",
        "ChangeMonitor",
        # read or rewrite configuration and files
        "GetConfig",
        "GetConfigJSON",
        "UpdateConfig",
        "CreateConfig",
        "ListCategories",
        "ShowDialPlan",
        # load code, restart
        "ModuleLoad",
        "ModuleUnload",
        "Reload",
        "Restart",
        "CoreRestart",
        "DAHDIRestart",
        "LoggerRotate",
        # the Asterisk database (call forwarding, blacklists ...)
        "DBPut",
        "DBDel",
        "DBDelTree",
        "DBGet",
        "DBGetTree",
        # messages that leave the PBX under its name
        "JabberSend",
        "MessageSend",
        "SendFax",
    )
)

SESSION_ACTIONS = frozenset(
    name.casefold()
    for name in ("Login", "Logoff", "Challenge", "Events", "Filter", "WaitEvent", "UserLogoff")
)

#: Dialplan applications that run programs; ``Originate`` with one of them is dangerous.
SHELL_APPLICATIONS = {
    name.casefold(): name
    for name in (
        "System",
        "TrySystem",
        "Exec",
        "TryExec",
        "ExecIf",
        "ExecIfTime",
        "AGI",
        "EAGI",
        "DeadAGI",
        "AsyncAGI",
    )
}

# Dialplan functions that run programs, touch files, the environment or databases. A
# Getvar/Setvar/Originate value that calls one would execute it on the PBX
# (`Getvar Variable: SHELL(id)` is the classic), whatever action carries it.
_DANGEROUS_FUNCTIONS = (
    "SHELL",
    "SYSTEM",
    "TRYSYSTEM",
    "EVAL",
    "EVAL_EXTEN",
    "FILE",
    "FILE_COUNT_LINE",
    "FILE_FORMAT",
    "STAT",
    "ENV",
    "CURL",
    "CURLOPT",
    "DB",
    "DB_DELETE",
    "DB_KEYS",
    "DB_EXISTS",
    "ODBC",
    "REALTIME",
    "REALTIME_STORE",
    "REALTIME_DESTROY",
    "REALTIME_FIELD",
    "REALTIME_HASH",
    "AST_CONFIG",
    "SPOOL",
)
_FUNCTION_RE = re.compile(
    r"(?<![A-Za-z0-9_])("
    + "|".join(sorted(_DANGEROUS_FUNCTIONS, key=len, reverse=True))
    + r"|ODBC_\w+|SQL_\w+)\(",
    re.IGNORECASE,
)

SECURITY_EVENTS = frozenset(
    name.casefold()
    for name in (
        "FailedACL",
        "InvalidAccountID",
        "SessionLimit",
        "MemoryLimit",
        "LoadAverageLimit",
        "RequestNotSupported",
        "RequestNotAllowed",
        "AuthMethodNotAllowed",
        "RequestBadFormat",
        "SuccessfulAuth",
        "UnexpectedAddress",
        "ChallengeResponseFailed",
        "InvalidPassword",
        "ChallengeSent",
        "InvalidTransport",
    )
)


class UnknownRoleError(VwellError):
    """A role name that is neither built in nor configured."""


def _header(fields: Mapping[str, object], name: str) -> object | None:
    """The value of header ``name`` in ``fields``, matched case-insensitively."""
    wanted = name.casefold()
    for key, value in fields.items():
        if key.casefold() == wanted:
            return value
    return None


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def danger_key(fields: Mapping[str, object]) -> tuple[str, str] | None:
    """Why the action in ``fields`` is dangerous: ``(key, explanation)``, or ``None``.

    ``key`` is the literal entry a role must list to be allowed it.
    """
    action_values = _values(_header(fields, "Action"))
    action = action_values[0] if action_values else ""
    folded = action.casefold()
    if folded in DANGEROUS_ACTIONS:
        return action, "it can run commands or change the PBX"
    if folded == "originate":
        for app in _values(_header(fields, "Application")):
            canonical = SHELL_APPLICATIONS.get(app.strip().casefold())
            if canonical is not None:
                return f"Originate:{canonical}", f"Application {canonical} runs programs"
    for key, value in fields.items():
        for text in _values(value):
            match = _FUNCTION_RE.search(text)
            if match:
                function = match.group(1).upper()
                return (
                    f"Function:{function}",
                    f"{key} calls the dialplan function {function}(), which reaches "
                    "outside the call",
                )
    return None


@dataclass(frozen=True, slots=True)
class EventRule:
    """Events a role may receive: a name pattern plus optional field patterns.

    ``fields`` maps a case-folded header name to the patterns one of which its value
    must match (``fnmatch``, case-insensitive); ``{extension}`` in a pattern stands for
    each of the user's extensions.
    """

    name: str = "*"
    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, spec: str | EventRuleConfig) -> EventRule:
        """Build a rule from a configuration entry (a bare name or a table)."""
        if isinstance(spec, str):
            return cls(name=spec.casefold())
        return cls(
            name=spec.name.casefold(),
            fields=tuple(
                (key.casefold(), tuple(v.casefold() for v in _values(value)))
                for key, value in spec.fields.items()
            ),
        )

    @property
    def is_literal(self) -> bool:
        """True when the name has no wildcard (so it may grant a security event)."""
        return not any(c in self.name for c in "*?[")

    def matches(
        self, name: str, fields: Mapping[str, object], extensions: Collection[str] = ()
    ) -> bool:
        """Does the event ``name`` with ``fields`` satisfy this rule?"""
        if not fnmatchcase(name.casefold(), self.name.casefold()):
            return False
        for key, patterns in self.fields:
            values = [v.casefold() for v in _values(_header(fields, key))]
            # A rule on a field the event lacks does not match (no value to compare).
            if not any(
                fnmatchcase(value, pattern.casefold())
                for pattern in _expand(patterns, extensions)
                for value in values
            ):
                return False
        return True


def _expand(patterns: tuple[str, ...], extensions: Collection[str]) -> Iterable[str]:
    for pattern in patterns:
        if EXTENSION_PLACEHOLDER in pattern:
            for ext in extensions:
                yield pattern.replace(EXTENSION_PLACEHOLDER, ext.casefold())
        else:
            yield pattern


@dataclass(frozen=True, slots=True)
class Role:
    """What a user of this role may do. Build it with ``Role.build`` or ``RoleBook``."""

    name: str
    methods: frozenset[str]
    actions: tuple[str, ...]
    events: tuple[EventRule, ...]
    own_extensions_only: bool = False
    admin: bool = False
    # Verdicts of allows_event by (name, Privilege), kept only when no rule looks at
    # other fields: the answer then depends on nothing else, and a PBX has a few dozen
    # event names, so this turns fnmatch over every rule into one dict look-up.
    _verdicts: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _name_only: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_only", all(not rule.fields for rule in self.events))

    @classmethod
    def build(
        cls,
        name: str,
        *,
        methods: Iterable[str] = (),
        actions: Iterable[str] = (),
        events: Iterable[str | EventRuleConfig | EventRule] = (),
        own_extensions_only: bool = False,
        admin: bool = False,
    ) -> Role:
        """Normalise (case-fold, de-duplicate) and freeze a role."""
        acts = tuple(dict.fromkeys(a.strip().casefold() for a in actions))
        rules = tuple(
            dict.fromkeys(e if isinstance(e, EventRule) else EventRule.parse(e) for e in events)
        )
        return cls(
            name=name,
            methods=frozenset(m.strip().casefold() for m in methods),
            actions=acts,
            events=rules,
            own_extensions_only=own_extensions_only,
            admin=admin,
        )

    def allows_method(self, name: str) -> bool:
        """May this role call the API method ``name`` (case-insensitive)?"""
        folded = name.casefold()
        return any(m == "*" or m.casefold() == folded for m in self.methods)

    def check_action(self, fields: Mapping[str, object]) -> str | None:
        """``None`` if ``send`` may carry ``fields``, else a message saying what is refused."""
        action_values = _values(_header(fields, "Action"))
        if len(action_values) != 1 or not action_values[0].strip():
            return "fields.action must be one non-empty action name"
        action = action_values[0].strip()
        folded = action.casefold()
        if folded in SESSION_ACTIONS:
            return (
                f"action {action} is not allowed for anyone: it would change the server's "
                "shared AMI session"
            )
        if not any(fnmatchcase(folded, pattern.casefold()) for pattern in self.actions):
            return f"action {action} is not allowed for role {self.name!r}"
        danger = danger_key(fields)
        if danger is not None and not self.admin:
            key, why = danger
            # Literal equality, not fnmatch: a wildcard never grants a dangerous action.
            if not any(entry.casefold() == key.casefold() for entry in self.actions):
                return (
                    f"action {action} is not allowed for role {self.name!r}: {why}; only an "
                    f'admin role or one that lists "{key}" explicitly may send it'
                )
        return None

    def allows_event(
        self, fields: Mapping[str, str | list[str]], *, extensions: Collection[str] = ()
    ) -> bool:
        """May a subscriber of this role receive the event ``fields``?

        The event's name is its ``Event`` header (or ``name`` for client-dispatched
        events). ``extensions`` are the user's own, for ``{extension}`` rules.
        """
        names = _values(_header(fields, "Event")) or _values(_header(fields, "name"))
        if not names:
            return False
        name = names[0]
        if self.admin:
            return True
        if self._name_only:
            key = (name, ",".join(_values(_header(fields, "Privilege"))))
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict = self._decide(name, fields, extensions)
                if len(self._verdicts) >= _MAX_VERDICTS:
                    self._verdicts.clear()
                self._verdicts[key] = verdict
            return verdict
        return self._decide(name, fields, extensions)

    def _decide(
        self, name: str, fields: Mapping[str, str | list[str]], extensions: Collection[str]
    ) -> bool:
        if _is_security_event(name, fields):
            return any(
                rule.is_literal and rule.matches(name, fields, extensions) for rule in self.events
            )
        return any(rule.matches(name, fields, extensions) for rule in self.events)

    def check_extension(self, extension: str, extensions: Collection[str]) -> str | None:
        """For ``own_extensions_only`` roles: ``None`` if ``extension`` is the user's own."""
        if not self.own_extensions_only or extension in extensions:
            return None
        return f"extension {extension} is not one of yours (role {self.name!r})"


def _is_security_event(name: str, fields: Mapping[str, object]) -> bool:
    if name.casefold() in SECURITY_EVENTS:
        return True
    privilege = ",".join(_values(_header(fields, "Privilege"))).casefold()
    return "security" in (p.strip() for p in privilege.split(","))


_MAX_VERDICTS = 4096  # distinct (event name, Privilege) pairs remembered per role

_OPERATOR_METHODS = ("send", "dial", "redirect", "gsmSendSMS", "onEvent", "onceEvent", "rmEvent")

_READ_ONLY_ACTIONS = (
    "Ping",
    "CoreShowChannels",
    "CoreStatus",
    "CoreSettings",
    "Status",
    "SIPpeers",
    "SIPshowpeer",
    "SIPshowregistry",
    "SIPqualifypeer",
    "PJSIPShowEndpoints",
    "PJSIPShowEndpoint",
    "PJSIPShowContacts",
    "PJSIPShowRegistrationsOutbound",
    "IAXpeers",
    "IAXpeerlist",
    "QueueStatus",
    "QueueSummary",
    "ExtensionState",
    "ExtensionStateList",
    "DeviceStateList",
    "PresenceState",
    "PresenceStateList",
    "Getvar",
    "ListCommands",
    "ParkedCalls",
    "Parkinglots",
    "BridgeList",
    "BridgeInfo",
    "MailboxCount",
    "MailboxStatus",
    "DAHDIShowChannels",
    "DongleShowDevices",
    "AgentList",
    "ConfbridgeList",
    "ConfbridgeListRooms",
    "MeetmeList",
    "MeetmeListRooms",
)

_CALL_EVENTS = (
    "Newchannel",
    "Newstate",
    "Newexten",
    "NewCallerid",
    "NewConnectedLine",
    "NewAccountCode",
    "Rename",
    "Hangup",
    "HangupRequest",
    "SoftHangupRequest",
    "Dial",
    "DialBegin",
    "DialEnd",
    "DialState",
    "Bridge",
    "BridgeCreate",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "BridgeMerge",
    "LocalBridge",
    "Link",
    "Unlink",
    "Masquerade",
    "OriginateResponse",
    "Hold",
    "Unhold",
    "MusicOnHold",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
    "AttendedTransfer",
    "BlindTransfer",
    "Transfer",
    "Join",
    "Leave",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
    "ExtensionStatus",
    "PeerStatus",
    "DeviceStateChange",
    "DTMF",
    "DTMFBegin",
    "DTMFEnd",
)

_SMS_EVENTS = (
    "ReceivedSMS",
    "UpdateSMS",
    "UpdateSMSSend",
    "DongleSMSStatus",
    "DongleNewSMS",
    "DongleNewSMSBase64",
    "DongleNewUSSD",
)

_SUPERVISOR_ACTIONS = (
    "Redirect",
    "Hangup",
    "Originate",
    "Atxfer",
    "BlindTransfer",
    "Bridge",
    "Park",
    "PlayDTMF",
    "Setvar",
    "UserEvent",
    "Queue*",
)

OPERATOR = Role.build(
    "operator",
    methods=_OPERATOR_METHODS,
    actions=_READ_ONLY_ACTIONS,
    events=_CALL_EVENTS + _SMS_EVENTS,
)

SUPERVISOR = Role.build(
    "supervisor",
    methods=(*_OPERATOR_METHODS, "dispatchEvent"),
    actions=_READ_ONLY_ACTIONS + _SUPERVISOR_ACTIONS,
    events=("*",),  # a wildcard: security events stay out (invariant 3)
)

ADMIN = Role.build("admin", methods=("*",), actions=("*",), events=("*",), admin=True)

BUILTIN_ROLES: Mapping[str, Role] = {r.name: r for r in (OPERATOR, SUPERVISOR, ADMIN)}


class RoleBook:
    """The roles in force: the built-ins overlaid with the configuration's ``[roles.*]``.

    Raises ``UnknownRoleError`` at construction when an ``extends`` names no role or
    the ``extends`` chain loops, so that start-up stops with a clear message.
    """

    def __init__(self, config_roles: Mapping[str, RoleConfig] | None = None) -> None:
        self._configured = dict(config_roles or {})
        self._roles: dict[str, Role] = dict(BUILTIN_ROLES)
        for name in self._configured:
            self._roles[name] = self._resolve(name, ())

    def _resolve(self, name: str, chain: tuple[str, ...]) -> Role:
        cfg = self._configured[name]
        if name in chain:
            raise UnknownRoleError(
                f"roles.{name}.extends: the chain {' -> '.join((*chain, name))} loops"
            )
        base: Role | None = None
        if cfg.extends is not None:
            if cfg.extends == name:
                base = BUILTIN_ROLES.get(name)
            elif cfg.extends in self._configured:
                base = self._resolve(cfg.extends, (*chain, name))
            else:
                base = BUILTIN_ROLES.get(cfg.extends)
            if base is None:
                raise UnknownRoleError(
                    f"roles.{name}.extends: no role {cfg.extends!r}; "
                    f"known: {', '.join(sorted({*BUILTIN_ROLES, *self._configured}))}"
                )
        return Role.build(
            name,
            methods=(*(base.methods if base else ()), *cfg.methods),
            actions=(*(base.actions if base else ()), *cfg.actions),
            events=(*(base.events if base else ()), *cfg.events),
            own_extensions_only=cfg.own_extensions_only,
            admin=cfg.admin,
        )

    def get(self, name: str) -> Role:
        """The role called ``name``; raises ``UnknownRoleError`` naming the known ones."""
        try:
            return self._roles[name]
        except KeyError:
            raise UnknownRoleError(
                f"unknown role {name!r}; known roles: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._roles

    def names(self) -> list[str]:
        """Every role name, sorted."""
        return sorted(self._roles)

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` (e.g. the users' roles) that are not defined, sorted."""
        return sorted({n for n in names if n not in self._roles})
