"""The web console and the browser client library, served from the package.

Routes added by :func:`setup_console`:

- ``GET /`` redirects to ``/console``; ``GET /console`` is the single-page console.
- ``GET /client.js`` (ES module), ``/client.global.js`` (plain ``<script>`` build that
  sets ``window.VwellPbx``) and ``/client.d.ts`` (TypeScript declarations).
- ``GET /static/{path}``: every file under ``web/static`` (the console's script and
  styles, and ``i18n/``: the list of languages and one catalogue of strings per
  language, ``i18n/en.json``, ``i18n/ru.json``).
- ``GET /console/methods.json``: each API method's name, summary, answer fields and
  argument schema (JSON Schema, credentials left out), from which the console builds
  its forms.
- ``GET /examples/{name}``: the example pages for integrators, files under
  ``web/static/examples`` (``/examples/popup.html``: a CRM pop-up for incoming calls).

The files are read once from the installed package (``importlib.resources``, so a
wheel or a zip works as well as a source tree) and served from memory with a strong
ETag and ``Cache-Control: no-cache``: browsers revalidate on every load and get a 304
while nothing changed, so a new version of the server is never hidden behind a stale
cached client. Every HTML page (the console, the examples) carries :data:`CONSOLE_CSP`
and may not be framed, under whichever path it is reached.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import orjson
from aiohttp import web

import vwell_pbx.api.methods  # noqa: F401  (registers every method in METHODS)
from vwell_pbx.api.registry import METHODS

__all__ = [
    "CONSOLE_CSP",
    "EXAMPLES_FOLDER",
    "HIDDEN_ARGUMENTS",
    "methods_document",
    "setup_console",
]

#: Arguments every method takes that the console fills in itself (or never shows).
HIDDEN_ARGUMENTS = frozenset({"login", "login2", "sha1", "secret", "pbx", "reqId"})

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    # No media type is registered for TypeScript; text/plain shows it in a browser and
    # never gets it executed or mistaken for MPEG transport streams (.ts).
    ".ts": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: The folder under ``web/static`` whose files are served at ``/examples/``.
EXAMPLES_FOLDER = "examples/"

#: The console's page (and every example page) may only run its own scripts and styles;
#: it may open WebSockets to any server (the sign-in form takes a URL), and nothing may
#: frame it.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'; object-src 'none'"
)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str
    extra_headers: tuple[tuple[str, str], ...] = ()


def _content_type(name: str) -> str:
    for suffix, content_type in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return content_type
    return "application/octet-stream"


def _asset(body: bytes, content_type: str, *extra: tuple[str, str]) -> _Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return _Asset(body=body, content_type=content_type, etag=etag, extra_headers=extra)


def _load_static() -> dict[str, _Asset]:
    """Every regular file under ``vwell_pbx/web/static``, by its ``/``-separated path.

    The request's path is only ever looked up in this table, never joined to a folder,
    so no ``..`` or encoded slash can reach a file outside it.
    """
    assets: dict[str, _Asset] = {}
    folders: list[tuple[str, Traversable]] = [("", files("vwell_pbx.web").joinpath("static"))]
    while folders:
        prefix, folder = folders.pop()
        for entry in folder.iterdir():
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_dir():
                folders.append((f"{prefix}{entry.name}/", entry))
            elif entry.is_file():
                path = prefix + entry.name
                assets[path] = _asset(entry.read_bytes(), _content_type(entry.name))
    return assets


@functools.lru_cache(maxsize=1)
def _encoded_methods_document(_registered: tuple[str, ...]) -> bytes:
    # As the OpenAPI document (web/openapi.py): tens of milliseconds of pydantic
    # schemas, the same for every app of a process; keyed by the registered names.
    return orjson.dumps(methods_document())


def methods_document() -> dict[str, Any]:
    """The console's view of the registry: every method with its argument schema."""
    methods = []
    for method in METHODS.values():
        schema = method.schema.model_json_schema(by_alias=True)
        properties = {
            name: prop
            for name, prop in schema.get("properties", {}).items()
            if name not in HIDDEN_ARGUMENTS
        }
        schema["properties"] = properties
        if "required" in schema:
            schema["required"] = [n for n in schema["required"] if n not in HIDDEN_ARGUMENTS]
        methods.append(
            {
                "name": method.name,
                "summary": method.summary,
                "answer": dict(method.answer),
                "needsPbx": method.needs_pbx,
                "needsWebSocket": method.needs_websocket,
                "schema": schema,
            }
        )
    return {"methods": methods}


def _respond(request: web.Request, asset: _Asset) -> web.Response:
    headers = {**_COMMON_HEADERS, "ETag": asset.etag, **dict(asset.extra_headers)}
    if asset.etag in _etags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _with_page_policy(asset: _Asset) -> _Asset:
    return _asset(
        asset.body,
        asset.content_type,
        ("Content-Security-Policy", CONSOLE_CSP),
        ("X-Frame-Options", "DENY"),
    )


def setup_console(app: web.Application) -> None:
    """Add the console's, the client library's and the examples' routes to ``app``."""
    static = _load_static()
    # Every page keeps its policy whichever path reaches it (/console and
    # /static/console.html are one page): none may be framed or run foreign scripts.
    for name, asset in list(static.items()):
        if name.endswith(".html"):
            static[name] = _with_page_policy(asset)
    console_page = static["console.html"]
    methods = _asset(_encoded_methods_document(tuple(METHODS)), "application/json")

    def serve(asset: _Asset) -> _Handler:
        async def handler(request: web.Request) -> web.Response:
            return _respond(request, asset)

        return handler

    async def root(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/console")

    async def static_file(request: web.Request) -> web.Response:
        asset = static.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(text="no such file\n")
        return _respond(request, asset)

    async def example_file(request: web.Request) -> web.Response:
        # Looked up in the table like /static/: the path is never joined to a folder.
        asset = static.get(EXAMPLES_FOLDER + request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(text="no such example\n")
        return _respond(request, asset)

    app.router.add_get("/", root)
    app.router.add_get("/console", serve(console_page))
    app.router.add_get("/console/methods.json", serve(methods))
    for name in ("client.js", "client.global.js", "client.d.ts"):
        app.router.add_get(f"/{name}", serve(static[name]))
    app.router.add_get("/static/{path:.+}", static_file)
    app.router.add_get("/examples/{path:.+}", example_file)
