"""Roles, the rule engine: which methods a user may call, which AMI actions ``send`` may
carry (and on which channels), and which events the user's subscriptions may receive.

The tables the rules consult (dangerous actions and functions, session actions,
security events, channel headers) and the built-in roles are plain data in
``vwell_pbx.api.role_tables``; this module only applies them.

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
4. With ``own_extensions_only``, every header of a ``send`` action that names a channel
   (``CHANNEL_HEADERS``) is a claim the caller must own (``channel_claims``); the API
   layer checks the claims against the live calls it knows.
5. With ``own_calls_only`` (the built-in ``operator``) or ``own_extensions_only``, a
   call (a ``call.*`` event, an entry of ``calls`` or
   ``callHistory``) is shown only when it involved one of the user's own extensions
   (``Role.sees_call``): the call's set of local extensions, learnt from its channels,
   never from a caller ID. Other roles see every call their event rules allow.
6. Everything is case-insensitive (AMI is), and every check is a pure function of the
   role and its arguments.

Built-in roles (``BUILTIN_ROLES``, made from ``role_tables.BUILTIN_ROLE_SPECS``):
``operator`` (the default for new users), ``supervisor`` and ``admin``. ``RoleBook``
takes further ``RoleSpec`` values (the configuration's ``[roles.NAME]`` tables, converted
where the server is assembled): one adds a role or replaces a built-in one; with
``extends = "other"`` it starts from another role (``extends`` naming itself means the
built-in of that name) and adds its own entries.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from vwell_pbx.api.role_tables import (
    BUILTIN_ROLE_SPECS,
    CHANNEL_HEADERS,
    DANGEROUS_ACTIONS,
    DANGEROUS_FUNCTIONS,
    DEVICE_CHANNEL_ACTIONS,
    SECURITY_EVENTS,
    SESSION_ACTIONS,
    SHELL_APPLICATIONS,
    EventRuleSpec,
    RoleSpec,
)
from vwell_pbx.errors import VwellError

__all__ = [
    "ADMIN",
    "BUILTIN_ROLES",
    "CHANNEL_HEADERS",
    "DANGEROUS_ACTIONS",
    "OPERATOR",
    "SECURITY_EVENTS",
    "SESSION_ACTIONS",
    "SHELL_APPLICATIONS",
    "ChannelClaim",
    "EventRule",
    "EventRuleSpec",
    "Role",
    "RoleBook",
    "RoleSpec",
    "UnknownRoleError",
    "channel_claims",
    "danger_key",
]

#: The placeholder in event-rule values that stands for the user's own extensions.
EXTENSION_PLACEHOLDER = "{extension}"

_FUNCTION_RE = re.compile(
    r"(?<![A-Za-z0-9_])("
    + "|".join(sorted(DANGEROUS_FUNCTIONS, key=len, reverse=True))
    + r"|ODBC_\w+|SQL_\w+)\(",
    re.IGNORECASE,
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


# Case-folded key -> the first key (in the fields' order) that folds to it, per layout
# (the keys in order): what _header finds by scanning, found in one look-up. Events of
# one kind share a layout (every call event has the same 24 keys, a PBX event the
# names its PBX sends), so the event check stops casefolding every key of every event
# it judges. Bounded: emptied when full, since a peer may send any names.
_KEY_INDEXES: dict[tuple[str, ...], dict[str, str]] = {}
_MAX_KEY_INDEXES = 4096


def _key_index(fields: Mapping[str, object]) -> dict[str, str]:
    """``fields``' keys by their case-folded form, the first of each (see above).

    ``fields[_key_index(fields)[name.casefold()]]`` is ``_header(fields, name)`` when
    the name is present, and a name absent from the index is absent from ``fields``:
    both depend on nothing but the keys and their order.
    """
    layout = tuple(fields)
    index = _KEY_INDEXES.get(layout)
    if index is None:
        index = {}
        for key in layout:
            index.setdefault(key.casefold(), key)
        if len(_KEY_INDEXES) >= _MAX_KEY_INDEXES:
            _KEY_INDEXES.clear()
        _KEY_INDEXES[layout] = index
    return index


def _first_value(value: object) -> str | None:
    """``_values(value)[0]``, or ``None`` when that list is empty, without the list."""
    if type(value) is str:
        return value
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return str(value[0]) if value else None
    return str(value)


def _joined(value: object) -> str:
    """``",".join(_values(value))`` without the list for a plain string."""
    if value is None:
        return ""
    if type(value) is str:
        return value
    return ",".join(_values(value))


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
    def parse(cls, spec: str | EventRuleSpec) -> EventRule:
        """Build a rule from a role's entry (a bare name pattern or an ``EventRuleSpec``)."""
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
    own_calls_only: bool = False
    admin: bool = False
    #: Spans and devices whose incoming SMS the role sees (``"*"``: all of them).
    sms_spans: frozenset[str] = frozenset()
    #: Every SMS, in and out (admin roles too).
    sms_all: bool = False
    # Verdicts of allows_event by (name, Privilege), kept only when no rule looks at
    # other fields: the answer then depends on nothing else, and a PBX has a few dozen
    # event names, so this turns fnmatch over every rule into one dict look-up.
    _verdicts: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _name_only: bool = field(default=False, init=False, repr=False, compare=False)
    # check_action's pattern verdict by case-folded action name: fnmatch over every
    # pattern of the role once per name, then a dict look-up (cleared past _MAX_VERDICTS
    # names). The danger and session checks do not depend on it and run every time.
    _action_verdicts: dict[str, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    # allows_method's answer in one set look-up: the methods case-folded, or None when
    # "*" allows every one.
    _folded_methods: frozenset[str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_only", all(not rule.fields for rule in self.events))
        if "*" not in self.methods:
            folded = frozenset(m.casefold() for m in self.methods)
            object.__setattr__(self, "_folded_methods", folded)

    @classmethod
    def build(
        cls,
        name: str,
        *,
        methods: Iterable[str] = (),
        actions: Iterable[str] = (),
        events: Iterable[str | EventRuleSpec | EventRule] = (),
        own_extensions_only: bool = False,
        own_calls_only: bool = False,
        admin: bool = False,
        sms_spans: Iterable[str] = (),
        sms_all: bool = False,
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
            own_calls_only=own_calls_only,
            admin=admin,
            sms_spans=frozenset(span.strip() for span in sms_spans),
            sms_all=sms_all or admin,
        )

    @property
    def sees_own_calls_only(self) -> bool:
        """Whether calls are restricted to those of the user's extensions (invariant 5)."""
        return self.own_extensions_only or self.own_calls_only

    def sees_sms_of_span(self, span: str | None) -> bool:
        """May this role see the incoming SMS of ``span`` (a span number or device)?"""
        if self.sms_all or "*" in self.sms_spans:
            return True
        return span is not None and span in self.sms_spans

    def allows_method(self, name: str) -> bool:
        """May this role call the API method ``name`` (case-insensitive)?"""
        return self._folded_methods is None or name.casefold() in self._folded_methods

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
        allowed = self._action_verdicts.get(folded)
        if allowed is None:
            allowed = any(fnmatchcase(folded, pattern.casefold()) for pattern in self.actions)
            if len(self._action_verdicts) >= _MAX_VERDICTS:
                self._action_verdicts.clear()
            self._action_verdicts[folded] = allowed
        if not allowed:
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
        self, fields: Mapping[str, object], *, extensions: Collection[str] = ()
    ) -> bool:
        """May a subscriber of this role receive the event ``fields``?

        The event's name is its ``Event`` header (or ``name`` for client-dispatched
        events). ``extensions`` are the user's own, for ``{extension}`` rules.
        """
        # The headers are found through the layout's key index (_key_index): the same
        # first case-insensitive match as _header, without a casefold per key.
        index = _key_index(fields)
        key = index.get("event")
        name = None if key is None else _first_value(fields[key])
        if name is None:
            key = index.get("name")
            name = None if key is None else _first_value(fields[key])
            if name is None:
                return False
        if self.admin:
            return True
        key = index.get("privilege")
        privilege = "" if key is None else _joined(fields[key])
        if self._name_only:  # as in allows_named_event, inline: one call less per event
            verdict = self._verdicts.get((name, privilege))
            if verdict is None:
                verdict = self._remember_verdict(name, privilege, fields, extensions)
            return verdict
        return self._decide(name, privilege, fields, extensions)

    def allows_named_event(
        self,
        name: str,
        privilege: str,
        fields: Mapping[str, object],
        *,
        extensions: Collection[str] = (),
    ) -> bool:
        """``allows_event(fields)`` for a caller that already knows what it would read:
        the event's ``name`` and its ``Privilege`` values joined by commas (``""`` when
        it has none). The same answer, without looking the headers up; ``fields`` are
        still read by rules on other fields.
        """
        if self.admin:
            return True
        if self._name_only:
            verdict = self._verdicts.get((name, privilege))
            if verdict is None:
                verdict = self._remember_verdict(name, privilege, fields, extensions)
            return verdict
        return self._decide(name, privilege, fields, extensions)

    def _remember_verdict(
        self,
        name: str,
        privilege: str,
        fields: Mapping[str, object],
        extensions: Collection[str],
    ) -> bool:
        """A name-only role's verdict, decided once per (name, Privilege)."""
        verdict = self._decide(name, privilege, fields, extensions)
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[(name, privilege)] = verdict
        return verdict

    def _decide(
        self,
        name: str,
        privilege: str,
        fields: Mapping[str, object],
        extensions: Collection[str],
    ) -> bool:
        if _is_security_event(name, privilege):
            return any(
                rule.is_literal and rule.matches(name, fields, extensions) for rule in self.events
            )
        return any(rule.matches(name, fields, extensions) for rule in self.events)

    def sees_call(self, call_extensions: Collection[str], extensions: Collection[str]) -> bool:
        """May a user with ``extensions`` see a call that involved ``call_extensions``?

        Always for roles with neither ``own_extensions_only`` nor ``own_calls_only``
        (invariant 5).
        """
        if not self.sees_own_calls_only:
            return True
        return any(extension in call_extensions for extension in extensions)

    def check_extension(self, extension: str, extensions: Collection[str]) -> str | None:
        """For ``own_extensions_only`` roles: ``None`` if ``extension`` is the user's own."""
        if not self.own_extensions_only or extension in extensions:
            return None
        return f"extension {extension} is not one of yours (role {self.name!r})"


def _is_security_event(name: str, privilege: str) -> bool:
    """Invariant 3's test; ``privilege`` is the event's ``Privilege`` joined by commas."""
    if name.casefold() in SECURITY_EVENTS:
        return True
    return "security" in (p.strip() for p in privilege.casefold().split(","))


_MAX_VERDICTS = 4096  # distinct (event name, Privilege) pairs remembered per role


@dataclass(frozen=True, slots=True)
class ChannelClaim:
    """A header of an action that names a channel the caller must own (invariant 4).

    ``live`` is true for a channel of a call in progress (``SIP/269-0000002a``), false
    for the dial string of a channel an ``Originate`` creates (``SIP/269``).
    """

    header: str
    channel: str
    live: bool


def channel_claims(fields: Mapping[str, object]) -> list[ChannelClaim]:
    """Every value in ``fields`` (a ``send`` action) that names a channel, in order."""
    action_values = _values(_header(fields, "Action"))
    action = action_values[0].strip().casefold() if action_values else ""
    claims: list[ChannelClaim] = []
    for key, value in fields.items():
        folded = key.casefold()
        if folded not in CHANNEL_HEADERS:
            continue
        live = not (folded == "channel" and action in DEVICE_CHANNEL_ACTIONS)
        claims.extend(ChannelClaim(key, text, live) for text in _values(value))
    return claims


def _build(name: str, spec: RoleSpec) -> Role:
    return Role.build(
        name,
        methods=spec.methods,
        actions=spec.actions,
        events=spec.events,
        own_extensions_only=spec.own_extensions_only,
        own_calls_only=bool(spec.own_calls_only),
        admin=spec.admin,
        sms_spans=spec.sms_spans,
        sms_all=bool(spec.sms_all),
    )


BUILTIN_ROLES: Mapping[str, Role] = {
    name: _build(name, spec) for name, spec in BUILTIN_ROLE_SPECS.items()
}
OPERATOR = BUILTIN_ROLES["operator"]
SUPERVISOR = BUILTIN_ROLES["supervisor"]
ADMIN = BUILTIN_ROLES["admin"]


class RoleBook:
    """The roles in force: the built-ins overlaid with ``roles`` (by name).

    Raises ``UnknownRoleError`` at construction when an ``extends`` names no role or
    the ``extends`` chain loops, so that start-up stops with a clear message.
    """

    def __init__(self, roles: Mapping[str, RoleSpec] | None = None) -> None:
        self._configured = dict(roles or {})
        self._roles: dict[str, Role] = dict(BUILTIN_ROLES)
        for name in self._configured:
            self._roles[name] = self._resolve(name, ())

    def _resolve(self, name: str, chain: tuple[str, ...]) -> Role:
        spec = self._configured[name]
        if name in chain:
            raise UnknownRoleError(
                f"roles.{name}.extends: the chain {' -> '.join((*chain, name))} loops"
            )
        base: Role | None = None
        if spec.extends is not None:
            if spec.extends == name:
                base = BUILTIN_ROLES.get(name)
            elif spec.extends in self._configured:
                base = self._resolve(spec.extends, (*chain, name))
            else:
                base = BUILTIN_ROLES.get(spec.extends)
            if base is None:
                raise UnknownRoleError(
                    f"roles.{name}.extends: no role {spec.extends!r}; "
                    f"known: {', '.join(sorted({*BUILTIN_ROLES, *self._configured}))}"
                )
        return Role.build(
            name,
            methods=(*(base.methods if base else ()), *spec.methods),
            actions=(*(base.actions if base else ()), *spec.actions),
            events=(*(base.events if base else ()), *spec.events),
            own_extensions_only=spec.own_extensions_only,
            own_calls_only=(
                spec.own_calls_only
                if spec.own_calls_only is not None
                else base is not None and base.own_calls_only
            ),
            admin=spec.admin,
            sms_spans=(*(base.sms_spans if base else ()), *spec.sms_spans),
            sms_all=spec.sms_all if spec.sms_all is not None else bool(base and base.sms_all),
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
