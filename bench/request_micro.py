"""Micro benchmark of the server's request path in one process: CPU µs per ``send`` Ping.

    PYTHONPATH=.:src .venv/bin/python -m bench.request_micro [--requests 20000]
        [--concurrency 1,50] [--repeat 3] [--part request|ami|auth|decode] [--profile]
        [--src DIR] [--uvloop]

What the server does for one WebSocket request, without the WebSocket framing: the
message's bytes are decoded as the WebSocket reader decodes them (``decode_json`` with
the nesting bound), then the real ``Api.handle`` of a server started by ``serving()``
answers it: the envelope, the credentials (sent with every request, as the original's
pages send them: a cache hit after the first), the role, pydantic validation, the rate
limit, and ``send`` with ``callbackAwait``, a Ping round trip through the real
``AmiClient`` to the PBX simulator over loopback TCP.

The simulator runs in a child process, so its CPU is not counted; the figure is the
CPU time of this process (``time.process_time``: every thread, the SQLite worker's
included) divided by the requests answered, which is what the machine being shared
disturbs least. ``--concurrency`` runs that many request loops at once on the loop
(50: many actions pending together, as with 50 busy sockets). Each run is preceded by
a warm-up. ``--part`` measures one piece of the path alone (see
``part_of_request``). ``--src`` imports ``vwell_pbx`` from another source tree (a copy of an
older ``src/``, for before/after figures). ``--uvloop`` runs this process (the server)
under uvloop's event loop (``pip install uvloop`` first; the simulator keeps asyncio's).
Nothing is asserted; the figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
LOGIN = ("op", "Operator", "op-pw", "operator")
READY_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def simulator() -> AsyncIterator[int]:
    """The PBX simulator in a child process (plain Asterisk, no GSM); yields its port."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vwell_pbx.simulator",
        "--port",
        "0",
        "--no-gsm",
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        # "PBX simulator (asterisk) listening on 127.0.0.1:PORT"
        yield int(line.decode().rsplit(":", 1)[1])
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), READY_TIMEOUT)


def make_config(folder: Path, pbx_port: int) -> Any:
    """The server's configuration: loopback, a fresh SQLite database, limits raised."""
    from vwell_pbx.config import AppConfig  # noqa: PLC0415  (after --src took effect)

    return AppConfig.model_validate(
        {
            "server": {"http": "127.0.0.1:0", "ws": "127.0.0.1:0", "log_level": "warning"},
            "limits": {"requests_per_second": 1e9, "burst": 1_000_000_000},
            "storage": {"url": f"sqlite:{folder / 'vwell.sqlite3'}"},
            "pbx": [
                {
                    "name": "office",
                    "host": "127.0.0.1",
                    "port": pbx_port,
                    "username": "admin",
                    "secret": "admin",
                    "auth": "plain",
                    "ping_interval": 20,
                    "connect_timeout": 5,
                    "reconnect_max": 1,
                }
            ],
            "sms": {"interval_seconds": 0},
        }
    )


def ping_message() -> bytes:
    """One ``send`` Ping with credentials, as a WebSocket client sends it."""
    from vwell_pbx.users import sha1_of_password  # noqa: PLC0415

    login, login2, password, _role = LOGIN
    envelope = {
        "method": "send",
        "argument": {
            "login": login,
            "login2": login2,
            "sha1": sha1_of_password(password),
            "reqId": 1,
            "fields": {"Action": "Ping"},
            "callbackAwait": True,
        },
    }
    return orjson.dumps(envelope)


async def measure(
    answer_one: Callable[[], Awaitable[dict[str, Any]]], requests: int, concurrency: int
) -> float:
    """CPU seconds of this process to answer ``requests`` requests, ``concurrency`` at once."""
    per_loop = requests // concurrency

    async def loop() -> None:
        for _ in range(per_loop):
            response = await answer_one()
            if response.get("err") is not None:
                raise RuntimeError(f"request failed: {response}")

    started = time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return time.process_time() - started


def part_of_request(
    part: str, server: Any, data: bytes, max_depth: int
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """One piece of the request path alone, on the same server, for a less noisy figure
    of what a change to that piece bought: ``ami`` (``AmiClient.send_action`` Ping),
    ``auth`` (``Authenticator.authenticate``, a cache hit), ``decode`` (``decode_json``
    and the ``send`` schema's validation)."""
    from vwell_pbx.api.envelope import validate_arguments  # noqa: PLC0415
    from vwell_pbx.api.forms import decode_json  # noqa: PLC0415
    from vwell_pbx.api.registry import METHODS  # noqa: PLC0415

    argument = orjson.loads(data)["argument"]
    if part == "ami":
        client = server.clients["office"]

        async def ami() -> dict[str, Any]:
            await client.send_action([("Action", "Ping")], timeout=10)
            return {"err": None}

        return ami
    if part == "auth":
        authenticator = server.api.authenticator
        login, login2, sha1 = argument["login"], argument["login2"], argument["sha1"]

        async def auth() -> dict[str, Any]:
            await authenticator.authenticate(login, login2, sha1, "127.0.0.1")
            return {"err": None}

        return auth
    schema = METHODS["send"].schema

    async def decode() -> dict[str, Any]:
        envelope = decode_json(data, max_depth=max_depth)
        assert isinstance(envelope, dict)
        validate_arguments(schema, envelope["argument"])
        return {"err": None}

    return decode


async def body(args: argparse.Namespace) -> list[tuple[int, list[float]]]:
    """Start the simulator and the server, then measure each concurrency ``--repeat`` times."""
    from vwell_pbx.api.forms import decode_json  # noqa: PLC0415
    from vwell_pbx.api.service import Session  # noqa: PLC0415
    from vwell_pbx.storage import open_storage  # noqa: PLC0415
    from vwell_pbx.users import UserDirectory, sha1_of_password  # noqa: PLC0415
    from vwell_pbx.web.server import serving  # noqa: PLC0415

    data = ping_message()
    results: list[tuple[int, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="vwell-reqmicro-") as tmp:
        async with simulator() as port:
            config = make_config(Path(tmp), port)
            async with open_storage(
                config.storage.resolved_url, config.storage.settings()
            ) as storage:
                login, login2, password, role = LOGIN
                await UserDirectory(storage.users).add(
                    login, login2, sha1_hex=sha1_of_password(password), role=role
                )
            max_depth = config.limits.json_max_depth
            async with serving(config, wait_for_pbx=10.0) as server:
                api = server.api
                session = Session(peer="127.0.0.1", transport="ws")

                async def answer_one() -> dict[str, Any]:
                    return await api.handle(decode_json(data, max_depth=max_depth), session)

                if args.part != "request":
                    answer_one = part_of_request(args.part, server, data, max_depth)

                await measure(answer_one, 500, 1)  # warm-up: the scrypt, caches, imports
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    await measure(answer_one, args.requests, max(args.concurrency))
                    profiler.disable()
                    stats = pstats.Stats(profiler)
                    stats.sort_stats("tottime").print_stats(30)
                    stats.sort_stats("cumulative").print_stats(50)
                    return []
                for concurrency in args.concurrency:
                    runs = []
                    for _ in range(args.repeat):
                        seconds = await measure(answer_one, args.requests, concurrency)
                        done = args.requests // concurrency * concurrency
                        runs.append(seconds * 1e6 / done)
                    results.append((concurrency, runs))
    return results


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 50],
        help="comma-separated: request loops at once, one row each",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--part",
        choices=("request", "ami", "auth", "decode"),
        default="request",
        help="the whole request (default) or one piece of it alone",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions instead")
    parser.add_argument("--src", type=Path, help="import vwell_pbx from this folder instead")
    parser.add_argument("--uvloop", action="store_true", help="run under uvloop's event loop")
    args = parser.parse_args()
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
    import vwell_pbx  # noqa: PLC0415

    print(
        f"python {sys.version.split()[0]}, cores={os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}, vwell_pbx from "
        f"{Path(vwell_pbx.__file__).parent.parent}, loop {'uvloop' if args.uvloop else 'asyncio'}",
        flush=True,
    )
    if args.uvloop:
        import uvloop  # noqa: PLC0415  (optional: only for this figure)

        results = uvloop.run(body(args))
    else:
        results = asyncio.run(body(args))
    for concurrency, runs in results:
        print(
            f"concurrency {concurrency}: median {statistics.median(runs):.1f} us/request "
            f"(runs: {', '.join(f'{r:.1f}' for r in runs)}; spread {max(runs) - min(runs):.1f})",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
