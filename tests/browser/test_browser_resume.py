"""The JavaScript client resumes by itself, in chromium against the real server: after
the server closes its WebSocket, every event published meanwhile arrives once and in
order (the client re-subscribes with `since`); after a server restart it reports a
gap (onGap), and the console marks the gap in its live event list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.browser.browser_support import RestartableServer, require_browser
from tests.support import SUPERVISOR
from vwell_pbx.protocol.message import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.context import SOCKETS_KEY

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium

# Runs in the page: the client module, subscribed to Newchannel and call.*, recording
# every event and every gap it reports.
SUBSCRIBE = """
async ([url, boss]) => {
  const mod = await import('/client.js');
  window.waitFor = (check, ms = 10000) => new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (check()) resolve(true);
      else if (Date.now() - started > ms) reject(new Error('waitFor timed out: ' + check));
      else setTimeout(tick, 10);
    };
    tick();
  });
  window.got = {newchannel: [], calls: []};
  window.gaps = [];
  window.states = [];
  const pbx = await mod.connect(url, {...boss,
    backoff: {initial: 800, max: 800, jitter: 0},
    onState: (state) => window.states.push(state),
    onGap: (gap) => window.gaps.push(gap)});
  window.pbx = pbx;
  window.offNewchannel = pbx.on('Newchannel', (e) => window.got.newchannel.push(e));
  window.offCalls = pbx.on('call.*', (e) => window.got.calls.push(e));
  await Promise.all([window.offNewchannel.ready, window.offCalls.ready]);
}
"""


def newchannel(index: int) -> Message:
    return Message.build(
        ("Event", "Newchannel"),
        ("Privilege", "call,all"),
        ("Channel", f"SIP/269-{index:08x}"),
        ("ChannelState", "4"),
        ("CallerIDNum", f"+7978{index:07d}"),
        ("Uniqueid", f"1700000000.{index}"),
    )


class Traffic:
    """Numbered events: even numbers a Newchannel from the PBX, odd ones a call.test
    dispatched over HTTP (so no WebSocket of the test is closed with the page's)."""

    def __init__(self, simulator: PbxSimulator, http: aiohttp.ClientSession) -> None:
        self.simulator = simulator
        self.http = http
        self.next = 0

    async def flow(self, server: RestartableServer, count: int) -> None:
        for _ in range(count):
            index = self.next
            self.next += 1
            if index % 2 == 0:
                self.simulator.emit(newchannel(index))
                continue
            envelope = {
                "method": "dispatchEvent",
                "argument": {**SUPERVISOR, "event": {"name": "call.test", "n": index}},
            }
            async with self.http.post(server.http_url + "/api", json=envelope) as response:
                answer = orjson.loads(await response.read())
            assert answer["err"] is None, answer


async def received(page: Page) -> dict[str, list[int]]:
    """What the page's two handlers got, as traffic numbers."""
    got: dict[str, list[dict[str, Any]]] = await page.evaluate("window.got")
    return {
        "newchannel": [int(e["Uniqueid"].rsplit(".", 1)[1]) for e in got["newchannel"]],
        "calls": [int(e["n"]) for e in got["calls"]],
    }


async def wait_for_counts(page: Page, newchannel: int, calls: int) -> None:
    await page.evaluate(
        """([n, c]) => waitFor(() => window.got.newchannel.length >= n &&
                                     window.got.calls.length >= c)""",
        [newchannel, calls],
    )


async def sign_in_console(page: Page, server: RestartableServer) -> None:
    """The console, signed in as the supervisor, subscribed to Newchannel."""
    await page.goto(server.http_url + "/console")
    await page.wait_for_selector("html[data-ready=true]")
    await page.get_by_label("Login", exact=True).fill(SUPERVISOR["login"])
    await page.get_by_label("Name (login2)").fill(SUPERVISOR["login2"])
    await page.get_by_label("Password", exact=True).fill("boss-pw")
    await page.get_by_label("Password", exact=True).press("Enter")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open")
    await page.get_by_label("Event name").press("Enter")
    await expect(page.locator("#subscriptions li")).to_have_attribute("data-state", "active")


async def _resume_after_a_close(
    page: Page, console: Page, traffic: Traffic, restartable: RestartableServer
) -> None:
    """The server closes every WebSocket (as a proxy timing out would); the client waits
    800 ms before reconnecting, and events flow all along: every one arrives, once."""
    await traffic.flow(restartable, 10)
    await wait_for_counts(page, 5, 5)
    running = restartable.running
    assert running is not None
    for ws in list(running.app[SOCKETS_KEY]):
        await ws.close(code=1001, message=b"closed by the test")
    await page.evaluate("waitFor(() => window.pbx.state === 'reconnecting')")
    await traffic.flow(restartable, 40)
    await page.evaluate("waitFor(() => window.pbx.state === 'open')")
    await traffic.flow(restartable, 20)
    await wait_for_counts(page, 35, 35)
    got = await received(page)
    assert got["newchannel"] == list(range(0, 70, 2))  # every one, once, in order
    assert got["calls"] == list(range(1, 70, 2))
    assert await page.evaluate("window.gaps") == []
    assert await page.evaluate("window.offCalls.lastEventId") == (
        await page.evaluate("window.got.calls.at(-1).eventId")
    )
    await expect(console.locator("#events li.gap")).to_have_count(0)


async def _gap_after_a_restart(
    page: Page, console: Page, traffic: Traffic, restartable: RestartableServer
) -> None:
    """A restart: the new run cannot place the old ids, so the resume is a gap."""
    await restartable.stop()
    await page.evaluate("waitFor(() => window.pbx.state === 'reconnecting')")
    await restartable.start()
    await page.evaluate("waitFor(() => window.gaps.length === 1)")
    gap: dict[str, Any] = await page.evaluate("window.gaps[0]")
    assert sorted(sub["name"] for sub in gap["subscriptions"]) == ["Newchannel", "call.*"]
    assert all(isinstance(sub["since"], str) for sub in gap["subscriptions"])
    assert await page.evaluate("window.pbx.state") == "open"
    # The console (a client of its own) marks the gap once it is back too.
    await expect(console.locator("#state")).to_have_attribute("data-state", "open")
    await expect(console.locator("#events li.gap")).to_have_count(1)
    await traffic.flow(restartable, 2)  # live again on the new run
    await wait_for_counts(page, 36, 36)
    got = await received(page)
    assert got["newchannel"][-1] == 70 and got["calls"][-1] == 71


async def _console_shows_the_gap(console: Page, artifacts: Path) -> None:
    gap_line = console.locator("#events li.gap")
    await expect(gap_line).to_have_count(1)
    await expect(gap_line).to_contain_text("Events may be missing here")
    await expect(gap_line).to_contain_text("Newchannel")
    # The gap sits between the events before and after the restart (newest first).
    lines = console.locator("#events li")
    await expect(lines.first).to_contain_text("+79780000070")
    await expect(lines.nth(1)).to_have_class("gap")
    await expect(console.locator("#event-count")).to_have_text("36 events")  # not the gap
    await console.screenshot(path=artifacts / "console-6-gap-after-restart.png")
    await console.get_by_label("Language").select_option("ru")
    await expect(gap_line).to_contain_text("могут быть пропущены")
    await console.screenshot(path=artifacts / "console-7-gap-after-restart-ru.png")


async def test_the_client_resumes_after_a_close_and_reports_a_gap_after_a_restart(
    browser: Browser,
    restartable: RestartableServer,
    simulator: PbxSimulator,
    artifacts: Path,
) -> None:
    context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 800})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(restartable.http_url + "/console")
        await page.evaluate(SUBSCRIBE, [restartable.ws_url, SUPERVISOR])
        console = await context.new_page()
        console.on("pageerror", lambda error: errors.append(str(error)))
        await sign_in_console(console, restartable)
        async with aiohttp.ClientSession() as http:
            traffic = Traffic(simulator, http)
            await _resume_after_a_close(page, console, traffic, restartable)
            await _gap_after_a_restart(page, console, traffic, restartable)
        await _console_shows_the_gap(console, artifacts)
    finally:
        await context.close()
    assert not errors, errors
