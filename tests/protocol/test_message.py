"""Message and Greeting values: lookups that the parser's output relies on."""

from __future__ import annotations

from vwell_pbx.protocol import Greeting, Message, MessageKind

from .support import msg


def test_get_is_case_insensitive_and_returns_the_first_of_repeats() -> None:
    message = msg(
        ("Event", "Status"),
        ("Variable", "FOO=one"),
        ("UniqueID", "1.2"),
        ("variable", "BAR=two"),
        ("ActionID", "a"),
    )
    assert message.get("VARIABLE") == "FOO=one"
    assert message.get_all("Variable") == ["FOO=one", "BAR=two"]
    assert message.get("Uniqueid") == "1.2"
    assert message.get("Missing") is None
    assert message.get("Missing", "x") == "x"
    assert "uniqueid" in message and "Nope" not in message and 3 not in message
    assert message.action_id == "a"
    assert message.to_dict() == {
        "Event": "Status",
        "Variable": ["FOO=one", "BAR=two"],
        "UniqueID": "1.2",
        "ActionID": "a",
    }


def test_kind_and_name_come_from_the_first_header() -> None:
    originate = msg(("Event", "OriginateResponse"), ("Response", "Success"))
    assert originate.kind is MessageKind.EVENT
    assert originate.name == "OriginateResponse"
    assert msg(("response", "Success")).kind is MessageKind.RESPONSE
    assert msg(("ACTION", "Ping")).kind is MessageKind.ACTION
    assert msg(("ActionID", "x")).kind is MessageKind.OTHER


def test_messages_compare_by_headers_and_output() -> None:
    assert msg(("Event", "A")) == Message(headers=(("Event", "A"),))
    assert msg(("Event", "A")) != msg(("Event", "A"), output=[])
    assert Message.from_mapping({"Event": "A", "V": ["1", "2"]}) == msg(
        ("Event", "A"), ("V", "1"), ("V", "2")
    )


def test_greeting_version() -> None:
    assert Greeting(line="Asterisk Call Manager/9.0.0").version == "9.0.0"
    assert Greeting(line="Asterisk Call Manager").version == ""
