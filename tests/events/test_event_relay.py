"""EventRelay's own rules, between buses in one process: the channel is a list that
every relay's messages are appended to, in order, as PostgreSQL delivers a committed
transaction's notifications (tests/instances/ run the real thing between processes).

Cut under NOTIFY's limit at character boundaries and put back together; own messages
skipped; nothing received is sent on; bounds on the event, the queue and partial
events; malformed messages counted and ignored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from vwell_pbx.events import BusEvent, EventBus, EventError, EventFilter, Subscriber
from vwell_pbx.events.relay import EventRelay, encode_messages
from vwell_pbx.storage import StorageUnavailable


class Channel:
    """Messages as the database would deliver them: to every relay, this one too."""

    def __init__(self) -> None:
        self.relays: list[EventRelay] = []
        self.sent: list[list[str]] = []
        self.down = False

    async def send(self, messages: Sequence[str]) -> None:
        if self.down:
            raise StorageUnavailable("the database is down")
        self.sent.append(list(messages))
        for relay in self.relays:
            for message in messages:
                relay.receive(message)


def _node(channel: Channel, **options: object) -> tuple[EventBus, EventRelay, Subscriber]:
    bus = EventBus()
    relay = EventRelay(bus, channel.send, **options)  # type: ignore[arg-type]
    channel.relays.append(relay)
    sub = Subscriber(max_queue=100, max_subscriptions=10)
    bus.subscribe(sub, EventFilter.from_spec("crm.*"))
    return bus, relay, sub


async def _drain(sub: Subscriber) -> list[dict[str, object]]:
    items = await sub.get(timeout=0) if sub.queued else []
    return [orjson.loads(item) for item in items]


def _dispatch(bus: EventBus, relay: EventRelay, event: dict[str, object]) -> None:
    """What dispatchEvent does: encode (may refuse), publish here, forward."""
    bus_event = BusEvent.from_client(event, login="crm", login2="CRM")
    data = relay.encode(bus_event)
    bus.publish(bus_event)
    relay.forward(data)


async def _flush(*relays: EventRelay) -> None:
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        async with asyncio.timeout(5):
            while any(relay.queued for relay in relays):
                await asyncio.sleep(0)
            await asyncio.sleep(0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_messages_are_cut_at_character_boundaries_under_the_limit() -> None:
    data = orjson.dumps({"name": "crm.x", "text": "Жё🙂a" * 500})
    messages = encode_messages("abc", 7, data, chunk_bytes=100)
    assert len(messages) > 10
    chunks = []
    for i, message in enumerate(messages):
        version, origin, seq, position, chunk = message.split(" ", 4)
        assert (version, origin, seq, position) == ("v1", "abc", "7", f"{i}/{len(messages)}")
        assert len(chunk.encode()) <= 100
        chunks.append(chunk)
    assert "".join(chunks).encode() == data


async def test_an_event_reaches_the_other_bus_once_and_goes_no_further() -> None:
    channel = Channel()
    bus_a, relay_a, sub_a = _node(channel, chunk_bytes=64)
    bus_b, relay_b, sub_b = _node(channel, chunk_bytes=64)
    bus_c, relay_c, sub_c = _node(channel, chunk_bytes=64)
    event = BusEvent.from_client(
        {"name": "crm.note", "text": "Привет, " * 40}, login="crm", login2="CRM"
    )
    data = relay_a.encode(event)
    bus_a.publish(event)
    relay_a.forward(data)
    await _flush(relay_a, relay_b, relay_c)
    for sub, bus in ((sub_a, bus_a), (sub_b, bus_b), (sub_c, bus_c)):
        [got] = await _drain(sub)
        assert got["name"] == "crm.note"
        assert got["text"] == "Привет, " * 40
        assert (got["origin"], got["login"]) == ("api", "crm")
        # Each instance stamps its own id: the sender's is not relayed.
        assert str(got["eventId"]).startswith(bus.run_id + "-"), (got["eventId"], bus.run_id)
    assert len(channel.sent) == 1  # only A sent: B and C published, never forwarded
    assert relay_a.stats.received == 0  # its own messages were skipped
    assert relay_b.stats.received == relay_c.stats.received == 1
    assert relay_a.stats.sent == 1


async def test_a_relayed_event_is_marked_while_it_is_published() -> None:
    channel = Channel()
    bus_a, relay_a, _ = _node(channel)
    bus_b, relay_b, _ = _node(channel)
    seen: list[bool] = []
    bus_b.listen(
        EventFilter.from_spec("crm.*"), lambda event: seen.append(relay_b.is_relayed(event))
    )
    _dispatch(bus_b, relay_b, {"name": "crm.local"})
    _dispatch(bus_a, relay_a, {"name": "crm.remote"})
    await _flush(relay_a, relay_b)
    assert seen == [False, True]  # webhooks skip the second one


async def test_an_event_too_large_is_refused_before_anything_is_published() -> None:
    channel = Channel()
    bus, relay, sub = _node(channel, max_event_bytes=1000)
    with pytest.raises(EventError, match="1000 bytes"):
        _dispatch(bus, relay, {"name": "crm.big", "text": "x" * 2000})
    assert await _drain(sub) == []
    assert relay.queued == 0


async def test_a_full_queue_drops_and_counts_and_a_database_outage_is_counted() -> None:
    channel = Channel()
    bus, relay, _ = _node(channel, queue_size=2)
    for n in range(3):
        _dispatch(bus, relay, {"name": "crm.n", "n": n})
    assert relay.stats.dropped == 1
    channel.down = True
    await _flush(relay)
    assert relay.stats.failed == 2
    assert relay.stats.sent == 0
    channel.down = False
    _dispatch(bus, relay, {"name": "crm.after"})
    await _flush(relay)
    assert relay.stats.sent == 1


@pytest.mark.parametrize(
    "message",
    [
        "",
        "v2 other 1 0/1 {}",
        "v1 other x 0/1 {}",
        "v1 other 1 1/1 {}",
        "v1 other 1 0/1 not json",
        "v1 other 1 0/1 []",
        'v1 other 1 0/1 {"name": "crm.x"}',  # not a client's event: no origin api
        'v1 other 1 0/1 {"name": "", "origin": "api"}',
        "v1 other 1 1/2 a part whose beginning was missed",
    ],
)
async def test_malformed_messages_are_counted_and_ignored(message: str) -> None:
    channel = Channel()
    _, relay, sub = _node(channel)
    relay.receive(message)
    assert relay.stats.invalid == 1
    assert relay.stats.received == 0
    assert await _drain(sub) == []


async def test_partial_events_are_bounded() -> None:
    channel = Channel()
    _, relay, sub = _node(channel, max_event_bytes=300)
    relay.receive("v1 other 1 0/5 " + "a" * 200)
    relay.receive("v1 other 1 1/5 " + "a" * 200)  # past 300 bytes: dropped
    assert relay.stats.invalid == 1
    event = b'{"name":"crm.ok","origin":"api","login":"x","login2":"y"}'
    for message in encode_messages("other", 2, event, chunk_bytes=20):
        relay.receive(message)
    assert [e["name"] for e in await _drain(sub)] == ["crm.ok"]


async def test_a_resumed_listener_counts_a_gap_and_forgets_partial_events() -> None:
    channel = Channel()
    _, relay, sub = _node(channel)
    relay.receive('v1 other 1 0/2 {"name":')
    relay.resumed()
    assert relay.stats.gaps == 1
    relay.receive('v1 other 1 1/2 "crm.x","origin":"api"}')
    assert relay.stats.invalid == 1
    assert await _drain(sub) == []
