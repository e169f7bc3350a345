"""CPU instructions per event of the server's AMI event path, counted, not timed.

    PYTHONPATH=.:src .venv/bin/python -m bench.path_instructions [--feed ast20 ...]
        [--events 10000 20000] [--tracker both|all|on|off|floor|nosinks] [--src DIR]
        [--jobs 2]

Runs ``bench.path_micro`` (the event path in one process: AMI bytes, parser, the AMI
client's dispatch, the server's listeners, ``EventBus.publish`` to ``--operators``
filtered operators and ``--catch-all`` supervisors) under ``valgrind --tool=cachegrind
--cache-sim=no`` twice, over the feed's first ``A`` and first ``B`` events (``--events
A B``), with the feed's bytes built for ``B`` events in both, and prints the
difference of the two instruction counts divided by ``B - A``: the instructions per
event of events ``A`` to ``B``, with Python's start-up, the imports, building the
feed and assembling the subscribers left out. Unlike CPU time this does not depend on
what else the machine is doing: the same source gives the same count (within a few
instructions per event; ``PYTHONHASHSEED`` is fixed).

``--tracker``: ``off`` (no call tracker), ``on`` (the tracker and its call events
published), ``nosinks`` (the tracker, its call events dropped: ``on`` minus ``nosinks``
is what the call events cost on their way to the queues), ``floor`` (the tracker with
handlers that do nothing: ``floor`` minus ``off`` is what getting each event it reads
to its handler costs, ``nosinks`` minus ``floor`` the handlers' work); ``both`` is off
and on, ``all`` the four.

``--src DIR`` imports the package from another checkout's ``src`` (the "before" of a
comparison); the bench's own code comes from this checkout. Each count runs Python
under valgrind, about 30-50 times slower than natively: the default (``ast20``, tracker
on and off) takes a few minutes. Nothing is asserted; the figures are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.feeds import FEEDS

_ROOT = Path(__file__).resolve().parent.parent
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
#: ``--tracker`` modes: the path_micro flags of each.
_MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "off": ("--calls-off",),
    "floor": ("--no-call-handlers",),
    "nosinks": ("--no-call-sinks",),
    "on": (),
}


def count_instructions(
    *, src: Path, feed: str, events: int, prepare: int, tracker: str, extra: list[str]
) -> int:
    """The instructions ``path_micro`` executes over the feed's first ``events`` events."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.path_micro",
        "--feed",
        feed,
        "--events",
        str(events),
        "--prepare",
        str(prepare),
        "--repeat",
        "1",
        *extra,
    ]
    command.extend(_MODE_FLAGS[tracker])
    env = dict(os.environ, PYTHONPATH=f"{_ROOT}{os.pathsep}{src}", PYTHONHASHSEED="0")
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        command.insert(1, f"--log-file={log.name}")
        subprocess.run(command, cwd=_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        found = _REFS.search(log.read())
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's log of {command}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    """Parse arguments, count, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed", nargs="+", default=["ast20"], choices=FEEDS)
    parser.add_argument("--events", nargs=2, type=int, default=[10_000, 20_000])
    parser.add_argument(
        "--tracker", choices=("both", "all", "on", "off", "floor", "nosinks"), default="both"
    )
    parser.add_argument("--operators", type=int, default=1000)
    parser.add_argument("--catch-all", type=int, default=2)
    parser.add_argument("--src", type=Path, default=_ROOT / "src", help="the package's src")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at once")
    args = parser.parse_args()
    low, high = sorted(args.events)
    if low == high:
        parser.error("--events needs two different counts")
    trackers = {"both": ("off", "on"), "all": ("off", "floor", "nosinks", "on")}.get(
        args.tracker, (args.tracker,)
    )
    extra = ["--operators", str(args.operators), "--catch-all", str(args.catch_all)]
    runs = [
        (feed, tracker, events)
        for feed in args.feed
        for tracker in trackers
        for events in (low, high)
    ]

    def run(item: tuple[str, str, int]) -> int:
        feed, tracker, events = item
        return count_instructions(
            src=args.src.resolve(),
            feed=feed,
            events=events,
            prepare=high,
            tracker=tracker,
            extra=extra,
        )

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        counts = dict(zip(runs, pool.map(run, runs), strict=True))
    print(
        f"src={args.src}, python {sys.version.split()[0]}, "
        f"{args.operators}+{args.catch_all} subscribers, events {low:,}-{high:,}"
    )
    print()
    print("| feed | tracker | instructions per event | total at A | total at B |")
    print("|---|---|---|---|---|")
    for feed in args.feed:
        for tracker in trackers:
            at_low, at_high = counts[(feed, tracker, low)], counts[(feed, tracker, high)]
            per_event = (at_high - at_low) / (high - low)
            print(f"| {feed} | {tracker} | {per_event:,.0f} | {at_low:,} | {at_high:,} |")


if __name__ == "__main__":
    main()
