"""The console's Live calls panel and Call history, in chromium, against the real server
and the PBX simulator.

A supervisor watches an inbound GSM call ring at 269 (ring time ticking), get answered
at 271 (talk time ticking), go on hold and back, be transferred to 272, and end: the row
fades out and the call appears in History. History's filters and "Load more" page
through real stored calls; the panels work on a phone-sized screen; and the wallboard
recovers after the server drops the WebSocket (the missed events are replayed) and
after a server restart (a gap: the active calls are read again).
Screenshots: test-artifacts/live-calls-*.png and call-history-*.png.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.browser.browser_support import RestartableServer, require_browser
from tests.browser.calls_support import (
    CALL_SIMULATOR,
    active_calls,
    hang_up,
    hold,
    sign_in_console,
)
from tests.support import AGENT, SUPERVISOR, ApiClient, fast_simulator
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.context import SOCKETS_KEY
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Browser, Locator, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium

CALLER = "+79787342741"
#: How long an ended call stays on the board (console-calls.js FADE_MS), plus slack.
FADE_WITHIN_MS = 5000 + 5000


@pytest.fixture
async def simulator() -> AsyncIterator[PbxSimulator]:
    """Calls that last until the test ends them."""
    async with fast_simulator(**CALL_SIMULATOR) as sim:
        yield sim


@pytest.fixture
async def console(browser: Browser, server: RunningServer) -> AsyncIterator[Page]:
    """The console in an English browser, signed in as the supervisor (sees every call)."""
    context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await sign_in_console(page, server.http_url, SUPERVISOR, "boss-pw")
        yield page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def seconds_of(text: str) -> int:
    """'ring 1:05' -> 65."""
    match = re.search(r"(?:(\d+):)?(\d+):(\d\d)$", text)
    assert match is not None, text
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


async def ticks(duration: Locator, kind: str) -> None:
    """The duration shows ``kind`` time and counts up while we watch."""
    pattern = re.compile(rf"^{kind} \d+:\d\d$")
    await expect(duration).to_have_text(pattern)
    first = await duration.text_content() or ""
    await expect(duration).not_to_have_text(first)  # the next second comes
    later = await duration.text_content() or ""
    assert pattern.match(later) and seconds_of(later) > seconds_of(first), (first, later)


async def test_a_call_from_ringing_to_history(
    console: Page, simulator: PbxSimulator, api: ApiClient, artifacts: Path
) -> None:
    page = console
    await expect(page.locator("#live-empty")).to_be_visible()
    await expect(page.locator("#live-count")).to_have_text("0 active calls")
    channel = await simulator.incoming_call(CALLER, span=11, to="269", answer=False, hold=600)
    row = page.locator("#live-rows tr").first
    await ringing_at_269(page, row)
    await answered_held_and_transferred(row, simulator, api, channel)
    second = await simulator.incoming_call(
        "+79781112233", span=12, to="267", answer=False, hold=600
    )
    await the_board_in_both_languages(page, row, artifacts)
    await hang_up(simulator, second)
    await hang_up(simulator, channel)
    await ended_faded_and_in_history(page, row)


# The steps of the call above, in order.


async def ringing_at_269(page: Page, row: Locator) -> None:
    """Who calls, the inbound arrow, the extension, the ring time ticking."""
    cells = row.locator("td")
    await expect(row).to_have_attribute("data-status", "ringing")
    await expect(row.locator(".badge")).to_have_text("ringing")
    await expect(row.locator(".direction")).to_have_attribute("aria-label", "Inbound")
    await expect(cells.nth(2)).to_contain_text("89787342741")  # normalised ([phone] rules)
    await expect(cells.nth(3)).to_contain_text("269")
    await expect(cells.nth(4)).to_have_text("269")
    await expect(cells.nth(6)).to_contain_text("line YSGSM/11")
    await expect(page.locator("#live-count")).to_have_text("1 active call")
    await expect(page.locator("#live-empty")).to_be_hidden()
    await expect(page.locator("#live-announce")).to_have_text(
        "Call from 89787342741 ringing at 269"
    )
    await ticks(row.locator(".duration"), "ring")


async def answered_held_and_transferred(
    row: Locator, simulator: PbxSimulator, api: ApiClient, channel: str
) -> None:
    """Redirected to 271, which answers (talk time ticks); on hold and back, as the PBX
    reports it for 271's channel; then a blind transfer of the talking call to 272."""
    cells = row.locator("td")
    answer = await api.post("redirect", creds=SUPERVISOR, channel=channel, toTel="271")
    assert answer["err"] is None, answer
    await expect(row).to_have_attribute("data-status", "up")
    await expect(row.locator(".badge")).to_have_text("talking")
    await expect(cells.nth(4)).to_have_text("271")
    await ticks(row.locator(".duration"), "talk")

    (call,) = await active_calls(api)
    phone = next(name for name in call["channels"] if name.startswith("SIP/271-"))
    await hold(simulator, api, phone, on=True)
    await expect(row.locator(".badge")).to_have_text("on hold")
    await expect(row).to_have_attribute("data-status", "held")
    await hold(simulator, api, phone, on=False)
    await expect(row.locator(".badge")).to_have_text("talking")

    answer = await api.post("redirect", creds=SUPERVISOR, channel=channel, toTel="272")
    assert answer["err"] is None, answer
    await expect(cells.nth(6)).to_contain_text("blind transfer 271 → 272")
    await expect(cells.nth(4)).to_have_text("272")
    await expect(row).to_have_attribute("data-status", "up")


async def the_board_in_both_languages(page: Page, row: Locator, artifacts: Path) -> None:
    """With a second call ringing: the wallboard in English, then in Russian."""
    rows = page.locator("#live-rows tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_have_attribute("data-status", "ringing")
    await page.locator("#live-panel").screenshot(
        path=artifacts / "live-calls-en.png", animations="disabled"
    )
    await page.get_by_label("Language").select_option("ru")
    await expect(row.locator(".badge")).to_have_text("разговор")
    await expect(rows.nth(1).locator(".badge")).to_have_text("звонит")
    await expect(row.locator(".direction")).to_have_attribute("aria-label", "Входящий")
    await expect(row.locator("td").nth(6)).to_contain_text("перевод без консультации 271 → 272")
    await expect(page.locator("#live-count")).to_have_text("2 звонка")
    await page.locator("#live-panel").screenshot(
        path=artifacts / "live-calls-ru.png", animations="disabled"
    )
    await page.get_by_label("Язык").select_option("en")


async def ended_faded_and_in_history(page: Page, row: Locator) -> None:
    """The row says the call ended, fades and goes; both calls are in History."""
    await expect(row).to_have_attribute("data-status", "ended")
    await expect(row).to_have_class(re.compile(r"\bending\b"))
    await expect(row.locator("td").nth(6)).to_contain_text("completed")
    await expect(page.locator("#live-rows tr")).to_have_count(0, timeout=FADE_WITHIN_MS)
    await expect(page.locator("#live-empty")).to_be_visible()

    history = page.locator("#history-rows tr")
    await expect(history).to_have_count(2)  # no click needed: it reads them as they end
    answered = page.locator("#history-rows tr[data-end-reason=completed]")
    await expect(answered).to_contain_text("89787342741")
    await expect(answered).to_contain_text("blind transfer 271 → 272")
    await expect(answered.locator(".result")).to_have_text("completed")
    missed = page.locator("#history-rows tr[data-end-reason=cancelled]")
    await expect(missed).to_contain_text("89781112233")
    await expect(history.first).to_have_attribute("data-end-reason", "cancelled")  # newest


async def make_history(simulator: PbxSimulator, api: ApiClient) -> None:
    """Five stored calls: three missed at 269, one answered at 267, one busy dial."""
    for index in (1, 2, 3):
        await simulator.incoming_call(
            f"+7978000000{index}", span=11, to="269", answer=False, hold=0.05
        )
    channel = await simulator.incoming_call("+79780000009", span=12, to="267", hold=600)
    await hang_up(simulator, channel)
    # 269 answers its ringing (the Originate's outcome), then 900 is busy.
    dial = await api.post("dial", creds=AGENT, **{"from": "269"}, to="900", wait=True)
    assert dial["err"] is None, dial

    async def all_stored() -> bool:
        answer = await api.post("callHistory", creds=SUPERVISOR)
        return len(answer["calls"]) == 5

    await until(all_stored, within=10, what="five calls in the history", every=0.1)


async def search(page: Page, **filters: str) -> None:
    """Fill the history filters (by field id) and search; wait for the answer."""
    for name, value in filters.items():
        field = page.locator(f"#history-{name}")
        if await field.evaluate("e => e.tagName") == "SELECT":
            await field.select_option(value)
        else:
            await field.fill(value)
    await page.evaluate("document.getElementById('history-status').textContent = ''")
    await page.locator("#history-search").click()
    await expect(page.locator("#history-status")).not_to_have_text("")
    await expect(page.locator("#history-status")).not_to_have_text("Loading…")


async def test_history_filters_load_more_and_a_narrow_screen(
    console: Page, simulator: PbxSimulator, api: ApiClient, artifacts: Path
) -> None:
    await make_history(simulator, api)
    await pages_through_the_history(console)
    await each_filter(console)
    await dates_and_refused_input(console, artifacts)
    await a_phone_sized_screen(console, simulator, artifacts)


# The steps of the test above, in order.


async def pages_through_the_history(page: Page) -> None:
    """Two per page: "Load more" brings the next page below, until there is none."""
    rows = page.locator("#history-rows tr")
    status = page.locator("#history-status")
    more = page.get_by_role("button", name="Load more")
    await search(page, limit="2")
    await expect(rows).to_have_count(2)
    await expect(status).to_have_text("2 calls shown, more to load")
    await more.click()
    await expect(rows).to_have_count(4)
    await more.click()
    await expect(rows).to_have_count(5)
    await expect(status).to_have_text("5 calls shown")
    await expect(more).to_be_hidden()
    started = await rows.evaluate_all("rows => rows.map(r => r.dataset.startedAt)")
    assert started == sorted(started, reverse=True)  # newest first across pages
    assert len(set(await rows.evaluate_all("rows => rows.map(r => r.dataset.callId)"))) == 5


async def each_filter(page: Page) -> None:
    """Each filter, as the server applies it; "Reset filters" shows everything again."""
    rows = page.locator("#history-rows tr")
    await search(page, reason="cancelled", limit="25")
    await expect(rows).to_have_count(3)
    await search(page, number="+7 978 000-00-02")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("89780000002")
    await page.get_by_role("button", name="Reset filters").click()
    await expect(rows).to_have_count(5)
    await search(page, direction="internal")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".result")).to_have_text("busy")
    await search(page, direction="", extension="267")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-end-reason", "completed")
    await search(page, extension="")
    await expect(rows).to_have_count(5)


async def dates_and_refused_input(page: Page, artifacts: Path) -> None:
    """The browser's today has every call, tomorrow none; a range the wrong way round
    and a page size out of range are refused in the page, naming what is wrong."""
    rows = page.locator("#history-rows tr")
    error = page.locator("#history-error")
    today = date.fromisoformat(
        await page.evaluate("new Date().toLocaleDateString('sv')")  # YYYY-MM-DD, local
    )
    await search(page, since=today.isoformat(), until=today.isoformat())
    await expect(rows).to_have_count(5)
    await page.locator("#history-panel").screenshot(
        path=artifacts / "call-history-en.png", animations="disabled"
    )
    await search(page, since=(today + timedelta(days=1)).isoformat(), until="")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#history-status")).to_have_text("No ended calls match.")
    await page.locator("#history-until").fill(today.isoformat())
    await page.locator("#history-search").click()
    await expect(error).to_have_text("The “to” date must not be before the “from” date.")
    await expect(page.locator("#history-until")).to_be_focused()
    await page.get_by_role("button", name="Reset filters").click()
    await expect(rows).to_have_count(5)
    await page.locator("#history-limit").fill("1001")
    await page.locator("#history-search").click()
    await expect(error).to_have_text("Calls per page must be a whole number from 1 to 1000.")
    await expect(rows).to_have_count(5)  # nothing changed
    await page.get_by_role("button", name="Reset filters").click()
    await expect(error).to_be_empty()


async def a_phone_sized_screen(page: Page, simulator: PbxSimulator, artifacts: Path) -> None:
    """The rows become cards, each value with its column's name; nothing needs
    scrolling sideways."""
    await simulator.incoming_call(CALLER, span=11, to="269", answer=False, hold=600)
    await expect(page.locator("#live-rows tr")).to_have_count(1)
    await page.set_viewport_size({"width": 390, "height": 844})
    first_cell = page.locator("#live-rows td").first
    await expect(first_cell).to_have_attribute("data-label", "Direction")
    assert await first_cell.evaluate("td => getComputedStyle(td).display") == "grid"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.locator("#live-panel").screenshot(
        path=artifacts / "live-calls-narrow.png", animations="disabled"
    )
    await page.locator("#history-rows").scroll_into_view_if_needed()
    await page.screenshot(path=artifacts / "call-history-narrow.png", animations="disabled")


async def test_the_wallboard_recovers_after_a_disconnect_and_a_restart(
    browser: Browser, restartable: RestartableServer, simulator: PbxSimulator, artifacts: Path
) -> None:
    context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await sign_in_console(page, restartable.http_url, SUPERVISOR, "boss-pw")
        await page.evaluate(
            "() => { window.states = [];"
            " window.vwellConsole.pbx.onState((s) => window.states.push(s)); }"
        )
        rows = page.locator("#live-rows tr")
        channel = await simulator.incoming_call(CALLER, span=11, to="269", answer=False, hold=600)
        await expect(rows.first).to_have_attribute("data-status", "ringing")

        # The server drops the WebSocket and the browser cannot reconnect for a while;
        # meanwhile the call is answered at 271. Back online, the client resumes with
        # the events it missed: the row is right, and no gap was reported.
        await context.set_offline(True)
        running = restartable.running
        assert running is not None
        for ws in list(running.app[SOCKETS_KEY]):
            await ws.close(code=1001, message=b"closed by the test")
        await expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting")
        async with aiohttp.ClientSession() as http:
            api = ApiClient(running, http)
            answer = await api.post("redirect", creds=SUPERVISOR, channel=channel, toTel="271")
            assert answer["err"] is None, answer

            async def answered() -> bool:
                return [call["status"] for call in await active_calls(api)] == ["up"]

            await until(answered, within=5, what="the call answered at 271", every=0.05)
        # Still away (offline): what happened meanwhile can only come by the resume.
        assert await page.evaluate("window.vwellConsole.pbx.state") == "reconnecting"
        await expect(rows.first).to_have_attribute("data-status", "ringing")
        await context.set_offline(False)
        await expect(page.locator("#state")).to_have_attribute("data-state", "open")
        await expect(rows.first).to_have_attribute("data-status", "up")
        await expect(rows.first.locator("td").nth(4)).to_have_text("271")
        await expect(page.locator("#live-note")).to_be_hidden()
        assert "reconnecting" in await page.evaluate("window.states")

        # A restart: the new run cannot replay the old one's events (a gap). While it
        # was down the call ended and another began; the board reads the calls again.
        await restartable.stop()
        await expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting")
        await hang_up(simulator, channel)
        await simulator.incoming_call("+79781112233", span=12, to="267", hold=600)
        await restartable.start()
        await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=20000)
        await expect(page.locator("#live-note")).to_be_visible()
        await expect(page.locator("#live-note")).to_contain_text("the active calls were read again")
        newcomer = page.locator("#live-rows tr:not(.ending)")
        await expect(newcomer).to_have_count(1)
        await expect(newcomer).to_contain_text("89781112233")
        await expect(newcomer).to_have_attribute("data-status", "up")
        await expect(page.locator("#live-rows tr")).to_have_count(1, timeout=FADE_WITHIN_MS)
        await page.locator("#live-panel").screenshot(
            path=artifacts / "live-calls-after-restart.png"
        )
    finally:
        await context.close()
    assert not errors, errors
