"""submit/settle: one SMS handed over without a queue, and the verdict a scheduler acts on.

Against the real simulator: a muted simulator reads what it gets and never answers (a
hung PBX), a stopped one refuses connections; spans are made unready through
``SpanState`` (the simulator then prints ``GSM span N is not ready`` or reports
``UpdateSMSSend`` ``Status: 0``).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.simulator import PbxFactory, received
from vwell_pbx.ami import (
    ActionTimeout,
    ConnectionStatus,
    LoginFailed,
    PbxUnavailable,
    TooManyPending,
)
from vwell_pbx.errors import VwellError
from vwell_pbx.pbx.errors import (
    InvalidArgument,
    NoReadySpan,
    NotSupported,
    PbxRejected,
    SmsQueueFull,
)
from vwell_pbx.pbx.sms import (
    Attempt,
    DongleBackend,
    PendingReport,
    SmsQueue,
    SmsResult,
    SmsSubmitter,
    Verdict,
    YeastarCommandBackend,
    YeastarTgBackend,
    verdict_for,
)
from vwell_pbx.protocol import LocalProtocolError, Message
from vwell_pbx.simulator import SpanState

ERROR = Message.build(("Response", "Error"), ("Message", "x"))


@pytest.mark.parametrize(
    ("error", "before", "after"),
    [
        (PbxUnavailable("not connected"), Verdict.RETRY, Verdict.IN_DOUBT),
        (LoginFailed("refused"), Verdict.RETRY, Verdict.IN_DOUBT),
        (ActionTimeout("late"), Verdict.RETRY, Verdict.IN_DOUBT),
        (TooManyPending("full"), Verdict.RETRY, Verdict.RETRY),
        (SmsQueueFull("full"), Verdict.RETRY, Verdict.RETRY),
        (NoReadySpan("none"), Verdict.RETRY, Verdict.RETRY),
        (PbxRejected("GSM span 2 is not ready", ERROR), Verdict.RETRY, Verdict.RETRY),
        (PbxRejected("[dongle0] Device busy", ERROR), Verdict.RETRY, Verdict.RETRY),
        (PbxRejected("GSM span 9 does not exist", ERROR), Verdict.FAILED, Verdict.FAILED),
        (NotSupported("no GSM module"), Verdict.FAILED, Verdict.FAILED),
        (InvalidArgument("msg", "is too long"), Verdict.FAILED, Verdict.FAILED),
        (LocalProtocolError("CR in a value"), Verdict.FAILED, Verdict.FAILED),
    ],
)
def test_verdict_table(error: VwellError, before: Verdict, after: Verdict) -> None:
    assert verdict_for(error, handed_over=False) is before
    assert verdict_for(error, handed_over=True) is after


def test_an_attempt_has_a_result_or_an_error() -> None:
    result = SmsResult("yeastar", "2", None, "accepted", None, None, None)
    with pytest.raises(ValueError, match="either a result or an error"):
        Attempt(verdict=Verdict.ACCEPTED)
    with pytest.raises(ValueError, match="either a result or an error"):
        Attempt(verdict=Verdict.FAILED, result=result, error=NoReadySpan("none"))


async def test_only_an_accepted_attempt_awaits_a_report() -> None:
    result = SmsResult("yeastar-tg", "2", "1", "failed", None, None, None)
    report = PendingReport(
        future=asyncio.get_running_loop().create_future(), event="UpdateSMSSend", within=1
    )
    with pytest.raises(ValueError, match="only an ACCEPTED"):
        Attempt(verdict=Verdict.FAILED, result=result, report=report)


def unpaced() -> SmsQueue:
    return SmsQueue(interval=0)


async def test_accepted_needs_no_report(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)])
    backend = YeastarCommandBackend(client, span=2, queue=unpaced())
    assert isinstance(backend, SmsSubmitter)
    attempt = await backend.submit("100", "hi", await_report=True, timeout=5)
    assert attempt.verdict is Verdict.ACCEPTED and attempt.report is None
    assert attempt.result is not None and attempt.result.status == "accepted"
    assert await backend.settle(attempt) is attempt
    assert [s.text for s in sim.sms_sent] == ["hi"]
    assert backend.queue.outstanding(backend.lane) == 0  # submit never queues


async def test_tg_report_settles_to_sent_or_failed(make_pbx: PbxFactory) -> None:
    spans = [SpanState(number=2), SpanState(number=3, ready=False)]
    _, client = await make_pbx(spans=spans)
    for span, verdict, status in ((2, Verdict.SENT, "sent"), (3, Verdict.FAILED, "failed")):
        backend = YeastarTgBackend(client, span=span, ids=iter([40 + span]), queue=unpaced())
        attempt = await backend.submit("100", "hi", await_report=True, timeout=5)
        assert attempt.verdict is Verdict.ACCEPTED and attempt.report is not None
        assert attempt.report.event == "UpdateSMSSend"
        settled = await backend.settle(attempt)
        assert settled.verdict is verdict and settled.error is None
        assert settled.result is not None and settled.result.status == status
        assert settled.result.event is not None and settled.result.event.get("ID") == str(40 + span)


async def test_busy_span_and_no_ready_span_are_worth_a_retry(make_pbx: PbxFactory) -> None:
    spans = [SpanState(number=2, ready=False)]
    sim, client = await make_pbx(spans=spans)
    fixed = await YeastarCommandBackend(client, span=2, queue=unpaced()).submit(
        "100", "one", await_report=False, timeout=5
    )
    assert fixed.verdict is Verdict.RETRY
    assert isinstance(fixed.error, PbxRejected) and fixed.reason == "GSM span 2 is not ready"
    auto = await YeastarCommandBackend(client, span="auto", queue=unpaced()).submit(
        "100", "two", await_report=False, timeout=5
    )
    assert auto.verdict is Verdict.RETRY and isinstance(auto.error, NoReadySpan)
    assert [(s.text, s.ok) for s in sim.sms_sent] == [("one", False)]


@pytest.mark.parametrize(
    ("options", "backend"),
    [
        ({"gsm": False}, lambda c: YeastarCommandBackend(c, span=2, queue=unpaced())),
        ({"tg_sms": False}, lambda c: YeastarTgBackend(c, span=2, queue=unpaced())),
        ({"dongle": False}, lambda c: DongleBackend(c, device="dongle0", queue=unpaced())),
    ],
)
async def test_a_pbx_without_the_module_fails_for_good(
    make_pbx: PbxFactory, options: dict[str, bool], backend: object
) -> None:
    _, client = await make_pbx(**options)
    submitter = backend(client)  # type: ignore[operator]
    attempt = await submitter.submit("100", "hi", await_report=True, timeout=5)
    assert attempt.verdict is Verdict.FAILED and isinstance(attempt.error, NotSupported)
    assert attempt.result is None


async def test_bad_input_fails_and_sends_nothing(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx()
    backend = YeastarTgBackend(client, span=2, queue=unpaced())
    attempt = await backend.submit("+7 100", "hi", await_report=False, timeout=5)
    assert attempt.verdict is Verdict.FAILED and isinstance(attempt.error, InvalidArgument)
    assert attempt.error.argument == "tel"
    assert received(sim, "smscommand") == []


async def test_pbx_down_before_the_hand_over_is_worth_a_retry(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)])
    down = asyncio.Event()
    client.add_state_listener(
        lambda state: down.set() if state.status is not ConnectionStatus.CONNECTED else None
    )
    await sim.stop()  # closes the connection and refuses new ones
    await asyncio.wait_for(down.wait(), 5)
    backend = YeastarCommandBackend(client, span=2, queue=unpaced())
    attempt = await backend.submit("100", "hi", await_report=False, timeout=5)
    assert attempt.verdict is Verdict.RETRY and isinstance(attempt.error, PbxUnavailable)


async def test_a_hung_pbx_while_finding_a_span_is_worth_a_retry(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)])
    sim.mute = True
    backend = YeastarCommandBackend(client, span="auto", queue=unpaced())
    attempt = await backend.submit("100", "hi", await_report=False, timeout=0.2)
    assert attempt.verdict is Verdict.RETRY and isinstance(attempt.error, ActionTimeout)
    assert "Command" in str(attempt.error)


@pytest.mark.parametrize(
    "backend",
    [
        lambda c: YeastarCommandBackend(c, span=2, queue=unpaced()),
        lambda c: YeastarTgBackend(c, span=2, queue=unpaced()),
        lambda c: DongleBackend(c, device="dongle0", queue=unpaced()),
    ],
)
async def test_a_lost_answer_after_the_hand_over_is_in_doubt(
    make_pbx: PbxFactory, backend: object
) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)])
    sim.mute = True  # reads the SMS's action, answers nothing
    submitter = backend(client)  # type: ignore[operator]
    attempt = await submitter.submit("100", "hi", await_report=True, timeout=0.2)
    assert attempt.verdict is Verdict.IN_DOUBT and isinstance(attempt.error, ActionTimeout)
    assert attempt.result is None and attempt.report is None


async def test_a_connection_lost_while_awaiting_the_report_leaves_it_accepted(
    make_pbx: PbxFactory,
) -> None:
    sim, client = await make_pbx(spans=[SpanState(number=2)], sms_send_delay=30)
    backend = YeastarTgBackend(client, span=2, queue=unpaced())
    attempt = await backend.submit("100", "hi", await_report=True, timeout=5)
    assert attempt.verdict is Verdict.ACCEPTED and attempt.report is not None
    sim.drop_connections()
    settled = await backend.settle(attempt)
    assert settled.verdict is Verdict.ACCEPTED and settled.report is None
    assert settled.result is not None and settled.result.status == "queued"
    assert settled.reason == "the connection to the PBX was lost before the UpdateSMSSend report"
