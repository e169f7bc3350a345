"""Contract and operations: /openapi.json (validated, then fuzzed against the live
server with schemathesis) and request ids in structured logs."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import hypothesis
import orjson
import pytest
import schemathesis
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import AGENT, ApiClient
from vwell_pbx.api.errors import ALL_CODES
from vwell_pbx.api.registry import METHODS
from vwell_pbx.web import logs
from vwell_pbx.web.server import RunningServer

EXAMPLES_PER_MODE = 60


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    # Fuzzed requests that do reach the PBX must come back quickly.
    return {
        "limits": {
            "max_wait_ms": 2000,
            "default_wait_ms": 1000,
            "requests_per_second": 1000,
            "burst": 1000,
        }
    }


async def fetch_document(server: RunningServer) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        document: dict[str, Any] = await response.json()
        return document


async def test_the_document_is_valid_openapi_3_1(server: RunningServer) -> None:
    document = await fetch_document(server)
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert {"/api", "/api/events", "/health", "/metrics"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    mapping = schemas["ApiRequest"]["discriminator"]["mapping"]
    assert set(mapping) == set(METHODS)
    for name, method in METHODS.items():
        arguments = schemas[f"{name}Arguments"]
        # Generated from the very model dispatch validates with.
        expected = method.schema.model_json_schema(by_alias=True)
        assert set(expected["properties"]) | {"reqId"} == set(arguments["properties"])
        assert expected.get("required", []) == arguments.get("required", [])
        assert {"login", "login2", "sha1", "reqId"} <= set(arguments["properties"])
        answer_fields = schemas[f"{name}Answer"]["allOf"][1]["properties"]
        assert set(answer_fields) == set(method.answer)
    assert "from" in schemas["dialArguments"]["properties"]  # the alias, as clients send it
    assert schemas["Envelope"]["properties"]["errCode"]["enum"] == [*ALL_CODES, None]


def _fuzz(document: dict[str, Any], base_url: str) -> list[str]:
    """Run schemathesis on /api (blocking: called in a thread while the server runs)."""
    schema = schemathesis.openapi.from_dict(document).include(path="/api")
    problems: list[str] = []
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert len(operations) == 2  # GET and POST /api
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(
                case=operation.as_strategy(generation_mode=mode), signed_in=st.booleans()
            )
            def check(case: schemathesis.Case[Any], signed_in: bool) -> None:
                body = case.body
                argument = body.get("argument") if isinstance(body, dict) else None
                if signed_in and isinstance(argument, dict):
                    argument.update(AGENT)  # reach past authentication too
                response = case.call(base_url=base_url, timeout=10)
                where = f"{case.method} {case.path} {case.query or ''} {str(body)[:200]}"
                if response.status_code not in (200, 400, 413):
                    problems.append(f"HTTP {response.status_code}: {where}")
                    return
                try:
                    answer = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    problems.append(f"not JSON: {where}")
                    return
                if not (isinstance(answer, dict) and {"err", "errCode", "reqId"} <= set(answer)):
                    problems.append(f"no envelope {answer!r}: {where}")
                elif answer["errCode"] not in (*ALL_CODES, None) or answer["errCode"] == "internal":
                    problems.append(f"errCode {answer['errCode']!r}: {where}")
                case.validate_response(response, checks=checks)

            check()
    return problems


@pytest.mark.timeout(120)
@pytest.mark.slow  # schemathesis: hundreds of generated requests
async def test_schemathesis_against_the_live_api(server: RunningServer) -> None:
    document = await fetch_document(server)
    problems = await asyncio.to_thread(_fuzz, document, server.http_url)
    assert not problems, "\n".join(problems[:20])


# --- request ids in logs ------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The server's own JSON log handler (configure_logging), writing into a buffer."""
    root = logging.getLogger()
    level = root.level
    logs.configure_logging("info", "json")
    buffer = io.StringIO()
    for handler in root.handlers:
        if getattr(handler, "_vwell", False):
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_vwell", False):
                root.removeHandler(handler)
        root.setLevel(level)


async def test_json_log_lines_carry_the_request_id_and_no_credentials(
    api: ApiClient, json_logs: io.StringIO
) -> None:
    # An operator may not dispatch events: the refusal is logged inside the request.
    async with api.session.post(
        api.url, json={"method": "dispatchEvent", "argument": {**AGENT, "event": {"name": "X"}}}
    ) as response:
        assert (await response.json())["errCode"] == "forbidden"
        request_id = response.headers["X-Request-Id"]
    ws = await api.ws()
    answer = await ws.call("dispatchEvent", event={"name": "X"})
    assert answer["errCode"] == "forbidden"
    await ws.close()
    lines = [
        orjson.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")
    ]
    refusals = [entry for entry in lines if "forbidden" in entry["message"]]
    assert len(refusals) == 2, lines
    http_line, ws_line = refusals
    assert http_line["requestId"] == request_id
    assert ws_line["requestId"] and ws_line["requestId"] != request_id
    assert "." in ws_line["requestId"]  # connection id . request number
    for entry in lines:
        text = orjson.dumps(entry).decode()
        assert AGENT["sha1"] not in text
