"""Channel classification, number display, the call object's shape and the limits."""

from __future__ import annotations

import dataclasses
import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.calls import (
    CALL_EVENT_NAMES,
    CONSUMED_EVENTS,
    DEFAULT_TRUNKS,
    CallRules,
    CallTracker,
    TrackerLimits,
)
from vwell_pbx.calls.model import (
    CALL_MESSAGE,
    CALL_OBJECT_KEYS,
    CallEvent,
    CallSnapshot,
    SnapshotDraft,
    Transfer,
    call_event,
    iso_ms,
    snapshot_of,
    to_ms,
)
from vwell_pbx.calls.rules import ChannelKind, endpoint
from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.protocol import Message


@pytest.mark.parametrize(
    ("channel", "kind", "extension", "trunk"),
    [
        ("SIP/269-0000153c", ChannelKind.EXTENSION, "269", None),
        ("PJSIP/2001-00000007", ChannelKind.EXTENSION, "2001", None),
        ("IAX2/300-1234", ChannelKind.EXTENSION, "300", None),
        ("YSGSM/11-1", ChannelKind.TRUNK, None, "YSGSM/11"),
        ("ysgsm/2-15", ChannelKind.TRUNK, None, "ysgsm/2"),
        ("SIP/trunk-00000001", ChannelKind.TRUNK, None, "SIP/trunk"),
        ("SIP/trunk_mts-0000000a", ChannelKind.TRUNK, None, "SIP/trunk_mts"),
        ("Dongle/dongle0-0100000001", ChannelKind.TRUNK, None, "Dongle/dongle0"),
        ("SIP/provider-00000002", ChannelKind.OTHER, None, None),
        ("DAHDI/1-1", ChannelKind.OTHER, None, None),
        ("Local/268@DLPN_DialPlan269-00000005;1", ChannelKind.LOCAL, None, None),
        ("Local/267@from-internal-3f2a,2", ChannelKind.LOCAL, None, None),
        ("SIP/267-00000002<ZOMBIE>", ChannelKind.ZOMBIE, None, None),
        ("SIP/267-00000002<MASQ>", ChannelKind.ZOMBIE, None, None),
    ],
)
def test_default_rules_sort_channel_names(
    channel: str, kind: ChannelKind, extension: str | None, trunk: str | None
) -> None:
    info = CallRules().classify(channel)
    assert (info.kind, info.extension, info.trunk) == (kind, extension, trunk)


def test_local_halves_share_a_pair_name() -> None:
    rules = CallRules()
    one = rules.classify("Local/268@ctx-00000005;1")
    two = rules.classify("Local/268@ctx-00000005;2")
    assert (one.local_pair, one.local_half) == ("Local/268@ctx-00000005", 1)
    assert (two.local_pair, two.local_half) == ("Local/268@ctx-00000005", 2)
    old = rules.classify("Local/268@ctx-8a1c,1")
    assert (old.local_pair, old.local_half) == ("Local/268@ctx-8a1c", 1)


def test_configured_patterns_replace_the_defaults_and_trunks_win() -> None:
    rules = CallRules(trunks=("SIP/74951234567*", "DAHDI/*"), extensions=("SIP/*",))
    assert rules.classify("SIP/74951234567-00000001").kind is ChannelKind.TRUNK
    assert rules.classify("DAHDI/1-1").kind is ChannelKind.TRUNK
    assert rules.classify("SIP/operator-00000001").extension == "operator"
    assert rules.classify("YSGSM/11-1").kind is ChannelKind.OTHER
    assert CallRules(trunks=(), extensions=()).classify("SIP/269-1").kind is ChannelKind.OTHER


@pytest.mark.parametrize(("what", "patterns"), [("trunks", ("",)), ("extensions", ("ok", " "))])
def test_an_empty_pattern_is_refused_naming_the_setting(
    what: str, patterns: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match=rf"calls\.{what}\[\d\]"):
        CallRules(**{what: patterns})  # type: ignore[arg-type]


def test_endpoint_drops_the_per_call_suffix() -> None:
    assert endpoint("SIP/269-0000153c") == "SIP/269"
    assert endpoint("SIP/267") == "SIP/267"
    assert endpoint("no-slash") == "no-slash"


# classify, endpoint and number without their shortcuts: the rules as documented, one
# regular expression per test, for the properties below.
_NAME_PARTS = [
    "SIP/",
    "PJSIP/",
    "YSGSM/",
    "Local/",
    "local/",
    "trunk",
    "269",
    "a",
    "-",
    "@",
    ";1",
    ",2",
    ";3",
    "<ZOMBIE>",
    "<MASQ>",
    "\n",
    "é",
    "٣",
    "x-0000153c",
    "-1",
]


def _reference_classify(rules: CallRules, channel: str) -> tuple[object, ...]:
    def globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
        if not patterns:
            return None
        return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)

    if channel.endswith(("<ZOMBIE>", "<MASQ>")):
        return (ChannelKind.ZOMBIE,)
    local = re.match(r"^Local/(?P<base>.+)[;,](?P<half>[12])$", channel, re.IGNORECASE)
    if local is not None:
        return (ChannelKind.LOCAL, "Local/" + local["base"], int(local["half"]))
    trunks, extensions = globs(rules.trunks), globs(rules.extensions)
    if trunks is not None and trunks.match(channel):
        return (ChannelKind.TRUNK, _reference_endpoint(channel))
    if extensions is not None and extensions.match(channel):
        return (ChannelKind.EXTENSION, _reference_endpoint(channel).partition("/")[2] or None)
    return (ChannelKind.OTHER,)


def _reference_endpoint(channel: str) -> str:
    return re.sub(r"-[0-9A-Za-z]+$", "", channel) if "/" in channel else channel


@given(
    name=st.lists(st.sampled_from(_NAME_PARTS), max_size=6).map("".join),
    trunks=st.lists(st.sampled_from(["YSGSM/*", "SIP/trunk*", "*a*-?", "Local/*"]), max_size=2),
    extensions=st.lists(st.sampled_from(["SIP/[0-9]*", "*-1", "PJSIP/*"]), max_size=2),
)
def test_classify_is_the_documented_rules(
    name: str, trunks: list[str], extensions: list[str]
) -> None:
    rules = CallRules(trunks=tuple(trunks), extensions=tuple(extensions))
    info = rules.classify(name)
    assert rules.classify(name) is info or info.kind is ChannelKind.LOCAL  # shared
    got: tuple[object, ...]
    if info.kind is ChannelKind.LOCAL:
        got = (info.kind, info.local_pair, info.local_half)
    elif info.kind is ChannelKind.TRUNK:
        got = (info.kind, info.trunk)
    elif info.kind is ChannelKind.EXTENSION:
        got = (info.kind, info.extension)
    else:
        got = (info.kind,)
    assert got == _reference_classify(rules, name)
    assert endpoint(name) == _reference_endpoint(name)


@given(st.text(alphabet="+0123456789 -()a<>\n\t٣", max_size=14))
def test_number_is_normalise_or_none(raw: str) -> None:
    rules = CallRules()
    stripped = raw.strip()
    expected: str | None
    if stripped.lower() in ("", "<unknown>", "unknown", "<none>", "s"):
        expected = None
    else:
        try:
            expected = rules.phone.normalise(stripped, argument="number")
        except InvalidArgument:
            expected = None
    assert rules.number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("+79787342741", "89787342741"),
        ("+7 (978) 734-27-41", "89787342741"),
        ("269", "269"),
        ("*8", "*8"),
        ("<unknown>", None),
        ("anonymous", None),
        ("", None),
        ("s", None),
        (None, None),
        ("9" * 40, None),
    ],
)
def test_numbers_are_normalised_like_client_numbers(raw: str | None, shown: str | None) -> None:
    assert CallRules().number(raw) == shown


def test_number_rewrites_follow_the_phone_rules() -> None:
    rules = CallRules(phone=PhoneRules(rewrite=(("+7", "7"),)))
    assert rules.number("+79787342741") == "79787342741"


def test_names_unknown_or_too_long() -> None:
    assert CallRules.name("<unknown>") is None
    assert CallRules.name("  Ivanov  ") == "Ivanov"
    assert CallRules.name("x" * 200) == "x" * 80


def test_times_are_iso_utc_with_milliseconds() -> None:
    assert iso_ms(to_ms(1_700_000_001.1219)) == "2023-11-14T22:13:21.122Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


#: An answered inbound call, ended after a blind transfer.
ENDED_CALL = CallSnapshot(
    call_id="1.1",
    pbx="office",
    status="ended",
    direction="inbound",
    from_number="89787342741",
    from_name=None,
    to_number="269",
    to_name="Reception",
    extension="269",
    trunk="YSGSM/11",
    did=None,
    started_at="2023-11-14T22:13:20.000Z",
    answered_at="2023-11-14T22:13:24.000Z",
    ended_at="2023-11-14T22:13:30.500Z",
    ring_seconds=4.0,
    talk_seconds=6.5,
    end_reason="completed",
    on_hold=False,
    transfers=(Transfer(type="blind", by="269", to="700", at="2023-11-14T22:13:29.000Z"),),
    channels=(),
    originated=False,
    action_id=None,
    extensions=frozenset({"269"}),
)


def test_call_event_dict_is_the_call_object_plus_its_name() -> None:
    snapshot = ENDED_CALL
    message = CallEvent(name="call.ended", call=snapshot).to_dict()
    assert message == {
        "callId": "1.1",
        "pbx": "office",
        "status": "ended",
        "direction": "inbound",
        "fromNumber": "89787342741",
        "fromName": None,
        "toNumber": "269",
        "toName": "Reception",
        "extension": "269",
        "trunk": "YSGSM/11",
        "did": None,
        "startedAt": "2023-11-14T22:13:20.000Z",
        "answeredAt": "2023-11-14T22:13:24.000Z",
        "endedAt": "2023-11-14T22:13:30.500Z",
        "ringSeconds": 4.0,
        "talkSeconds": 6.5,
        "endReason": "completed",
        "onHold": False,
        "transfers": [
            {"type": "blind", "by": "269", "to": "700", "at": "2023-11-14T22:13:29.000Z"}
        ],
        "channels": [],
        "originated": False,
        "actionId": None,
        "name": "call.ended",
    }
    assert "extensions" not in message


def test_every_field_of_the_call_object_is_filled_in_order() -> None:
    # No value is None here, so a key the template leaves unfilled would show.
    full = dataclasses.replace(
        ENDED_CALL,
        from_name="Ivan",
        did="100",
        channels=("YSGSM/11-1", "SIP/269-2"),
        originated=True,
        on_hold=True,
        action_id="vwell-1",
    )
    expected = {
        "callId": "1.1",
        "pbx": "office",
        "status": "ended",
        "direction": "inbound",
        "fromNumber": "89787342741",
        "fromName": "Ivan",
        "toNumber": "269",
        "toName": "Reception",
        "extension": "269",
        "trunk": "YSGSM/11",
        "did": "100",
        "startedAt": "2023-11-14T22:13:20.000Z",
        "answeredAt": "2023-11-14T22:13:24.000Z",
        "endedAt": "2023-11-14T22:13:30.500Z",
        "ringSeconds": 4.0,
        "talkSeconds": 6.5,
        "endReason": "completed",
        "onHold": True,
        "transfers": [
            {"type": "blind", "by": "269", "to": "700", "at": "2023-11-14T22:13:29.000Z"}
        ],
        "channels": ["YSGSM/11-1", "SIP/269-2"],
        "originated": True,
        "actionId": "vwell-1",
    }
    assert list(expected) == list(CALL_OBJECT_KEYS)
    for _ in range(2):  # the templates are copied, never changed
        made = full.to_dict()
        assert made == expected and list(made) == list(expected)
        message = CallEvent(name="call.missed", call=full).to_dict()
        assert list(message.items()) == [*expected.items(), ("name", "call.missed")]
        made["callId"] = message["callId"] = "changed"
    assert dataclasses.replace(full, transfers=()).to_dict()["transfers"] == []


def test_event_names_and_consumed_events() -> None:
    assert CALL_EVENT_NAMES == (
        "call.ringing",
        "call.answered",
        "call.held",
        "call.resumed",
        "call.transferred",
        "call.updated",
        "call.ended",
        "call.missed",
    )
    assert CallTracker.consumes("DialBegin")
    assert CallTracker.consumes("dialbegin")
    assert not CallTracker.consumes("VarSet")
    assert not CallTracker.consumes("RTCPSent")
    assert "Newexten" in CONSUMED_EVENTS
    assert "VarSet" not in CONSUMED_EVENTS


def test_events_not_consumed_return_nothing_and_change_nothing() -> None:
    tracker = CallTracker()
    varset = Message.build(("Event", "VarSet"), ("Channel", "SIP/269-1"), ("Uniqueid", "1.1"))
    assert tracker.observe(varset, 1.0) == ()
    assert tracker.tracked_channels == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"max_calls": 0},
        {"max_channels": -1},
        {"max_transfers": True},
        {"max_rang": 1.5},
        {"max_pending_originates": 0},
        {"max_recent_ids": 0},
        {"originate_ttl": 0},
    ],
)
def test_limits_refuse_nonsense_naming_the_setting(bad: dict[str, object]) -> None:
    (name,) = bad
    with pytest.raises(ValueError, match=rf"calls\.{name} "):
        TrackerLimits(**bad)  # type: ignore[arg-type]


def test_default_trunks_fit_a_yeastar_with_gsm() -> None:
    assert "YSGSM/*" in DEFAULT_TRUNKS
    assert CallRules().classify("YSGSM/11-1").kind is ChannelKind.TRUNK


def test_a_snapshot_drafted_and_frozen_is_a_call_snapshot_like_any_other() -> None:
    made = dataclasses.replace(
        ENDED_CALL,
        status="up",
        to_name=None,
        ended_at=None,
        talk_seconds=1.5,
        end_reason=None,
        channels=("YSGSM/11-1", "SIP/269-2"),
    )
    draft = SnapshotDraft()
    for name in CallSnapshot.__slots__:
        setattr(draft, name, getattr(made, name))
    drafted = draft.freeze()
    assert type(drafted) is CallSnapshot
    assert drafted == made and hash(drafted) == hash(made) and repr(drafted) == repr(made)
    assert drafted.to_dict() == made.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        drafted.status = "held"  # type: ignore[misc]
    assert dataclasses.replace(drafted, status="held").status == "held"


def test_a_call_event_made_on_the_hot_path_is_a_call_event_like_any_other() -> None:
    made = CallEvent(name="call.ended", call=ENDED_CALL)
    message = CALL_MESSAGE.copy()
    message.update(ENDED_CALL.to_dict())
    message["name"] = "call.ended"
    quick = call_event("call.ended", message, ENDED_CALL.extensions)
    assert type(quick) is CallEvent
    assert quick.call == ENDED_CALL  # the snapshot, made from the message when read
    assert quick == made and hash(quick) == hash(made) and repr(quick) == repr(made)
    assert quick.to_dict() == made.to_dict() == message
    assert list(quick.to_dict()) == [*CALL_OBJECT_KEYS, "name"]
    assert quick.to_dict() is not quick.to_dict()  # the bus adds eventId to its copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.name = "call.missed"  # type: ignore[misc]
    assert made != CallEvent(name="call.missed", call=ENDED_CALL)


def test_a_snapshot_made_from_its_call_object_is_the_same_snapshot() -> None:
    live = dataclasses.replace(ENDED_CALL, transfers=(), channels=("YSGSM/11-1", "SIP/269-2"))
    for snapshot in (ENDED_CALL, live):
        again = snapshot_of(snapshot.to_dict(), snapshot.extensions)
        assert again == snapshot and type(again) is CallSnapshot
