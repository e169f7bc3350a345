"""Runs the real server for a benchmark, in its own process:

    python -m bench._server '{"pbx_port": 5038, "ws_queue_size": 1000, "uvloop": false,
                              "calls": true}'

Builds a configuration (HTTP and WebSocket on free loopback ports, the PBX at the
feeder with plain AMI auth, a fresh user database in a temporary folder with the bench
users, limits raised so that rate limits and the per-address WebSocket cap do not
stop the load; ``calls: false`` turns the call tracker off), waits for the AMI login,
then prints one JSON line (``http_url``, ``ws_url``, ``serving_s``: seconds spent
inside ``serving()``) and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import USERS, announce
from vwell_pbx.config import AppConfig
from vwell_pbx.storage import open_storage
from vwell_pbx.users import UserDirectory, sha1_of_password
from vwell_pbx.web import server as _server_module
from vwell_pbx.web.logs import configure_logging
from vwell_pbx.web.server import serving


def make_config(folder: Path, args: dict[str, Any]) -> AppConfig:
    """The benchmark configuration (see the module docstring)."""
    return AppConfig.model_validate(
        {
            "server": {"http": "127.0.0.1:0", "ws": "127.0.0.1:0", "log_level": "warning"},
            "limits": {
                "requests_per_second": 1e9,
                "burst": 1_000_000_000,
                "max_ws_per_address": 20_000,
                "ws_queue_size": int(args.get("ws_queue_size", 1000)),
            },
            "users": {"database": str(folder / "users.sqlite3")},
            "pbx": [
                {
                    "name": "office",
                    "host": "127.0.0.1",
                    "port": int(args["pbx_port"]),
                    # Distinct per process, so the feeder can tell whose connection
                    # came back after a lost one (bench.__main__.Target.rebind).
                    "username": str(args.get("ami_user", "bench")),
                    "secret": "bench",
                    "auth": "plain",
                    "ping_interval": 20,
                    "connect_timeout": 5,
                    "reconnect_max": 1,
                }
            ],
            "sms": {"interval_seconds": 0},
            "calls": {"enabled": bool(args.get("calls", True))},
        }
    )


async def add_users(config: AppConfig) -> None:
    """Create the bench accounts (scrypt: a few hundred ms, before the clock starts)."""
    async with open_storage(config.storage.resolved_url, config.storage.settings()) as storage:
        directory = UserDirectory(storage.users)
        for login, login2, password, role in USERS:
            await directory.add(login, login2, sha1_hex=sha1_of_password(password), role=role)


async def main(args: dict[str, Any]) -> None:
    """Serve until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="vwell-bench-") as tmp:
        config = make_config(Path(tmp), args)
        await add_users(config)
        configure_logging(config.server.log_level, config.server.log_format)
        started = time.perf_counter()
        async with serving(config, wait_for_pbx=10.0) as server:
            serving_s = time.perf_counter() - started
            # As `vwell-pbx serve` does (a --compare-src checkout may predate it).
            freeze = getattr(_server_module, "freeze_startup_heap", None)
            if freeze is not None and not args.get("no_freeze"):
                freeze()
            announce(
                {
                    "http_url": server.http_url,
                    "ws_url": server.ws_url,
                    "serving_s": serving_s,
                    "loop": type(loop).__module__,
                }
            )
            await stop.wait()
        with contextlib.suppress(Exception):
            sys.stdout.flush()


def run() -> None:
    """Entry point: JSON arguments in argv[1]."""
    args: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if args.get("uvloop"):
        import uvloop  # noqa: PLC0415  (optional, only for the uvloop row)

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    run()
