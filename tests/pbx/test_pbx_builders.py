"""Pure builders: Originate and Redirect field lists."""

from __future__ import annotations

import pytest

from vwell_pbx.pbx.dial import (
    MAX_DIAL_TIMEOUT_MS,
    DialTemplates,
    OriginateOutcome,
    build_originate,
    outcome_of,
)
from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.redirect import MAX_CHANNEL_LENGTH, build_redirect, check_channel
from vwell_pbx.protocol import Message, encode_action


def test_default_originate_reproduces_the_original() -> None:
    fields = build_originate(DialTemplates(), "269", "81002003040", 30000)
    assert fields == [
        ("Action", "Originate"),
        ("Channel", "SIP/269"),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "81002003040"),
        ("Priority", "1"),
        ("Async", "yes"),
        ("CallerID", "81002003040"),
        ("Timeout", "30000"),
    ]
    encode_action(fields)  # the codec accepts it as is


def test_templates_and_variables() -> None:
    templates = DialTemplates(
        channel="Local/{from}@from-internal",
        context="ctx",
        exten="9{to}",
        priority="2",
        callerid='"Click to call" <{from}>',
        variables={"TARGET": "{to}", "BRACES": "{{x}}"},
    )
    fields = build_originate(templates, "100", "+380441234567", 5000)
    assert ("Channel", "Local/100@from-internal") in fields
    assert ("Exten", "9+380441234567") in fields
    assert ("Priority", "2") in fields
    assert ("CallerID", '"Click to call" <100>') in fields
    assert fields[-2:] == [("Variable", "TARGET=+380441234567"), ("Variable", "BRACES={x}")]


@pytest.mark.parametrize(
    ("field", "template"),
    [
        ("channel", "SIP/{frm}"),
        ("channel", "SIP/{from.__class__}"),
        ("context", "{0}"),
        ("exten", "{to"),
        ("callerid", "}"),
        ("channel", ""),
    ],
)
def test_bad_templates_name_the_field(field: str, template: str) -> None:
    with pytest.raises(ValueError, match=rf"dial\.{field}"):
        DialTemplates(**{field: template})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("from_", "to", "timeout", "argument"),
    [
        ("269\r\nAction: Hangup", "100", 1000, "from"),
        ("269", "+7 100", 1000, "to"),
        ("269", "", 1000, "to"),
        ("269", "100", 0, "timeout"),
        ("269", "100", MAX_DIAL_TIMEOUT_MS + 1, "timeout"),
        ("269", "100", True, "timeout"),
    ],
)
def test_originate_refuses_unnormalised_input(
    from_: str, to: str, timeout: int, argument: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        build_originate(DialTemplates(), from_, to, timeout)
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("4", OriginateOutcome.ANSWERED),
        ("5", OriginateOutcome.BUSY),
        ("3", OriginateOutcome.NO_ANSWER),
        ("1", OriginateOutcome.HUNG_UP),
        ("8", OriginateOutcome.CONGESTION),
        ("0", OriginateOutcome.FAILED),
        ("7", OriginateOutcome.UNKNOWN),
        ("", OriginateOutcome.UNKNOWN),
        ("x", OriginateOutcome.UNKNOWN),
    ],
)
def test_outcome_from_reason(reason: str, outcome: OriginateOutcome) -> None:
    event = Message.build(
        ("Event", "OriginateResponse"),
        ("Response", "Failure"),
        ("Reason", reason),
        ("Uniqueid", "<unknown>"),
    )
    got, code, uniqueid = outcome_of(event)
    assert got is outcome
    assert code == (int(reason) if reason.isdigit() else None)
    assert uniqueid is None


def test_outcome_keeps_a_real_uniqueid() -> None:
    event = Message.build(
        ("Event", "OriginateResponse"), ("Reason", "4"), ("Uniqueid", "1795838964.11")
    )
    assert outcome_of(event) == (OriginateOutcome.ANSWERED, 4, "1795838964.11")


def test_redirect_fields() -> None:
    assert build_redirect("YSGSM/11-1", "269", context="default") == [
        ("Action", "Redirect"),
        ("Channel", "YSGSM/11-1"),
        ("Exten", "269"),
        ("Context", "default"),
        ("Priority", "1"),
    ]


def test_dual_redirect_sends_the_peer_to_the_same_place() -> None:
    fields = build_redirect(
        "SIP/267-00000003",
        "700",
        context="DLPN_DialPlan269",
        extra_channel="Local/100@DLPN_DialPlan269-00000001;2",
    )
    assert fields[5:] == [
        ("ExtraChannel", "Local/100@DLPN_DialPlan269-00000001;2"),
        ("ExtraExten", "700"),
        ("ExtraContext", "DLPN_DialPlan269"),
        ("ExtraPriority", "1"),
    ]
    encode_action(fields)


@pytest.mark.parametrize(
    "channel", ["YSGSM/11-1", "Local/100@ctx-0001;1", "SIP/a&b", "DAHDI/i1/555-1", "Канал/1"]
)
def test_channel_names_kept_as_data(channel: str) -> None:
    assert check_channel(channel) == channel


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "SIP/1 2",
        "SIP/1\r\nAction: Hangup",
        "SIP/1\n",
        "SIP/1\x00",
        "SIP/\u200b1",
        "SIP/\u2028",
        "S" * (MAX_CHANNEL_LENGTH + 1),
    ],
)
def test_bad_channel_names(channel: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^argument\.channel "):
        build_redirect(channel, "269", context="default")
    with pytest.raises(InvalidArgument, match=r"^argument\.extraChannel "):
        build_redirect("SIP/1", "269", context="default", extra_channel=channel)


@pytest.mark.parametrize("to_tel", ["", "2 69", "269\r\n", "abc", "+"])
def test_redirect_refuses_unnormalised_target(to_tel: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^argument\.toTel "):
        build_redirect("SIP/1", to_tel, context="default")
