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


def test_get_many_reads_several_headers_case_insensitively_in_the_order_asked() -> None:
    message = msg(
        ("Event", "Newstate"),
        ("channel", "PJSIP/201-1"),
        ("Uniqueid", "1.1"),
        ("UNIQUEID", "1.2"),
    )
    assert message.get_many("Uniqueid", "Channel", "Missing", "uniqueid") == (
        "1.1",
        "PJSIP/201-1",
        None,
        "1.1",
    )
    assert message.get_many() == ()


def test_messages_with_the_same_layout_share_lookups_but_not_values() -> None:
    # The index is shared by header-name layout: the second message must still answer
    # with its own values, and a spelling that is not the first occurrence's must find
    # the first occurrence.
    first = msg(("Event", "A"), ("UniqueID", "1"), ("Uniqueid", "2"))
    second = msg(("Event", "B"), ("UniqueID", "3"), ("Uniqueid", "4"))
    assert first.get("Uniqueid") == "1" and first.get("UniqueID") == "1"
    assert second.get("Uniqueid") == "3" and second.get("uniqueid") == "3"
    assert "UNIQUEID" in second and "Linkedid" not in second
    assert second.get_many("Event", "Uniqueid") == ("B", "3")


def test_an_adopted_index_answers_and_never_replaces_one_built() -> None:
    donor = msg(("Event", "A"), ("UniqueID", "1"), ("Channel", "SIP/1"))
    taker = msg(("Event", "B"), ("UniqueID", "2"), ("Channel", "SIP/2"))
    taker.adopt_header_index(donor.header_index())
    assert taker.header_index_if_built() is donor.header_index()
    assert taker.get_many("uniqueid", "Channel") == ("2", "SIP/2")
    own = msg(("Event", "C"), ("Channel", "SIP/3"))
    index = own.header_index()
    own.adopt_header_index(donor.header_index())  # it has one: kept
    assert own.header_index() is index and own.get("Channel") == "SIP/3"
