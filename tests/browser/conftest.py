"""Fixtures for the browser tests: Debian's chromium driven by Playwright, and a server
that can be stopped and started again on the same ports (to test reconnecting).

The browser is the real thing (no Playwright-downloaded build): ``chromium`` from the
system's packages, found on PATH or at /usr/bin/chromium. Without it, or without the
``playwright`` package, every browser test is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.browser_support import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    RestartableServer,
    chromium_path,
    free_port,
)
from tests.support import add_test_users, make_config
from vwell_pbx.simulator import PbxSimulator

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless chromium with a fresh profile."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page on a laptop-sized screen; page errors fail the test at teardown."""
    context = await browser.new_context(
        viewport={"width": 1366, "height": 800}, accept_downloads=True
    )
    new_page = await context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield new_page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/ at the repository root (in .gitignore), for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def restartable(tmp_path: Path, simulator: PbxSimulator) -> AsyncIterator[RestartableServer]:
    """A started server on fixed free ports; ``stop()``/``start()`` restart it in place."""
    http_port, ws_port = free_port(), free_port()
    while ws_port == http_port:
        ws_port = free_port()
    config = make_config(
        tmp_path,
        simulator.port,
        server={"http": f"127.0.0.1:{http_port}", "ws": f"127.0.0.1:{ws_port}"},
    )
    await add_test_users(config)
    server = RestartableServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
