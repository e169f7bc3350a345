"""What writing ended calls costs the server's event loop: ``CallHistoryWriter`` fed at
a steady rate into a temporary SQLite file (one process, no server, no network).

    PYTHONPATH=.:src .venv/bin/python -m bench.history_writer [--calls 10000] [--rate 200]
        [--flush-seconds 0 0.5] [--batch-size 200] [--tick SECONDS] [--repeat 1]

The feeding task offers ``--calls`` distinct ended calls (``CallSnapshot``s, converted by
the server's own ``record_of``) at ``--rate`` calls per second, as the call tracker's
``call.ended`` sink does, waking every ``--tick`` s (default ``1 / rate``, at least 1 ms)
to offer the calls that are due; then it waits until the writer has written everything.
A longer tick offers several calls per wake-up, so that the subtracted feeding loop
(about 150 µs of CPU per timed wake-up on the test VM, varying by ±15 µs from round to
round) no longer drowns the writer's own cost. Each
``--flush-seconds`` value is one writer configuration (``flush_interval``; omitted: the
writer's default), each in a fresh file. Columns:

- ``loop µs/call``: CPU time of the event loop's thread (``time.thread_time``) from
  the first offer to the last call written, minus the same feeding loop offering to
  nothing (the ``feed only`` row), per call: what the writer adds to the thread that
  also reads the PBX and serves every client;
- ``writer thread µs/call``: CPU time of the SQLite writer connection's thread
  (``time.pthread_getcpuclockid``), which runs every statement of the history's
  transactions; nothing to subtract (the feeding loop never uses it). On a server
  running on one core this time is taken from the event loop's core as well, and each
  job is a hand-off of the GIL between the two threads;
- ``process µs/call``: the same as ``loop µs/call`` for the whole process
  (``time.process_time``: the loop, the writer thread and the rest), the feeding loop
  subtracted: the figure to cut;
- ``jobs/call``: jobs sent to the SQLite connections (``Database.statements``:
  ``BEGIN``, each statement, ``COMMIT``) per call, each a round trip between the loop
  and a connection's thread;
- ``calls/tx``: calls per transaction (the writer's batches).

CPU time is the figure least disturbed when other work shares the machine; still, run
it more than once (``--repeat``) and read the spread. Nothing here asserts anything;
the figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import print_table
from vwell_pbx.api.calls import record_of
from vwell_pbx.calls import CallSnapshot, Transfer
from vwell_pbx.storage import CallHistoryWriter, StorageSettings, StorageUrl, open_storage

#: An answered inbound call, ended after a blind transfer (the shape the server stores).
TEMPLATE = CallSnapshot(
    call_id="1.1",
    pbx="office",
    status="ended",
    direction="inbound",
    from_number="89787342741",
    from_name=None,
    to_number="269",
    to_name="Reception",
    extension="269",
    trunk="YSGSM/11",
    did=None,
    started_at="2023-11-14T22:13:20.000Z",
    answered_at="2023-11-14T22:13:24.000Z",
    ended_at="2023-11-14T22:13:30.500Z",
    ring_seconds=4.0,
    talk_seconds=6.5,
    end_reason="completed",
    on_hold=False,
    transfers=(Transfer(type="blind", by="269", to="700", at="2023-11-14T22:13:29.000Z"),),
    channels=("YSGSM/11-1", "SIP/269-0000153c", "SIP/700-0000153d"),
    originated=False,
    action_id=None,
    extensions=frozenset({"269", "700"}),
)

SETTINGS = StorageSettings(queue_size=1024)


def snapshots(count: int) -> list[CallSnapshot]:
    """``count`` distinct ended calls (own ids, one second apart)."""
    calls = []
    for index in range(count):
        stamp = datetime.fromtimestamp(1_700_000_000 + index, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        calls.append(
            dataclasses.replace(
                TEMPLATE,
                call_id=f"1700000000.{index}",
                started_at=f"{stamp}.000Z",
                ended_at=f"{stamp}.500Z",
            )
        )
    return calls


def thread_clock(prefix: str) -> Callable[[], float]:
    """The CPU clock (seconds) of the one running thread whose name starts with
    ``prefix``."""
    found = [t for t in threading.enumerate() if t.name.startswith(prefix)]
    if len(found) != 1 or found[0].ident is None:
        raise LookupError(f"expected one thread named {prefix!r}..., found {len(found)}")
    clock = time.pthread_getcpuclockid(found[0].ident)
    return lambda: time.clock_gettime(clock)


async def _feed(offer: Any, calls: list[CallSnapshot], rate: float, tick: float | None) -> None:
    """Offer ``calls`` at ``rate`` per second, as they come due, waking every ``tick`` s."""
    loop = asyncio.get_running_loop()
    tick = max(1.0 / rate if tick is None else tick, 0.001)
    start = loop.time()
    sent = 0
    while sent < len(calls):
        due = min(len(calls), int((loop.time() - start) * rate) + 1)
        while sent < due:
            offer(calls[sent])
            sent += 1
        await asyncio.sleep(tick)


async def feed_only(calls: list[CallSnapshot], rate: float, tick: float | None) -> dict[str, Any]:
    """The feeding loop alone (offers dropped): the baseline subtracted from each row."""
    kept: list[CallSnapshot] = []
    thread0, process0 = time.thread_time(), time.process_time()
    await _feed(kept.append, calls, rate, tick)
    return {
        "thread": time.thread_time() - thread0,
        "process": time.process_time() - process0,
    }


async def writing(
    calls: list[CallSnapshot],
    rate: float,
    flush: float | None,
    batch_size: int,
    tick: float | None,
) -> dict[str, Any]:
    """Feed ``calls`` to a writer on a fresh SQLite file; its costs and counters."""
    with tempfile.TemporaryDirectory(prefix="vwell-history-bench-") as folder:
        url = StorageUrl.sqlite(Path(folder) / "calls.sqlite3")
        async with open_storage(url, SETTINGS) as storage:
            options: dict[str, Any] = {"batch_size": batch_size}
            if flush is not None:
                options["flush_interval"] = flush
            writer = CallHistoryWriter(storage.calls, record_of, **options)
            transactions = 0
            add = storage.calls.add

            async def counted(records: Any) -> int:
                nonlocal transactions
                transactions += 1
                return await add(records)

            storage.calls.add = counted  # type: ignore[method-assign]
            writer_clock = thread_clock("sqlite writer")
            async with writer:
                jobs0 = storage.db.statements
                thread0, process0 = time.thread_time(), time.process_time()
                writer0 = writer_clock()
                wall0 = time.perf_counter()
                await _feed(writer.offer, calls, rate, tick)
                await writer.drained(120)
                thread = time.thread_time() - thread0
                writer_thread = writer_clock() - writer0
                process = time.process_time() - process0
                wall = time.perf_counter() - wall0
                jobs = storage.db.statements - jobs0
            stored = await storage.db.fetch_value("SELECT COUNT(*) FROM calls")
    return {
        "thread": thread,
        "writer thread": writer_thread,
        "process": process,
        "wall": wall,
        "jobs": jobs,
        "transactions": transactions,
        "stored": stored,
        "dropped": writer.dropped,
    }


def _row(name: str, result: dict[str, Any], base: dict[str, Any], count: int) -> dict[str, Any]:
    per_call = 1e6 / count
    return {
        "writer": name,
        "loop µs/call": (result["thread"] - base["thread"]) * per_call,
        "writer thread µs/call": result["writer thread"] * per_call,
        "process µs/call": (result["process"] - base["process"]) * per_call,
        "jobs/call": result["jobs"] / count,
        "calls/tx": count / max(result["transactions"], 1),
        "stored": result["stored"],
        "dropped": result["dropped"],
        "wall s": result["wall"],
    }


async def main(args: argparse.Namespace) -> None:
    calls = snapshots(args.calls)
    flushes: list[float | None] = list(args.flush_seconds) if args.flush_seconds else [None]
    rows: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        base = await feed_only(calls, args.rate, args.tick)
        rows.append(
            {
                "writer": f"feed only (round {round_ + 1})",
                "loop µs/call": base["thread"] * 1e6 / args.calls,
                "writer thread µs/call": 0,
                "process µs/call": base["process"] * 1e6 / args.calls,
                "jobs/call": 0,
                "calls/tx": 0,
                "stored": 0,
                "dropped": 0,
                "wall s": 0,
            }
        )
        for flush in flushes:
            result = await writing(calls, args.rate, flush, args.batch_size, args.tick)
            name = "default" if flush is None else f"flush {flush:g} s"
            rows.append(_row(name, result, base, args.calls))
    print(
        f"{args.calls} calls at {args.rate:g}/s, batch_size {args.batch_size}, "
        f"tick {'1/rate' if args.tick is None else f'{args.tick:g} s'}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    print_table("call history writer: cost per call (feed-only loop subtracted)", rows)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="calls offered per second")
    parser.add_argument("--flush-seconds", type=float, nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--tick", type=float, default=None, help="seconds between feeding wake-ups (1/rate)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
