"""EventBus: event ids, subscribe_since (replay + subscribe, gaps), and the resume grace
of disconnected subscribers (invariants 6-8 of events/bus.py)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from vwell_pbx.events import (
    BusEvent,
    EventBus,
    EventFilter,
    ReplayBuffer,
    Subscriber,
    SubscriptionLimit,
    parse_event_id,
)
from vwell_pbx.events.bus import MAX_LINGERING_NAMES, MAX_SKIPPED_NAMES
from vwell_pbx.events.ids import EventPosition
from vwell_pbx.protocol import Message


class Clock:
    """Monotonic time that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pbx(name: str, **headers: str) -> BusEvent:
    return BusEvent.from_message(Message.build(("Event", name), *headers.items()))


def client(name: str, **fields: object) -> BusEvent:
    return BusEvent.from_client({"name": name, **fields}, login="boss", login2="B")


def subscriber(max_queue: int = 1000, max_subscriptions: int = 10) -> Subscriber:
    return Subscriber(max_queue=max_queue, max_subscriptions=max_subscriptions)


def drain(sub: Subscriber) -> list[dict[str, object]]:
    return [orjson.loads(item) for item in asyncio.run(sub.get(timeout=0))]


def flt(name: str | None = None, **fields: object) -> EventFilter:
    return EventFilter.from_spec(name, fields or None)


def position(event_id: str) -> EventPosition:
    return parse_event_id(event_id)


def make_bus(clock: Clock | None = None, *, grace: float = 60.0, size: int = 1000) -> EventBus:
    return EventBus(
        run_id="run1",
        replay=ReplayBuffer(max_events=size),
        resume_grace=grace,
        clock=clock or Clock(),
    )


# ---- ids on every published event ----


def test_every_published_event_carries_an_increasing_id_as_its_last_key() -> None:
    bus = make_bus()
    sub = subscriber()
    bus.subscribe(sub, flt("*"))
    assert bus.last_event_id == "run1-0"
    for event in (pbx("Newchannel", Channel="SIP/1"), client("Mine", n=1), pbx("Hangup")):
        bus.publish(event)
    pushed = drain(sub)
    assert [e["eventId"] for e in pushed] == ["run1-1", "run1-2", "run1-3"]
    assert all(list(e)[-1] == "eventId" for e in pushed)
    assert bus.last_event_id == "run1-3"


def test_a_client_cannot_forge_an_event_id_nor_a_pbx_header_displace_it() -> None:
    bus = make_bus()
    sub = subscriber()
    bus.subscribe(sub, flt("*"))
    bus.publish(client("Forged", eventId="run1-999", EVENTID="x", n=1))
    bus.publish(pbx("Odd", eventId="from-the-pbx", Channel="SIP/1"))
    forged, odd = drain(sub)
    assert forged["eventId"] == "run1-1" and "EVENTID" not in forged
    assert odd["eventId"] == "run1-2" and list(odd)[-1] == "eventId"


def test_listeners_see_the_stamped_event() -> None:
    bus = make_bus()
    seen: list[str] = []
    bus.listen(flt("*"), lambda event: seen.append(orjson.loads(event.payload())["eventId"]))
    bus.publish(client("X"))
    assert seen == ["run1-1"]


# ---- subscribe_since ----


def test_resume_replays_what_matches_and_then_delivers_live_with_no_gap() -> None:
    bus = make_bus()
    old = subscriber()
    bus.subscribe(old, flt("Newchannel"))
    bus.publish(pbx("Newchannel", CallerIDNum="+1"))
    (last,) = drain(old)
    bus.disconnect(old)
    bus.publish(pbx("Newchannel", CallerIDNum="+2"))
    bus.publish(pbx("Hangup", CallerIDNum="+2"))  # another name: published for nobody
    bus.publish(pbx("Newchannel", CallerIDNum="+3"))

    new = subscriber()
    resumed = bus.subscribe_since(new, flt("newchannel"), position(str(last["eventId"])))
    assert not resumed.gap
    assert [e.fields["CallerIDNum"] for e in resumed.events] == ["+2", "+3"]
    assert resumed.last_event_id == bus.last_event_id
    assert drain(new) == []  # the replay is the answer's, not queued
    bus.publish(pbx("Newchannel", CallerIDNum="+4"))
    assert [e["CallerIDNum"] for e in drain(new)] == ["+4"]
    assert (bus.stats.resumes, bus.stats.resume_gaps) == (1, 0)


def test_resume_applies_the_field_filters_and_the_guard() -> None:
    bus = make_bus()
    for number in ("+1", "+2", "+3"):
        bus.publish(pbx("Newchannel", CallerIDNum=number, Channel=f"SIP/{number}"))
    sub = Subscriber(
        max_queue=10, max_subscriptions=5, guard=lambda event: event.fields["Channel"] != "SIP/+3"
    )
    resumed = bus.subscribe_since(
        sub, flt("Newchannel", CallerIDNum=["+1", "+3"]), position("run1-0")
    )
    assert [e.fields["CallerIDNum"] for e in resumed.events] == ["+1"]
    assert not resumed.gap


def test_once_with_since_fires_on_the_first_buffered_match_and_is_not_created() -> None:
    bus = make_bus()
    for n in range(3):
        bus.publish(client("Ticket", n=n))
    sub = subscriber()
    resumed = bus.subscribe_since(sub, flt("Ticket"), position("run1-1"), once=True)
    assert [e.fields["n"] for e in resumed.events] == [1]
    assert bus.stats.subscriptions == 0
    assert bus.unsubscribe(sub, resumed.subscription_id) == 0
    # Nothing buffered matches: an ordinary once-subscription, ended by the next event.
    resumed = bus.subscribe_since(sub, flt("Ticket"), position(bus.last_event_id), once=True)
    assert resumed.events == [] and bus.stats.subscriptions == 1
    bus.publish(client("Ticket", n=3))
    bus.publish(client("Ticket", n=4))
    assert [e["n"] for e in drain(sub)] == [3]
    assert bus.stats.subscriptions == 0


def test_an_id_of_another_run_or_one_never_made_is_a_gap_with_nothing_replayed() -> None:
    bus = make_bus()
    bus.publish(client("X"))
    for since in ("earlier0run-1", "run1-99"):
        sub = subscriber()
        resumed = bus.subscribe_since(sub, flt("X"), position(since))
        assert resumed.gap and resumed.events == []
        assert bus.stats.subscriptions >= 1  # subscribed all the same
    assert bus.stats.resume_gaps == 2


def test_an_id_older_than_the_buffer_is_a_gap_and_the_rest_is_replayed() -> None:
    bus = make_bus(size=3)
    first = client("X", n=0)
    bus.publish(first)
    for n in range(1, 6):
        bus.publish(client("X", n=n))
    resumed = bus.subscribe_since(subscriber(), flt("X"), position(first.event_id))
    assert resumed.gap
    assert [e.fields["n"] for e in resumed.events] == [3, 4, 5]
    # From an id the buffer still covers: no gap.
    resumed = bus.subscribe_since(subscriber(), flt("X"), position("run1-3"))
    assert not resumed.gap and [e.fields["n"] for e in resumed.events] == [3, 4, 5]


def test_the_subscription_limit_is_checked_before_anything_is_replayed() -> None:
    bus = make_bus()
    bus.publish(client("X"))
    sub = subscriber(max_subscriptions=1)
    bus.subscribe(sub, flt("Y"))
    with pytest.raises(SubscriptionLimit):
        bus.subscribe_since(sub, flt("X"), position("run1-0"), once=True)
    assert bus.stats.resumes == 0


# ---- the resume grace and skipped events ----


def test_a_disconnected_subscribers_names_stay_interesting_for_the_grace_only() -> None:
    clock = Clock()
    bus = make_bus(clock, grace=30)
    gone = subscriber()
    bus.subscribe(gone, flt("Newchannel", CallerIDNum="+1"))
    bus.subscribe(gone, flt("Hangup"))
    assert bus.disconnect(gone) == 2
    assert bus.stats.subscriptions == 0
    assert bus.interested("NEWCHANNEL") and bus.interested("hangup")
    assert not bus.interested("VarSet")
    clock.now += 29.9
    assert bus.interested("Newchannel")
    clock.now += 0.2
    assert not bus.interested("Newchannel") and not bus.interested("Hangup")


def test_a_wildcard_subscription_lingers_as_every_name() -> None:
    clock = Clock()
    bus = make_bus(clock, grace=5)
    gone = subscriber()
    bus.subscribe(gone, flt("call.*"))
    bus.disconnect(gone)
    assert bus.interested("anything") and bus.interested("call.ringing")
    clock.now += 6
    assert not bus.interested("call.ringing")


def test_rmevent_and_unsubscribe_all_do_not_linger_and_grace_zero_never_does() -> None:
    bus = make_bus(grace=30)
    sub = subscriber()
    bus.subscribe(sub, flt("A"))
    bus.subscribe(sub, flt("B"))
    bus.unsubscribe_name(sub, "A")
    bus.unsubscribe_all(sub)
    assert not bus.interested("A") and not bus.interested("B")
    bus = make_bus(grace=0)
    bus.subscribe(sub, flt("A"))
    bus.disconnect(sub)
    assert not bus.interested("A")
    with pytest.raises(ValueError, match="resume_grace"):
        EventBus(resume_grace=-1)


def test_lingering_names_are_bounded_and_overflow_to_every_name() -> None:
    clock = Clock()
    bus = make_bus(clock, grace=10)
    for start in range(0, MAX_LINGERING_NAMES + 10, 10):
        gone = subscriber(max_subscriptions=10)
        for n in range(start, start + 10):
            bus.subscribe(gone, flt(f"Name{n}"))
        bus.disconnect(gone)
    assert len(bus._lingering) <= MAX_LINGERING_NAMES + 1  # the names and "every name"
    assert None in bus._lingering  # out of room: everything stays interesting
    assert bus.interested("NeverSubscribed")
    clock.now += 11
    assert not bus.interested("NeverSubscribed") and not bus.interested("Name1")
    # Expired deadlines make room again.
    gone = subscriber()
    bus.subscribe(gone, flt("Fresh"))
    bus.disconnect(gone)
    assert bus.interested("Fresh") and not bus.interested("Other")


def test_events_of_a_lingering_name_are_buffered_and_resume_without_gap() -> None:
    clock = Clock()
    bus = make_bus(clock, grace=30)
    gone = subscriber()
    bus.subscribe(gone, flt("Newchannel"))
    since = bus.last_event_id
    bus.disconnect(gone)
    for n in range(3):  # what the AMI reader does for each event
        if bus.interested("Newchannel"):
            bus.publish(pbx("Newchannel", Uniqueid=str(n)))
    clock.now += 10
    resumed = bus.subscribe_since(subscriber(), flt("Newchannel"), position(since))
    assert not resumed.gap
    assert [e.fields["Uniqueid"] for e in resumed.events] == ["0", "1", "2"]


def test_a_skipped_event_the_resume_would_have_wanted_is_a_gap() -> None:
    clock = Clock()
    bus = make_bus(clock, grace=30)
    gone = subscriber()
    bus.subscribe(gone, flt("Newchannel"))
    since = bus.last_event_id
    bus.disconnect(gone)
    clock.now += 31  # away longer than the grace: the next Newchannel is skipped
    assert not bus.interested("Newchannel")
    assert not bus.interested("VarSet")
    resumed = bus.subscribe_since(subscriber(), flt("Newchannel"), position(since))
    assert resumed.gap and resumed.events == []
    # A subscription that could not have wanted what was skipped has no gap ...
    assert not bus.subscribe_since(subscriber(), flt("Hangup"), position(since)).gap
    assert not bus.subscribe_since(subscriber(), flt("Dial*"), position(since)).gap
    # ... but every name, or a pattern the skipped name matches, has.
    assert bus.subscribe_since(subscriber(), flt("*"), position(since)).gap
    assert bus.subscribe_since(subscriber(), flt("new*"), position(since)).gap
    # A position handed out after the skip (an answer's lastEventId) is no gap.
    later = bus.last_event_id
    assert not bus.subscribe_since(subscriber(), flt("Newchannel"), position(later)).gap


def test_the_memory_of_skipped_names_is_bounded_and_errs_towards_a_gap() -> None:
    bus = make_bus()
    since = bus.last_event_id
    for n in range(MAX_SKIPPED_NAMES + 1):
        assert not bus.interested(f"Name{n}")
    assert len(bus._skipped) <= MAX_SKIPPED_NAMES
    # "Name0" was forgotten with the rest, but the floor still says "maybe".
    assert bus.subscribe_since(subscriber(), flt("Name0"), position(since)).gap
    later = bus.last_event_id
    assert not bus.subscribe_since(subscriber(), flt("Name0"), position(later)).gap
