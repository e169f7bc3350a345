"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the method registry.

Every method's argument schema is the pydantic model dispatch validates with
(``model_json_schema(by_alias=True)``; OpenAPI 3.1 schemas are JSON Schema 2020-12, so
it is used as is), with the common credential fields described and ``reqId`` added;
its answer lists the fields of ``Method.answer`` on top of the envelope. So the
document cannot drift from what the server accepts: adding a method to
``api.methods`` adds it here.

``POST /api`` takes ``oneOf`` the method envelopes, discriminated by ``method``;
``GET /api`` takes ``fb64json`` or the envelope in bracket notation (``deepObject``).
Both always answer 200 with the envelope (413 for a body over the limit, 400 for one
that cannot be parsed). The document is built once, when the application is made.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from vwell_pbx import __version__
from vwell_pbx.api import methods as _methods  # noqa: F401  (registers the methods)
from vwell_pbx.api.errors import ALL_CODES, ErrorCode
from vwell_pbx.api.registry import METHODS, Method

__all__ = ["OPENAPI_KEY", "build_openapi", "setup_openapi"]

_REF = "#/components/schemas/{model}"

_CREDENTIALS: dict[str, str] = {
    "login": "the account, e.g. `Agent` (a WebSocket that logged in may omit it)",
    "login2": "the person within the account, any Unicode, e.g. `Иванов И.И.`",
    "sha1": "hex SHA-1 of the user's password, computed by the client",
    "secret": "server-to-server secret instead of user credentials (when configured)",
    "pbx": "name of a configured PBX (default: the first)",
}

_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean", "null"]}

_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "Every answer: `err` null means success; method fields follow.",
    "required": ["err", "errCode", "reqId"],
    "properties": {
        "err": {"type": ["string", "null"], "description": "human-readable error, or null"},
        "errCode": {
            "enum": [*ALL_CODES, None],
            "description": "machine-readable error code, null on success:\n"
            + "\n".join(f"- `{code.value}`: {code.meaning}" for code in ErrorCode),
        },
        "reqId": {**_SCALAR, "description": "the request's reqId, echoed"},
        "retryAfter": {"type": "number", "description": "seconds to wait (rate_limited)"},
    },
}


def _arguments_schema(method: Method, components: dict[str, Any]) -> dict[str, Any]:
    schema = method.schema.model_json_schema(by_alias=True, ref_template=_REF)
    for name, nested in schema.pop("$defs", {}).items():
        components.setdefault(name, nested)
    properties: dict[str, Any] = schema.setdefault("properties", {})
    for key, description in _CREDENTIALS.items():
        if key in properties:
            properties[key] = {**properties[key], "description": description}
    properties["reqId"] = {**_SCALAR, "description": "any JSON scalar; echoed in the answer"}
    schema["title"] = f"{method.name} argument"
    return schema


def _answer_schema(method: Method) -> dict[str, Any]:
    fields = {name: {"description": text} for name, text in method.answer.items()}
    return {
        "allOf": [
            {"$ref": _REF.format(model="Envelope")},
            {"type": "object", "properties": fields},
        ],
        "description": method.summary,
    }


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _envelope_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json({"$ref": _REF.format(model="Envelope")})}


def build_openapi(methods: Mapping[str, Method] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``methods`` (default: every registered method)."""
    methods = METHODS if methods is None else methods
    components: dict[str, Any] = {"Envelope": copy.deepcopy(_ENVELOPE)}
    requests: list[dict[str, str]] = []
    answers: list[dict[str, str]] = []
    mapping: dict[str, str] = {}
    for name, method in sorted(methods.items()):
        components[f"{name}Arguments"] = _arguments_schema(method, components)
        components[f"{name}Request"] = {
            "type": "object",
            "title": f"{name} request",
            "description": method.summary
            + (" Needs a WebSocket or GET /api/events." if method.needs_websocket else ""),
            "required": ["method"],
            "properties": {
                "method": {"const": name},
                "argument": {"$ref": _REF.format(model=f"{name}Arguments")},
            },
        }
        components[f"{name}Answer"] = _answer_schema(method)
        ref = _REF.format(model=f"{name}Request")
        requests.append({"$ref": ref})
        answers.append({"$ref": _REF.format(model=f"{name}Answer")})
        mapping[name] = ref
    components["ApiRequest"] = {
        "oneOf": requests,
        "discriminator": {"propertyName": "method", "mapping": mapping},
    }
    components["ApiAnswer"] = {"anyOf": answers}
    api_answers = {
        "200": {
            "description": "the answer envelope, whatever the outcome (read `err`)",
            "content": _json({"$ref": _REF.format(model="ApiAnswer")}),
        },
        "400": _envelope_response("the request could not be parsed at all"),
        "413": _envelope_response("the body is larger than limits.max_body_bytes"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vwell-pbx-srv",
            "version": __version__,
            "description": "JSON API in front of an Asterisk PBX (AMI). The same envelope "
            "also travels over WebSocket (ws://HOST:8931/api). See docs/api.md.",
        },
        "paths": {
            "/api": {
                "get": {
                    "operationId": "apiGet",
                    "summary": "Call a method with the envelope in the query string",
                    "parameters": [
                        {
                            "name": "fb64json",
                            "in": "query",
                            "required": False,
                            "description": "base64 (standard or URL-safe, padding optional) of "
                            "the UTF-8 JSON envelope; replaces every other "
                            "parameter",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "method",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "argument",
                            "in": "query",
                            "required": False,
                            "style": "deepObject",
                            "explode": True,
                            "description": "the argument in bracket notation: "
                            "argument[login]=Agent&argument[fields][action]=Ping",
                            "schema": {"type": "object", "additionalProperties": True},
                        },
                    ],
                    "responses": api_answers,
                },
                "post": {
                    "operationId": "apiPost",
                    "summary": "Call a method (JSON body; forms in bracket notation work too)",
                    "requestBody": {
                        "required": True,
                        "content": _json({"$ref": _REF.format(model="ApiRequest")}),
                    },
                    "responses": api_answers,
                },
            },
            "/api/events": {"get": _events_operation()},
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "PBX connections, the database, event counters and webhooks",
                    "responses": {
                        "200": {
                            "description": "every PBX is logged in and the database answers",
                            "content": _json({"$ref": _REF.format(model="Health")}),
                        },
                        "503": {
                            "description": "some PBX is not logged in, or the database (or "
                            "its LISTEN connection) is down",
                            "content": _json({"$ref": _REF.format(model="Health")}),
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}
                    },
                }
            },
        },
        "components": {"schemas": {**components, "Health": _HEALTH}},
    }


_HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status", "pbx"],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "version": {"type": "string", "description": "the server's version"},
        "pbx": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "status": {"enum": ["connected", "connecting", "down"]},
                    "since": {"type": ["number", "null"]},
                    "lastError": {"type": ["string", "null"]},
                    "reconnects": {"type": "integer"},
                },
            },
        },
        "websockets": {"type": "integer"},
        "events": {"type": "object"},
        "webhooks": {
            "type": "array",
            "items": {"type": "object"},
            "description": "each configured webhook's delivery counters",
        },
        "database": {
            "type": "object",
            "description": "the storage: never its password",
            "properties": {
                "backend": {"enum": ["sqlite", "postgresql"]},
                "location": {"type": "string"},
                "reachable": {"type": "boolean"},
                "latencyMs": {"type": "number"},
                "schemaVersion": {"type": ["integer", "null"]},
                "schemaLatest": {"type": "integer"},
                "pool": {
                    "type": "object",
                    "properties": {
                        "open": {"type": "integer"},
                        "busy": {"type": "integer"},
                        "max": {"type": "integer"},
                    },
                },
                "listener": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["listening", "down", "unused"]},
                        "channels": {"type": "array", "items": {"type": "string"}},
                        "reconnects": {"type": "integer"},
                        "lastError": {"type": ["string", "null"]},
                    },
                },
                "error": {"type": ["string", "null"]},
            },
        },
        "instance": {
            "type": "object",
            "description": "this instance's name and its relay of dispatchEvent to the others",
            "properties": {
                "name": {"type": "string"},
                "relay": {"type": ["object", "null"]},
            },
        },
    },
}


def _events_operation() -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema or {"type": "string"},
        }

    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }

    return {
        "operationId": "events",
        "summary": "PBX events as Server-Sent Events (one onEvent subscription per stream)",
        "description": "Each event: `id: <its eventId>`, `data: <the JSON a WebSocket "
        "gets>`, no `event:` line (EventSource.onmessage gets all). `: ping` comments "
        "keep the stream alive. Reconnecting with Last-Event-ID replays the "
        "buffered events missed since; `: replay incomplete` says when some may be "
        "missing (another server run, or the buffer no longer reaches back).",
        "parameters": [
            query("fb64json", 'base64 of {"argument": {credentials, name, event}}'),
            query("name", "event name, case-insensitive, * wildcards; empty or * = all"),
            {
                "name": "event",
                "in": "query",
                "required": False,
                "style": "deepObject",
                "explode": True,
                "description": "field filters, as onEvent's event object",
                "schema": {"type": "object", "additionalProperties": True},
            },
            query("login", "the account (or the X-Vwell-Login header)"),
            query("login2", "the person (or the X-Vwell-Login2 header)"),
            query("sha1", "hex SHA-1 of the password (or the X-Vwell-Sha1 header)"),
            query("lastEventId", "resume after this eventId (as the Last-Event-ID header)"),
            query("since", "the same as lastEventId"),
            header("X-Vwell-Login", "login; percent-encoded UTF-8 allowed"),
            header("X-Vwell-Login2", "login2; percent-encoded UTF-8 allowed"),
            header("X-Vwell-Sha1", "sha1"),
            header("Last-Event-ID", "the eventId of the last event received"),
        ],
        "responses": {
            "200": {
                "description": "the event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_error_statuses(),
        },
    }


def _error_statuses() -> dict[str, Any]:
    """The event stream's refusals: each errCode's own HTTP status (``ErrorCode``)."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in ErrorCode:
        by_status.setdefault(code.http_status, []).append(code)
    return {
        str(status): _envelope_response(
            "; ".join(f"{code.value}: {code.meaning}" for code in codes)
        )
        for status, codes in sorted(by_status.items())
    }


OPENAPI_KEY = web.AppKey("openapi", bytes)


@functools.lru_cache(maxsize=1)
def _encoded_openapi(_registered: tuple[str, ...]) -> bytes:
    # Building the document costs tens of milliseconds (pydantic's JSON schemas), paid
    # by every app made; methods register at import time, so one encoding serves every
    # app of a process. The key, the registered names, keeps it from ever describing
    # another registry.
    return orjson.dumps(build_openapi())


def setup_openapi(app: web.Application) -> None:
    """Serve the document at ``GET /openapi.json`` (built once per process, served as bytes)."""
    app[OPENAPI_KEY] = _encoded_openapi(tuple(METHODS))
    app.router.add_get("/openapi.json", _openapi)


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")
