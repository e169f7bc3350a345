"""Micro benchmark of the server's AMI event path in one process, without sockets.

    PYTHONPATH=.:src .venv/bin/python -m bench.path_micro [--feed ast20] [--events 200000]
        [--operators 1000] [--catch-all 2] [--calls-off | --no-call-sinks |
        --no-call-handlers] [--profile]
        [--digest]
        [--prepare N]

What the server does per PBX event between the socket read and the WebSocket
queues, assembled as ``web/server.py`` assembles it: the AMI bytes of a
``bench.feeds`` feed go through ``AmiParser`` and the AMI client's dispatch
(``AmiClient._dispatch``, private: the reader calls it) to the listeners in the
server's order (the bus publisher, the channel registry, the call tracker's
``LiveCalls`` with its sinks), and ``EventBus.publish`` offers each event to
``--operators`` operators (``Newchannel`` + own ``CallerIDNum``, with the operator
role's guard) and ``--catch-all`` supervisors (every event, the supervisor role's
guard). The queues are emptied between chunks; nothing is written to a socket, so
the figures leave out the WebSocket sender (see the fan-out benchmark for that).

CPU time of this process (``time.process_time``), the figure least disturbed when
other work shares the machine; the best of ``--repeat`` runs. With it, the garbage
collector's passes during that run (``gc.callbacks``): how many of each generation
and their time. Reference cycles made per event show up there first: the server's
longest stalls are those passes (docs/performance.md). ``--profile`` prints
cProfile's top functions instead. Nothing is asserted; the figures are in
docs/performance.md.

``--digest`` prints instead a SHA-256 of every frame each subscriber was given, in
order (with a fixed run id and a fixed clock, so the same source gives the same
digest): a change that must not alter what subscribers receive keeps it. ``--prepare
N`` builds the feed's bytes for ``N`` events however many are run, so that two runs
with different ``--events`` differ only in the events run (``bench.path_instructions``
counts instructions that way).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import hashlib
import itertools
import os
import pstats
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench.feeds import FEEDS, make_feed, operator_number
from vwell_pbx.ami.client import AmiClient, AmiSettings
from vwell_pbx.api.auth import Principal
from vwell_pbx.api.calls import call_bus_event
from vwell_pbx.api.guards import EventGuards
from vwell_pbx.api.live_calls import LiveCalls
from vwell_pbx.api.role_tables import BUILTIN_ROLE_SPECS
from vwell_pbx.api.roles import RoleBook
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.events import EventBus, EventFilter, Subscriber
from vwell_pbx.pbx.channels import ChannelRegistry
from vwell_pbx.protocol import NEED_DATA, AmiParser, Message
from vwell_pbx.web.server import _publisher

CHUNK = 65536


def assemble(
    operators: int,
    catch_all: int,
    *,
    calls: bool,
    fixed: bool = False,
    sinks: bool = True,
    handlers: bool = True,
) -> tuple[AmiClient, list[Subscriber], EventBus, LiveCalls | None]:
    """The event path of one PBX link, as ``serving()`` wires it; ``fixed``: a fixed
    run id and a clock that ticks 1 ms per reading (same input, same frames); without
    ``sinks`` the tracker's call events go nowhere (what they cost on their way to the
    queues is then left out); without ``handlers`` the tracker's event handlers do
    nothing (see ``idle_handlers``)."""
    bus = EventBus(run_id="bench") if fixed else EventBus()
    client = AmiClient(AmiSettings(host="127.0.0.1", port=5038, username="b", secret="b"))
    client.add_listener(_publisher(bus, None))
    channels = ChannelRegistry()
    client.add_listener(channels.observe, events=ChannelRegistry.EVENTS)
    live = None
    if calls:
        tracker = CallTracker(pbx="office")
        if not handlers:
            idle_handlers(tracker)
        if fixed:
            ticks = itertools.count()
            live = LiveCalls(client, tracker, clock=lambda: 1.7e9 + next(ticks) / 1000)
        else:
            live = LiveCalls(client, tracker)
        history: collections.deque[Any] = collections.deque(maxlen=10_000)

        def store_and_publish(event: CallEvent) -> None:
            name = event.name
            if name == "call.ended":
                history.append(event)
            if bus.interested(name):
                bus.publish(call_bus_event(event))

        if sinks:
            live.add_sink(store_and_publish)
        live.start()
    guards = EventGuards(RoleBook(dict(BUILTIN_ROLE_SPECS)))
    subscribers: list[Subscriber] = []
    for index in range(operators):
        subscriber = Subscriber(max_queue=10**9, max_subscriptions=10)
        subscriber.guard = guards.guard_for(Principal("op", "Operator", "operator"))
        # As onEvent builds it: the event's name is the name, the rest field filters.
        flt = EventFilter.from_spec("Newchannel", {"CallerIDNum": operator_number(index)})
        bus.subscribe(subscriber, flt)
        subscribers.append(subscriber)
    for _ in range(catch_all):
        subscriber = Subscriber(max_queue=10**9, max_subscriptions=10)
        subscriber.guard = guards.guard_for(Principal("sup", "Supervisor", "supervisor"))
        bus.subscribe(subscriber, EventFilter.from_spec("*"))
        subscribers.append(subscriber)
    return client, subscribers, bus, live


def idle_handlers(tracker: CallTracker) -> None:
    """Make every event handler of ``tracker`` one that does nothing (private tables):
    each event the tracker reads still gets to a handler with its fields, and no
    further, which is the tracker's fixed cost per event (``--no-call-handlers``)."""

    def nothing(fields: Mapping[str, str]) -> None:
        """A handler that does nothing."""

    tracker._routes_folded = {
        name: (nothing, reader) for name, (_, reader) in tracker._routes_folded.items()
    }
    tracker._dispatch = {}  # observe learns the names again, through the routes above


def chunks_of(feed_name: str, events: int, operators: int, catch_all: int) -> list[bytes]:
    """The feed's first ``events`` events as AMI bytes, cut into socket-sized reads."""
    feed = make_feed(feed_name, operators=operators, catch_all=catch_all)
    heads, _ = feed.take(events)
    stamp = b"1700000000.000000\r\n\r\n"
    data = stamp.join(heads) + stamp
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


class CollectorWatch:
    """The garbage collector's passes while attached: count and seconds per generation."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += took
        self.longest = max(self.longest, took)

    def summary(self, events: int) -> str:
        per = 100_000 / events
        passes = "/".join(f"{count * per:.0f}" for count in self.counts)
        return (
            f"collector per 100k events: {passes} passes (gen 0/1/2), "
            f"{sum(self.seconds) * 1e3 * per:.1f} ms, longest {self.longest * 1e3:.1f} ms"
        )


def run_once(
    args: argparse.Namespace,
    chunks: list[bytes],
    *,
    digest: bool = False,
    watch: CollectorWatch | None = None,
) -> tuple[float, int, int, str]:
    """CPU seconds for the first ``args.events`` events of ``chunks``, messages read,
    deliveries, and with ``digest`` the SHA-256 of what each subscriber was given;
    ``watch`` sees the collector's passes during the timed part."""

    async def body() -> tuple[float, int, int, str]:
        client, subscribers, bus, live = assemble(
            args.operators,
            args.catch_all,
            calls=not args.calls_off,
            fixed=digest,
            sinks=not args.no_call_sinks,
            # (getattr: tools that build ``args`` by hand may not set it)
            handlers=not getattr(args, "no_call_handlers", False),
        )
        parser = AmiParser(expect_greeting=False)
        dispatch = client._dispatch
        limit = args.events
        messages = 0
        queues = [s._queue for s in subscribers]
        hashes = [hashlib.sha256() for _ in queues] if digest else []
        if watch is not None:
            gc.callbacks.append(watch)
        started = time.process_time()
        for chunk in chunks:
            parser.receive_data(chunk)
            while messages < limit:
                item = parser.next_event()
                if item is NEED_DATA:
                    break
                assert isinstance(item, Message)
                dispatch(item)
                messages += 1
            if digest:
                for queue, hashed in zip(queues, hashes, strict=True):
                    for frame in queue:
                        hashed.update(b"%d:" % len(frame) + frame)
            for queue in queues:
                queue.clear()
            if messages >= limit:
                break
        elapsed = time.process_time() - started
        if watch is not None:
            gc.callbacks.remove(watch)
        if live is not None:
            await live.aclose()
        total = hashlib.sha256(b"".join(hashed.digest() for hashed in hashes)).hexdigest()
        return elapsed, messages, bus.stats.delivered, total if digest else ""

    return asyncio.run(body())


def _tracker_mode(args: argparse.Namespace) -> str:
    if args.calls_off:
        return "off"
    if args.no_call_sinks:
        return "on, no call sinks"
    return "on, handlers idle" if args.no_call_handlers else "on"


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed", default="ast20", choices=FEEDS)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--operators", type=int, default=1000)
    parser.add_argument("--catch-all", type=int, default=2)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--calls-off", action="store_true", help="no call tracker")
    modes.add_argument(
        "--no-call-sinks", action="store_true", help="the tracker, its call events dropped"
    )
    modes.add_argument(
        "--no-call-handlers",
        action="store_true",
        help="the tracker with handlers that do nothing: its fixed cost per event",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile's top 30 instead")
    parser.add_argument(
        "--digest", action="store_true", help="a digest of every frame delivered, once"
    )
    parser.add_argument(
        "--prepare", type=int, default=0, help="build the feed for this many events (at least)"
    )
    args = parser.parse_args()
    chunks = chunks_of(args.feed, max(args.events, args.prepare), args.operators, args.catch_all)
    print(
        f"python {sys.version.split()[0]}, cores={os.cpu_count()}, feed={args.feed}, "
        f"{args.operators}+{args.catch_all} subscribers, tracker "
        f"{_tracker_mode(args)}",
        flush=True,
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_once(args, chunks)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        return
    if args.digest:
        _, messages, delivered, digest = run_once(args, chunks, digest=True)
        print(f"digest {digest}: {messages} events, {delivered} deliveries", flush=True)
        return
    watches = [CollectorWatch() for _ in range(args.repeat)]
    results = [run_once(args, chunks, watch=watch) for watch in watches]
    seconds, messages, delivered, _ = min(results)
    best = watches[results.index(min(results))]
    print(
        f"best of {args.repeat}: {seconds * 1e6 / messages:.2f} us/event "
        f"({messages / seconds:,.0f} events/s), {delivered / messages:.2f} deliveries/event; "
        f"all runs: " + ", ".join(f"{r[0] * 1e6 / r[1]:.2f}" for r in results),
        flush=True,
    )
    print(f"best run's {best.summary(messages)}", flush=True)


if __name__ == "__main__":
    main()
