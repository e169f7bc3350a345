"""``api.live_calls.LiveCalls`` reading channel lists from a scripted PBX, for what the
simulator cannot be made to do: an Asterisk 1.4 that knows no ``CoreShowChannels``
(the ``Status`` fallback), a ``Hangup`` sent in the same packet right after the list
(it must never be undone by the list), and a list that never comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.waiting import until
from vwell_pbx.api.live_calls import LiveCalls
from vwell_pbx.calls import CallEvent, CallTracker
from vwell_pbx.protocol import Message, encode_message

NOW = 1_700_000_000.0

# An inbound GSM call on Asterisk 1.4, as its Status list shows it: the trunk leg
# bridged (Link) with phone 269, both Up.
OLD_STATUS = [
    [
        ("Event", "Status"),
        ("Privilege", "Call"),
        ("Channel", "YSGSM/11-1"),
        ("CallerIDNum", "+79787342741"),
        ("CallerIDName", "+79787342741"),
        ("State", "Up"),
        ("Context", "DID_trunk_11"),
        ("Extension", "s"),
        ("Priority", "1"),
        ("Seconds", "40"),
        ("Link", "SIP/269-00000001"),
        ("Uniqueid", "1700000000.1"),
    ],
    [
        ("Event", "Status"),
        ("Privilege", "Call"),
        ("Channel", "SIP/269-00000001"),
        ("CallerIDNum", "+79787342741"),
        ("CallerIDName", "+79787342741"),
        ("State", "Up"),
        ("Context", "from-internal"),
        ("Extension", "269"),
        ("Priority", "1"),
        ("Seconds", "30"),
        ("Link", "YSGSM/11-1"),
        ("Uniqueid", "1700000000.2"),
    ],
]


def status_list(items: list[list[tuple[str, str]]], action_id: str, after: bytes = b"") -> bytes:
    """A legacy ``Status`` answer (no EventList headers), then ``after`` in one write."""
    data = encode_message(
        [
            ("Response", "Success"),
            ("ActionID", action_id),
            ("Message", "Channel status will follow"),
        ]
    )
    for item in items:
        data += encode_message([*item, ("ActionID", action_id)])
    data += encode_message([("Event", "StatusComplete"), ("ActionID", action_id), ("Items", "2")])
    return data + after


class Sink:
    """Collects the call events LiveCalls hands out."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def __call__(self, event: CallEvent) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [event.name for event in self.events]


@pytest.fixture
def clock() -> Iterator[list[float]]:
    """A settable wall clock for the tracker (epoch seconds)."""
    yield [NOW]


async def _live(client, clock: list[float], **options) -> tuple[LiveCalls, Sink]:  # type: ignore[no-untyped-def]
    live = LiveCalls(client, CallTracker(pbx="old"), clock=lambda: clock[0], **options)
    sink = Sink()
    live.add_sink(sink)
    live.start()
    return live, sink


async def test_an_old_pbx_without_core_show_channels_is_read_with_status(
    pbx, make_client, clock
) -> None:
    def status(conn, action: Message) -> None:
        # The call is up at the first reading and gone (the PBX restarted) at the next.
        first = len(pbx.received("Status")) == 1
        conn.send(status_list(OLD_STATUS if first else [], action.action_id or ""))

    pbx.on("Status", status)
    client = await make_client(pbx)
    live, sink = await _live(client, clock)
    try:
        await until(lambda: live.reconciles == 1)
        # CoreShowChannels was refused (the scripted PBX does not know it), Status read.
        assert [a.name for a in pbx.actions if a.name != "Ping"][-2:] == [
            "CoreShowChannels",
            "Status",
        ]
        assert sink.names() == ["call.answered"]
        (call,) = live.active()
        assert (call.direction, call.from_number, call.extension, call.trunk) == (
            "inbound",
            "89787342741",
            "269",
            "YSGSM/11",
        )
        # The next reading goes straight to Status; an empty list ends the call.
        clock[0] += 5
        assert await live.reconcile()
        assert len(pbx.received("CoreShowChannels")) == 1
        assert len(pbx.received("Status")) == 2
        assert sink.names() == ["call.answered", "call.ended"]
        assert sink.events[-1].call.end_reason == "unknown"
        assert live.active() == []
    finally:
        await live.aclose()


async def test_a_hangup_right_after_the_list_is_never_undone(pbx, make_client, clock) -> None:
    """The list says both channels are up; the Hangup of the phone, in the same
    packet, comes after it. Applied in stream order, the call ends; applied when the
    caller resumes (after the reader passed the Hangup on), it would stay up forever."""

    def status(conn, action: Message) -> None:
        hangups = b"".join(
            encode_message(
                [
                    ("Event", "Hangup"),
                    ("Privilege", "call,all"),
                    ("Channel", channel),
                    ("Uniqueid", uniqueid),
                    ("Cause", "16"),
                    ("Cause-txt", "Normal Clearing"),
                ]
            )
            for channel, uniqueid in (
                ("SIP/269-00000001", "1700000000.2"),
                ("YSGSM/11-1", "1700000000.1"),
            )
        )
        conn.send(status_list(OLD_STATUS, action.action_id or "", after=hangups))

    pbx.on("Status", status)
    client = await make_client(pbx)
    live, sink = await _live(client, clock)
    try:
        await until(lambda: "call.ended" in sink.names())
        assert sink.names() == ["call.answered", "call.ended"]
        assert sink.events[-1].call.end_reason == "completed"
        assert live.active() == [] and live.tracker.tracked_channels == 0
    finally:
        await live.aclose()


async def test_a_list_that_never_comes_is_counted_and_logged(
    pbx, make_client, clock, caplog: pytest.LogCaptureFixture
) -> None:
    never = asyncio.Event()

    async def silent(conn, action: Message) -> None:
        await never.wait()

    pbx.on("CoreShowChannels", silent)
    client = await make_client(pbx)
    live, sink = await _live(client, clock, list_timeout=0.2)
    try:
        await until(lambda: live.reconcile_failures == 1)
        assert live.reconciles == 0 and sink.events == []
        assert "cannot rebuild the live calls" in caplog.text
        assert client.connected  # the PBX is slow, not gone: nothing else is affected
    finally:
        await live.aclose()
