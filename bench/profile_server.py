"""Profile the whole server under a steady fan-out or broadcast load with py-spy:

    PYTHONPATH=.:src .venv/bin/python -m bench.profile_server --feed ast20 \\
        --operators 1000 --catch-all 2 --rate 10000 --seconds 8 [--calls-off] \\
        [--out /tmp/profile.txt]

Starts the bench server (``bench._server``) and the AMI feeder as ``bench.sh`` does
(server pinned to CPU 1, this process to CPU 0), subscribes the clients, feeds a fixed
rate and meanwhile runs ``py-spy record --format raw`` on the server process. Prints
the step's figures (as a ``bench.sh`` step) and the profile's top functions by own
samples and by inclusive samples; the raw folded stacks go to ``--out``. Needs
``py-spy`` on the PATH or in the venv (``pip install py-spy``; not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from bench.__main__ import Settings, Target, _attach, _settle, fanout_step
from bench.common import LOAD_CPU, pin_self, raise_fd_limit, snapshot_source
from bench.feeder import AmiFeeder
from bench.feeds import FEEDS, make_feed


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy not found: pip install py-spy into the venv")
    return found


#: Leaf frames of a thread that waits (py-spy counts them in its default, blocking mode):
#: the thread pool's idle workers, the event loop in ``select``.
IDLE_LEAVES = frozenset({"_worker (thread.py)", "select (selectors.py)"})


def _short(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> ``name (file.py)``: samples of one function
    at different lines count together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def summarise(raw: Path, top: int) -> None:
    """Print the top functions by own and by inclusive share of the samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue  # a frame name that spans lines (a module's docstring)
        frames = [_short(frame) for frame in stack.split(";")]
        if frames[-1] in IDLE_LEAVES:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"\n{total} samples (idle threads left out)")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"\nTop {top} by {title} samples:")
        for name, count in counter.most_common(top):
            print(f"  {100.0 * count / total:5.1f} %  {name}")


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    pin_self(LOAD_CPU)
    settings = Settings(quick=False, feeds=(args.feed,))
    settings.step_seconds = args.seconds
    with tempfile.TemporaryDirectory(prefix="vwell-profile-") as tmp:
        snapshot_source(Path(tmp), args.src)
        async with AmiFeeder() as feeder, contextlib.AsyncExitStack() as stack:
            feed = make_feed(args.feed, operators=args.operators, catch_all=args.catch_all)
            target: Target = await _attach(
                feeder,
                module="bench._server",
                args={"ami_user": "profiled", "calls": not args.calls_off},
                stack=stack,
                name="server",
                feed=feed,
            )
            await target.connect(args.operators, args.catch_all)
            await feeder.blast(target.feed, 500, 1.0, only=target.session)
            await _settle(target, feeder)
            spy = (
                None
                if args.no_profile
                else await asyncio.create_subprocess_exec(
                    _py_spy(),
                    "record",
                    *(["--nonblocking"] if args.nonblocking else []),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.sample_rate),
                    "--duration",
                    str(int(args.seconds)),
                    "--output",
                    str(args.out),
                    "--pid",
                    str(target.proc.pid),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
            label = f"{args.feed} {args.operators}+{args.catch_all}"
            await fanout_step(target, feeder=feeder, rate=args.rate, label=label, settings=settings)
            if spy is not None:
                await asyncio.wait_for(spy.wait(), args.seconds + 30)
            target.close()
    if not args.no_profile:
        summarise(args.out, args.top)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed", choices=FEEDS, default="ast20")
    parser.add_argument("--operators", type=int, default=1000)
    parser.add_argument("--catch-all", type=int, default=2)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--calls-off", action="store_true")
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="do not pause the server per sample (cheaper, but stacks come out garbled)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="only the step's figures, no py-spy"
    )
    parser.add_argument(
        "--src", type=Path, help="import vwell_pbx from this src/ folder (default: ours)"
    )
    parser.add_argument("--sample-rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vwell-profile.txt"))
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
