"""Micro benchmark of the event bus alone: no sockets, no asyncio, one core.

    PYTHONPATH=.:src .venv/bin/python bench/bus_micro.py [--events 100000] [--subscribers 1000]

1,000 subscribers (one per operator) each subscribe to ``Newchannel`` with their own
``CallerIDNum``, as the original product's onEvent example does; the AMI messages are
prebuilt, and the timed loop does what the server's AMI listener does per event:
``interested(name)``, and only if so ``BusEvent.from_message`` then ``EventBus.publish``
(ids, matching, serialise once, enqueue, record for replay). Scenarios:

- ``newchannel``: every event is a Newchannel for one of the subscribers' numbers
  (each event reaches exactly one subscriber: the filtered worst case).
- ``mixed``: a realistic call stream (Newchannel, Newstate, Dial, VarSet, Newexten,
  Hangup, ...) where a fifth of the events are Newchannel, plus 10 catch-all
  subscribers (name ``*``) that take every event.
- ``skipping``: the same stream with the operators only: four events in five are
  wanted by nobody and skipped by ``interested`` (the common path of a PBX that sends
  far more than anyone subscribes to).
- ``lingering``: ``skipping`` while 100 disconnected clients, each with a ``Hangup``
  and a ``Newchannel`` subscription, are within their resume grace: their names are
  still published, into the replay buffer only.
- ``broadcast``: 100 subscribers with no filter take every event.

The baseline, measured in the same run, is the least any server must do per event:
the headers as a dict + one ``orjson.dumps`` + one list append per receiving
subscriber, nothing for an event nobody wants. The ratio says what matching and
bookkeeping cost on top of it. Run the same file against an older ``src`` to compare
releases (a scenario the older bus cannot do is left out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import timeit
from collections.abc import Callable

import orjson

from vwell_pbx.events import BusEvent, EventBus, EventFilter, Subscriber
from vwell_pbx.protocol import Message


def operator_number(index: int) -> str:
    """The phone number operator ``index`` watches for."""
    return f"+7978{index:07d}"


def newchannel(rng: random.Random, number: str, seq: int) -> Message:
    """A Newchannel event as a Yeastar GSM trunk sends it."""
    uniqueid = f"1505301523.{seq}"
    return Message.build(
        ("Event", "Newchannel"),
        ("Privilege", "call,all"),
        ("Channel", f"YSGSM/11-{seq % 9}"),
        ("ChannelState", "1"),
        ("ChannelStateDesc", "Rsrvd"),
        ("CallerIDNum", number),
        ("CallerIDName", number),
        ("AccountCode", ""),
        ("Exten", "s"),
        ("Context", "DID_trunk_11"),
        ("Uniqueid", uniqueid),
    )


def other_event(rng: random.Random, number: str, seq: int) -> Message:
    """One of the other events of a call's life."""
    name = rng.choice(
        ["Newstate", "Dial", "VarSet", "Newexten", "Hangup", "NewCallerid", "Bridge", "Newexten"]
    )
    return Message.build(
        ("Event", name),
        ("Privilege", "call,all"),
        ("Channel", f"SIP/269-{seq:08x}"),
        ("ChannelState", "6"),
        ("CallerIDNum", number),
        ("CallerIDName", number),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "267"),
        ("Priority", "1"),
        ("Uniqueid", f"1505296320.{seq}"),
        ("Variable", "FOO"),
        ("Value", "bar"),
    )


def make_events(
    count: int, operators: int, newchannel_share: float, rng: random.Random
) -> list[Message]:
    """The feed: Newchannel for operators' numbers at ``newchannel_share``, else others."""
    events: list[Message] = []
    for seq in range(count):
        number = operator_number(rng.randrange(operators))
        if rng.random() < newchannel_share:
            events.append(newchannel(rng, number, seq))
        else:
            events.append(other_event(rng, number, seq))
    return events


def build_bus(
    operators: int, catch_all: int, lingering: int = 0
) -> tuple[EventBus, list[Subscriber]]:
    """Subscribers with the realistic filter, plus ``catch_all`` unfiltered ones, plus
    ``lingering`` disconnected ones within their resume grace."""
    bus = EventBus()
    for _ in range(lingering):
        gone = Subscriber(max_queue=10, max_subscriptions=10)
        bus.subscribe(gone, EventFilter.from_spec("Hangup"))
        bus.subscribe(gone, EventFilter.from_spec("Newchannel", {"CallerIDNum": "+7000"}))
        bus.disconnect(gone)
    subscribers: list[Subscriber] = []
    for index in range(operators):
        subscriber = Subscriber(max_queue=1_000_000, max_subscriptions=10)
        bus.subscribe(
            subscriber, EventFilter.from_spec("Newchannel", {"CallerIDNum": operator_number(index)})
        )
        subscribers.append(subscriber)
    for _ in range(catch_all):
        subscriber = Subscriber(max_queue=1_000_000, max_subscriptions=10)
        bus.subscribe(subscriber, EventFilter.from_spec("*"))
        subscribers.append(subscriber)
    return bus, subscribers


def timed(run: Callable[[], int]) -> tuple[float, int]:
    """Seconds taken by ``run`` and what it returned."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def scenario(
    label: str, events: list[Message], operators: int, catch_all: int, lingering: int = 0
) -> None:
    """Run the bus and the baseline over ``events`` and print both."""
    if lingering and not hasattr(EventBus, "disconnect"):
        print(f"{label:<11} (this bus has no resume grace)")
        return
    bus, subscribers = build_bus(operators, catch_all, lingering)

    def through_bus() -> int:
        reached = 0
        publish = bus.publish
        interested = bus.interested
        from_message = BusEvent.from_message
        for message in events:
            if interested(message.name):
                reached += publish(from_message(message))
        return reached

    bus_seconds, reached = timed(through_bus)
    for subscriber in subscribers:
        assert not subscriber.overflowed

    # Baseline: the same deliveries with no matching at all (who receives what is
    # precomputed outside the timed loop).
    by_number: dict[str, list[bytes]] = {operator_number(i): [] for i in range(operators)}
    wildcard_queues: list[list[bytes]] = [[] for _ in range(catch_all)]
    plan: list[tuple[Message, list[list[bytes]]]] = []
    for message in events:
        targets = list(wildcard_queues)
        if message.name == "Newchannel" and operators:
            targets.append(by_number[message.get("CallerIDNum") or ""])
        if targets:
            plan.append((message, targets))

    def baseline() -> int:
        sent = 0
        dumps = orjson.dumps
        for message, targets in plan:
            fields = dict(message.headers)  # these events repeat no header
            fields["name"] = message.name
            data = dumps(fields)
            for queue in targets:
                queue.append(data)
            sent += len(targets)
        return sent

    base_seconds, sent = timed(baseline)
    assert sent == reached, (sent, reached)
    stats = bus.stats
    count = len(events)
    print(
        f"{label:<11} events={count} subscribers={len(subscribers)} "
        f"published={stats.published} delivered={stats.delivered} "
        f"bus={count / bus_seconds:,.0f} ev/s ({bus_seconds * 1e6 / count:.2f} us/ev) "
        f"baseline={count / base_seconds:,.0f} ev/s  ratio={base_seconds / bus_seconds:.2f}"
    )


def paths(count: int, operators: int, rng: random.Random) -> None:
    """Single operations, best of 9 runs (robust on a busy machine): ``interested`` for
    a wanted and for an unwanted name, and ``from_message`` + ``publish`` of an event
    one subscriber takes and of one nobody takes (its name is wanted, its number not)."""
    bus, subscribers = build_bus(operators, 0)
    taken = [newchannel(rng, operator_number(i % operators), i) for i in range(count)]
    untaken = [newchannel(rng, "+70000000000", i) for i in range(count)]

    def interested_wanted() -> None:
        interested = bus.interested
        for _ in range(count):
            interested("Newchannel")

    def interested_skipped() -> None:
        interested = bus.interested
        for _ in range(count):
            interested("VarSet")

    def publish(events: list[Message]) -> Callable[[], None]:
        def run() -> None:
            publish = bus.publish
            from_message = BusEvent.from_message
            for message in events:
                publish(from_message(message))

        return run

    for label, run in (
        ("interested, wanted name", interested_wanted),
        ("interested, skipped name", interested_skipped),
        ("publish, 1 subscriber takes it", publish(taken)),
        ("publish, nobody takes it", publish(untaken)),
    ):
        best = min(timeit.repeat(run, number=1, repeat=9))
        for subscriber in subscribers:
            asyncio.run(subscriber.get(timeout=0))  # empty the queues between operations
        print(f"{label:<31} {best * 1e6 / count:6.3f} us")


def main() -> None:
    """Parse arguments and run each scenario."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"python {sys.version.split()[0]}, cores={os.cpu_count()}, one thread")
    scenario(
        "newchannel", make_events(args.events, args.subscribers, 1.0, rng), args.subscribers, 0
    )
    mixed = make_events(args.events, args.subscribers, 0.2, rng)
    scenario("mixed", mixed, args.subscribers, 10)
    scenario("skipping", mixed, args.subscribers, 0)
    scenario("lingering", mixed, args.subscribers, 0, lingering=100)
    scenario("broadcast", make_events(args.events // 10, args.subscribers, 0.2, rng), 0, 100)
    paths(args.events // 5, args.subscribers, rng)


if __name__ == "__main__":
    main()
