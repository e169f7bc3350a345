"""The console in Russian and English, in chromium, against the real server.

The language follows the browser (a Russian and an English browser locale, as the
browser sends them in navigator.languages and Accept-Language), the user can switch it,
and the choice is remembered across reloads. After every switch, no English text may be
left on a Russian page (static or generated: state, counters, method summaries) and
no Russian on an English one. Screenshots go to test-artifacts/console-i18n-*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from tests.browser.browser_support import require_browser
from tests.support import AGENT
from vwell_pbx.api.registry import METHODS
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Browser, Locator, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium

I18N = files("vwell_pbx.web").joinpath("static", "i18n")
EN: dict[str, Any] = json.loads(I18N.joinpath("en.json").read_text("utf-8"))
RU: dict[str, Any] = json.loads(I18N.joinpath("ru.json").read_text("utf-8"))
LANGUAGES: dict[str, Any] = json.loads(I18N.joinpath("languages.json").read_text("utf-8"))
LANGUAGE_KEY = "vwell-console-language"

# Parts of the page that show data, not our words: JSON answers and events, user names,
# method and argument names, subscription labels, language names, examples; the calls'
# numbers and the names the PBX gives (the console's tables, the pop-up's cards and
# missed list).
DATA_PARTS = (
    "#answer, #events, #who, #method, #method-fields label, #subscriptions .label, "
    "#language, #server-url, #login, #login2, #event-name, #event-filters, #method-fields, "
    "table.calls .number, table.calls .name, .from-number, .from-name, #missed .number, "
    "#missed .name"
)

VISIBLE_TEXT = """(dataParts) => {
  const texts = [];
  const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('script, style') || parent.closest(dataParts)) continue;
    if (node.textContent.trim()) texts.push(node.textContent.trim());
  }
  // Whole elements too: a text with `code` in it is split into several nodes.
  for (const el of document.querySelectorAll('[data-i18n], [data-method]')) {
    if (!el.closest(dataParts) && el.textContent.trim()) texts.push(el.textContent.trim());
  }
  for (const el of document.querySelectorAll('[aria-label], [placeholder], [title]')) {
    if (el.closest(dataParts)) continue;
    for (const name of ['aria-label', 'placeholder', 'title']) {
      const value = el.getAttribute(name);
      if (value) texts.push(value);
    }
  }
  return texts;
}"""


def plain(template: str) -> str:
    """A catalogue text as the page shows it (`code` quotes dropped)."""
    return template.replace("`", "")


def strings(catalogue: dict[str, Any], key: str) -> list[str]:
    """Every form of a catalogue entry (one, or each plural form)."""
    entry = catalogue["strings"][key]
    return [entry] if isinstance(entry, str) else list(entry.values())


def as_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the text ``template`` becomes with any placeholder values."""
    parts = re.split(r"\{\w+\}", plain(template))
    return re.compile(".+?".join(re.escape(part) for part in parts), re.DOTALL)


def foreign_texts(shown: str) -> list[re.Pattern[str]]:
    """Patterns for the texts of the *other* language that differ from this one's."""
    this, other = (RU, EN) if shown == "ru" else (EN, RU)
    patterns = []
    for key in other["strings"]:
        for text in strings(other, key):
            if text not in strings(this, key):
                patterns.append(as_pattern(text))
    if shown == "ru":
        # The server's English method texts, which the Russian catalogue translates.
        for name, entry in RU["methods"].items():
            schema = METHODS[name].schema.model_json_schema(by_alias=True)
            patterns.append(as_pattern(METHODS[name].summary))
            for argument in entry.get("arguments", {}):
                patterns.append(as_pattern(schema["properties"][argument]["description"]))
    return patterns


async def assert_all_in(page: Page, language: str) -> None:
    """No text of the other language is left anywhere on the page."""
    await expect(page.locator("html")).to_have_attribute("lang", language)
    shown: list[str] = await page.evaluate(VISIBLE_TEXT, DATA_PARTS)
    assert shown, "the page shows no text at all"
    patterns = foreign_texts(language)  # once: it builds every method's JSON schema
    leftovers = [text for text in shown for pattern in patterns if pattern.fullmatch(text)]
    assert leftovers == [], f"not in {language}: {leftovers}"
    if language == "en":
        assert not [t for t in shown if re.search("[А-Яа-яЁё]", t)]


def russian_plural(count: int) -> str:
    """The CLDR plural category of ``count`` in Russian."""
    if count % 10 == 1 and count % 100 != 11:
        return "one"
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return "few"
    return "many"


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[dict[str, Page]]:
    """A Russian and an English browser, each a fresh profile; page errors fail the test."""
    contexts = {
        "ru": await browser.new_context(locale="ru-RU", viewport={"width": 1366, "height": 800}),
        "en": await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 800}),
    }
    errors: list[str] = []
    opened = {}
    for language, context in contexts.items():
        opened[language] = await context.new_page()
        opened[language].on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        for context in contexts.values():
            await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def open_console(page: Page, http_url: str) -> None:
    """Load the console and wait until its strings are in."""
    await page.goto(http_url + "/console")
    await page.wait_for_selector("html[data-ready=true]")


async def test_a_russian_browser_gets_russian_and_can_switch_to_english(
    pages: dict[str, Page], server: RunningServer, simulator: PbxSimulator, artifacts: Path
) -> None:
    page = pages["ru"]
    ru = RU["strings"]
    await open_console(page, server.http_url)
    assert await page.evaluate("navigator.languages") == ["ru-RU"]
    await expect(page).to_have_title(ru["page.title"])
    await expect(page.locator("#state")).to_have_text(ru["state.closed"])
    await expect(page.locator("#language")).to_have_value("ru")
    await assert_all_in(page, "ru")
    await page.screenshot(path=artifacts / "console-i18n-ru-1-sign-in.png")

    # Signing in with the Russian labels; a missing password is reported in Russian.
    await page.get_by_label(ru["signin.login"], exact=True).fill(AGENT["login"])
    await page.get_by_label(ru["signin.login2"], exact=True).fill(AGENT["login2"])
    await page.get_by_role("button", name=ru["signin.button"]).click()
    await expect(page.locator("#signin-error")).to_have_text(ru["signin.needPassword"])
    await page.get_by_label(ru["signin.password"], exact=True).fill("demo")
    await page.get_by_label(ru["signin.password"], exact=True).press("Enter")
    await expect(page.locator("#state")).to_have_text(ru["state.open"])

    await russian_dial_form(page)
    subscription = await russian_events(page, simulator, artifacts)
    await switched_to_english(page, subscription, artifacts)

    # The choice outlives a reload, although the browser still prefers Russian.
    await open_console(page, server.http_url)
    await expect(page.locator("#language")).to_have_value("en")
    await assert_all_in(page, "en")


# The steps of the Russian session above, in order.


async def russian_dial_form(page: Page) -> None:
    """The generated form: the server's summary and descriptions, translated, and a
    client-side check in Russian before anything is sent."""
    ru = RU["strings"]
    await page.get_by_label(ru["call.method"], exact=True).select_option("dial")
    summary = page.locator("#method-summary")
    await expect(summary).to_have_text(plain(RU["methods"]["dial"]["summary"]))
    await expect(summary.locator("code").first).to_have_text("from")
    await expect(page.locator("#arg-to-hint")).to_have_text(
        plain(RU["methods"]["dial"]["arguments"]["to"])
    )
    # A client-side check, in Russian, before anything is sent.
    await page.get_by_role("button", name=ru["call.button"], exact=True).click()
    await expect(page.locator("#answer-status")).to_have_text(
        ru["field.required"].format(name="from")
    )
    await page.locator("#arg-from").fill("269")
    await page.locator("#arg-to").fill("+7 100 200 30 40")
    await page.locator("#arg-to").press("Enter")
    await expect(page.locator("#answer-status")).to_have_attribute("data-ok", "true")
    await expect(page.locator("#answer-status")).to_have_text(as_pattern(ru["answer.ok"]))
    await expect(page.locator("#answer")).to_contain_text('"err": null')


async def russian_events(page: Page, simulator: PbxSimulator, artifacts: Path) -> Locator:
    """Events: the subscription's state and the counter, with Russian plural forms;
    returns the subscription's row."""
    ru = RU["strings"]
    await page.get_by_label(ru["events.name"], exact=True).press("Enter")
    subscription = page.locator("#subscriptions li")
    await expect(subscription).to_have_attribute("data-state", "active")
    await expect(subscription.locator(".sub-state")).to_have_text(
        as_pattern(ru["subscription.active"])
    )
    await simulator.incoming_call("+79787342741")
    await expect(page.locator("#events li").first).to_be_visible()
    count = page.locator("#event-count")
    await page.get_by_role("button", name=ru["events.pause"]).click()
    received = await page.evaluate("window.vwellConsole.events.length")
    form = RU["strings"]["events.countPaused"][russian_plural(received)]
    await expect(count).to_have_text(form.format(count=received, hidden=0))
    await page.get_by_role("button", name=ru["events.resume"]).click()
    await assert_all_in(page, "ru")
    await page.screenshot(path=artifacts / "console-i18n-ru-2-working.png", full_page=True)
    return subscription


async def switched_to_english(page: Page, subscription: Locator, artifacts: Path) -> None:
    """Switch to English: everything shown is re-rendered, nothing is lost."""
    summary = page.locator("#method-summary")
    count = page.locator("#event-count")
    await page.locator("#language").select_option("en")
    en = EN["strings"]
    await expect(page.locator("#state")).to_have_text(en["state.open"])
    await expect(summary).to_have_text(plain(METHODS["dial"].summary))
    await expect(page.locator("#arg-to-hint")).to_have_text("number connected after pick-up")
    await expect(page.locator("#answer-status")).to_have_text(as_pattern(en["answer.ok"]))
    await expect(subscription.locator(".sub-state")).to_have_text(
        as_pattern(en["subscription.active"])
    )
    received = await page.evaluate("window.vwellConsole.events.length")
    plural = "one" if received == 1 else "other"
    await expect(count).to_have_text(en["events.count"][plural].format(count=received))
    await expect(page.locator("#arg-from")).to_have_value("269")  # the form kept its values
    await assert_all_in(page, "en")
    await page.screenshot(path=artifacts / "console-i18n-ru-3-switched-to-en.png")
    assert await page.evaluate(f"localStorage.getItem('{LANGUAGE_KEY}')") == "en"


async def test_an_english_browser_gets_english_and_can_switch_to_russian(
    pages: dict[str, Page], server: RunningServer, artifacts: Path
) -> None:
    page = pages["en"]
    await open_console(page, server.http_url)
    await expect(page).to_have_title(EN["strings"]["page.title"])
    await expect(page.locator("#language")).to_have_value("en")
    await assert_all_in(page, "en")
    # Each language is offered under its own name.
    options = await page.locator("#language option").all_text_contents()
    assert options == list(LANGUAGES["languages"].values())

    await page.locator("#language").select_option("ru")
    await assert_all_in(page, "ru")
    await expect(page.get_by_role("button", name=RU["strings"]["signin.button"])).to_be_visible()
    # The lists' "empty" texts come from the catalogue through CSS.
    await expect(page.locator("#events")).to_have_attribute(
        "data-empty", RU["strings"]["events.empty"]
    )
    await page.screenshot(path=artifacts / "console-i18n-en-1-switched-to-ru.png")

    await open_console(page, server.http_url)
    await expect(page.locator("#language")).to_have_value("ru")
    await assert_all_in(page, "ru")

    # A narrow window, where the longer Russian texts must wrap, not overflow.
    await page.set_viewport_size({"width": 700, "height": 900})
    overflowing = await page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert not overflowing
    await page.screenshot(path=artifacts / "console-i18n-ru-narrow.png", full_page=True)


async def test_the_language_is_chosen_from_the_browser_preferences(
    browser: Browser, server: RunningServer
) -> None:
    # A browser that prefers neither language gets the fallback.
    context = await browser.new_context(locale="de-DE")
    try:
        page = await context.new_page()
        await open_console(page, server.http_url)
        await expect(page.locator("html")).to_have_attribute("lang", LANGUAGES["fallback"])

        choose = """([saved, preferred]) => import('/static/i18n.js').then(
            (m) => m.chooseLanguage(saved, preferred, ['en', 'ru'], 'en'))"""
        cases = [
            ((None, ["de-DE", "ru-RU", "en"]), "ru"),  # the first offered one, in order
            ((None, ["de", "en-GB", "ru"]), "en"),
            ((None, ["RU"]), "ru"),
            ((None, ["de", "fr"]), "en"),
            (("ru", ["en-US"]), "ru"),  # the user's choice wins over the browser
            (("fr", ["ru-RU"]), "ru"),  # a saved language no longer offered is ignored
        ]
        for arguments, expected in cases:
            assert await page.evaluate(choose, list(arguments)) == expected, arguments

        # Every plural form each language needs (by the browser's own rules) is there.
        for language in LANGUAGES["languages"]:
            needed = set(
                await page.evaluate(
                    "(l) => new Intl.PluralRules(l).resolvedOptions().pluralCategories", language
                )
            )
            catalogue = json.loads(I18N.joinpath(f"{language}.json").read_text("utf-8"))
            for key, entry in catalogue["strings"].items():
                if isinstance(entry, dict):
                    assert needed <= set(entry), f"{language}.json: {key}"
    finally:
        await context.close()


async def test_missing_catalogues_leave_the_page_usable(
    pages: dict[str, Page], server: RunningServer
) -> None:
    # One catalogue cannot be loaded: switching to it keeps the language the page has.
    page = pages["en"]
    await page.route("**/static/i18n/ru.json", lambda route: route.abort())
    await open_console(page, server.http_url)
    async with page.expect_event("requestfailed") as failed:
        await page.locator("#language").select_option("ru")
    assert (await failed.value).url.endswith("/static/i18n/ru.json")
    await expect(page.locator("#language")).to_have_value("en")
    await assert_all_in(page, "en")
    # Nothing was remembered: the next visit follows the browser again.
    assert await page.evaluate(f"localStorage.getItem('{LANGUAGE_KEY}')") is None

    # No catalogue can be fetched at all: the page shows its keys, and still works.
    page = pages["ru"]
    await page.route("**/static/i18n/*.json", lambda route: route.abort())
    await open_console(page, server.http_url)
    await expect(page.locator("h1")).to_have_text("page.title")
    await expect(page.locator("#state")).to_have_text("state.closed")
    await expect(page.locator("#login")).to_be_focused()


async def test_the_popup_example_speaks_both_languages(
    pages: dict[str, Page], server: RunningServer, simulator: PbxSimulator
) -> None:
    # Signed out and with a call ringing at 269, each browser's page is all in its
    # language, the card included.
    for page in pages.values():
        await page.goto(server.http_url + "/examples/popup.html")
        await page.wait_for_selector("html[data-ready=true]")
    for language, page in pages.items():
        await assert_all_in(page, language)
        await expect(page).to_have_title((RU if language == "ru" else EN)["strings"]["popup.title"])
        await page.locator("#login").fill(AGENT["login"])
        await page.locator("#login2").fill(AGENT["login2"])
        await page.locator("#password").fill("demo")
        await page.locator("#password").press("Enter")
        await expect(page.locator("#state")).to_have_attribute("data-state", "open")
    await simulator.incoming_call("+79787342741", to="269", answer=False, hold=600)
    for language, page in pages.items():
        await expect(page.locator("#cards article")).to_have_count(1)
        await assert_all_in(page, language)
    card = pages["ru"].locator("#cards article")
    await expect(card.locator(".direction")).to_have_text(RU["strings"]["direction.inbound"])
    await expect(card.get_by_role("button")).to_have_text(RU["strings"]["popup.redirect"])
