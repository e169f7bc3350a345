"""The browser client proves its login with ``whoami`` and keeps the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.browser.browser_support import require_browser
from tests.support import AGENT
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # chromium

if TYPE_CHECKING:
    from playwright.async_api import Page

require_browser()


async def _requests_of(server: RunningServer, method: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/metrics") as response,
    ):
        text = await response.text()
    prefix = f'vwell_requests_total{{code="ok",method="{method}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def test_connect_proves_the_login_with_whoami(page: Page, server: RunningServer) -> None:
    await page.add_script_tag(url=server.http_url + "/client.global.js")
    result: dict[str, Any] = await page.evaluate(
        """async ([url, creds]) => {
          const pbx = await VwellPbx.connect(url, {...creds, reconnect: false});
          const identity = pbx.identity;
          pbx.close();
          let refused = null;
          try { await VwellPbx.connect(url, {...creds, sha1: '0'.repeat(40)}); }
          catch (e) { refused = e.errCode; }
          return {identity, refused};
        }""",
        [server.ws_url, AGENT],
    )
    identity = result["identity"]
    assert identity["login"] == AGENT["login"] and identity["login2"] == AGENT["login2"]
    assert identity["role"] == "operator" and identity["extensions"] == ["269"]
    assert "whoami" in identity["methods"] and "dispatchEvent" not in identity["methods"]
    assert not {"err", "errCode", "reqId"} & set(identity)
    assert result["refused"] == "auth_failed"
    assert await _requests_of(server, "whoami") == 1
    assert await _requests_of(server, "rmEvent") == 0  # the old probe is gone
