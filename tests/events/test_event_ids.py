"""Event ids (events.ids) and the replay buffer (events.replay): shapes and bounds."""

from __future__ import annotations

import itertools
import tracemalloc

import orjson
import pytest

from vwell_pbx.events import BusEvent, EventBus, EventIdError, ReplayBuffer, parse_event_id
from vwell_pbx.events.bus import event_id_of
from vwell_pbx.events.ids import MAX_EVENT_ID_LENGTH, EventPosition, check_run_id, new_run_id

# ---- ids ----


@pytest.mark.parametrize(
    ("text", "run", "seq"),
    [
        ("k3v7q2ma5x-1532", "k3v7q2ma5x", 1532),
        ("k3v7q2ma5x-0", "k3v7q2ma5x", 0),
        ("Run1-1", "Run1", 1),
        ("a" * 16 + "-" + "9" * 19, "a" * 16, int("9" * 19)),
    ],
)
def test_ids_that_parse(text: str, run: str, seq: int) -> None:
    assert parse_event_id(text) == EventPosition(run, seq)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "17",  # what the event stream sent before there were event ids
        "k3v7q2ma5x",
        "k3v7q2ma5x-",
        "-12",
        "k3v7q2ma5x-01",  # no leading zeros: one id, one spelling
        "k3v7q2ma5x--1",
        "k3v7q2ma5x-1 ",
        " k3v7q2ma5x-1",
        "k3v7q2ma5x-1\n",
        "k3v7_q2ma-1",
        "кириллица-1",
        "a" * 17 + "-1",
        "a-" + "1" * 20,
        "x" * 10_000,
    ],
)
def test_anything_else_is_refused_with_what_an_id_looks_like(text: str) -> None:
    with pytest.raises(EventIdError, match="must be an eventId received from this server"):
        parse_event_id(text)


def test_a_long_refused_text_is_not_echoed_whole() -> None:
    with pytest.raises(EventIdError) as caught:
        parse_event_id("y" * 500)
    assert len(str(caught.value)) < 200
    assert MAX_EVENT_ID_LENGTH == 36


def test_run_ids_are_random_base32_and_injectable() -> None:
    picks = itertools.cycle("ab")
    assert new_run_id(lambda alphabet: next(picks)) == "ababababab"
    made = {new_run_id() for _ in range(50)}
    assert len(made) == 50
    for run in made:
        assert len(run) == 10 and set(run) <= set("abcdefghijklmnopqrstuvwxyz234567")
        assert parse_event_id(f"{run}-5").run == run
    assert check_run_id("Run1") == "Run1"
    for bad in ("", "a-b", "a" * 17, "ü"):
        with pytest.raises(ValueError, match="run id"):
            check_run_id(bad)
        with pytest.raises(ValueError, match="run id"):
            EventBus(run_id=bad)


def test_event_id_of_reads_the_last_key_of_a_published_event() -> None:
    bus = EventBus(run_id="r1")
    note = '"eventId":"fake-1"}'  # inside a string value it is escaped, never mistaken
    event = BusEvent.from_client({"name": "X", "note": note}, login="a", login2="b")
    bus.publish(event)
    assert event_id_of(event.payload()) == "r1-1" == event.event_id
    assert event_id_of(b'{"name":"X"}') is None
    assert event_id_of(b'{"eventId":"a\\"b"}') is None
    assert event_id_of(b"not json") is None


# ---- the replay buffer ----


def published(bus: EventBus, count: int, **fields: object) -> list[BusEvent]:
    events = []
    for n in range(count):
        event = BusEvent.from_client({"name": "Tick", "n": n, **fields}, login="a", login2="b")
        bus.publish(event)
        events.append(event)
    return events


def test_the_count_bound_evicts_the_oldest() -> None:
    bus = EventBus(run_id="r", replay=ReplayBuffer(max_events=3, max_bytes=1 << 20))
    events = published(bus, 5)
    replay = bus.replay
    assert len(replay) == 3
    assert replay.after(0) == events[2:]
    assert replay.evicted_through == events[1].seq
    assert not replay.covers(events[0].seq) and replay.covers(events[1].seq)
    assert replay.after(events[3].seq) == events[4:]
    assert replay.after(events[4].seq) == []
    assert replay.bytes == sum(len(e.payload()) for e in events[2:])


def test_the_byte_bound_evicts_the_oldest_and_an_oversized_event_is_never_held() -> None:
    one = len(published(EventBus(run_id="r"), 1, pad="x" * 100)[0].payload())
    bus = EventBus(run_id="r", replay=ReplayBuffer(max_events=100, max_bytes=one * 3 + 10))
    events = published(bus, 6, pad="x" * 100)
    replay = bus.replay
    assert replay.after(0) == events[3:]
    assert replay.bytes == 3 * one <= replay.max_bytes
    big = BusEvent.from_client({"name": "Big", "pad": "y" * 1000}, login="a", login2="b")
    bus.publish(big)
    assert replay.after(0) == events[3:]  # nothing else was evicted for it ...
    assert replay.evicted_through == big.seq  # ... but a resume across it is a gap
    assert bus.stats.replay_events == 3 and bus.stats.replay_bytes == replay.bytes


def test_kept_events_do_not_keep_orjsons_spare_buffer() -> None:
    # orjson's result reserves at least 4 KiB whatever its length; the bus keeps an
    # exactly sized copy, so 500 small events stay far below 500 x 4 KiB.
    bus = EventBus(run_id="r", replay=ReplayBuffer(max_events=500))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        events = published(bus, 500)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(bus.replay) == 500
    assert used / 500 < 2048, used / 500
    payload = bus.replay.after(0)[0].payload()
    assert payload == orjson.dumps(events[0].fields)
    assert orjson.loads(payload)["eventId"] == "r-1" == events[0].event_id


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReplayBuffer(max_events=0)
    with pytest.raises(ValueError, match="at least 1"):
        ReplayBuffer(max_bytes=0)
