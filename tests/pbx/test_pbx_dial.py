"""dial() against the real simulator: outcomes follow the simulator's documented rules.

Simulator rules (``vwell_pbx.simulator.calls``): ``SIP/<from>`` answers unless listed in
``DEFAULT_EXTENSIONS``: ``SIP/100`` is unregistered (Reason 0), ``900`` busy (5),
``901`` rings without answer (3), ``903`` congested (8).
"""

from __future__ import annotations

import pytest

from tests.support.simulator import PbxFactory, received
from vwell_pbx.ami import ActionTimeout, PbxUnavailable
from vwell_pbx.pbx.dial import DialTemplates, OriginateOutcome, build_originate, dial, outcome_of
from vwell_pbx.pbx.errors import InvalidArgument, PbxRejected
from vwell_pbx.protocol import Message


@pytest.mark.parametrize("dialect", ["asterisk20", "yeastar"])
async def test_answered_call_reports_outcome_and_uniqueid(
    make_pbx: PbxFactory, dialect: str
) -> None:
    sim, client = await make_pbx(dialect=dialect)
    result = await dial(
        client,
        DialTemplates(),
        from_="269",
        to="81002003040",
        timeout_ms=30000,
        wait=True,
        wait_timeout=5,
        action_timeout=5,
    )
    assert result.outcome is OriginateOutcome.ANSWERED
    assert result.reason == 4
    assert result.uniqueid is not None and "." in result.uniqueid
    assert result.queued.get("Message") == "Originate successfully queued"
    assert result.event is not None and result.event.action_id == result.action_id
    (sent,) = received(sim, "Originate")
    assert sent.action_id == result.action_id
    assert [h for h in sent.headers if h[0] != "ActionID"] == build_originate(
        DialTemplates(), "269", "81002003040", 30000
    )


@pytest.mark.parametrize(
    ("from_", "outcome", "reason"),
    [
        ("900", OriginateOutcome.BUSY, 5),
        ("901", OriginateOutcome.NO_ANSWER, 3),
        ("903", OriginateOutcome.CONGESTION, 8),
        ("100", OriginateOutcome.FAILED, 0),
    ],
)
async def test_failed_calls(
    make_pbx: PbxFactory, from_: str, outcome: OriginateOutcome, reason: int
) -> None:
    _, client = await make_pbx()
    result = await dial(
        client,
        DialTemplates(),
        from_=from_,
        to="267",
        timeout_ms=5000,
        wait=True,
        wait_timeout=5,
        action_timeout=5,
    )
    assert (result.outcome, result.reason) == (outcome, reason)
    assert result.uniqueid is None  # "<unknown>" on failure


@pytest.mark.parametrize(
    ("from_", "name", "outcome", "reason"),
    [
        ("269", "OriginateSuccess", OriginateOutcome.ANSWERED, 4),
        ("900", "OriginateFailure", OriginateOutcome.BUSY, 5),
        ("100", "OriginateFailure", OriginateOutcome.FAILED, 0),
    ],
)
async def test_asterisk_14_result_events(
    make_pbx: PbxFactory, from_: str, name: str, outcome: OriginateOutcome, reason: int
) -> None:
    # Asterisk 1.4 reported OriginateSuccess/OriginateFailure, not OriginateResponse.
    _, client = await make_pbx(dialect="yeastar", legacy_originate_events=True)
    result = await dial(
        client,
        DialTemplates(),
        from_=from_,
        to="267",
        timeout_ms=5000,
        wait=True,
        wait_timeout=5,
        action_timeout=5,
    )
    assert result.event is not None and result.event.name == name
    assert result.event.action_id == result.action_id
    assert (result.outcome, result.reason) == (outcome, reason)
    if outcome is OriginateOutcome.ANSWERED:
        assert result.uniqueid is not None and "." in result.uniqueid
    else:
        assert result.uniqueid is None  # "<null>" in 1.4


RESPONSE, SUCCESS, FAILURE = "OriginateResponse", "OriginateSuccess", "OriginateFailure"
UNKNOWN = "<unknown>"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [("Event", RESPONSE), ("Response", "Success"), ("Reason", "4"), ("Uniqueid", "1.12")],
            (OriginateOutcome.ANSWERED, 4, "1.12"),
        ),
        (
            [
                ("Event", RESPONSE),
                ("Response", "Failure"),
                ("Reason", "0"),
                ("Uniqueid", "<unknown>"),
            ],
            (OriginateOutcome.FAILED, 0, None),
        ),
        (
            [("Event", RESPONSE), ("Response", "Failure"), ("Reason", "")],
            (OriginateOutcome.UNKNOWN, None, None),
        ),
        (
            [("Event", SUCCESS), ("Reason", "4"), ("Uniqueid", "1505301523.6253")],
            (OriginateOutcome.ANSWERED, 4, "1505301523.6253"),
        ),
        (
            [("Event", FAILURE), ("Reason", "8"), ("Uniqueid", "<null>")],
            (OriginateOutcome.CONGESTION, 8, None),
        ),
        # Without a usable Reason, 1.4's event name still tells the verdict.
        (
            [("Event", SUCCESS.lower()), ("Uniqueid", "1.2")],
            (OriginateOutcome.ANSWERED, None, "1.2"),
        ),
        ([("Event", FAILURE), ("Reason", "x")], (OriginateOutcome.FAILED, None, None)),
    ],
)
def test_outcome_of_every_result_event(
    headers: list[tuple[str, str]], expected: tuple[OriginateOutcome, int | None, str | None]
) -> None:
    assert outcome_of(Message.build(*headers)) == expected


async def test_without_wait_only_the_queued_answer(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx()
    result = await dial(
        client,
        DialTemplates(),
        from_="269",
        to="267",
        timeout_ms=5000,
        wait=False,
        wait_timeout=5,
        action_timeout=5,
    )
    assert result.queued.name == "Success"
    assert (result.outcome, result.reason, result.uniqueid, result.event) == (
        None,
        None,
        None,
        None,
    )


async def test_pbx_error_becomes_pbx_rejected(make_pbx: PbxFactory) -> None:
    # Only DLPN_DialPlan269 exists, so ringing 270 (context DLPN_DialPlan270) is refused.
    _, client = await make_pbx(contexts=["DLPN_DialPlan269"])
    with pytest.raises(PbxRejected) as info:
        await dial(
            client,
            DialTemplates(),
            from_="270",
            to="267",
            timeout_ms=5000,
            wait=True,
            wait_timeout=5,
            action_timeout=5,
        )
    assert info.value.message == "Extension does not exist."
    assert info.value.response.name == "Error"


async def test_late_outcome_is_an_action_timeout(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx(no_answer_after=5.0)
    with pytest.raises(ActionTimeout):
        await dial(
            client,
            DialTemplates(),
            from_="901",
            to="267",
            timeout_ms=30000,
            wait=True,
            wait_timeout=0.05,
            action_timeout=5,
        )


async def test_closed_client_is_pbx_unavailable(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx()
    await client.close()
    with pytest.raises(PbxUnavailable):
        await dial(
            client,
            DialTemplates(),
            from_="269",
            to="267",
            timeout_ms=5000,
            wait=False,
            wait_timeout=5,
            action_timeout=5,
        )


async def test_bad_input_sends_nothing(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx()
    with pytest.raises(InvalidArgument):
        await dial(
            client,
            DialTemplates(),
            from_="269\r\nAction: Hangup",
            to="267",
            timeout_ms=5000,
            wait=False,
            wait_timeout=5,
            action_timeout=5,
        )
    assert received(sim, "Originate") == []
