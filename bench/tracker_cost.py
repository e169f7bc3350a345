"""What the call tracker costs the whole server: CPU per PBX event, tracker on against off.

    PYTHONPATH=.:src .venv/bin/python -m bench.tracker_cost [--feeds ast20 yeastar] \\
        [--rate 8000] [--seconds 5] [--rounds 5] [--operators 1000] [--catch-all 2] [--src DIR]

The fan-out ladder of ``bench.sh`` answers "how many events a second", one step (10-25 %)
at a time, and on a shared machine one run of it can flip the tracker's verdict (see
docs/performance.md). This answers the same question finer: two servers, one with the
call tracker (``[calls] enabled = true``, the default) and its baseline without it, each
with its own clients (``--operators`` filtered operators plus ``--catch-all``
supervisors, as the fan-out case), get the same events of a feed at the same fixed rate,
in turn, for several rounds (off, on, then on, off, ...: a drifting machine favours
neither). Each step counts the server's CPU seconds (``/proc/PID/stat``) from the first
event sent to the last delivery, divided by the events sent: µs of server CPU per PBX
event, everything included (parsing, the bus, the WebSocket writes, the tracker, its
call events on the wire and in the call history).

The server is CPU-bound near its top rate, so the top rate with the tracker is about the
baseline's times off/on of these figures: "at most 10 % below off" is on/off at most 1.11.
Pick a rate both servers take with room to spare (every step must pass: p99 < 50 ms,
nothing lost); near saturation a busier server reads bigger batches and its CPU per
event falls. The report prints every step, the medians, the ratio and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.__main__ import Settings, Target, _attach, _settle, fanout_step
from bench.common import CORES, LOAD_CPU, cpu_model, pin_self, raise_fd_limit, snapshot_source
from bench.feeder import AmiFeeder
from bench.feeds import FEEDS, make_feed

Row = dict[str, Any]

#: The two servers: label -> does it track calls.
VARIANTS = (("tracker off", False), ("tracker on", True))


def per_event_us(row: Row) -> float:
    """µs of server CPU per event sent in one step."""
    return 1e6 * float(row["srv_cpu_s"]) / max(1, int(row["sent"]))


async def measure_feed(feeder: AmiFeeder, feed_name: str, args: argparse.Namespace) -> Row:
    """Every round's steps on one feed against both servers; the summary row."""
    settings = Settings(quick=False, feeds=(feed_name,))
    settings.step_seconds = args.seconds
    label = f"{feed_name} {args.operators}+{args.catch_all}"
    async with contextlib.AsyncExitStack() as stack:
        targets: dict[str, Target] = {}
        for name, calls in VARIANTS:
            feed = make_feed(feed_name, operators=args.operators, catch_all=args.catch_all)
            target = await _attach(
                feeder,
                module="bench._server",
                args={"ami_user": name.replace(" ", "-"), "calls": calls},
                stack=stack,
                name=name,
                feed=feed,
            )
            await target.connect(args.operators, args.catch_all)
            stack.callback(target.close)
            await feeder.blast(target.feed, 500, 1.0, only=target.session)  # warm up
            await _settle(target, feeder)
            targets[name] = target
        steps: dict[str, list[Row]] = {name: [] for name, _ in VARIANTS}
        for round_no in range(args.rounds):
            order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
            for name in order:
                target = targets[name]
                row = await fanout_step(
                    target, feeder=feeder, rate=args.rate, label=label, settings=settings
                )
                await _settle(target, feeder)
                steps[name].append(row)
    off, on = (steps[name] for name, _ in VARIANTS)
    off_us = statistics.median(per_event_us(row) for row in off)
    on_us = statistics.median(per_event_us(row) for row in on)
    failed = sum(1 for rows in steps.values() for row in rows if not row["ok"])
    return {
        "case": label,
        "rate_in": args.rate,
        "off_us/event": off_us,
        "on_us/event": on_us,
        "on/off": on_us / off_us,
        "implied_top_rate_ratio": off_us / on_us,
        "off_steps_us": ", ".join(f"{per_event_us(row):.1f}" for row in off),
        "on_steps_us": ", ".join(f"{per_event_us(row):.1f}" for row in on),
        "others_cpu%_max": max(row["others_cpu%"] for rows in steps.values() for row in rows),
        "failed_steps": failed,
    }


async def main(args: argparse.Namespace) -> list[Row]:
    raise_fd_limit()
    pin_self(LOAD_CPU)
    print(f"cores={CORES}, cpu={cpu_model()}", flush=True)
    summary: list[Row] = []
    async with AmiFeeder() as feeder:
        for feed_name in args.feeds:
            summary.append(await measure_feed(feeder, feed_name, args))
    print(
        "\n| case | rate | off µs/event | on µs/event | on/off | implied top-rate ratio "
        "| off steps | on steps | others CPU max | failed steps |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for row in summary:
        print(
            f"| {row['case']} | {row['rate_in']:,}/s | {row['off_us/event']:.1f} "
            f"| {row['on_us/event']:.1f} | {row['on/off']:.3f} "
            f"| {row['implied_top_rate_ratio']:.3f} | {row['off_steps_us']} "
            f"| {row['on_steps_us']} | {row['others_cpu%_max']:.0f} % | {row['failed_steps']} |",
            flush=True,
        )
    return summary


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", nargs="+", choices=FEEDS, default=["ast20", "yeastar"])
    parser.add_argument("--operators", type=int, default=1000)
    parser.add_argument("--catch-all", type=int, default=2)
    parser.add_argument("--rate", type=int, default=8_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--src", type=Path, help="import vwell_pbx from this src/ folder (default: ours)"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.rounds <= 0:
        parser.error("--rate, --seconds and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="vwell-tracker-cost-") as tmp:
        snapshot_source(Path(tmp), args.src)  # edits during the run change nothing
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
