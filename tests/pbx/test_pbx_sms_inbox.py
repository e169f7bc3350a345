"""Incoming SMS, without I/O: each backend's event shapes decoded, long SMS joined in any
order, partial texts flushed after their time, chan_dongle's twin events paired, and
undecodable bytes kept. The events are the simulator's own wire bytes, parsed back by the
client's codec, so the decoder reads exactly what a server reads."""

from __future__ import annotations

import base64
import itertools

import pytest

from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.pbx.sms.inbox import (
    InboxSettings,
    IncomingSms,
    SmsAssembler,
    decode_base64,
    decode_content,
    sender_number,
    ucs2_hex_text,
)
from vwell_pbx.protocol import NEED_DATA, AmiParser, Message
from vwell_pbx.simulator.gsm import IncomingSms as SimulatedSms
from vwell_pbx.simulator.gsm import SmsShape, incoming_sms_events

CYRILLIC = "Привет! Встреча в 15:00, каб. 302 — не опаздывайте 🙂\nвторая строка"


def parse(*chunks: bytes) -> list[Message]:
    """Wire bytes -> messages, as the AMI client's codec reads them."""
    parser = AmiParser(expect_greeting=False)
    parser.receive_data(b"".join(chunks))
    messages = []
    while (item := parser.next_event()) is not NEED_DATA:
        assert isinstance(item, Message)
        messages.append(item)
    return messages


def feed(assembler: SmsAssembler, messages: list[Message], now: float = 0.0) -> list[IncomingSms]:
    return [sms for message in messages for sms in assembler.feed("office", message, now)]


def events(shape: SmsShape, **options: object) -> list[Message]:
    return parse(*incoming_sms_events(SimulatedSms(sender="+79787342741", **options), shape))


@pytest.mark.parametrize("shape", ["mypbx", "tg", "dongle"])
def test_each_backend_shape_decodes_cyrillic(shape: SmsShape) -> None:
    assembler = SmsAssembler()
    done = feed(assembler, events(shape, text=CYRILLIC, span=3, device="dongle1"))
    done += assembler.expire(10.0)  # a dongle pair needs no waiting: nothing is left
    assert len(done) == 1, done
    sms = done[0]
    assert (sms.sender, sms.undecodable, sms.partial, sms.raw) == (
        "+79787342741",
        False,
        False,
        None,
    )
    assert sms.text == CYRILLIC
    assert sms.span == ("dongle1" if shape == "dongle" else "3")
    assert assembler.waiting == 0


@pytest.mark.parametrize("shape", ["mypbx", "tg"])
@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3])))
def test_long_sms_joined_in_any_order(shape: SmsShape, order: tuple[int, ...]) -> None:
    assembler = SmsAssembler()
    parts = events(shape, text=CYRILLIC, parts=3, order=order)
    assert len(parts) == 3
    assert feed(assembler, parts[:2]) == []  # nothing until the last part
    [sms] = feed(assembler, parts[2:])
    assert (sms.text, sms.parts, sms.partial) == (CYRILLIC, 3, False)


def test_parts_cut_inside_a_character_and_numbered_from_zero() -> None:
    assembler = SmsAssembler()
    data = CYRILLIC.encode()
    parts = events("tg", data=data, parts=4, order=[3, 1, 4, 2], first_index=0)
    [sms] = feed(assembler, parts)
    assert sms.text == CYRILLIC and not sms.undecodable


def test_a_missing_part_is_stored_as_it_is_after_its_time() -> None:
    assembler = SmsAssembler(InboxSettings(part_seconds=60))
    parts = events("tg", text="aaaabbbbcccc", parts=3)
    assert feed(assembler, [parts[0], parts[2]], now=100.0) == []
    assert assembler.expire(159.0) == []
    [sms] = assembler.expire(160.0)
    assert (sms.partial, sms.missing, sms.parts) == (True, (2,), 3)
    assert sms.text == "aaaacccc"  # what came, in order
    # A part that comes after the flush starts a new wait (it is not lost either).
    assert feed(assembler, [parts[1]], now=161.0) == []
    [late] = assembler.expire(300.0)
    assert (late.partial, late.missing) == (True, (1, 3))


def test_the_reassembly_buffer_is_bounded() -> None:
    assembler = SmsAssembler(InboxSettings(max_pending=2))
    flushed = []
    for sender in ("a", "b", "c"):
        first = parse(*incoming_sms_events(SimulatedSms(sender=sender, text="xy", parts=2), "tg"))
        flushed += feed(assembler, first[:1])
    assert [sms.sender for sms in flushed] == ["a"]  # the oldest, flushed as it is
    assert flushed[0].partial and assembler.waiting == 2


def test_dongle_twins_make_one_sms_with_the_exact_text() -> None:
    assembler = SmsAssembler(InboxSettings(pair_seconds=2))
    text = "строка 1\n\nстрока 3 "  # the plain event loses the empty line and cuts at it
    plain, encoded = events("dongle", text=text)
    assert feed(assembler, [plain], now=0.0) == []  # waits for its twin
    [sms] = feed(assembler, [encoded], now=0.1)
    assert sms.text == text
    assert assembler.expire(10.0) == []  # the plain one was dropped, not stored later


def test_a_dongle_plain_event_alone_is_stored_after_the_pairing_time() -> None:
    assembler = SmsAssembler(InboxSettings(pair_seconds=2))
    plain, _ = events("dongle", text="line one\nline two")
    assert feed(assembler, [plain], now=0.0) == []
    assert assembler.expire(1.9) == []
    [sms] = assembler.expire(2.0)
    assert sms.text == "line one\nline two"


def test_a_base64_event_before_its_plain_twin() -> None:
    assembler = SmsAssembler()
    plain, encoded = events("dongle", text="hello\nthere")
    [sms] = feed(assembler, [encoded, plain])
    assert sms.text == "hello\nthere" and assembler.waiting == 0


def test_two_dongle_sms_from_one_sender_without_twins_are_both_kept() -> None:
    assembler = SmsAssembler(InboxSettings(pair_seconds=2))
    first, _ = events("dongle", text="first")
    second, _ = events("dongle", text="second")
    assert [s.text for s in feed(assembler, [first, second])] == ["first"]
    assert [s.text for s in assembler.expire(5.0)] == ["second"]


@pytest.mark.parametrize("shape", ["tg", "dongle"])
def test_undecodable_bytes_are_kept(shape: SmsShape) -> None:
    data = b"caf\xe9 \xff\xfe ok"  # Latin-1, not UTF-8
    assembler = SmsAssembler()
    done = feed(assembler, events(shape, data=data)) + assembler.expire(10.0)
    [sms] = done
    assert sms.undecodable and sms.raw == data
    assert sms.text == data.decode("utf-8", "replace")


def test_base64_that_is_not_base64_is_kept_as_it_came() -> None:
    fragment = decode_base64("not base64 at all!")
    assert fragment.broken and fragment.data == b"not base64 at all!"
    assembler = SmsAssembler()
    message = Message.build(
        ("Event", "DongleNewSMSBase64"), ("Device", "d0"), ("From", "1"), ("Message", "%%%")
    )
    [sms] = assembler.feed("office", message, 0.0)
    assert (sms.text, sms.undecodable, sms.raw) == ("%%%", True, b"%%%")


def test_bytes_replaced_by_the_ami_reader_are_flagged() -> None:
    [message] = parse(
        b"Event: DongleNewSMSBase64\r\nDevice: d0\r\nFrom: 1\r\nMessage: "
        + base64.b64encode(b"ok")
        + b"\r\n\r\n",
        b"Event: ReceivedSMS\r\nGsmSpan: 2\r\nSender: 1\r\nContent: bad \xff byte\r\n\r\n",
    )[1:]
    [sms] = SmsAssembler().feed("office", message, 0.0)
    assert sms.undecodable and sms.raw is None and "\ufffd" in sms.text


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82", "Привет"),
        ("Hello+world%21", "Hello world!"),  # form encoding: + is a space
        ("+79787342741", "+79787342741"),  # no escape: a plain text, the + stays
        ("Call me at +7 978 100%", "Call me at +7 978 100%"),  # blanks: not URL-encoded
        ("%EF%BB%BFBOM%20first", "BOM first"),  # a leading byte order mark goes
        ("041F04400438043204350442", "Привет"),  # UCS-2 as hex
        ("004800690021", "Hi!"),
        ("12345678", "12345678"),  # a numeric code stays a number
        ("043004310432", "абв"),  # 12 decimal digits below U+0500: UCS-2
        ("123456789012", "123456789012"),  # ...but not when it would be far away
        ("CAFEBABE", "CAFEBABE"),  # hex letters without a digit: a word
        ("D800D800", "D800D800"),  # surrogates are no UCS-2 text
        ("00000000", "00000000"),  # control characters neither
    ],
)
def test_content_decoding_rules(content: str, text: str) -> None:
    message = Message.build(
        ("Event", "ReceivedSMS"), ("GsmSpan", "2"), ("Sender", "1"), ("Content", content)
    )
    [sms] = SmsAssembler().feed("office", message, 0.0)
    assert sms.text == text and not sms.undecodable


def test_decoders_directly() -> None:
    assert decode_content("a%20b").data == b"a b"
    assert decode_base64(" 0J/RgA== \n").data == "Пр".encode()
    assert ucs2_hex_text("041F0440") == "Пр"
    assert ucs2_hex_text("041") is None


def test_gsm_port_is_the_span_minus_one_and_missing_headers_do_not_break() -> None:
    [sms] = SmsAssembler().feed(
        "office",
        Message.build(("Event", "ReceivedSMS"), ("GsmPort", "1"), ("Index", "x"), ("Total", "")),
        0.0,
    )
    assert (sms.span, sms.sender, sms.text, sms.parts) == ("2", "", "", 1)


def test_two_instances_see_the_same_key_for_the_same_event() -> None:
    parts = events("tg", text="hello there", parts=2)
    one, two = SmsAssembler(), SmsAssembler()
    [first] = feed(one, parts)
    [second] = feed(two, list(reversed(parts)), now=5.0)
    assert first.dedupe_key == second.dedupe_key
    other = feed(SmsAssembler(), events("tg", text="hello there", reference="2"))
    assert other[0].dedupe_key != first.dedupe_key


def test_senders_are_normalised_when_they_are_numbers() -> None:
    rules = PhoneRules()
    assert sender_number("+7 978 734-27-41", rules) == "89787342741"
    assert sender_number("MTS", rules) == "MTS"
    assert sender_number("Bank\x07" + "x" * 100, rules) == "Bank" + "x" * 60
