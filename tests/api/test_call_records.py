"""How an ended call becomes a history row (``api.calls.record_of``): from its
``call.ended`` event once the bus published it (the message then carries the bus's
``eventId``), the same row as from its snapshot."""

from __future__ import annotations

import orjson

from vwell_pbx.api.calls import call_bus_event, record_of
from vwell_pbx.calls.model import CallEvent, CallSnapshot, Transfer
from vwell_pbx.events.bus import EVENT_ID_KEY, EventBus, Subscriber
from vwell_pbx.events.filters import EventFilter

ENDED = CallSnapshot(
    call_id="1796172327.90",
    pbx="office",
    status="ended",
    direction="inbound",
    from_number="89780000001",
    from_name="Ivanov",
    to_number="269",
    to_name=None,
    extension="269",
    trunk="gsm1",
    did="4950000000",
    started_at="2026-12-07T10:00:00.000Z",
    answered_at="2026-12-07T10:00:04.250Z",
    ended_at="2026-12-07T10:01:10.500Z",
    ring_seconds=4.25,
    talk_seconds=66.25,
    end_reason="completed",
    on_hold=False,
    transfers=(Transfer(type="blind", by="269", to="270", at="2026-12-07T10:00:30.000Z"),),
    channels=("SIP/269-00000050",),
    originated=True,
    action_id="dial-7",
    extensions=frozenset({"269", "270"}),
)


def test_a_published_ended_event_gives_the_row_its_snapshot_gives() -> None:
    bus = EventBus(run_id="test")
    subscriber = Subscriber(max_queue=10, max_subscriptions=1)
    bus.subscribe(subscriber, EventFilter.from_spec("*"))
    event = CallEvent(name="call.ended", call=ENDED)
    bus.publish(call_bus_event(event))

    # The bus published the event's own message: it now ends with the eventId sent.
    sent = orjson.loads(subscriber._queue[0])
    assert list(event.message)[-2:] == ["name", EVENT_ID_KEY]
    assert event.message == sent

    row = record_of(event)
    assert row == record_of(ENDED)
    assert orjson.loads(row.document) == ENDED.to_dict()
    assert row.started_ms == 1796637600000
    assert row.ended_ms == 1796637670500
    assert row.extensions == ("269", "270")
    assert row.originated is True


def test_an_unpublished_ended_event_gives_the_same_row() -> None:
    event = CallEvent(name="call.ended", call=ENDED)
    assert EVENT_ID_KEY not in event.message
    assert record_of(event) == record_of(ENDED)
