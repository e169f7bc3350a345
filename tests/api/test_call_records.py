"""How an ended call becomes a history row (``api.calls.record_of``): from its
``call.ended`` event once the bus published it (the message then carries the bus's
``eventId``), the same row as from its snapshot."""

from __future__ import annotations

from dataclasses import replace

import orjson

from tests.calls.test_calls_rules import ENDED_CALL
from vwell_pbx.api.calls import call_bus_event, record_of
from vwell_pbx.calls.model import CallEvent
from vwell_pbx.events.bus import EVENT_ID_KEY, EventBus, Subscriber
from vwell_pbx.events.filters import EventFilter

#: An ended call (the rules' tests' answered inbound call), with the fields a
#: click-to-call and a second extension fill.
ENDED = replace(
    ENDED_CALL,
    channels=("SIP/269-00000050",),
    originated=True,
    action_id="dial-7",
    extensions=frozenset({"269", "700"}),
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
    assert row.started_ms == 1_700_000_000_000
    assert row.ended_ms == 1_700_000_010_500
    assert row.extensions == ("269", "700")
    assert row.originated is True


def test_an_unpublished_ended_event_gives_the_same_row() -> None:
    event = CallEvent(name="call.ended", call=ENDED)
    assert EVENT_ID_KEY not in event.message
    assert record_of(event) == record_of(ENDED)
