"""Argument validation shared by every method: "empty means absent", nested error paths."""

from __future__ import annotations

from typing import Any

import pytest

from vwell_pbx.api.envelope import validate_arguments
from vwell_pbx.api.errors import BadRequest
from vwell_pbx.api.registry import METHODS

# Arguments that make each method's schema valid (the methods may still refuse them).
VALID: dict[str, dict[str, Any]] = {
    "send": {"fields": {"action": "Ping"}},
    "dial": {"from": "269", "to": "100"},
    "redirect": {"channel": "SIP/269-1", "toTel": "267"},
    "gsmSendSMS": {"tel": "100", "msg": "hello"},
    "smsStatus": {"smsId": "0123456789abcdef0123456789abcdef"},
    "smsHistory": {},
    "onEvent": {"name": "Newchannel"},
    "onceEvent": {"name": "Newchannel"},
    "rmEvent": {"subscriptionId": "s1"},
    "dispatchEvent": {"event": {"name": "note"}},
    "whoami": {},
    "calls": {"extension": "269"},
    "callHistory": {"limit": 5},
}


def _optional_keys(method: str) -> list[str]:
    schema = METHODS[method].schema
    return [
        info.alias or name
        for name, info in schema.model_fields.items()
        if not info.is_required() and name not in schema.EMPTY_IS_A_VALUE
    ]


def test_every_method_has_valid_arguments_here() -> None:
    assert set(VALID) == set(METHODS), "a new method needs its valid arguments here"


@pytest.mark.parametrize("method", sorted(VALID))
@pytest.mark.parametrize("empty", ["", "   ", None])
def test_every_optional_argument_given_empty_is_absent(method: str, empty: object) -> None:
    schema = METHODS[method].schema
    keys = _optional_keys(method)
    assert {"login", "login2", "sha1", "secret", "pbx"} <= set(keys)
    for key in keys:
        without = {k: v for k, v in VALID[method].items() if k != key}
        given = validate_arguments(schema, {**without, key: empty})
        assert given == validate_arguments(schema, without), (method, key, given)
    # All of them at once, as a form that sends every field of a page does.
    required = {k: v for k, v in VALID[method].items() if k not in keys}
    everything = validate_arguments(schema, {**required, **dict.fromkeys(keys, empty)})
    assert everything == validate_arguments(schema, required)


def test_the_seed_dial_timeout_and_form_encoded_flags() -> None:
    schema = METHODS["dial"].schema
    args = validate_arguments(schema, {"from": "269", "to": "100", "timeout": "", "wait": ""})
    assert args.model_dump(include={"timeout", "wait"}) == {"timeout": None, "wait": False}
    # A value is still checked: only an empty one means "not given".
    with pytest.raises(BadRequest, match=r"^argument\.timeout must be an integer$"):
        validate_arguments(schema, {"from": "269", "to": "100", "timeout": "soon"})


def test_required_arguments_keep_an_empty_value() -> None:
    """``from: ''`` reaches the method, which names it (it is not silently absent)."""
    args = validate_arguments(METHODS["dial"].schema, {"from": "", "to": ""})
    assert args.model_dump(by_alias=True, include={"from_", "to"}) == {"from": "", "to": ""}
    with pytest.raises(BadRequest, match=r"^argument\.msg must not be empty$"):
        validate_arguments(METHODS["gsmSendSMS"].schema, {"tel": "1", "msg": ""})


def test_rm_event_name_empty_is_a_value() -> None:
    """``rmEvent`` with ``name: ''`` removes the any-event subscriptions of ``onEvent``
    with ``name: ''``: there the empty name is a value, by the schema's own choice."""
    args = validate_arguments(METHODS["rmEvent"].schema, {"name": ""})
    assert args.model_dump(include={"name"}) == {"name": ""}


def test_a_nested_problem_names_its_full_path() -> None:
    with pytest.raises(BadRequest) as caught:
        validate_arguments(METHODS["send"].schema, {"fields": {"Action": "a b"}})
    assert str(caught.value).startswith("argument.fields.action must be an AMI action name")


@pytest.mark.parametrize("method", ["calls", "callHistory"])
def test_filter_methods_refuse_a_misspelt_key(method: str) -> None:
    """Where arguments are filters, an unknown key would silently widen the answer."""
    schema = METHODS[method].schema
    credentials = {"login": "a", "login2": "b", "sha1": "c", "reqId": 7, "pbx": "office"}
    validate_arguments(schema, {**credentials, **VALID[method]})  # every known key passes
    with pytest.raises(BadRequest) as caught:
        validate_arguments(schema, {**credentials, "extention": "269"})
    message = str(caught.value)
    assert message.startswith("argument.extention is not an argument of this method")
    assert "extension, number, direction" in message
