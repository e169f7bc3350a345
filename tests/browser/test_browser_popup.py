"""The CRM pop-up example (/examples/popup.html) in chromium, against the real server
and the PBX simulator, for three people at once: Agent (operator, extension 269, in
English), Sidorov (operator, 270, in Russian) and a listener (extension 269, a role
without `redirect`).

A card pops up only where a call rings at one's own extension, never for anybody
else's call (each page records every card it ever showed); its ring time ticks; the
redirect form is there only for a role that may redirect; redirecting from the card
moves the call (and so the card) to the colleague; a call answered at once closes its
card; a call nobody answered leaves an entry under "Missed calls", also when it ended
while the page was away.
Screenshots: test-artifacts/popup-*.png.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.browser_support import require_browser
from tests.browser.calls_support import (
    CALL_SIMULATOR,
    OTHER,
    OTHER_PASSWORD,
    active_calls,
    hang_up,
    sign_in_popup,
)
from tests.support import AGENT, ApiClient, add_user, fast_simulator
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.context import SOCKETS_KEY
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium

LISTENER = {"login": "Desk", "login2": "Listener", "sha1": sha1_of_password("listen-pw")}


@pytest.fixture
async def simulator() -> AsyncIterator[PbxSimulator]:
    """Calls that last until the test ends them; 270 rings until the caller gives up."""
    async with fast_simulator(**CALL_SIMULATOR) as sim:
        yield sim


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    """A role that sees its own calls but may not move them."""
    return {
        "roles": {
            "listener": {
                "methods": ["onEvent", "onceEvent", "rmEvent", "calls", "callHistory"],
                "events": ["call.*"],
                "own_extensions_only": True,
            }
        }
    }


class Desk:
    """One person's pop-up page, in a browser context (and language) of their own."""

    def __init__(self, page: Page, context: BrowserContext) -> None:
        self.page = page
        self.context = context
        self.cards = page.locator("#cards article")
        self.missed = page.locator("#missed li")

    def card(self, call_id: str) -> Locator:
        return self.page.locator(f'#cards article[data-call-id="{call_id}"]')

    async def seen(self) -> list[str]:
        """The call id of every card this page ever showed, in order."""
        seen: list[str] = await self.page.evaluate("window.cardsSeen")
        return seen


@pytest.fixture
async def desks(browser: Browser, server: RunningServer) -> AsyncIterator[tuple[Desk, Desk, Desk]]:
    """Agent (en), Sidorov (ru) and the listener (en), each signed in to the pop-up."""
    await add_user(server.config, OTHER, role="operator", extensions=("270",))
    await add_user(server.config, LISTENER, role="listener", extensions=("269",))
    errors: list[str] = []
    opened: list[Desk] = []
    try:
        for creds, password, locale in (
            (AGENT, "demo", "en-US"),
            (OTHER, OTHER_PASSWORD, "ru-RU"),
            (LISTENER, "listen-pw", "en-US"),
        ):
            context = await browser.new_context(
                locale=locale, viewport={"width": 640, "height": 560}
            )
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            opened.append(Desk(page, context))
            await sign_in_popup(page, server.http_url, creds, password)
        yield opened[0], opened[1], opened[2]
    finally:
        for desk in opened:
            await desk.context.close()
    assert not errors, f"JavaScript errors on the pages: {errors}"


async def call_at(api: ApiClient, number: str) -> dict[str, Any]:
    """The active call from ``number`` (as the server normalises it)."""
    (call,) = [c for c in await active_calls(api) if c["fromNumber"] == number]
    return call


async def test_the_popup_shows_ones_own_calls_only(
    desks: tuple[Desk, Desk, Desk],
    server: RunningServer,
    simulator: PbxSimulator,
    api: ApiClient,
    artifacts: Path,
) -> None:
    agent, sidorov, listener = desks
    for desk, extension in ((agent, "269"), (sidorov, "270"), (listener, "269")):
        await expect(desk.page.locator("#watching")).to_contain_text(extension)
    await expect(agent.page.locator("#waiting")).to_be_visible()

    # Somebody else's call (267), ringing on: no card anywhere.
    elsewhere = await simulator.incoming_call(
        "+79780000267", span=12, to="267", answer=False, hold=600
    )
    # A call ringing at 269: Agent's and the listener's card, not Sidorov's.
    channel = await simulator.incoming_call(
        "+79787342741", span=11, to="269", answer=False, hold=600
    )
    call = await call_at(api, "89787342741")
    await a_card_for_269(agent, listener, call["callId"], artifacts)

    # Answering elsewhere from the card: the caller goes to Sidorov's 270.
    await redirected_to_the_colleague(agent, sidorov, call["callId"], artifacts)

    # The caller gives up while Sidorov's page is away (offline, its WebSocket dropped):
    # back, it gets what it missed; the card goes, and each extension that rang has the
    # call as missed.
    await sidorov.context.set_offline(True)
    for ws in list(server.app[SOCKETS_KEY]):
        await ws.close(code=1001, message=b"closed by the test")
    await expect(sidorov.page.locator("#state")).to_have_attribute("data-state", "reconnecting")
    await hang_up(simulator, channel)
    await expect(sidorov.card(call["callId"])).to_be_visible()  # nothing came through
    await sidorov.context.set_offline(False)
    await expect(sidorov.page.locator("#state")).to_have_attribute("data-state", "open")
    await expect(sidorov.cards).to_have_count(0)
    await expect(sidorov.missed).to_have_count(1)
    await expect(sidorov.missed.first).to_have_attribute("data-call-id", call["callId"])
    await expect(sidorov.missed.first).to_contain_text("89787342741")
    await expect(agent.missed).to_have_count(1)
    await agent.page.screenshot(path=artifacts / "popup-missed-en.png", animations="disabled")

    # A call answered at once at 269: its card came and went, and nothing was missed.
    answered = await simulator.incoming_call("+79781112233", span=11, to="269", hold=600)
    quick = await call_at(api, "89781112233")
    assert quick["status"] == "up"
    await expect(agent.page.locator("#waiting")).to_be_visible()
    assert await agent.seen() == [call["callId"], quick["callId"]]
    await expect(agent.cards).to_have_count(0)
    await expect(agent.missed).to_have_count(1)

    # Never anybody else's: the 267 call was never a card; Sidorov only saw the call
    # while it rang at 270 (each page's events arrive in order, so the 267 call's and
    # the quick call's would have come before what came since).
    assert call["callId"] in await sidorov.seen()
    assert await sidorov.seen() == [call["callId"]]
    assert await listener.seen() == [call["callId"], quick["callId"]]
    await hang_up(simulator, answered)
    await hang_up(simulator, elsewhere)


async def a_card_for_269(agent: Desk, listener: Desk, call_id: str, artifacts: Path) -> None:
    """The card: caller, direction, extension, the ring time ticking; the redirect
    form only for a role that may redirect."""
    card = agent.card(call_id)
    await expect(card).to_be_visible()
    await expect(card.locator(".from-number")).to_have_text("89787342741")
    await expect(card.locator(".from-name")).to_have_text("+79787342741")
    await expect(card.locator(".direction")).to_have_text("Inbound")
    await expect(card.locator(".callee")).to_have_text("at 269")
    ring = card.locator(".ringing-for")
    await expect(ring).to_have_text(re.compile(r"^ringing for \d+ s$"))
    first = await ring.text_content()
    await expect(ring).not_to_have_text(first or "")  # it counts on
    await expect(agent.page.locator("#waiting")).to_be_hidden()
    await expect(card.get_by_label("Answer elsewhere: redirect to")).to_be_visible()
    await agent.page.screenshot(path=artifacts / "popup-en.png", animations="disabled")

    await expect(listener.card(call_id)).to_be_visible()
    await expect(listener.card(call_id).locator("form")).to_have_count(0)


async def redirected_to_the_colleague(
    agent: Desk, sidorov: Desk, call_id: str, artifacts: Path
) -> None:
    """Bad input is refused on the card; a number moves the call, and the card too."""
    card = agent.card(call_id)
    target = card.get_by_label("Answer elsewhere: redirect to")
    await target.fill("")
    await card.get_by_role("button", name="Redirect").click()
    await expect(card.locator(".error")).to_have_text("Enter the number to redirect to.")
    await target.fill("27x")
    await card.get_by_role("button", name="Redirect").click()
    await expect(card.locator(".error")).to_contain_text("Cannot redirect: bad_request:")
    await expect(card.locator(".error")).to_contain_text("toTel")
    assert await sidorov.seen() == []

    await target.fill("270")
    await target.press("Enter")
    await expect(agent.card(call_id)).to_have_count(0)
    colleague = sidorov.card(call_id)
    await expect(colleague).to_be_visible()
    await expect(colleague.locator(".direction")).to_have_text("Входящий")
    await expect(colleague.locator(".callee")).to_have_text("на номер 270")
    await expect(colleague.locator(".ringing-for")).to_have_text(re.compile(r"^звонит \d+ с$"))
    await sidorov.page.screenshot(path=artifacts / "popup-ru.png", animations="disabled")
