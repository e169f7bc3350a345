"""The console's routes over real HTTP: the files, their content types and caching
headers, the redirect from /, and /console/methods.json against the registry."""

from __future__ import annotations

from importlib.resources import files

import aiohttp
import pytest

from vwell_pbx.api.registry import METHODS
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
]


@pytest.mark.parametrize(("path", "name", "content_type"), ROUTES)
async def test_files_are_served_with_their_content_type(
    server: RunningServer, path: str, name: str, content_type: str
) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.http_url + path) as response:
        assert response.status == 200
        assert response.content_type == content_type
        assert response.charset == "utf-8"
        assert await response.read() == STATIC.joinpath(name).read_bytes()
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


async def test_the_console_page_has_its_policy_under_static_too(server: RunningServer) -> None:
    # The same page under /static/ must not be frameable without the policy.
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/static/console.html") as response,
    ):
        assert response.status == 200
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
