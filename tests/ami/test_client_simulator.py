"""The AMI client against the real PBX simulator over loopback: the integration layer.

Edge cases a well-behaved PBX never produces live in the scripted-server tests; here
the client meets a complete simulated Asterisk (and Yeastar) with calls, lists,
Command output, SMS reports, a hung PBX and a vanished one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.simulator import fast_simulator
from tests.support.waiting import until
from vwell_pbx.ami import (
    ActionTimeout,
    AmiClient,
    ConnectionState,
    ConnectionStatus,
    LoginFailed,
    PbxUnavailable,
)
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator

ClientFactory = Callable[..., Awaitable[AmiClient]]  # as make_client in conftest.py

#: What these tests depend on, on top of the fast simulator: a call, once answered,
#: lasts long enough to be looked at; an unanswered one gives up quickly.
CALLS = {"call_hold": 5.0, "no_answer_after": 0.1}


@pytest.fixture
async def sim() -> AsyncIterator[PbxSimulator]:
    async with fast_simulator(**CALLS) as simulator:
        yield simulator


@pytest.fixture
def connect(make_client: ClientFactory) -> ClientFactory:
    """``await connect(sim, **settings)``: the shared client factory, MD5 login."""

    async def make(simulator: PbxSimulator, *, wait: bool = True, **overrides: Any) -> AmiClient:
        return await make_client(
            simulator, wait=wait, **{"auth": "md5", "name": "sim", **overrides}
        )

    return make


ORIGINATE = [
    ("Action", "Originate"),
    ("Channel", "Local/100@default"),
    ("Context", "default"),
    ("Exten", "267"),
    ("Priority", "1"),
    ("Async", "yes"),
]


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_login(sim, connect, auth: str) -> None:
    client = await connect(sim, auth=auth)
    assert client.state.status is ConnectionStatus.CONNECTED
    assert client.state.greeting == "Asterisk Call Manager/9.0.0"
    names = [a.name for a in sim.actions_received]
    assert names == (["Challenge", "Login"] if auth == "md5" else ["Login"])
    assert (await client.send_action([("Action", "Ping")], timeout=2)).response.get(
        "Ping"
    ) == "Pong"


async def test_login_refused(sim, connect) -> None:
    client = await connect(sim, wait=False, secret="nope")
    with pytest.raises(LoginFailed, match="Authentication failed"):
        await client.wait_connected(timeout=0.5)
    assert client.state.status is not ConnectionStatus.CONNECTED
    assert "nope" not in (client.state.last_error or "")


async def test_async_originate_followup_list_and_regex_hangup(sim, connect) -> None:
    client = await connect(sim)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action(
        ORIGINATE, timeout=2, followup="OriginateResponse", followup_timeout=3
    )
    assert result.ok and result.followup is not None
    answer = await result.followup
    assert answer.get("Response") == "Success" and answer.get("Reason") == "4"
    assert any(m.name == "OriginateResponse" for m in seen)

    channels = await client.send_action([("Action", "CoreShowChannels")], timeout=2)
    names = {e.get("Channel") for e in channels.events}
    assert any(str(n).startswith("SIP/267-") for n in names)
    assert channels.complete is not None
    assert channels.complete.get("ListItems") == str(len(channels.events))
    assert not [m for m in seen if m.action_id == channels.action_id]

    hung = await client.send_action(
        [("Action", "Hangup"), ("Channel", r"/^Local\/.*$/")], timeout=2
    )
    assert len(hung.events) == 2
    assert hung.complete is not None and hung.complete.name == "ChannelsHungupListComplete"
    await until(lambda: any(m.name == "Hangup" for m in seen))


@pytest.mark.parametrize(("channel", "reason"), [("SIP/100", "0"), ("Local/900@default", "5")])
async def test_async_originate_failures(sim, connect, channel: str, reason: str) -> None:
    client = await connect(sim)
    result = await client.send_action(
        [
            ("Action", "Originate"),
            ("Channel", channel),
            ("Context", "default"),
            ("Exten", "800"),
            ("Priority", "1"),
            ("Async", "yes"),
        ],
        timeout=2,
        followup="OriginateResponse",
        followup_timeout=3,
    )
    assert result.followup is not None
    event = await result.followup
    assert event.get("Response") == "Failure" and event.get("Reason") == reason


async def test_sync_originate_and_error_without_followup(sim, connect) -> None:
    client = await connect(sim)
    result = await client.send_action(
        [
            ("Action", "Originate"),
            ("Channel", "Local/800@default"),
            ("Application", "Wait"),
            ("Data", "1"),
        ],
        timeout=3,
    )
    assert result.ok
    failed = await client.send_action(
        [("Action", "Originate"), ("Context", "default"), ("Exten", "1")],
        timeout=2,
        followup="OriginateResponse",
        followup_timeout=1,
    )
    assert not failed.ok and failed.followup is None


async def test_colliding_action_ids(sim, connect) -> None:
    client = await connect(sim)
    for name in ("A", "B"):
        await client.send_action(
            [("Action", "Setvar"), ("Variable", f"V{name}"), ("Value", f"value-{name}")], timeout=2
        )
    results = await asyncio.gather(
        *(
            client.send_action(
                [("Action", "Getvar"), ("ActionID", "1"), ("Variable", f"V{n}")], timeout=2
            )
            for n in "ABABAB"
        )
    )
    assert [r.response.get("Value") for r in results] == [f"value-{n}" for n in "ABABAB"]
    assert len({r.action_id for r in results}) == 6


async def test_command_output_formats(connect) -> None:
    for command_format in ("output", "follows"):
        async with fast_simulator(command_format=command_format, **CALLS) as simulator:
            client = await connect(simulator)
            version = await client.send_action(
                [("Action", "Command"), ("Command", "core show version")], timeout=2
            )
            assert version.ok
            assert version.output is not None and version.output.startswith("Asterisk 20")
            spans = await client.send_action(
                [("Action", "Command"), ("Command", "gsm show spans")], timeout=2
            )
            assert spans.output is not None and "GSM span 2:" in spans.output
            unknown = await client.send_action(
                [("Action", "Command"), ("Command", "no such thing")], timeout=2
            )
            assert unknown.output is not None and "No such command" in unknown.output
            await client.close()


async def test_yeastar_legacy_status_list(connect) -> None:
    async with fast_simulator(dialect="yeastar", **CALLS) as simulator:
        client = await connect(simulator)
        assert client.state.greeting == "Asterisk Call Manager/1.1"
        originate = await client.send_action(
            ORIGINATE, timeout=2, followup="OriginateResponse", followup_timeout=3
        )
        assert originate.followup is not None
        await originate.followup
        status = await client.send_action([("Action", "Status")], timeout=2)
        assert "EventList" not in status.response  # old style: "... will follow" only
        assert status.events and all(e.name == "Status" for e in status.events)
        assert status.complete is not None and status.complete.name == "StatusComplete"


async def test_tg_sms_report_via_wait_event(sim, connect) -> None:
    client = await connect(sim)
    report = client.wait_event(
        lambda m: m.name == "UpdateSMSSend" and m.get("ID") == "77", timeout=3
    )
    answer = await client.send_action(
        [("Action", "smscommand"), ("command", 'gsm send sms 2 123456 "hi%20there" 77')], timeout=2
    )
    assert answer.ok
    assert (await report).get("Status") == "1"


async def test_dropped_connection_fails_fast_and_reconnects(connect) -> None:
    async with fast_simulator(**{**CALLS, "no_answer_after": 5.0}) as simulator:
        client = await connect(simulator)
        call = asyncio.create_task(
            client.send_action(
                [
                    ("Action", "Originate"),
                    ("Channel", "Local/901@default"),
                    ("Context", "default"),
                    ("Exten", "800"),
                    ("Timeout", "10000"),
                ],
                timeout=10,
            )
        )  # sync: rings for a while
        await until(lambda: any(a.name == "Originate" for a in simulator.actions_received))
        started = time.monotonic()
        simulator.drop_connections()
        with pytest.raises(PbxUnavailable, match="lost"):
            await call
        assert time.monotonic() - started < 0.5
        await client.wait_connected(timeout=3)
        assert client.state.reconnects >= 1
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok


async def test_hung_pbx_detected_by_keepalive_then_recovers(connect) -> None:
    async with fast_simulator(**CALLS) as simulator:
        client = await connect(simulator, ping_interval=0.1, ping_timeout=0.15, login_timeout=0.2)
        states: list[ConnectionState] = []
        client.add_state_listener(states.append)
        simulator.mute = True
        with pytest.raises(ActionTimeout):
            await client.send_action([("Action", "CoreStatus")], timeout=0.1)
        await until(lambda: any("keepalive" in (s.last_error or "") for s in states))
        # While hung, reconnects time out waiting for the banner.
        await until(lambda: "no banner" in (client.state.last_error or ""))
        simulator.mute = False
        await client.wait_connected(timeout=3)
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok


async def test_pbx_restart_on_same_port(connect) -> None:
    first = fast_simulator(**CALLS)
    await first.start()
    port = first.port
    client = await connect(first)
    await first.stop()
    await until(lambda: not client.connected)
    with pytest.raises(PbxUnavailable):
        await client.send_action([("Action", "Ping")], timeout=2)
    async with fast_simulator(port=port, **CALLS):
        await client.wait_connected(timeout=3)
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok


async def test_event_stream_and_close(sim, connect) -> None:
    client = await connect(sim)
    async with client.events(maxsize=100) as stream:
        await client.send_action(
            [("Action", "UserEvent"), ("UserEvent", "Hello"), ("Header1", "x")], timeout=2
        )
        event = await asyncio.wait_for(anext(stream), 2)
        assert event.name == "UserEvent" and event.get("UserEvent") == "Hello"
    await client.close()
    assert any(a.name == "Logoff" for a in sim.actions_received)
    assert client.state.last_error == "client closed"


async def test_sync_originate_longer_than_ping_timeout_keeps_connection(connect) -> None:
    # The Originate outlasts the keepalive timeout several times over; the timeout itself
    # leaves room for a loaded machine (0.1 s was missed under a load average of 5).
    async with fast_simulator(**{**CALLS, "no_answer_after": 1.2}) as simulator:
        client = await connect(simulator, ping_interval=0.05, ping_timeout=0.4)
        result = await client.send_action(
            [
                ("Action", "Originate"),
                ("Channel", "Local/901@default"),
                ("Context", "default"),
                ("Exten", "800"),
                ("Timeout", "10000"),
            ],
            timeout=3,
        )  # rings 1.2 s, no answer
        assert not result.ok and result.response.get("Message") == "Originate failed"
        assert client.connected and client.state.reconnects == 0
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok
