"""Micro benchmark of the call tracker alone: what it costs per PBX event (one core).

    PYTHONPATH=.:src .venv/bin/python -m bench.tracker_micro [--repeat 200]

The timed loop is what the server's AMI reader does for the tracker per event:
``CallTracker.observe(message, now)`` and, for each call event it returns,
``call_bus_event`` (the call object as a bus event) and ``EventBus.publish`` to one
catch-all subscriber. Scenarios:

- ``recorded``: the eleven real Asterisk 20 call recordings (``tests/data/ami/calls``:
  answered, missed, busy, ring group, transfers, hold, click-to-call, pickup) played
  ``--repeat`` times, each time into a fresh tracker, every event of the stream
  (``VarSet``, ``Newexten``, RTCP ... included, as the reader sees them);
- ``known channels``: the fan-out benchmark's feed, Newchannel events of 1,000 channels
  the tracker already knows (what ``bench fanout`` sends, over and over);
- ``new calls``: Newchannel events that each open a call that never ends, so past
  ``max_calls`` every event ends the least recently active call (``endReason:
  unknown``): a flood of lost Hangups, the tracker's worst case.

For scale, ``bus only`` is the bus's own cost for the same recorded events
(``BusEvent.from_message`` + ``publish`` to one catch-all subscriber), which every
server pays with or without the tracker. Times are this process's CPU time
(``time.process_time``), the figure least disturbed when other work shares the machine.
Nothing here asserts anything; the figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from bench.feeds import operator_number
from tests.calls.replay import BASE, load_recording
from vwell_pbx.api.calls import call_bus_event
from vwell_pbx.calls import CallTracker
from vwell_pbx.events import BusEvent, EventBus, EventFilter, Subscriber
from vwell_pbx.protocol import Message

RECORDINGS = [str(number) for number in range(13, 24)]


def _bus() -> EventBus:
    bus = EventBus()
    bus.subscribe(Subscriber(max_queue=10**9, max_subscriptions=1), EventFilter.from_spec("*"))
    return bus


def newchannel(number: str, uniqueid: str, channel: str) -> Message:
    """The fan-out feed's event: a Newchannel of a Yeastar GSM trunk."""
    return Message.build(
        ("Event", "Newchannel"),
        ("Privilege", "call,all"),
        ("Channel", channel),
        ("ChannelState", "1"),
        ("ChannelStateDesc", "Rsrvd"),
        ("CallerIDNum", number),
        ("CallerIDName", number),
        ("AccountCode", ""),
        ("Exten", "s"),
        ("Context", "DID_trunk_11"),
        ("Uniqueid", uniqueid),
    )


def through_tracker(streams: Sequence[Sequence[tuple[float, Message]]]) -> tuple[float, int, int]:
    """Seconds, events and call events for ``streams``, each into a fresh tracker."""
    bus = _bus()
    publish = bus.publish
    events = emitted = 0
    elapsed = 0.0
    for stream in streams:
        tracker = CallTracker(pbx="office")
        observe = tracker.observe
        started = time.process_time()
        for at, message in stream:
            for event in observe(message, at):
                publish(call_bus_event(event))
                emitted += 1
        elapsed += time.process_time() - started
        events += len(stream)
    return elapsed, events, emitted


def through_bus(streams: Sequence[Sequence[tuple[float, Message]]]) -> tuple[float, int, int]:
    """The bus's own cost for the same events (no tracker)."""
    bus = _bus()
    publish, from_message = bus.publish, BusEvent.from_message
    events = 0
    started = time.process_time()
    for stream in streams:
        for _, message in stream:
            publish(from_message(message))
        events += len(stream)
    return time.process_time() - started, events, 0


def report(label: str, run: Callable[[], tuple[float, int, int]]) -> None:
    """Print one scenario's figures."""
    seconds, events, emitted = run()
    print(
        f"{label:<16} events={events:>9,} call events={emitted:>8,} "
        f"{seconds * 1e6 / events:6.2f} us/event  ({events / seconds:,.0f} events/s)",
        flush=True,
    )


def main() -> None:
    """Parse arguments and run each scenario."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="plays of the recordings")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, cores={os.cpu_count()}, one thread", flush=True)
    recorded = [
        [(BASE + at, message) for at, message in load_recording(name).events] for name in RECORDINGS
    ]
    plays = [stream for _ in range(args.repeat) for stream in recorded]
    report("recorded", lambda: through_tracker(plays))
    report("bus only", lambda: through_bus(plays))
    known = [
        (BASE, newchannel(operator_number(i), f"1505301523.{6253 + i}", f"YSGSM/11-{i % 9}"))
        for i in range(1000)
    ]
    report("known channels", lambda: through_tracker([known * 100]))
    fresh = [
        (BASE, newchannel(operator_number(i % 1000), f"1505301523.{i}", f"YSGSM/11-{i % 9}"))
        for i in range(100_000)
    ]
    report("new calls", lambda: through_tracker([fresh]))


if __name__ == "__main__":
    main()
