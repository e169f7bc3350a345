"""ChannelRegistry: which live channels belong to which call (for ``own_extensions_only``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.pbx.channels import ChannelRegistry, device_extension
from vwell_pbx.protocol import Message

M = Message.build


def check_invariants(registry: ChannelRegistry, max_channels: int) -> None:
    """The module docstring's invariants, read from the registry's own bookkeeping."""
    channels, calls = registry._channels, registry._calls
    assert len(channels) <= max_channels
    assert all(members for members in calls.values())  # no empty call
    assert {c for members in calls.values() for c in members} == set(channels)
    for name, entry in channels.items():
        assert name in calls[entry.call]


@pytest.mark.parametrize(
    ("channel", "extension"),
    [
        ("SIP/269-00000001", "269"),
        ("PJSIP/100-0000002a", "100"),
        ("IAX2/7-1", "7"),
        ("Local/100@DLPN_DialPlan269-00000001;1", "100"),
        ("YSGSM/11-1", None),
        ("DAHDI/i1/555-1", None),
    ],
)
def test_device_extension(channel: str, extension: str | None) -> None:
    assert device_extension(channel) == extension


def test_dial_begin_joins_calls_and_hangup_forgets() -> None:
    registry = ChannelRegistry()
    registry.observe(
        M(
            ("Event", "Newchannel"),
            ("Channel", "YSGSM/11-1"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
            ("Exten", "s"),
        )
    )
    registry.observe(
        M(
            ("Event", "Newchannel"),
            ("Channel", "SIP/269-1"),
            ("Uniqueid", "1.2"),
            ("Linkedid", "1.2"),
        )
    )
    assert not registry.involves("YSGSM/11-1", ["269"])
    registry.observe(
        M(
            ("Event", "DialBegin"),
            ("Channel", "YSGSM/11-1"),
            ("DestChannel", "SIP/269-1"),
            ("DestExten", "269"),
        )
    )
    assert registry.involves("YSGSM/11-1", ["269"]) and registry.calls == 1
    assert not registry.involves("YSGSM/11-1", [])
    assert not registry.involves("SIP/unknown-1", ["269"])  # unknown: deny
    registry.observe(M(("Event", "Hangup"), ("Channel", "SIP/269-1")))
    assert not registry.involves("YSGSM/11-1", ["269"])
    registry.observe(M(("Event", "Hangup"), ("Channel", "YSGSM/11-1")))
    assert len(registry) == 0 and registry.calls == 0


_CHANNELS = ["SIP/269-1", "SIP/267-2", "YSGSM/11-1", "Local/100@ctx-1;1", "Local/100@ctx-1;2"]
_name = st.sampled_from(_CHANNELS)
_events = st.one_of(
    st.builds(
        lambda c, linked: M(("Event", "Newchannel"), ("Channel", c), ("Linkedid", linked)),
        _name,
        st.sampled_from(["1.1", "1.2", "1.3"]),
    ),
    st.builds(
        lambda c, d: M(
            ("Event", "DialBegin"), ("Channel", c), ("DestChannel", d), ("DestExten", "269")
        ),
        _name,
        _name,
    ),
    st.builds(
        lambda c, d: M(("Event", "Dial"), ("SubEvent", "Begin"), ("Source", c), ("Destination", d)),
        _name,
        _name,
    ),
    st.builds(lambda c: M(("Event", "Hangup"), ("Channel", c)), _name),
)


@given(events=st.lists(_events, max_size=30), max_channels=st.integers(1, 6))
def test_any_event_sequence_keeps_the_invariants(events: list[Message], max_channels: int) -> None:
    registry = ChannelRegistry(max_channels=max_channels)
    for event in events:
        registry.observe(event)
        check_invariants(registry, max_channels)
        for channel in _CHANNELS:
            registry.involves(channel, ["269", "100"])  # never raises
