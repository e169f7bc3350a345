"""The console's routes over real HTTP: the files, their content types and caching
headers, the redirect from /, /console/methods.json against the registry, the example
pages under /examples/, and the catalogues every page's texts come from."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib.resources import files
from typing import Any

import aiohttp
import pytest

from vwell_pbx.api.registry import METHODS
from vwell_pbx.calls import CALL_EVENT_NAMES
from vwell_pbx.web.console import HIDDEN_ARGUMENTS, methods_document
from vwell_pbx.web.server import RunningServer

STATIC = files("vwell_pbx.web").joinpath("static")

ROUTES = [
    ("/console", "console.html", "text/html"),
    ("/client.js", "client.js", "text/javascript"),
    ("/client.global.js", "client.global.js", "text/javascript"),
    ("/client.d.ts", "client.d.ts", "text/plain"),
    ("/static/console.js", "console.js", "text/javascript"),
    ("/static/console.css", "console.css", "text/css"),
    ("/static/client.js", "client.js", "text/javascript"),
    ("/static/console-calls.js", "console-calls.js", "text/javascript"),
    ("/static/dom.js", "dom.js", "text/javascript"),
    ("/examples/popup.html", "examples/popup.html", "text/html"),
    ("/examples/popup.js", "examples/popup.js", "text/javascript"),
    ("/examples/popup.css", "examples/popup.css", "text/css"),
]

#: The pages people read, and the scripts that show their texts.
PAGES = ("console.html", "examples/popup.html")
PAGE_SCRIPTS = ("console.js", "console-calls.js", "examples/popup.js")


@pytest.mark.parametrize(("path", "name", "content_type"), ROUTES)
async def test_files_are_served_with_their_content_type(
    server: RunningServer, path: str, name: str, content_type: str
) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.http_url + path) as response:
        assert response.status == 200
        assert response.content_type == content_type
        assert response.charset == "utf-8"
        assert await response.read() == STATIC.joinpath(*name.split("/")).read_bytes()
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        etag = response.headers["ETag"]
    # Revalidation: the same ETag gives 304 without a body.
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + path, headers={"If-None-Match": etag}) as response,
    ):
        assert response.status == 304
        assert await response.read() == b""
        assert response.headers["ETag"] == etag


async def test_root_redirects_to_the_console(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/", allow_redirects=False) as response,
    ):
        assert response.status == 302
        assert response.headers["Location"] == "/console"


async def test_console_page_has_a_strict_content_security_policy(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/console") as response,
    ):
        policy = response.headers["Content-Security-Policy"]
        page = await response.text()
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self' ws: wss:" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    # The page loads only its own files, and no inline script (the policy forbids it).
    assert '<script type="module" src="/static/console.js"></script>' in page
    assert "<script>" not in page


async def test_the_client_module_reexports_the_script_build(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/client.js") as response,
    ):
        module = await response.text()
    assert "import './client.global.js';" in module
    assert "export default VwellPbx;" in module


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/..%2Fconsole.py", "/static/../console.py"]
)
async def test_unknown_static_files_are_404(server: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.http_url + path) as response:
        assert response.status == 404


async def test_methods_json_lists_every_method_with_its_schema(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/console/methods.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        document = await response.json()
    listed = {m["name"]: m for m in document["methods"]}
    assert list(listed) == list(METHODS)
    for name, method in METHODS.items():
        entry = listed[name]
        assert entry["summary"] == method.summary
        assert entry["answer"] == method.answer
        assert entry["needsPbx"] == method.needs_pbx
        assert entry["needsWebSocket"] == method.needs_websocket
        expected = method.schema.model_json_schema(by_alias=True)
        properties = entry["schema"]["properties"]
        assert not HIDDEN_ARGUMENTS & set(properties)
        assert not HIDDEN_ARGUMENTS & set(entry["schema"].get("required", []))
        assert properties == {
            k: v for k, v in expected["properties"].items() if k not in HIDDEN_ARGUMENTS
        }
        assert set(entry["schema"].get("required", [])) == (
            set(expected.get("required", [])) - HIDDEN_ARGUMENTS
        )
    # The aliases, as a client sends them: dial's `from`, not `from_`.
    assert {"from", "to"} <= set(listed["dial"]["schema"]["required"])
    assert "fields" in listed["send"]["schema"]["required"]


def test_methods_document_is_plain_json_data() -> None:
    document = methods_document()
    assert [m["name"] for m in document["methods"]] == list(METHODS)
    assert {"send", "dial", "redirect", "gsmSendSMS", "onEvent", "onceEvent", "rmEvent"} <= set(
        METHODS
    )


@pytest.mark.parametrize(
    "path", ["/static/console.html", "/examples/popup.html", "/static/examples/popup.html"]
)
async def test_every_page_has_the_policy_whatever_its_path(
    server: RunningServer, path: str
) -> None:
    # The same page under /static/ must not be frameable without the policy; nor may
    # an example page run scripts from elsewhere.
    async with aiohttp.ClientSession() as session, session.get(server.http_url + path) as response:
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/examples/nope.html", "/examples/../console.html", "/examples/"])
async def test_unknown_examples_are_404(server: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.http_url + path) as response:
        assert response.status == 404


async def test_the_console_links_the_popup_example(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.http_url + "/console") as response:
            page = await response.text()
        assert 'href="/examples/popup.html"' in page
        async with session.get(server.http_url + "/examples/popup.html") as response:
            example = await response.text()
    # The example needs nothing but the server: the client module and its own files.
    assert '<script type="module" src="popup.js"></script>' in example
    script = STATIC.joinpath("examples", "popup.js").read_text("utf-8")
    assert "from '/client.js'" in script


# --- languages ------------------------------------------------------------------------
#
# Every string of the console is in one catalogue per language (static/i18n/LANG.json);
# the page's HTML and script only name keys. These tests keep the catalogues complete,
# consistent with each other, and free of keys nobody uses.

I18N = STATIC.joinpath("i18n")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: CLDR plural category names; every plural entry needs "other".
PLURAL_CATEGORIES = {"zero", "one", "two", "few", "many", "other"}


def catalogue(language: str) -> dict[str, Any]:
    """static/i18n/LANGUAGE.json, parsed."""
    data: dict[str, Any] = json.loads(I18N.joinpath(f"{language}.json").read_text("utf-8"))
    return data


def offered_languages() -> dict[str, Any]:
    """static/i18n/languages.json: the fallback and every language with its own name."""
    data: dict[str, Any] = json.loads(I18N.joinpath("languages.json").read_text("utf-8"))
    return data


LANGUAGES = list(offered_languages()["languages"])


def texts_of(entry: str | dict[str, str]) -> list[str]:
    """A string entry's text, or every plural form of a plural one."""
    return [entry] if isinstance(entry, str) else list(entry.values())


def keys_used_by_the_page() -> set[str]:
    """Every catalogue key the pages (PAGES) and their scripts (PAGE_SCRIPTS) name.

    In the HTML, the values of data-i18n and data-i18n-* attributes. In the scripts, the
    string literals passed to the functions that show a key, plus any literal of the
    form ``namespace.key`` whose namespace is one the catalogues use (keys chosen in a
    conditional, such as the connection state's, or from a table, such as a call's
    direction).
    """
    used: set[str] = set()
    for name in PAGES:
        page = STATIC.joinpath(*name.split("/")).read_text("utf-8")
        used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', page))
    used.discard("")
    namespaces = {key.split(".")[0] for key in catalogue("en")["strings"]}
    for name in PAGE_SCRIPTS:
        script = STATIC.joinpath(*name.split("/")).read_text("utf-8")
        calls = r"(?:show|say|sayAttribute|showAnswer|FieldError)\((?:[^()']*?,\s*)?"
        used |= set(re.findall(calls + r"'(\w+\.[\w.]+)'", script))
        for literal in re.findall(r"'([a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_]+)+)'", script):
            # The server's call event names (call.ringing) look like keys of "call".
            if literal.split(".")[0] in namespaces and literal not in CALL_EVENT_NAMES:
                used.add(literal)
    return used


def test_languages_json_names_each_catalogue_in_its_own_language() -> None:
    offered = offered_languages()
    assert offered["fallback"] in offered["languages"]
    assert {"en", "ru"} <= set(offered["languages"])
    assert offered["languages"]["ru"] == "Русский"
    files_present = {
        entry.name.removesuffix(".json")
        for entry in I18N.iterdir()
        if entry.name.endswith(".json") and entry.name != "languages.json"
    }
    assert files_present == set(offered["languages"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_has_the_same_keys_as_english(language: str) -> None:
    english = catalogue("en")["strings"]
    strings = catalogue(language)["strings"]
    assert set(strings) == set(english), (
        f"{language}.json: missing {sorted(set(english) - set(strings))}, "
        f"extra {sorted(set(strings) - set(english))}"
    )
    for key, entry in strings.items():
        # A plural entry in one language is a plural entry in all of them.
        assert isinstance(entry, str) == isinstance(english[key], str), key
        if isinstance(entry, dict):
            assert "other" in entry and set(entry) <= PLURAL_CATEGORIES, key
        for text in texts_of(entry):
            assert text.strip(), f"{language}.json: {key} is empty"
            assert text.count("`") % 2 == 0, f"{language}.json: {key} has an unclosed `"
            # The same placeholders as English: a translation cannot drop or invent one.
            expected = {p for t in texts_of(english[key]) for p in PLACEHOLDER.findall(t)}
            assert set(PLACEHOLDER.findall(text)) == expected, f"{language}.json: {key}"


def test_russian_is_really_russian() -> None:
    # A key copied over untranslated would pass the key checks above.
    english = catalogue("en")["strings"]
    russian = catalogue("ru")["strings"]
    untranslated = [
        key
        for key, entry in russian.items()
        if not any(re.search("[А-Яа-яЁё]", text) for text in texts_of(entry))
        and entry == english[key]
    ]
    # Only texts with no words in them may be the same (e.g. "{method}: {error}").
    assert all(
        not re.search(r"[A-Za-z]{3,}", PLACEHOLDER.sub("", t.replace("`", "")))
        for key in untranslated
        for t in texts_of(russian[key])
    ), untranslated


def test_every_key_the_page_uses_is_in_the_catalogues_and_every_key_is_used() -> None:
    used = keys_used_by_the_page()
    english = set(catalogue("en")["strings"])
    assert used - english == set(), f"keys used but not in the catalogues: {used - english}"
    assert english - used == set(), f"keys in the catalogues nobody uses: {english - used}"


@pytest.mark.parametrize("page_name", PAGES)
def test_the_page_has_no_text_of_its_own(page_name: str) -> None:
    # Every text node and every human-readable attribute of a page comes from a
    # catalogue; the one exception is a placeholder that is a JSON example.
    class Collector(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[str] = []
            self.attributes: list[tuple[str, str, str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in {"title", "placeholder", "aria-label", "alt"} and value:
                    self.attributes.append((tag, name, value))

        def handle_data(self, data: str) -> None:
            if data.strip():
                self.texts.append(data.strip())

    collector = Collector()
    collector.feed(STATIC.joinpath(*page_name.split("/")).read_text("utf-8"))
    assert collector.texts == []
    for tag, attribute, value in collector.attributes:
        assert attribute == "placeholder", (tag, attribute, value)
        json.loads(value)  # an example of the syntax, the same in every language


@pytest.mark.parametrize("language", LANGUAGES)
def test_method_translations_name_registered_methods_and_arguments(language: str) -> None:
    # Method summaries and argument descriptions are the server's English text; a
    # catalogue may translate them. A stale entry (renamed method or argument) fails.
    methods = {m["name"]: m for m in methods_document()["methods"]}
    for name, entry in catalogue(language)["methods"].items():
        assert name in methods, f"{language}.json translates unknown method {name}"
        assert isinstance(entry["summary"], str) and entry["summary"].strip()
        arguments = set(methods[name]["schema"]["properties"])
        assert set(entry.get("arguments", {})) <= arguments, (
            f"{language}.json: {name} has no arguments "
            f"{sorted(set(entry.get('arguments', {})) - arguments)}"
        )


def test_russian_translates_the_methods_that_exist_here() -> None:
    # Every method and argument description of this registry has a Russian text;
    # a method added later is shown with its English summary until translated.
    russian = catalogue("ru")["methods"]
    for name in (
        "send",
        "dial",
        "redirect",
        "gsmSendSMS",
        "onEvent",
        "onceEvent",
        "rmEvent",
        "dispatchEvent",
    ):
        schema = METHODS[name].schema.model_json_schema(by_alias=True)
        described = {
            arg
            for arg, prop in schema["properties"].items()
            if arg not in HIDDEN_ARGUMENTS and prop.get("description")
        }
        assert described <= set(russian[name]["arguments"]), name


@pytest.mark.parametrize("language", LANGUAGES)
async def test_catalogues_are_served(server: RunningServer, language: str) -> None:
    async with aiohttp.ClientSession() as session:
        for path in (f"i18n/{language}.json", "i18n/languages.json", "i18n.js"):
            async with session.get(f"{server.http_url}/static/{path}") as response:
                assert response.status == 200, path
                assert await response.read() == STATIC.joinpath(path).read_bytes()
                assert response.headers["Cache-Control"] == "no-cache"
        async with session.get(f"{server.http_url}/static/i18n/{language}.json") as response:
            assert response.content_type == "application/json"
            assert (await response.json())["strings"] == catalogue(language)["strings"]
