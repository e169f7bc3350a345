"""Helpers for the browser tests: chromium, fixed free ports, a restartable server."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vwell_pbx.config import AppConfig
from vwell_pbx.web.server import RunningServer, serving

if TYPE_CHECKING:  # playwright may be missing: require_browser() skips the tests then
    from playwright.async_api import Page

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


# Runs in a page of the server (a secure context: 127.0.0.1): loads the client module as
# window.mod and keeps two helpers on window. The console's Content Security Policy
# forbids eval, so conditions are waited for with waitFor in the page rather than with
# page.wait_for_function. failure(what) runs a function (or awaits a promise) and answers
# the error it threw, or null. Answers the module's exports, sorted.
CLIENT_PAGE_SETUP = """
async () => {
  const mod = await import('/client.js');
  window.mod = mod;
  window.waitFor = (check, ms = 5000) => new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      let value;
      try { value = check(); } catch (e) { reject(e); return; }
      if (value) resolve(value);
      else if (Date.now() - started > ms) reject(new Error('waitFor timed out: ' + check));
      else setTimeout(tick, 10);
    };
    tick();
  });
  window.failure = async (what) => {
    try { await (typeof what === 'function' ? what() : what); } catch (e) {
      return {name: e.name, errCode: e.errCode, message: e.message,
              isPbxError: e instanceof mod.PbxError, response: e.response};
    }
    return null;
  };
  return Object.keys(mod).sort();
}
"""


async def open_client_page(page: Page, http_url: str) -> list[str]:
    """The console page (a secure context: 127.0.0.1) with the client module loaded and
    the helpers of ``CLIENT_PAGE_SETUP``; the module's exports."""
    await page.goto(http_url + "/console")
    exports: list[str] = await page.evaluate(CLIENT_PAGE_SETUP)
    return exports
