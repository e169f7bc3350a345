"""``vwell-pbx simulate``: run the PBX simulator until interrupted.

``vwell-pbx simulate`` and ``python -m vwell_pbx.simulator`` both call :func:`run`
(:func:`main` is its async body); :func:`build_parser` / :func:`add_arguments` let
another parser reuse the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from vwell_pbx.simulator.gsm import SpanState
from vwell_pbx.simulator.server import PbxSimulator


def span_numbers(value: str) -> list[int]:
    """``"2,3"`` -> ``[2, 3]``; an argparse type, so a bad list is a usage error."""
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected span numbers such as 2,3, got {value!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5038, help="AMI port (0 = any free port)")
    parser.add_argument("--username", default="admin", help="AMI user name")
    parser.add_argument("--secret", default="admin", help="AMI secret")
    parser.add_argument(
        "--dialect",
        choices=("asterisk20", "yeastar"),
        default="asterisk20",
        help="which PBX to imitate",
    )
    parser.add_argument(
        "--command-format",
        choices=("output", "follows"),
        default=None,
        help="Command answer style (default: by dialect)",
    )
    parser.add_argument(
        "--traffic",
        type=float,
        default=0.0,
        metavar="RATE",
        help="background calls per second, a mix of every scenario (0 = none)",
    )
    parser.add_argument(
        "--spans",
        type=span_numbers,
        default=[2],
        metavar="N[,N...]",
        help="ready GSM span numbers (span = GSM port + 1)",
    )
    parser.add_argument("--no-gsm", action="store_true", help="plain Asterisk: no gsm commands")
    parser.add_argument("--call-hold", type=float, default=5.0, help="seconds a bridged call lasts")
    parser.add_argument(
        "--legacy-originate-events",
        action="store_true",
        help="report async Originates as Asterisk 1.4 did (OriginateSuccess/OriginateFailure)",
    )
    parser.add_argument(
        "--auth-failure-delay",
        type=float,
        default=1.0,
        help="seconds before a failed login is answered",
    )


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser used by ``python -m vwell_pbx.simulator``."""
    parser = argparse.ArgumentParser(
        prog="vwell-pbx simulate", description="Run a simulated Asterisk/Yeastar AMI server."
    )
    add_arguments(parser)
    return parser


def simulator_from_args(args: argparse.Namespace) -> PbxSimulator:
    """Make a simulator from parsed options."""
    spans = [SpanState(number=number) for number in args.spans]
    return PbxSimulator(
        host=args.host,
        port=args.port,
        username=args.username,
        secret=args.secret,
        dialect=args.dialect,
        command_format=args.command_format,
        spans=spans,
        gsm=not args.no_gsm,
        call_hold=args.call_hold,
        auth_failure_delay=args.auth_failure_delay,
        legacy_originate_events=args.legacy_originate_events,
    )


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with simulator_from_args(args) as pbx:
            print(f"PBX simulator ({args.dialect}) listening on {args.host}:{pbx.port}", flush=True)
            if args.traffic > 0:
                pbx.start_traffic(args.traffic)
            await stop.wait()
            await pbx.stop_traffic()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


async def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return await serve(args)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


def run(argv: Sequence[str] | None = None) -> int:
    """Synchronous entry point."""
    return asyncio.run(main(argv))
