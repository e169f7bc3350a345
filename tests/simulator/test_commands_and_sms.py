"""Action: Command (both answer formats), Yeastar GSM CLI, TG smscommand, chan_dongle, SMS in."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from tests.support.ami_peer import Connect, keys
from tests.support.simulator import fast_simulator
from vwell_pbx.simulator import PbxSimulator, SpanState, server
from vwell_pbx.simulator.actions import channels
from vwell_pbx.simulator.gsm import parse_send_sms, split_cli_args, url_encode


async def test_core_show_version_and_unknown_command(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    version = await client.action(
        ("Action", "Command"), ("ActionID", "v"), ("Command", "core show version")
    )
    assert keys(version) == ["Response", "ActionID", "Message", "Output"]
    assert version.get("Message") == "Command output follows"
    assert (version.get("Output") or "").startswith("Asterisk 20.20.1 built by")
    async with fast_simulator(gsm=False) as plain:
        other = await connect(plain, login=True, events="off")
        unknown = await other.action(
            ("Action", "Command"), ("ActionID", "u"), ("Command", 'gsm send sms 1 123 "hi"')
        )
        assert unknown.headers == (
            ("Response", "Error"),
            ("ActionID", "u"),
            ("Message", "Command output follows"),
            (
                "Output",
                "No such command 'gsm send sms 1 123 \"hi\"' (type 'core show help "
                "gsm send' for other possible commands)",
            ),
        )
    empty = await client.action(
        ("Action", "Command"), ("ActionID", "e"), ("Command", "core show channels concise")
    )
    assert empty.get_all("Output") == [""]
    missing = await client.action(("Action", "Command"), ("ActionID", "m"))
    assert missing.headers == (
        ("Response", "Error"),
        ("ActionID", "m"),
        ("Message", "No command provided"),
    )


async def test_follows_format(connect: Connect) -> None:
    async with fast_simulator(command_format="follows") as sim:
        client = await connect(sim, login=True, events="off")
        answer = await client.action(
            ("Action", "Command"), ("ActionID", "f"), ("Command", "gsm show spans")
        )
        assert answer.headers == (
            ("Response", "Follows"),
            ("Privilege", "Command"),
            ("ActionID", "f"),
        )
        assert answer.output == ("GSM span 2: Power on, Provisioned, Up, Active,Standard",)
        client.send_raw(b"Action: Command\r\nCommand: core show foo\r\n\r\n")
        unknown = await client.response()
        assert unknown.headers == (("Response", "Follows"), ("Privilege", "Command"))
        assert unknown.output is not None and "No such command" in unknown.output[0]


async def test_gsm_spans_and_span_details(connect: Connect) -> None:
    spans = [
        SpanState(2),
        SpanState(3, ready=False),
        SpanState(4, sim_present=False),
        SpanState(5, signal=5),
    ]
    async with fast_simulator(spans=spans) as sim:
        client = await connect(sim, login=True, events="off")
        listing = await client.action(
            ("Action", "Command"), ("ActionID", "s"), ("Command", "gsm show spans")
        )
        assert listing.get_all("Output") == [
            "GSM span 2: Power on, Provisioned, Up, Active,Standard",
            "GSM span 3: Power on, Provisioned, Down, Active,Standard",
            "GSM span 4: Power on, Provisioned, Undetected SIM Card, Active,Standard",
            "GSM span 5: Power on, Provisioned, Up, Active,Standard",
        ]
        detail = await client.action(
            ("Action", "Command"), ("ActionID", "d"), ("Command", "gsm show span 5")
        )
        lines = detail.get_all("Output")
        assert "Network Status: Registered (Home network)" in lines
        assert "Signal Quality (0,31): 5" in lines
        assert "State: READY" in lines
        assert any(line.startswith("Status: ") for line in lines)
        down = await client.action(
            ("Action", "Command"), ("ActionID", "d3"), ("Command", "gsm show span 3")
        )
        assert "State: NOT READY" in down.get_all("Output")
        none = await client.action(
            ("Action", "Command"), ("ActionID", "d9"), ("Command", "gsm show span 9")
        )
        assert none.get_all("Output") == ["GSM span 9 does not exist"]


async def test_gsm_send_sms_command_records_decoded_text(
    pbx: PbxSimulator, connect: Connect
) -> None:
    pbx.spans.append(SpanState(3, ready=False))
    client = await connect(login=True, events="off")
    line = 'gsm send sms 2 +79780000000 "He said \\"hi\\" \\\\o/ Привет"'
    sent = await client.action(("Action", "Command"), ("ActionID", "sms"), ("Command", line))
    assert sent.get("Response") == "Success"
    assert pbx.sms_sent[-1].text == 'He said "hi" \\o/ Привет'
    assert (pbx.sms_sent[-1].span, pbx.sms_sent[-1].number) == (2, "+79780000000")
    not_ready = await client.action(
        ("Action", "Command"), ("ActionID", "nr"), ("Command", 'gsm send sms 3 100 "x"')
    )
    assert not_ready.get_all("Output") == ["GSM span 3 is not ready"]
    assert pbx.sms_sent[-1].ok is False
    unknown = await client.action(
        ("Action", "Command"), ("ActionID", "un"), ("Command", 'gsm send sms 7 100 "x"')
    )
    assert unknown.get_all("Output") == ["GSM span 7 does not exist"]


async def test_tg_smscommand_reports_update_sms_send(pbx: PbxSimulator, connect: Connect) -> None:
    pbx.spans.append(SpanState(3, ready=False))
    client = await connect(login=True)
    text = 'Привет "мир"\r\n+1 100%'
    command = f'gsm send sms 2 +79780000000 "{url_encode(text)}" 17'
    answer = await client.action(("Action", "smscommand"), ("ActionID", "tg"), ("command", command))
    assert answer.get("Response") == "Success"
    update = await client.event(lambda m: m.name == "UpdateSMSSend")
    assert (update.get("ID"), update.get("Status")) == ("17", "1")
    assert pbx.sms_sent[-1].text == text and pbx.sms_sent[-1].sms_id == "17"
    await client.action(
        ("Action", "smscommand"), ("ActionID", "tg2"), ("command", 'gsm send sms 3 100 "x" 18')
    )
    failed = await client.event(lambda m: m.name == "UpdateSMSSend" and m.get("ID") == "18")
    assert failed.get("Status") != "1"
    bad = await client.action(
        ("Action", "smscommand"), ("ActionID", "tg3"), ("command", "gsm show spans")
    )
    assert bad.get("Response") == "Error"


async def test_dongle_send_sms(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    answer = await client.action(
        ("Action", "DongleSendSMS"),
        ("ActionID", "dg"),
        ("Device", "dongle0"),
        ("Number", "+79780000000"),
        ("Message", "hello"),
    )
    assert answer.get("Response") == "Success"
    sms_id = answer.get("ID")
    assert sms_id
    status = await client.event(lambda m: m.name == "DongleSMSStatus")
    assert (status.get("Device"), status.get("ID"), status.get("Status")) == (
        "dongle0",
        sms_id,
        "Sent",
    )
    assert pbx.sms_sent[-1].via == "dongle"
    missing = await client.action(
        ("Action", "DongleSendSMS"), ("ActionID", "dg2"), ("Device", "dongle0")
    )
    assert missing.get("Response") == "Error"


async def test_disabled_sms_actions_are_unknown(connect: Connect) -> None:
    async with fast_simulator(tg_sms=False, dongle=False) as sim:
        client = await connect(sim, login=True, events="off")
        for action in ("smscommand", "DongleSendSMS"):
            answer = await client.action(("Action", action), ("ActionID", action))
            assert (answer.get("Message") or "").startswith("Invalid/unknown command")


async def test_incoming_sms_multipart(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True)
    text = "Привет! 100% & more\nline two"
    pbx.incoming_sms("+79787342741", text, span=3, parts=2)
    first = await client.event(lambda m: m.name == "ReceivedSMS")
    second = await client.event(lambda m: m.name == "ReceivedSMS" and m.get("Index") == "2")
    assert keys(first)[:9] == [
        "Event",
        "Privilege",
        "ID",
        "GsmSpan",
        "Sender",
        "Recvtime",
        "Index",
        "Total",
        "Smsc",
    ]
    assert first.get("ID") == second.get("ID")
    assert (first.get("GsmSpan"), first.get("Sender"), first.get("Total")) == (
        "3",
        "+79787342741",
        "2",
    )
    content = [unquote(m.get("Content") or "") for m in (first, second)]
    assert "".join(content) == text
    assert "\n" not in (first.get("Content") or "") + (second.get("Content") or "")


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ('gsm send sms 2 100 "a b"', ["gsm", "send", "sms", "2", "100", "a b"]),
        ('gsm send sms 2 100 "say \\"hi\\""', ["gsm", "send", "sms", "2", "100", 'say "hi"']),
        ('gsm send sms 2 100 "x" 17', ["gsm", "send", "sms", "2", "100", "x", "17"]),
        ('a  "" b', ["a", "", "b"]),
    ],
)
def test_cli_argument_splitting(line: str, args: list[str]) -> None:
    assert split_cli_args(line) == args


def test_parse_send_sms_shapes() -> None:
    parsed = parse_send_sms('gsm send sms 2 100 "x" 17')
    assert parsed is not None and (parsed.span, parsed.sms_id) == (2, "17")
    assert parse_send_sms("gsm send sms two 100 x") is None
    assert parse_send_sms("gsm send sms 2 100") is None


async def test_sms_bookkeeping_is_bounded(
    pbx: PbxSimulator, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_RECORDED_SMS", 3)
    client = await connect(login=True)
    for number in range(100, 106):  # spans that do not exist: no lock is kept for them
        await client.action(
            ("Action", "smscommand"),
            ("ActionID", f"s{number}"),
            ("command", f'gsm send sms {number} 100 "x" {number}'),
        )
    last = await client.event(lambda m: m.name == "UpdateSMSSend" and m.get("ID") == "105")
    assert last.get("Status") == "0"
    assert [sms.sms_id for sms in pbx.sms_sent] == ["103", "104", "105"]
    assert pbx._span_locks == {}


async def test_global_variables_are_bounded(
    pbx: PbxSimulator, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channels, "MAX_GLOBAL_VARS", 2)
    client = await connect(login=True, events="off")
    for name in ("A", "B", "A", "C"):  # setting A again makes it the newest
        await client.action(
            ("Action", "Setvar"), ("ActionID", name), ("Variable", name), ("Value", name.lower())
        )
    values = {}
    for name in ("A", "B", "C"):
        got = await client.action(
            ("Action", "Getvar"), ("ActionID", f"g{name}"), ("Variable", name)
        )
        values[name] = got.get("Value")
    assert values == {"A": "a", "B": "", "C": "c"}
