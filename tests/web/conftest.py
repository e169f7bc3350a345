"""Fixtures for the web tests that need a browser: a CRM page on an origin of its own.

Chromium refuses a public page's requests to loopback (Local Network Access), so the
"CRM" is a small real web server on another loopback port: cross-origin, as a CRM page
calling this server is, with CORS in play. Tests that use ``page`` call
``require_browser()`` (tests.browser.browser_support) first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from tests.browser.browser_support import CHROMIUM_ARGS, chromium_path
from tests.web.browser_page import HAVE_JQUERY, JQUERY, PAGE

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.fixture
async def crm() -> AsyncIterator[str]:
    """The CRM: a page on an origin of its own (another loopback port), with jQuery."""
    jquery = JQUERY.read_bytes() if HAVE_JQUERY else None

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def script(_request: web.Request) -> web.Response:
        if jquery is None:
            return web.Response(status=404)
        return web.Response(body=jquery, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/jquery.js", script)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    await runner.cleanup()


@pytest.fixture
async def page(crm: str) -> AsyncIterator[Page]:
    """Chromium on the CRM page; JavaScript errors on it fail the test."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    assert executable is not None
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()
            opened = await context.new_page()
            opened.on("pageerror", lambda error: errors.append(str(error)))
            await opened.goto(crm)
            yield opened
        finally:
            await browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
