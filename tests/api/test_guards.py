"""Event guards: role event rules applied per connection, one rule check per event and
per (role, extensions) however many connections share them."""

from __future__ import annotations

import gc
from typing import cast

from vwell_pbx.api.auth import Principal
from vwell_pbx.api.calls import call_bus_event
from vwell_pbx.api.guards import EventGuards
from vwell_pbx.api.role_tables import EventRuleSpec, RoleSpec
from vwell_pbx.api.roles import RoleBook
from vwell_pbx.calls.model import (
    CALL_EVENT_NAMES,
    CallEvent,
    CallEventName,
    CallSnapshot,
    Direction,
)
from vwell_pbx.events.bus import BusEvent, EventBus, Subscriber
from vwell_pbx.events.filters import EventFilter
from vwell_pbx.protocol import Message

BOOK = RoleBook(
    {
        "own": RoleSpec(
            methods=("onEvent",),
            events=(
                "Newchannel",
                EventRuleSpec(name="Hangup", fields={"Exten": "{extension}"}),
            ),
        )
    }
)


def _event(*headers: tuple[str, str]) -> BusEvent:
    return BusEvent.from_message(Message.build(*headers))


def _subscribers(
    bus: EventBus, guards: EventGuards, principal: Principal, count: int
) -> list[Subscriber]:
    subscribers = []
    for _ in range(count):
        subscriber = Subscriber(max_queue=10, max_subscriptions=5)
        subscriber.guard = guards.guard_for(principal)
        bus.subscribe(subscriber, EventFilter.from_spec(None))
        subscribers.append(subscriber)
    return subscribers


def test_a_thousand_connections_of_one_role_cost_one_rule_check_per_event() -> None:
    bus, guards = EventBus(), EventGuards(BOOK)
    operator = Principal("a", "A", "operator", ("269",))
    crowd = _subscribers(bus, guards, operator, 1000)
    assert bus.publish(_event(("Event", "Newchannel"), ("Channel", "SIP/1-1"))) == 1000
    assert guards.rule_checks == 1
    assert bus.publish(_event(("Event", "FullyBooted"))) == 0  # not an operator's event
    assert guards.rule_checks == 2
    assert all(s.queued == 1 for s in crowd)


def test_verdicts_are_kept_apart_by_role_and_extensions() -> None:
    bus, guards = EventBus(), EventGuards(BOOK)
    mine = _subscribers(bus, guards, Principal("a", "A", "own", ("269",)), 50)
    theirs = _subscribers(bus, guards, Principal("b", "B", "own", ("267",)), 50)
    bosses = _subscribers(bus, guards, Principal("c", "C", "supervisor"), 50)
    reached = bus.publish(_event(("Event", "Hangup"), ("Exten", "269")))
    assert reached == 100  # mine and the supervisors, not theirs
    assert guards.rule_checks == 3  # one per (role, extensions)
    assert all(s.queued == 1 for s in mine + bosses)
    assert all(s.queued == 0 for s in theirs)


def test_admins_have_no_guard_and_client_events_pass_every_guard() -> None:
    bus, guards = EventBus(), EventGuards(BOOK)
    assert guards.guard_for(Principal("r", "R", "admin")) is None
    crowd = _subscribers(bus, guards, Principal("a", "A", "operator"), 10)
    note = BusEvent.from_client({"name": "crmNote"}, login="boss", login2="B")
    assert bus.publish(note) == 10
    assert guards.rule_checks == 0
    assert all(s.queued == 1 for s in crowd)


def test_the_shared_memo_lives_only_while_a_guard_uses_it() -> None:
    guards = EventGuards(BOOK)
    guard = guards.guard_for(Principal("a", "A", "operator"))
    assert guard is not None and len(guards._shared) == 1
    del guard
    gc.collect()
    assert len(guards._shared) == 0


# --- call events: the guard takes their name from the event (roles.allows_named_event) ---

_CALL_BOOK = RoleBook(
    {
        "own": RoleSpec(methods=("onEvent",), events=("call.ringing",), own_extensions_only=True),
        "inbound": RoleSpec(
            methods=("onEvent",),
            events=(EventRuleSpec(name="call.*", fields={"direction": "inbound"}),),
        ),
        "ended": RoleSpec(methods=("onEvent",), events=("call.end*", "call.missed")),
    }
)


def _call_event(name: CallEventName, direction: Direction, extensions: frozenset[str]) -> BusEvent:
    snapshot = CallSnapshot(
        call_id="1796172327.90",
        pbx="office",
        status="ringing",
        direction=direction,
        from_number="89780000001",
        from_name=None,
        to_number="269",
        to_name=None,
        extension="269",
        trunk=None,
        did=None,
        started_at="2026-12-07T10:00:00.000Z",
        answered_at=None,
        ended_at=None,
        ring_seconds=0.0,
        talk_seconds=0.0,
        end_reason=None,
        on_hold=False,
        transfers=(),
        channels=("SIP/269-00000050",),
        originated=False,
        action_id=None,
        extensions=extensions,
    )
    return call_bus_event(CallEvent(name=name, call=snapshot))


def test_a_call_event_has_its_name_under_name_and_no_event_or_privilege() -> None:
    event = _call_event("call.ringing", "inbound", frozenset({"269"}))
    EventBus().publish(event)  # adds eventId
    folded = [key.casefold() for key in event.fields]
    assert "event" not in folded
    assert "privilege" not in folded
    assert folded.index("name") == list(event.fields).index("name")
    assert event.fields["name"] == event.name


def test_the_guard_judges_call_events_as_the_event_rules_do() -> None:
    guards = EventGuards(_CALL_BOOK)
    principals = [
        Principal(login, login, role, extensions)
        for role in ("operator", "supervisor", "own", "inbound", "ended")
        for login, extensions in (("a", ("269",)), ("b", ("270",)), ("c", ()))
    ]
    for name in CALL_EVENT_NAMES:
        for direction in ("inbound", "outbound"):
            for call_extensions in (frozenset({"269"}), frozenset()):
                event = _call_event(name, direction, call_extensions)
                fields = cast("dict[str, str | list[str]]", event.fields)
                for principal in principals:
                    role = _CALL_BOOK.get(principal.role)
                    guard = guards.guard_for(principal)
                    assert guard is not None
                    expected = role.allows_event(
                        fields, extensions=principal.extensions
                    ) and role.sees_call(call_extensions, principal.extensions)
                    assert guard(event) is expected, (name, direction, principal)
