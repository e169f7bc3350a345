"""SMS backends against the real simulator over loopback.

Simulator texts (``vwell_pbx.simulator.gsm``): ``gsm show spans`` lists ``GSM span N:
..., Up|Down|Undetected SIM Card, ...``; ``gsm show span N`` has ``State: READY`` or
``State: NOT READY``; ``gsm send sms`` prints nothing when queued and ``GSM span N is
not ready`` otherwise. ``smscommand`` is answered and later reported with
``UpdateSMSSend`` (``Status: 1`` when the span can send); ``DongleSendSMS`` answers with
an ``ID`` and reports ``DongleSMSStatus`` ``Sent``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from tests.support.simulator import PbxFactory, received
from vwell_pbx.ami import ActionResult
from vwell_pbx.pbx.errors import (
    InvalidArgument,
    NoReadySpan,
    NotSupported,
    PbxRejected,
    SmsQueueFull,
)
from vwell_pbx.pbx.sms import (
    DongleBackend,
    PacedSmsBackend,
    SmsBackend,
    SmsQueue,
    YeastarCommandBackend,
    YeastarTgBackend,
    flatten_controls,
    make_sms_backend,
)
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import SpanState


def unpaced() -> SmsQueue:
    """A queue without the 10 s module pace (pacing has its own tests)."""
    return SmsQueue(interval=0)


HOSTILE = 'Привет "мир" C:\\dir\\ 100%\r\nAction: Originate\r\n\r\nline3\ttab 👋'


def commands(sim: object) -> list[str]:
    """The CLI lines the simulator received through ``Action: Command``."""
    return [a.get("Command") or "" for a in received(sim, "Command")]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialect", "command_format"),
    [("asterisk20", None), ("asterisk20", "follows"), ("yeastar", None)],
)
async def test_yeastar_auto_span_discovery(
    make_pbx: PbxFactory, dialect: str, command_format: str | None
) -> None:
    spans = [
        SpanState(number=2, sim_present=False),
        SpanState(number=3, ready=False),
        SpanState(number=4),
    ]
    sim, client = await make_pbx(dialect=dialect, command_format=command_format, spans=spans)
    backend = YeastarCommandBackend(client, span="auto", queue=unpaced())
    assert isinstance(backend, SmsBackend)
    result = await backend.send("81002003040", HOSTILE, wait=True, timeout=5)
    assert (result.backend, result.span, result.status, result.sms_id) == (
        "yeastar",
        "4",
        "accepted",
        None,
    )
    assert commands(sim)[:4] == [
        "gsm show spans",
        "gsm show span 2",
        "gsm show span 3",
        "gsm show span 4",
    ]
    (sms,) = sim.sms_sent
    assert (sms.via, sms.span, sms.number, sms.ok) == ("command", 4, "81002003040", True)
    assert sms.text == flatten_controls(HOSTILE)  # one argument, quotes and backslashes kept

    await backend.send("269", "second", wait=False, timeout=5)  # the span is cached
    assert commands(sim)[5:] == ['gsm send sms 4 269 "second"']


async def test_yeastar_rediscovers_after_a_failed_send(make_pbx: PbxFactory) -> None:
    spans = [SpanState(number=2), SpanState(number=3)]
    sim, client = await make_pbx(spans=spans)
    backend = YeastarCommandBackend(client, span="auto", queue=unpaced())
    assert (await backend.send("100", "one", wait=False, timeout=5)).span == "2"
    spans[0].ready = False
    with pytest.raises(PbxRejected, match=r"^GSM span 2 is not ready$"):
        await backend.send("100", "two", wait=False, timeout=5)
    assert (await backend.send("100", "three", wait=False, timeout=5)).span == "3"
    assert [s.text for s in sim.sms_sent if s.ok] == ["one", "three"]


async def test_yeastar_fixed_span_skips_discovery(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)])
    backend = YeastarCommandBackend(client, span=2, queue=unpaced())
    result = await backend.send("100", "hi", wait=False, timeout=5)
    assert (result.span, result.status, result.detail) == ("2", "accepted", None)
    assert commands(sim) == ['gsm send sms 2 100 "hi"']


@pytest.mark.parametrize("command_format", ["output", "follows"])
async def test_yeastar_fixed_span_not_ready(make_pbx: PbxFactory, command_format: str) -> None:
    _, client = await make_pbx(
        spans=[SpanState(number=2, ready=False)], command_format=command_format
    )
    with pytest.raises(PbxRejected, match="GSM span 2 is not ready"):
        await YeastarCommandBackend(client, span=2, queue=unpaced()).send(
            "100", "hi", wait=False, timeout=5
        )


async def test_yeastar_auto_without_a_ready_span(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(
        spans=[SpanState(number=2, sim_present=False), SpanState(number=3, ready=False)]
    )
    with pytest.raises(NoReadySpan, match=r"span 2: NOT READY; span 3: NOT READY"):
        await YeastarCommandBackend(client, span="auto", queue=unpaced()).send(
            "100", "hi", wait=False, timeout=5
        )


@pytest.mark.parametrize("command_format", ["output", "follows"])
@pytest.mark.parametrize("span", ["auto", 2])
async def test_yeastar_without_gsm_module_is_not_supported(
    make_pbx: PbxFactory, command_format: str, span: str | int
) -> None:
    _, client = await make_pbx(gsm=False, command_format=command_format)
    with pytest.raises(
        NotSupported,
        match=r"^this PBX has no GSM module \(gsm (send sms|show "
        r"spans) is not a known command\)$",
    ):
        await YeastarCommandBackend(client, span=span, queue=unpaced()).send(
            "100", "hi", wait=False, timeout=5
        )


async def test_tg_waits_for_update_sms_send(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2), SpanState(number=3)])
    backend = YeastarTgBackend(client, span="auto", ids=itertools.count(500), queue=unpaced())
    result = await backend.send("81002003040", HOSTILE, wait=True, timeout=5)
    assert (result.backend, result.span, result.sms_id, result.status) == (
        "yeastar-tg",
        "2",
        "500",
        "sent",
    )
    assert result.event is not None and result.event.get("ID") == "500"
    (sms,) = sim.sms_sent
    assert (sms.via, sms.sms_id, sms.number) == ("smscommand", "500", "81002003040")
    assert sms.text == HOSTILE  # URL-encoding carries even the line breaks intact
    (action,) = received(sim, "smscommand")
    assert (action.get("command") or "").isascii()

    second = await backend.send("100", "no wait", wait=False, timeout=5)
    assert (second.sms_id, second.status, second.event) == ("501", "queued", None)


async def test_tg_reports_a_failed_send(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(spans=[SpanState(number=2, ready=False)])
    result = await YeastarTgBackend(client, span=2, ids=iter([7]), queue=unpaced()).send(
        "100", "hi", wait=True, timeout=5
    )
    assert (result.status, result.detail) == ("failed", "UpdateSMSSend Status: 0")


async def test_tg_report_that_does_not_come_leaves_it_queued(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(sms_send_delay=30)
    backend = YeastarTgBackend(client, span=2, queue=unpaced())
    result = await backend.send("100", "hi", wait=True, timeout=0.05)
    assert result.status == "queued"
    assert result.detail == "no UpdateSMSSend delivery report within 0.05 s"


async def test_tg_on_a_pbx_without_smscommand(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(tg_sms=False)
    with pytest.raises(NotSupported, match="no smscommand action"):
        await YeastarTgBackend(client, span=2, queue=unpaced()).send(
            "100", "hi", wait=True, timeout=5
        )


async def test_dongle_waits_for_dongle_sms_status(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx()
    backend = DongleBackend(client, device="dongle0", queue=unpaced())
    result = await backend.send("+79787342741", HOSTILE, wait=True, timeout=5)
    assert (result.backend, result.span, result.status) == ("dongle", "dongle0", "sent")
    assert result.sms_id is not None and result.sms_id.startswith("0x")
    assert result.event is not None and result.event.get("ID") == result.sms_id
    (sms,) = sim.sms_sent
    assert (sms.via, sms.device, sms.number) == ("dongle", "dongle0", "+79787342741")
    assert sms.text == flatten_controls(HOSTILE)
    assert "\n" not in sms.text and "\r" not in sms.text

    queued = await backend.send("100", "no wait", wait=False, timeout=5)
    assert queued.status == "queued" and queued.sms_id is not None


class ReportBeforeAnswer:
    """A client stand-in whose PBX reports delivery before it answers DongleSendSMS."""

    connected = True  # read before the SMS's action is written (hand-over tracking)

    def __init__(self) -> None:
        self.watches: list[asyncio.Future[Message]] = []
        self.predicates: list[Callable[[Message], bool]] = []

    def wait_event(
        self, predicate: Callable[[Message], bool], timeout: float
    ) -> asyncio.Future[Message]:
        self.predicates.append(predicate)
        self.watches.append(asyncio.get_running_loop().create_future())
        return self.watches[-1]

    async def send_action(self, fields: object, *, timeout: float) -> ActionResult:  # noqa: ASYNC109 - AmiClient's shape
        report = Message.build(
            ("Event", "DongleSMSStatus"), ("Device", "dongle0"), ("ID", "0x1f"), ("Status", "Sent")
        )
        assert not any(p(report) for p in self.predicates)  # the ID is not known yet
        return ActionResult(
            action_id="a-1",
            response=Message.build(
                ("Response", "Success"),
                ("Message", "[dongle0] SMS queued for send"),
                ("ID", "0x1f"),
            ),
        )


async def test_dongle_report_before_its_answer_is_not_missed() -> None:
    client = ReportBeforeAnswer()
    backend = DongleBackend(client, device="dongle0", queue=unpaced())  # type: ignore[arg-type]
    result = await asyncio.wait_for(backend.send("100", "hi", wait=True, timeout=5), 1)
    assert (result.status, result.sms_id) == ("sent", "0x1f")
    assert result.event is not None and result.event.get("ID") == "0x1f"
    (watch,) = client.watches
    assert watch.cancelled()  # the event watch is released, not left to time out


async def test_dongle_on_a_pbx_without_chan_dongle(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(dongle=False)
    with pytest.raises(NotSupported, match="chan_dongle is not loaded"):
        await DongleBackend(client, device="dongle0", queue=unpaced()).send(
            "100", "hi", wait=True, timeout=5
        )


@pytest.mark.parametrize(
    ("tel", "text", "argument"),
    [("+7 100", "hi", "tel"), ("100", "   \r\n", "msg"), ("100", "Я" * 600, "msg")],
)
async def test_bad_input_sends_nothing(
    make_pbx: PbxFactory, tel: str, text: str, argument: str
) -> None:
    sim, client = await make_pbx()
    backends: list[PacedSmsBackend] = [
        YeastarCommandBackend(client, span=2, queue=unpaced()),
        YeastarTgBackend(client, span=2, queue=unpaced()),
        DongleBackend(client, device="dongle0", queue=unpaced()),
    ]
    for backend in backends:
        with pytest.raises(InvalidArgument) as info:
            await backend.send(tel, text, wait=False, timeout=5)
        assert info.value.argument == argument
    for action in ("Command", "smscommand", "DongleSendSMS"):
        assert received(sim, action) == []


async def test_sends_of_a_span_are_paced_and_ordered(make_pbx: PbxFactory) -> None:
    interval = 0.05
    sim, client = await make_pbx()
    backend = make_sms_backend(client, backend="yeastar", span=2, interval=interval, queue_size=8)
    texts = [f"sms {n}" for n in range(4)]
    results = await asyncio.gather(*(backend.send("100", t, wait=False, timeout=5) for t in texts))
    assert [r.status for r in results] == ["accepted"] * 4
    assert [s.text for s in sim.sms_sent] == texts  # order kept
    # Arrival times at the simulator, by the same monotonic clock the queue paces with:
    # send n+1 leaves >= interval after send n was answered, which was after it arrived.
    arrived = [t for t, a in sim.arrivals if (a.get("Command") or "").startswith("gsm send")]
    assert all(b - a >= interval for a, b in itertools.pairwise(arrived))
    await backend.aclose()


async def test_full_queue_and_a_failure_do_not_break_the_span(make_pbx: PbxFactory) -> None:
    spans = [SpanState(number=2, ready=False)]
    sim, client = await make_pbx(spans=spans)
    backend = make_sms_backend(client, backend="yeastar", span="2", interval=0.01, queue_size=1)
    first, second = await asyncio.gather(
        backend.send("100", "one", wait=False, timeout=5),
        backend.send("100", "two", wait=False, timeout=5),
        return_exceptions=True,
    )
    assert isinstance(first, PbxRejected)  # the span was not ready
    assert isinstance(second, SmsQueueFull)
    spans[0].ready = True
    assert (await backend.send("100", "three", wait=False, timeout=5)).status == "accepted"
    assert [(s.text, s.ok) for s in sim.sms_sent] == [("one", False), ("three", True)]
    await backend.aclose()


@pytest.mark.parametrize(
    ("name", "span", "cls"),
    [
        ("yeastar", "auto", YeastarCommandBackend),
        ("yeastar-tg", 3, YeastarTgBackend),
        ("dongle", "dongle1", DongleBackend),
    ],
)
async def test_make_sms_backend(
    make_pbx: PbxFactory, name: str, span: str | int, cls: type
) -> None:
    _, client = await make_pbx()
    backend = make_sms_backend(client, backend=name, span=span, interval=0, queue_size=1)
    assert isinstance(backend, cls) and backend.name == name
    await backend.aclose()


@pytest.mark.parametrize(
    ("backend", "span", "field"),
    [
        ("sms", "auto", "sms.backend"),
        ("yeastar", "two", "sms.span"),
        ("yeastar", -1, "sms.span"),
        ("dongle", "auto", "sms.span"),
        ("dongle", "dongle 0", "sms.span"),
    ],
)
async def test_make_sms_backend_refuses_bad_configuration(
    make_pbx: PbxFactory, backend: str, span: str | int, field: str
) -> None:
    _, client = await make_pbx()
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make_sms_backend(client, backend=backend, span=span, interval=0, queue_size=1)
