"""EventBus and Subscriber: delivery rules, bounds and counters; publish never awaits."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest

from vwell_pbx.events import (
    BusEvent,
    EventBus,
    EventError,
    EventFilter,
    Subscriber,
    SubscriptionLimit,
)
from vwell_pbx.protocol import Message


def newchannel(number: str = "+79787342741", uniqueid: str = "1505301523.6253") -> BusEvent:
    return BusEvent.from_message(
        Message.build(
            ("Event", "Newchannel"),
            ("Privilege", "call,all"),
            ("Channel", "YSGSM/11-1"),
            ("ChannelState", "1"),
            ("CallerIDNum", number),
            ("Exten", "s"),
            ("Context", "DID_trunk_11"),
            ("Uniqueid", uniqueid),
        )
    )


def hangup() -> BusEvent:
    return BusEvent.from_message(Message.build(("Event", "Hangup"), ("Channel", "SIP/269-1")))


def subscriber(max_queue: int = 100, max_subscriptions: int = 10) -> Subscriber:
    return Subscriber(max_queue=max_queue, max_subscriptions=max_subscriptions)


def drain(sub: Subscriber) -> list[dict[str, object]]:
    """What the sender task would write, decoded (get() never waits when items exist)."""
    items = asyncio.run(sub.get(timeout=0))
    return [orjson.loads(item) for item in items]


def flt(name: str | None = None, **fields: object) -> EventFilter:
    return EventFilter.from_spec(name, fields or None)


# ---- BusEvent ----


def test_pushed_fields_are_the_events_own_plus_name() -> None:
    assert orjson.loads(newchannel().payload()) == {
        "Event": "Newchannel",
        "Privilege": "call,all",
        "Channel": "YSGSM/11-1",
        "ChannelState": "1",
        "CallerIDNum": "+79787342741",
        "Exten": "s",
        "Context": "DID_trunk_11",
        "Uniqueid": "1505301523.6253",
        "name": "Newchannel",
    }


def test_repeated_header_becomes_a_list_and_pbx_is_added() -> None:
    message = Message.build(("Event", "Status"), ("Variable", "A=1"), ("variable", "B=2"))
    bus_event = BusEvent.from_message(message, pbx="office")
    assert bus_event.fields == {
        "Event": "Status",
        "Variable": ["A=1", "B=2"],
        "name": "Status",
        "pbx": "office",
    }
    assert bus_event.lowered["variable"] == ["a=1", "b=2"]


def test_published_pbx_events_hand_on_their_layouts_index() -> None:
    # The readers after the bus (channel registry, call tracker) then find the index
    # ready; it must be the one the message would build.
    for headers in [
        (("Event", "Hangup"), ("Channel", "SIP/1-1"), ("Uniqueid", "1.1")),
        (("Event", "Hangup"), ("Channel", "SIP/2-1"), ("Uniqueid", "1.2")),
        (("Event", "Hangup"), ("Uniqueid", "1.3"), ("Channel", "SIP/3-1")),
    ]:
        message = Message.build(*headers)
        BusEvent.from_message(message, pbx="office")
        index = message.header_index_if_built()
        assert index is not None and index == Message.build(*headers).header_index()
        fresh = Message.build(*headers)
        assert message.get_many("Channel", "UNIQUEID") == fresh.get_many("Channel", "UNIQUEID")
    # Field names that hide a repeated header tell no layout: no index handed on.
    repeated = Message.build(("Event", "Status"), ("Variable", "A=1"), ("Variable", "B=2"))
    BusEvent.from_message(repeated)
    assert repeated.header_index_if_built() is None


def test_lowered_is_built_once() -> None:
    bus_event = newchannel()
    lowered = bus_event.lowered
    assert lowered["calleridnum"] == "+79787342741" and lowered["channel"] == "ysgsm/11-1"
    assert bus_event.lowered is lowered
    assert bus_event.lowered_value("uniqueid") == "1505301523.6253"
    assert bus_event.lowered_value("missing") is None


def test_client_event_cannot_forge_origin_or_login() -> None:
    bus_event = BusEvent.from_client(
        {
            "name": "crmNote",
            "ORIGIN": "pbx",
            "Login": "root",
            "login2": "x",
            "Name": "other",
            "text": "Перезвонить",
            "n": 5,
            "data": {"k": [1, 2]},
        },
        login="Agent",
        login2="Иванов И.И.",
    )
    assert bus_event.name == "crmNote"
    assert bus_event.fields == {
        "text": "Перезвонить",
        "n": 5,
        "data": {"k": [1, 2]},
        "name": "crmNote",
        "origin": "api",
        "login": "Agent",
        "login2": "Иванов И.И.",
    }
    assert flt("crmnote", N=5).matches(bus_event)
    assert not flt(None, data="*").matches(bus_event)  # objects are not matchable


@pytest.mark.parametrize("event", [{}, {"name": ""}, {"name": 5}, {"name": " "}])
def test_client_event_needs_a_name(event: dict[str, object]) -> None:
    with pytest.raises(EventError, match=r"event\.name must be a non-empty string"):
        BusEvent.from_client(event, login="a", login2="b")


def test_client_event_must_be_serialisable() -> None:
    with pytest.raises(EventError, match="cannot be sent as JSON"):
        BusEvent.from_client({"name": "x", "big": 2**70}, login="a", login2="b")


# ---- delivery ----


def test_publish_reaches_only_matching_subscribers() -> None:
    bus = EventBus()
    mine, other, everything = subscriber(), subscriber(), subscriber()
    bus.subscribe(mine, flt("NewChannel", CallerIDNum="+79787342741"))
    bus.subscribe(other, flt("Newchannel", CallerIDNum="+71002003040"))
    bus.subscribe(everything, flt("*"))
    assert bus.publish(newchannel()) == 2
    assert bus.publish(hangup()) == 1
    assert [e["name"] for e in drain(mine)] == ["Newchannel"]
    assert drain(other) == []
    assert [e["name"] for e in drain(everything)] == ["Newchannel", "Hangup"]
    stats = bus.stats
    assert (stats.published, stats.delivered, stats.dropped) == (2, 3, 0)
    assert (stats.subscriptions, stats.subscribers) == (3, 3)


def test_one_delivery_per_subscriber_however_many_subscriptions_match() -> None:
    bus = EventBus()
    sub = subscriber()
    bus.subscribe(sub, flt("Newchannel"))
    bus.subscribe(sub, flt("newchannel", CallerIDNum="+79787342741"))
    bus.subscribe(sub, flt("*"))
    bus.subscribe(sub, flt("New*"))
    bus.subscribe(sub, flt(None, CallerIDNum=["+79787342741", "+7978*"]))
    assert bus.publish(newchannel()) == 1
    assert len(drain(sub)) == 1
    assert sub.delivered == 1


def test_repeated_header_event_reaches_indexed_subscriber_once() -> None:
    bus = EventBus()
    sub = subscriber()
    bus.subscribe(sub, flt("Status", Variable=["A=1", "B=2"]))
    status = BusEvent.from_message(
        Message.build(("Event", "Status"), ("Variable", "A=1"), ("Variable", "B=2"))
    )
    assert bus.publish(status) == 1
    assert len(drain(sub)) == 1


def test_payload_is_serialised_once_for_all_subscribers() -> None:
    bus = EventBus()
    subs = [subscriber() for _ in range(50)]
    for index, sub in enumerate(subs):
        bus.subscribe(sub, flt("Newchannel") if index % 2 else flt("*"))
    bus_event = newchannel()
    assert bus_event._payload is None
    assert bus.publish(bus_event) == 50
    payload = bus_event.payload()
    items = [item for sub in subs for item in asyncio.run(sub.get(timeout=0))]
    assert len(items) == 50
    assert all(item is payload for item in items)  # one bytes object: one dumps call


def test_an_event_nobody_takes_is_kept_for_replay_serialised_once() -> None:
    bus = EventBus()
    bus.subscribe(subscriber(), flt("Newchannel", CallerIDNum="+70000000000"))
    bus_event = newchannel()
    assert bus.publish(bus_event) == 0
    payload = bus_event._payload
    assert payload is not None  # the buffer's byte bound needs its size
    assert bus.replay.after(0) == [bus_event]
    assert bus_event.payload() is payload
    assert not bus.interested("Hangup") and bus.interested("NEWCHANNEL")


def test_once_subscription_ends_after_first_match() -> None:
    bus = EventBus()
    sub = subscriber()
    sid = bus.subscribe(sub, flt("Newchannel", CallerIDNum="+7978*"), once=True)
    assert bus.publish(hangup()) == 0
    assert bus.publish(newchannel(number="+71002003040")) == 0
    assert bus.publish(newchannel()) == 1
    assert bus.publish(newchannel()) == 0
    assert bus.unsubscribe(sub, sid) == 0
    assert bus.stats.subscriptions == 0 and bus.stats.subscribers == 0


def test_once_subscription_fires_even_when_another_subscription_delivered() -> None:
    bus = EventBus()
    sub = subscriber()
    bus.subscribe(sub, flt("*"))
    bus.subscribe(sub, flt("Newchannel"), once=True)
    bus.subscribe(sub, flt("Newchannel"), once=True)
    assert bus.publish(newchannel()) == 1
    assert bus.stats.subscriptions == 1


def test_guard_filters_per_subscriber_and_keeps_once_subscriptions() -> None:
    bus = EventBus()
    denied = Subscriber(
        max_queue=10, max_subscriptions=5, guard=lambda event: event.name_key != "newchannel"
    )
    allowed = subscriber()
    bus.subscribe(denied, flt("Newchannel"), once=True)
    bus.subscribe(denied, flt("Hangup"))
    bus.subscribe(allowed, flt("Newchannel"))
    assert bus.publish(newchannel()) == 1
    assert bus.publish(hangup()) == 1
    assert [e["name"] for e in drain(denied)] == ["Hangup"]
    assert bus.stats.subscriptions == 3  # the denied once-subscription did not fire


# ---- listeners ----


def test_listeners_see_matching_events_synchronously_and_are_not_subscribers() -> None:
    bus = EventBus()
    seen: list[BusEvent] = []
    everything: list[str] = []
    stop = bus.listen(flt("Newchannel", CallerIDNum="+7978*"), seen.append)
    bus.listen(flt(), lambda event: everything.append(event.name))
    sub = subscriber()
    bus.subscribe(sub, flt("Newchannel"))
    event = newchannel()
    assert bus.publish(event) == 1  # only the subscriber counts as reached
    assert bus.publish(newchannel(number="+71002003040")) == 1
    assert bus.publish(hangup()) == 0
    assert seen == [event]  # the BusEvent itself, during publish
    assert everything == ["Newchannel", "Newchannel", "Hangup"]
    stats = bus.stats
    assert (stats.subscriptions, stats.subscribers, stats.delivered, stats.dropped) == (1, 1, 2, 0)
    stop()
    stop()  # a second stop does nothing
    bus.publish(newchannel())
    assert len(seen) == 1 and len(everything) == 4


def test_listeners_make_the_bus_interested() -> None:
    bus = EventBus()
    assert not bus.interested("Newchannel")
    stop_named = bus.listen(flt("NewChannel"), lambda event: None)
    assert bus.interested("NEWCHANNEL") and not bus.interested("Hangup")
    stop_glob = bus.listen(flt("Hang*"), lambda event: None)
    assert bus.interested("Hangup") and bus.interested("Anything")
    stop_glob()
    assert not bus.interested("Hangup") and bus.interested("Newchannel")
    stop_named()
    assert not bus.interested("Newchannel")


def test_a_failing_listener_is_logged_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: BusEvent) -> None:
        raise ValueError("listener bug")

    bus.listen(flt(), broken)
    bus.listen(flt(), lambda event: seen.append(event.name))
    sub = subscriber()
    bus.subscribe(sub, flt("*"))
    assert bus.publish(hangup()) == 1
    assert seen == ["Hangup"] and len(drain(sub)) == 1
    assert any("listener" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_listener_may_stop_itself_during_publish() -> None:
    bus = EventBus()
    calls: list[str] = []

    def once(event: BusEvent) -> None:
        calls.append(event.name)
        stop()

    stop = bus.listen(flt(), once)
    bus.listen(flt(), lambda event: calls.append("other"))
    bus.publish(hangup())
    bus.publish(hangup())
    assert calls == ["Hangup", "other", "other"]


# ---- unsubscribing ----


def test_unsubscribe_by_id_only_own() -> None:
    bus = EventBus()
    alice, bob = subscriber(), subscriber()
    sid = bus.subscribe(alice, flt("Newchannel"))
    assert bus.unsubscribe(bob, sid) == 0
    assert bus.unsubscribe(alice, "nope") == 0
    assert bus.unsubscribe(alice, sid) == 1
    assert bus.unsubscribe(alice, sid) == 0
    assert bus.publish(newchannel()) == 0


def test_unsubscribe_by_name_is_case_insensitive_and_per_connection() -> None:
    bus = EventBus()
    alice, bob = subscriber(), subscriber()
    bus.subscribe(alice, flt("Newchannel"))
    bus.subscribe(alice, flt("NEWCHANNEL", CallerIDNum="+79787342741"))
    bus.subscribe(alice, flt("Hangup"))
    bus.subscribe(alice, flt("*"))
    bus.subscribe(alice, flt("Dial*"))
    bus.subscribe(bob, flt("Newchannel"))
    assert bus.unsubscribe_name(alice, "NewChannel") == 2
    assert bus.unsubscribe_name(alice, "dial*") == 1
    assert bus.unsubscribe_name(alice, "") == 1
    assert bus.unsubscribe_name(alice, "Newchannel") == 0
    assert bus.publish(newchannel()) == 1  # bob's
    assert [sid for sid, _, _ in bus.subscriptions(alice)] == ["s3"]


def test_unsubscribe_all() -> None:
    bus = EventBus()
    sub, other = subscriber(), subscriber()
    for name in ("Newchannel", "Hangup", "*"):
        bus.subscribe(sub, flt(name, CallerIDNum="+79787342741"))
    bus.subscribe(other, flt("Hangup"))
    assert bus.unsubscribe_all(sub) == 3
    assert bus.unsubscribe_all(sub) == 0
    assert bus.stats.subscriptions == 1 and bus.stats.subscribers == 1
    assert bus.publish(newchannel()) == 0


def test_injectable_ids_and_limit() -> None:
    ids = itertools.count(100)
    bus = EventBus(id_factory=lambda: f"sub-{next(ids)}")
    sub = subscriber(max_subscriptions=2)
    assert bus.subscribe(sub, flt("A")) == "sub-100"
    assert bus.subscribe(sub, flt("B")) == "sub-101"
    with pytest.raises(SubscriptionLimit, match="at most 2 subscriptions"):
        bus.subscribe(sub, flt("C"))
    bus.unsubscribe_name(sub, "a")
    assert bus.subscribe(sub, flt("C")) == "sub-102"


# ---- bounded queues ----


def test_overflow_calls_back_once_and_spares_the_others() -> None:
    bus = EventBus()
    overflowed: list[Subscriber] = []
    slow = Subscriber(max_queue=3, max_subscriptions=5, on_overflow=overflowed.append)
    fast = subscriber(max_queue=100)
    bus.subscribe(slow, flt("*"))
    bus.subscribe(fast, flt("*"))
    for index in range(10):
        bus.publish(newchannel(uniqueid=str(index)))
    assert overflowed == [slow]
    assert slow.overflowed and slow.queued == 3 and slow.delivered == 3
    assert not fast.overflowed and len(drain(fast)) == 10
    assert bus.stats.dropped == 7 and bus.stats.delivered == 13
    # Room again does not revive it: the connection is being closed.
    drain(slow)
    assert not slow.offer(b"x") and not slow.put_nowait_reply(b"x")
    assert overflowed == [slow]


def test_overflow_callback_may_unsubscribe_during_publish() -> None:
    bus = EventBus()
    subs: list[Subscriber] = []

    def close(sub: Subscriber) -> None:
        bus.unsubscribe_all(sub)

    for _ in range(5):
        sub = Subscriber(max_queue=1, max_subscriptions=5, on_overflow=close)
        bus.subscribe(sub, flt("Newchannel"))
        bus.subscribe(sub, flt("*"))
        subs.append(sub)
    assert bus.publish(newchannel()) == 5
    assert bus.publish(newchannel()) == 0
    assert bus.stats.subscriptions == 0 and bus.stats.dropped == 5


def test_replies_share_the_bound() -> None:
    sub = subscriber(max_queue=2)
    assert sub.put_nowait_reply(b"1") and sub.offer(b"2")
    assert not sub.put_nowait_reply(b"3")
    assert sub.overflowed


def test_closed_subscriber_refuses_without_overflow() -> None:
    calls: list[Subscriber] = []
    sub = Subscriber(max_queue=2, max_subscriptions=1, on_overflow=calls.append)
    sub.close()
    assert not sub.offer(b"x") and not sub.overflowed and calls == []


# ---- Subscriber.get ----


async def test_get_batches_and_waits() -> None:
    sub = subscriber()
    sub.offer(b"a")
    sub.offer(b"b")
    assert await sub.get(timeout=1) == [b"a", b"b"]
    assert sub.queued == 0
    waiting = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.offer(b"c")
    assert await asyncio.wait_for(waiting, 1) == [b"c"]


async def test_get_times_out_empty() -> None:
    sub = subscriber()
    assert await sub.get(timeout=0.01) == []
    assert await sub.get(timeout=0) == []


async def test_get_woken_by_publish_and_by_close() -> None:
    bus = EventBus()
    sub = subscriber()
    bus.subscribe(sub, flt("Hangup"))
    waiting = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    bus.publish(hangup())
    [item] = await asyncio.wait_for(waiting, 1)
    assert orjson.loads(item)["name"] == "Hangup"
    waiting = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiting, 1) == []


async def test_only_one_getter() -> None:
    sub = subscriber()
    first = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already being awaited"):
        await sub.get(timeout=1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    sub.offer(b"x")
    assert await sub.get(timeout=1) == [b"x"]


# ---- Subscriber.hold_writes (the sender's pause between writes) ----


async def _holding(sub: Subscriber) -> asyncio.Task[None]:
    task = asyncio.create_task(sub.hold_writes())
    await asyncio.sleep(0)  # let it start waiting
    return task


async def test_events_queue_during_a_hold_without_ending_it() -> None:
    bus = EventBus()
    sub = subscriber(max_queue=10)
    bus.subscribe(sub, flt("Hangup"))
    held = await _holding(sub)
    for _ in range(4):
        bus.publish(hangup())
    await asyncio.sleep(0)
    assert not held.done() and sub.queued == 4
    sub.release()
    await asyncio.wait_for(held, 1)
    assert len(await sub.get(timeout=0)) == 4


async def test_a_hold_ends_when_the_queue_is_half_full() -> None:
    bus = EventBus()
    sub = subscriber(max_queue=10)
    bus.subscribe(sub, flt("Hangup"))
    held = await _holding(sub)
    for _ in range(5):
        bus.publish(hangup())
    await asyncio.sleep(0)
    assert not held.done()
    assert bus.publish(hangup()) == 1  # the sixth passes the half-way mark: taken, and
    await asyncio.wait_for(held, 1)  # the sender is let go
    assert sub.queued == 6 and not sub.overflowed
    # The bound is max_queue again, as without a hold.
    for _ in range(4):
        assert bus.publish(hangup()) == 1
    assert bus.publish(hangup()) == 0
    assert sub.overflowed and sub.queued == 10


async def test_a_reply_ends_a_hold_and_prevents_the_next() -> None:
    sub = subscriber()
    held = await _holding(sub)
    sub.put_nowait_reply(b"answer")
    await asyncio.wait_for(held, 1)
    sub.put_nowait_reply(b"another")
    await asyncio.wait_for(sub.hold_writes(), 1)  # a reply is waiting: no hold
    assert await sub.get(timeout=0) == [b"answer", b"another"]
    held = await _holding(sub)  # the replies were taken: it holds again
    assert not held.done()
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


async def test_close_ends_a_hold_and_a_closed_subscriber_does_not_hold() -> None:
    sub = subscriber()
    held = await _holding(sub)
    sub.close()
    await asyncio.wait_for(held, 1)
    await asyncio.wait_for(sub.hold_writes(), 1)


async def test_an_overflowed_subscriber_does_not_hold() -> None:
    sub = subscriber(max_queue=2)
    for item in (b"a", b"b", b"c"):
        sub.offer(item)
    assert sub.overflowed
    await asyncio.wait_for(sub.hold_writes(), 1)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Subscriber(max_queue=0, max_subscriptions=1)
