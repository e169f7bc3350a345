"""Helpers for the browser tests: chromium, fixed free ports, a restartable server."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
from pathlib import Path

import pytest

from vwell_pbx.config import AppConfig
from vwell_pbx.web.server import RunningServer, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def require_browser() -> None:
    """Skip the calling test module unless Playwright and chromium are both installed."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip(
            "the playwright package is not installed (pip install -e '.[dev]')",
            allow_module_level=True,
        )
    if chromium_path() is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium; test.sh installs "
            "it when run as root)",
            allow_module_level=True,
        )


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RestartableServer:
    """The real server on fixed ports, so it can be stopped and started again there."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._stack: contextlib.AsyncExitStack | None = None
        self.running: RunningServer | None = None

    @property
    def http_url(self) -> str:
        """http://127.0.0.1:PORT (the same across restarts)."""
        return f"http://{self.config.server.http}"

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:PORT/api on the WebSocket port (the same across restarts)."""
        return f"ws://{self.config.server.ws}/api"

    async def start(self) -> RunningServer:
        """Start serving (waits for the PBX login)."""
        assert self._stack is None, "already running"
        stack = contextlib.AsyncExitStack()
        self.running = await stack.enter_async_context(serving(self.config, wait_for_pbx=5))
        self._stack = stack
        return self.running

    async def stop(self) -> None:
        """Stop: WebSockets get a close frame, the ports are released."""
        stack, self._stack, self.running = self._stack, None, None
        if stack is not None:
            await stack.aclose()
