"""The web console in chromium, against the real server and the PBX simulator.

Sign in as the operator Agent, place a dial from the generated form, subscribe to
Newchannel in the event panel, see a simulated incoming call arrive, pause, export,
clear, unsubscribe, and check a later call no longer shows up.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.browser_support import require_browser
from tests.support import AGENT, ApiClient
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Browser, Locator, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium

CALLER = "+79787342741"
LATE_CALLER = "+79780000002"
PAUSED_CALLER = "+79780000001"


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in an English browser (the console follows the browser's language; the
    labels this test finds are the English ones); page errors fail the test."""
    context = await browser.new_context(
        locale="en-US", viewport={"width": 1366, "height": 800}, accept_downloads=True
    )
    new_page = await context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield new_page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def sign_in(page: Page, http_url: str, *, password: str = "demo") -> None:
    """Open the console and sign in as Agent (pressing Enter in the password box)."""
    await page.goto(http_url + "/")  # / redirects to /console
    await expect(page).to_have_url(http_url + "/console")
    await page.wait_for_selector("html[data-ready=true]")
    await page.get_by_label("Login", exact=True).fill(AGENT["login"])
    await page.get_by_label("Name (login2)").fill(AGENT["login2"])
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_label("Password", exact=True).press("Enter")


async def call_from_form(page: Page, method: str, values: dict[str, str]) -> dict[str, object]:
    """Pick ``method``, fill its generated fields, press Enter; the JSON answer shown."""
    await page.get_by_label("Method", exact=True).select_option(method)
    last = None
    for name, value in values.items():
        last = page.locator(f"#arg-{name}")
        await last.fill(value)
    status = page.locator("#answer-status")
    await page.evaluate("document.getElementById('answer-status').removeAttribute('data-ok')")
    if last is not None and await last.evaluate("e => e.tagName") == "TEXTAREA":
        await last.press("Control+Enter")
    elif last is not None:
        await last.press("Enter")
    else:
        await page.get_by_role("button", name="Call", exact=True).click()
    await expect(status).to_have_attribute("data-ok", re.compile(r"^(true|false)$"))
    answer: dict[str, object] = json.loads(await page.locator("#answer").text_content() or "{}")
    return answer


async def test_console_sign_in_dial_and_live_events(
    page: Page, server: RunningServer, simulator: PbxSimulator, api: ApiClient, artifacts: Path
) -> None:
    await refused_then_signed_in(page, server, artifacts)
    await dial_from_the_generated_form(page, artifacts)
    subscription = await live_events_arrive(page, simulator, artifacts)
    await pause_export_and_clear(page, simulator)
    await unsubscribe_and_see_no_later_call(page, server, simulator, api, subscription)

    # Sign out: back to the form, state closed.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#state")).to_have_attribute("data-state", "closed")
    await expect(page.locator("#signin-panel")).to_be_visible()


# The steps of the session above, in order.


async def refused_then_signed_in(page: Page, server: RunningServer, artifacts: Path) -> None:
    """A wrong password is refused with the server's errCode, and the form stays; the
    right one signs in."""
    state = page.locator("#state")
    await sign_in(page, server.http_url, password="wrong")
    await expect(page.locator("#signin-error")).to_contain_text("auth_failed")
    await expect(state).to_have_attribute("data-state", "closed")
    url_box = page.get_by_label("Server (WebSocket URL)")
    assert await url_box.input_value() == server.http_url.replace("http://", "ws://") + "/api"
    await page.screenshot(path=artifacts / "console-1-sign-in.png")

    await page.get_by_label("Password", exact=True).fill("demo")
    await page.get_by_label("Password", exact=True).press("Enter")
    await expect(state).to_have_attribute("data-state", "open")
    await expect(state).to_have_text("connected")
    await expect(page.locator("#who")).to_have_text(f"{AGENT['login']} / {AGENT['login2']}")
    await expect(page.locator("#signin-panel")).to_be_hidden()
    # Focus moves to the method picker after signing in (keyboard users continue there).
    await expect(page.get_by_label("Method", exact=True)).to_be_focused()


async def dial_from_the_generated_form(page: Page, artifacts: Path) -> None:
    """The form is generated from the schema; answers, errors and JSON arguments."""
    # dial has from/to (required), timeout, wait.
    await page.get_by_label("Method", exact=True).select_option("dial")
    for name in ("from", "to", "timeout", "wait"):
        await expect(page.locator(f"#arg-{name}")).to_be_visible()
    await expect(page.locator("#arg-from")).to_have_attribute("required", "")
    await expect(page.locator("#arg-wait")).to_have_attribute("type", "checkbox")

    answer = await call_from_form(page, "dial", {"from": "269", "to": "+7 100 200 30 40"})
    assert answer["err"] is None and answer["errCode"] is None, answer
    assert answer["to"] == "81002003040" and answer["from"] == "269"
    assert answer["actionId"]
    await expect(page.locator("#answer-status")).to_contain_text("dial: OK")
    await page.screenshot(path=artifacts / "console-2-dial.png")

    # An error answer is shown as such, with the server's message.
    answer = await call_from_form(page, "dial", {"from": "269", "to": "call me"})
    assert answer["errCode"] == "bad_request", answer
    await expect(page.locator("#answer-status")).to_contain_text("bad_request")
    await expect(page.locator("#answer-status")).to_have_attribute("data-ok", "false")

    # A JSON argument from a text area (Ctrl+Enter sends).
    answer = await call_from_form(page, "send", {"fields": '{"action": "Ping"}'})
    assert answer["err"] is None and answer["written"] is True, answer


async def live_events_arrive(page: Page, simulator: PbxSimulator, artifacts: Path) -> Locator:
    """Subscribe to Newchannel in the event panel (the name is prefilled; Enter
    submits) and see a simulated incoming call arrive; returns the subscription's row."""
    await page.get_by_label("Event name").fill("Newchannel")
    await page.get_by_label("Event name").press("Enter")
    subscription = page.locator("#subscriptions li")
    await expect(subscription).to_have_count(1)
    await expect(subscription).to_have_attribute("data-state", "active")
    await expect(subscription).to_contain_text("Newchannel")

    await simulator.incoming_call(CALLER)
    incoming = page.locator("#events li").filter(has_text=f"CallerIDNum={CALLER}")
    await expect(incoming.first).to_be_visible()
    await incoming.first.locator("summary").click()  # expand: the whole event as JSON
    shown = json.loads(await incoming.first.locator("pre").text_content() or "{}")
    assert shown["Event"] == "Newchannel" and shown["CallerIDNum"] == CALLER
    assert "err" not in shown and "errCode" not in shown
    await page.screenshot(path=artifacts / "console-3-events.png")
    return subscription


async def pause_export_and_clear(page: Page, simulator: PbxSimulator) -> None:
    """Pause: events are counted, not shown, until resumed; export downloads every
    event received so far as JSON; clear empties the list."""
    shown_before = await page.locator("#events li").count()
    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("button", name="Resume")).to_have_attribute(
        "aria-pressed", "true"
    )
    await simulator.incoming_call(PAUSED_CALLER)
    await expect(page.locator("#event-count")).to_contain_text("new while paused")
    assert await page.locator("#events li").count() == shown_before
    await page.get_by_role("button", name="Resume").click()
    await expect(
        page.locator("#events li").filter(has_text=f"CallerIDNum={PAUSED_CALLER}").first
    ).to_be_visible()

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export JSON").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("vwell-events-")
    saved = await download.path()
    exported = json.loads(await asyncio.to_thread(Path(saved).read_text, encoding="utf-8"))
    callers = {item["event"].get("CallerIDNum") for item in exported}
    assert {CALLER, PAUSED_CALLER} <= callers
    assert all(item["event"]["name"] == "Newchannel" for item in exported)

    await page.get_by_role("button", name="Clear").click()
    await expect(page.locator("#events li")).to_have_count(0)
    await expect(page.locator("#event-count")).to_have_text("0 events")


async def unsubscribe_and_see_no_later_call(
    page: Page,
    server: RunningServer,
    simulator: PbxSimulator,
    api: ApiClient,
    subscription: Locator,
) -> None:
    """Unsubscribe; the server drops the subscription, and a later call must not show."""
    await page.get_by_role("button", name="Unsubscribe Newchannel").click()
    await expect(subscription).to_have_count(0)
    # What stays is the Live calls panel's own call.* subscription.
    await until(
        lambda: server.api.bus.stats.subscriptions == 1,
        what="the console's subscription to be removed on the server",
    )

    # Barrier: another client subscribed to it gets the event (so it was published to
    # every connection), then a request on the console's own connection is answered
    # (answers queue behind events on one WebSocket).
    watcher = await api.ws()
    subscribed = await watcher.call(
        "onEvent", creds=AGENT, event={"name": "Newchannel", "CallerIDNum": LATE_CALLER}
    )
    assert subscribed["err"] is None
    await simulator.incoming_call(LATE_CALLER)
    event = await watcher.next_event()
    assert event["CallerIDNum"] == LATE_CALLER
    answer = await call_from_form(page, "send", {"fields": '{"action": "Ping"}'})
    assert answer["err"] is None
    await expect(page.locator("#events li")).to_have_count(0)
    await watcher.close()
