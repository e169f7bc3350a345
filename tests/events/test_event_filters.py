"""EventFilter: compiling client specs and matching events (docs/api.md, onEvent)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from vwell_pbx.errors import VwellError
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.events.filters import EventFilter, FilterError, glob_match, scalar_text
from vwell_pbx.protocol import Message

# The original product's own example events (tests/data/seed/events.txt).
NEWCHANNEL_GSM = Message.build(
    ("Event", "Newchannel"),
    ("Privilege", "call,all"),
    ("Channel", "YSGSM/11-1"),
    ("ChannelState", "1"),
    ("ChannelStateDesc", "Rsrvd"),
    ("CallerIDNum", "+79787342741"),
    ("CallerIDName", "+79787342741"),
    ("AccountCode", ""),
    ("Exten", "s"),
    ("Context", "DID_trunk_11"),
    ("Uniqueid", "1505301523.6253"),
)
DIAL = Message.build(
    ("Event", "Dial"),
    ("Privilege", "call,all"),
    ("SubEvent", "Begin"),
    ("Channel", "SIP/269-0000153c"),
    ("Destination", "SIP/267-0000153d"),
    ("CallerIDNum", "269"),
    ("UniqueID", "1505296320.6111"),
)
STATUS_WITH_VARIABLES = Message.build(
    ("Event", "Status"),
    ("Channel", "SIP/269-1"),
    ("Variable", "FOO=1"),
    ("Variable", "CRM_ID=Abc42"),
)


def event(message: Message) -> BusEvent:
    return BusEvent.from_message(message)


def matches(name: str | None, fields: Mapping[str, object] | None, message: Message) -> bool:
    return EventFilter.from_spec(name, fields).matches(event(message))


@pytest.mark.parametrize("name", ["Newchannel", "NewChannel", "NEWCHANNEL", "newchannel"])
def test_name_is_case_insensitive(name: str) -> None:
    assert matches(name, None, NEWCHANNEL_GSM)
    assert not matches(name, None, DIAL)
    assert EventFilter.from_spec(name).name_key == "newchannel"


@pytest.mark.parametrize("name", [None, "", "*", "**"])
def test_any_name(name: str | None) -> None:
    flt = EventFilter.from_spec(name)
    assert flt.name_key is None and flt.name_pattern == "*"
    assert flt.matches(event(NEWCHANNEL_GSM)) and flt.matches(event(DIAL))


def test_wildcard_name() -> None:
    flt = EventFilter.from_spec("Dial*")
    assert flt.name_key is None and flt.name_pattern == "dial*"
    assert flt.matches(event(DIAL))
    assert flt.matches(BusEvent(fields={"name": "DialBegin"}, name="DialBegin"))
    assert not flt.matches(event(NEWCHANNEL_GSM))
    assert matches("*channel", None, NEWCHANNEL_GSM)
    assert matches("n*ch*l", None, NEWCHANNEL_GSM)


def test_seed_field_filter() -> None:
    spec = {"CallerIDNum": "+79787342741"}
    assert matches("Newchannel", spec, NEWCHANNEL_GSM)
    assert not matches("Newchannel", {"CallerIDNum": "+71002003040"}, NEWCHANNEL_GSM)


def test_keys_and_values_are_case_insensitive() -> None:
    # AMI spells Uniqueid / UniqueID both ways; values compare without case too.
    assert matches("Dial", {"Uniqueid": "1505296320.6111"}, DIAL)
    assert matches("Newchannel", {"UNIQUEID": "1505301523.6253"}, NEWCHANNEL_GSM)
    assert matches("Newchannel", {"channel": "ysgsm/11-1"}, NEWCHANNEL_GSM)
    assert matches("Newchannel", {"CONTEXT": "did_TRUNK_11"}, NEWCHANNEL_GSM)


def test_every_field_must_match() -> None:
    assert matches(None, {"Channel": "YSGSM/11-1", "Exten": "s"}, NEWCHANNEL_GSM)
    assert not matches(None, {"Channel": "YSGSM/11-1", "Exten": "100"}, NEWCHANNEL_GSM)


def test_absent_field_never_matches_even_empty() -> None:
    assert not matches(None, {"Destination": ""}, NEWCHANNEL_GSM)
    assert not matches(None, {"Destination": "*"}, NEWCHANNEL_GSM)
    assert matches(None, {"AccountCode": ""}, NEWCHANNEL_GSM)  # present and empty


def test_list_values_any_of() -> None:
    spec: dict[str, object] = {"CallerIDNum": ["269", "+79787342741"]}
    assert matches(None, spec, NEWCHANNEL_GSM)
    assert matches(None, spec, DIAL)
    assert not matches(None, {"CallerIDNum": ["1", "2"]}, DIAL)


def test_wildcard_values() -> None:
    assert matches(None, {"CallerIDNum": "+7978*"}, NEWCHANNEL_GSM)
    assert matches(None, {"Channel": "ysgsm/*"}, NEWCHANNEL_GSM)
    assert matches(None, {"Channel": "*-1"}, NEWCHANNEL_GSM)
    assert matches(None, {"Uniqueid": "15053*.*53"}, NEWCHANNEL_GSM)
    assert matches(None, {"Channel": "*"}, NEWCHANNEL_GSM)
    assert not matches(None, {"CallerIDNum": "+7100*"}, NEWCHANNEL_GSM)
    assert matches(None, {"CallerIDNum": ["+7100*", "+7978*"]}, NEWCHANNEL_GSM)


def test_repeated_header_matches_any_item() -> None:
    assert matches("Status", {"Variable": "crm_id=abc42"}, STATUS_WITH_VARIABLES)
    assert matches("Status", {"variable": "FOO=*"}, STATUS_WITH_VARIABLES)
    assert not matches("Status", {"Variable": "BAR=1"}, STATUS_WITH_VARIABLES)


def test_numbers_and_booleans_compare_as_javascript_strings() -> None:
    assert matches(None, {"ChannelState": 1}, NEWCHANNEL_GSM)
    assert matches(None, {"ChannelState": 1.0}, NEWCHANNEL_GSM)
    assert matches(None, {"Uniqueid": 1505301523.6253}, NEWCHANNEL_GSM)
    assert scalar_text(True) == "true" and scalar_text(False) == "false"
    assert scalar_text(1.5) == "1.5" and scalar_text(-0.0) == "0"
    assert scalar_text(None) is None and scalar_text(float("nan")) is None
    flag = BusEvent(fields={"name": "X", "Answered": "TRUE"}, name="X")
    assert EventFilter.from_spec("X", {"answered": True}).matches(flag)


def test_pushed_name_field_is_matchable() -> None:
    assert matches(None, {"name": "newchannel"}, NEWCHANNEL_GSM)


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        (None, {"CallerIDNum": None}, "event.CallerIDNum must be a string, number, boolean"),
        (None, {"CallerIDNum": {"a": 1}}, "event.CallerIDNum must be a string, number, boolean"),
        (None, {"CallerIDNum": ["1", ["2"]]}, "event.CallerIDNum must be a string, number"),
        (None, {"CallerIDNum": []}, "event.CallerIDNum must not be an empty list"),
        (None, {"": "1"}, "event field names must be non-empty strings"),
        (None, {"X": ["1"] * 257}, "event.X has more than 256 values"),
        (None, {"X": "y" * 1025}, "event.X is longer than 1024 characters"),
        (None, {f"k{i}": "v" for i in range(65)}, "more than 64 field filters"),
        (5, None, "event.name must be a string"),
        ("N" * 1025, None, "event.name is longer than 1024"),
    ],
)
def test_bad_specs_name_the_field(name: object, fields: dict[str, object], message: str) -> None:
    with pytest.raises(FilterError, match=message.replace(".", r"\.")):
        EventFilter.from_spec(name, fields)  # type: ignore[arg-type]
    assert issubclass(FilterError, VwellError)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (("ab", ""), "abc", True),
        (("ab", ""), "ab", True),
        (("ab", ""), "a", False),
        (("", "bc"), "abc", True),
        (("", "bc"), "bd", False),
        (("a", "b", "c"), "axbyc", True),
        (("a", "b", "c"), "abc", True),
        (("a", "b", "c"), "ac", False),
        (("a", "a"), "a", False),
        (("a", "a"), "aa", True),
        (("", "x", "x", ""), "xx", True),
        (("", "x", "x", ""), "x", False),
    ],
)
def test_glob_match(pattern: tuple[str, ...], text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


def test_glob_match_is_linear_on_hostile_patterns() -> None:
    flt = EventFilter.from_spec(None, {"X": "*a" * 30 + "*b"})
    hostile = BusEvent(fields={"X": "a" * 100_000}, name="E")
    assert not flt.matches(hostile)  # would take ages with a backtracking regex
