"""Event guards: which pushed events a signed-in connection may receive.

A connection's ``Subscriber`` carries a guard (``Subscriber.guard``) that the event bus
calls for each event the connection's subscriptions match. The guard applies the
user's role event rules (``Role.allows_event``) with the user's own extensions.

**One rule check per event per (role, extensions).** A thousand operators signed in
with the same role and extensions would otherwise evaluate the same rules a thousand
times for every PBX event. Their guards share one ``_SharedVerdict``: the last event
judged for that key and the verdict. The bus offers an event to every subscriber
within one synchronous ``publish``, so the first guard decides and the others find
the answer by identity (``event is memo.event``; the memo holds the event, so its
identity cannot be reused while it is remembered). The memo is one slot per key and
lives only while some guard uses it (a ``WeakValueDictionary``), so memory stays
bounded by the distinct (role, extensions) pairs signed in. The events layer knows
nothing about roles: the memo lives here, not on the event.

Call events (``call.*``, whose ``BusEvent.extensions`` is set) also pass
``Role.sees_call``: a role with ``own_calls_only`` (the built-in ``operator``) or
``own_extensions_only`` receives only the calls that
involved one of the user's extensions. The verdict still depends only on the event
and the (role, extensions) key, so it is shared like any other. Their fields are the
call object plus ``name`` (``api.calls.call_bus_event``), with no ``Event`` or
``Privilege``, so the role's rules get the name from ``BusEvent.name``
(``Role.allows_named_event``) instead of looking for those headers.

Client events (``dispatchEvent``) were permission-checked when they were sent and
pass every guard; admin roles get no guard at all.

**SMS are judged per user.** Whether an ``sms.status`` event may be seen depends on who
sent the SMS, and an ``sms.received`` (or the PBX's own ``ReceivedSMS``,
``DongleNewSMS``, ``DongleNewSMSBase64``) on the span it came in on and the role's
``sms_spans`` (``api.sms.sms_visible``). Those events pass the role's event rules
first, then that check, outside the shared memo (its key has no login).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from vwell_pbx.api.auth import Principal
from vwell_pbx.api.roles import RoleBook
from vwell_pbx.api.sms import SMS_EVENTS, sms_visible
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.pbx.sms import INCOMING_EVENTS

_PER_USER_EVENTS = SMS_EVENTS | INCOMING_EVENTS

__all__ = ["EventGuards", "Guard"]

Guard = Callable[[BusEvent], bool]


class _SharedVerdict:
    """The last event judged for one (role, extensions) and whether it was allowed."""

    __slots__ = ("__weakref__", "allowed", "event")

    def __init__(self) -> None:
        self.event: BusEvent | None = None
        self.allowed = False


class EventGuards:
    """Makes each signed-in connection's guard; see the module docstring."""

    def __init__(self, roles: RoleBook) -> None:
        self._roles = roles
        self._shared: weakref.WeakValueDictionary[tuple[str, tuple[str, ...]], _SharedVerdict]
        self._shared = weakref.WeakValueDictionary()
        #: How many times a guard evaluated role rules (the rest were shared verdicts).
        self.rule_checks = 0

    def guard_for(self, principal: Principal) -> Guard | None:
        """The guard for ``principal``'s connection; ``None`` (no limit) for admins.

        Raises ``UnknownRoleError`` when the principal's role is not defined.
        """
        role = self._roles.get(principal.role)
        if role.admin:
            return None
        extensions = principal.extensions
        key = (role.name, extensions)
        memo = self._shared.get(key)
        if memo is None:
            memo = self._shared[key] = _SharedVerdict()

        # Read once: a Role is frozen. sees_own_calls_only is a property and sees_call
        # a method, two Python calls per call event that most roles need not make.
        own_calls_only = role.sees_own_calls_only

        def guard(event: BusEvent) -> bool:
            # The memo first: every subscriber after the first with this key finds its
            # verdict here (an event in the memo took the shared path below).
            if memo.event is event:
                return memo.allowed
            if event.dispatched:
                return True
            if event.name_key in _PER_USER_EVENTS:
                fields = event.fields
                self.rule_checks += 1
                return role.allows_event(fields, extensions=extensions) and sms_visible(
                    role, principal, event
                )
            fields = event.fields
            call_extensions = event.extensions
            if call_extensions is None:
                allowed = role.allows_event(fields, extensions=extensions)
            else:
                # A call event: the call object plus ``name`` (BusEvent.extensions), so
                # its name is event.name and it has no Privilege.
                allowed = role.allows_named_event(
                    event.name, "", fields, extensions=extensions
                ) and (not own_calls_only or role.sees_call(call_extensions, extensions))
            self.rule_checks += 1
            memo.event = event
            memo.allowed = allowed
            return allowed

        return guard
