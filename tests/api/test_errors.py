"""The error-code contract: one ErrorCode type, one table, and what derives from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vwell_pbx.ami.client as ami_client
from tests.support import ADMIN, ApiClient
from vwell_pbx.ami import errors as ami_errors
from vwell_pbx.ami.errors import AmiError, AnswerTooLarge, LoginFailed, PbxUnavailable
from vwell_pbx.api import errors as api_errors
from vwell_pbx.api.errors import (
    ALL_CODES,
    ERROR_CODES,
    ErrorCode,
    error_code,
    error_table_markdown,
)
from vwell_pbx.errors import VwellError
from vwell_pbx.pbx import errors as pbx_errors
from vwell_pbx.pbx.errors import PbxRejected
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_error_table_is_generated_from_error_code() -> None:
    text = API_MD.read_text(encoding="utf-8")
    assert error_table_markdown() in text, (
        "docs/api.md's error table differs from ErrorCode; paste error_table_markdown()"
    )
    documented = re.findall(r"^\| `([a-z_]+)` \| \d{3} \|", text, flags=re.MULTILINE)
    assert documented == list(ALL_CODES)


def test_every_code_has_a_status_and_a_meaning_and_is_used() -> None:
    assert ALL_CODES[-1] == "internal"
    for code in ErrorCode:
        assert 400 <= code.http_status < 600 and code.meaning
        assert code == code.value  # a str: compares equal to what clients read
    produced = set(ERROR_CODES.values())
    assert produced == set(ErrorCode) - {ErrorCode.INTERNAL}


def test_every_error_class_of_the_package_has_a_code_or_is_a_root() -> None:
    """A new exception class needs a row in ERROR_CODES (or a base class that has one)."""
    roots = {api_errors.ApiError, AmiError}
    modules = [api_errors, pbx_errors, ami_errors]
    checked = 0
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, VwellError)
                and value.__module__ == module.__name__
                and value not in roots
            ):
                assert error_code(value.__new__(value)) is not ErrorCode.INTERNAL, value
                checked += 1
    assert checked >= 17  # 6 api, 6 pbx, 5 ami classes today


def test_login_failed_is_not_under_the_retrying_branch() -> None:
    assert not issubclass(LoginFailed, PbxUnavailable)
    assert issubclass(LoginFailed, AmiError)
    assert error_code(LoginFailed("refused")) is ErrorCode.PBX_UNAVAILABLE


def test_one_exception_for_a_pbx_error_answer() -> None:
    assert not hasattr(api_errors, "PbxAnswerError")
    response = Message.build(("Response", "Error"), ("Message", "No such channel"))
    assert error_code(PbxRejected("No such channel", response)) is ErrorCode.PBX_ERROR
    assert error_code(AnswerTooLarge("long")) is ErrorCode.ANSWER_TOO_LARGE


async def test_an_over_long_event_list_answers_a_named_code(
    api: ApiClient, simulator: PbxSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two calls give a CoreShowChannels list of at least two items; with the bound at
    # one item the list is over-long (the real bound, 100 000, is the same code path).
    await simulator.incoming_call("+79787342741", hold=5)
    await simulator.incoming_call("+79787342742", hold=5)
    monkeypatch.setattr(ami_client, "MAX_LIST_ITEMS", 1)
    answer = await api.post(
        "send", creds=ADMIN, callbackAwait=True, fields={"action": "CoreShowChannels"}
    )
    assert answer["errCode"] == "answer_too_large", answer
    assert "CoreShowChannels" in answer["err"] and "more than 1 items" in answer["err"]
    monkeypatch.setattr(ami_client, "MAX_LIST_ITEMS", 100_000)
    # The connection is still fine.
    ping = await api.post("send", callbackAwait=True, fields={"action": "Ping"})
    assert ping["err"] is None, ping
