"""Event guards: role event rules applied per connection, one rule check per event and
per (role, extensions) however many connections share them."""

from __future__ import annotations

import gc

from vwell_pbx.api.auth import Principal
from vwell_pbx.api.guards import EventGuards
from vwell_pbx.api.role_tables import EventRuleSpec, RoleSpec
from vwell_pbx.api.roles import RoleBook
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
