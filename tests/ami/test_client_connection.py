"""Connection lifecycle: loss, reconnect with backoff, keepalive, silent and broken peers,
state reporting and close."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.support.ami_peer import ScriptedPbx
from tests.support.waiting import until
from vwell_pbx.ami import (
    ActionTimeout,
    AmiClient,
    AmiSettings,
    ConnectionState,
    ConnectionStatus,
    PbxUnavailable,
)
from vwell_pbx.protocol import Message


async def test_peer_killed_mid_action_fails_fast_then_reconnects(pbx, make_client) -> None:
    pbx.on("CoreStatus", lambda conn, action: conn.abort())
    client = await make_client(pbx)
    states: list[ConnectionState] = []
    client.add_state_listener(states.append)
    started = time.monotonic()
    with pytest.raises(PbxUnavailable, match="lost"):
        await client.send_action([("Action", "CoreStatus")], timeout=10)
    assert time.monotonic() - started < 0.3
    assert not client.connected or client.state.reconnects >= 1
    # It comes back on its own, counting the reconnect.
    await client.wait_connected(timeout=3)
    assert client.state.reconnects >= 1
    assert pbx.logins == 2
    assert (await client.send_action([("Action", "Ping")], timeout=2)).ok
    statuses = [s.status for s in states]
    assert statuses[0] is ConnectionStatus.DOWN
    assert "lost" in (states[0].last_error or "")
    assert ConnectionStatus.CONNECTING in statuses
    assert statuses[-1] is ConnectionStatus.CONNECTED
    assert abs(states[-1].since - time.time()) < 5  # wall clock


async def test_pbx_gone_and_back_on_same_port(make_client) -> None:
    first = await ScriptedPbx().start()
    port = first.port
    first.on("CoreStatus", lambda conn, action: None)
    client = await make_client(first, backoff_initial=0.02, backoff_max=0.05)
    pending = asyncio.create_task(client.send_action([("Action", "CoreStatus")], timeout=10))
    await until(lambda: bool(first.received("CoreStatus")))
    started = time.monotonic()
    await first.stop()
    with pytest.raises(PbxUnavailable, match="lost"):
        await pending
    assert time.monotonic() - started < 0.5
    await until(lambda: "connect failed" in (client.state.last_error or ""))
    assert not client.connected
    with pytest.raises(PbxUnavailable):  # fail fast while it is away
        await client.send_action([("Action", "Ping")], timeout=5)
    second = await ScriptedPbx(port=port).start()
    try:
        await client.wait_connected(timeout=3)
        assert client.state.reconnects >= 2
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok
    finally:
        await second.stop()


async def test_close_mid_message(pbx, make_client) -> None:
    def half(conn, action: Message) -> None:
        conn.send(f"Response: Success\r\nActionID: {action.action_id}\r\nCoreCurr")
        conn.abort()

    pbx.on("CoreStatus", half)
    client = await make_client(pbx)
    with pytest.raises(PbxUnavailable, match=r"closed the connection|lost"):
        await client.send_action([("Action", "CoreStatus")], timeout=5)


async def test_oversized_message_is_a_protocol_error(pbx, make_client) -> None:
    def flood(conn, action: Message) -> None:
        conn.reply(action, *[("Output", "x" * 100)] * 100)  # about 10 KB

    pbx.on("Command", flood)
    client = await make_client(pbx, max_message=2048)
    states: list[ConnectionState] = []
    client.add_state_listener(states.append)
    with pytest.raises(PbxUnavailable, match="protocol error"):
        await client.send_action([("Action", "Command"), ("Command", "x")], timeout=5)
    await client.wait_connected(timeout=3)  # a fresh connection, a fresh parser
    assert any("larger than 2048" in (s.last_error or "") for s in states)


async def test_silent_peer_times_out_and_keepalive_reconnects(pbx, make_client) -> None:
    pbx.answer_pings = False
    pbx.on("CoreStatus", lambda conn, action: None)
    client = await make_client(pbx, ping_interval=0.15, ping_timeout=0.1)
    states: list[ConnectionState] = []
    client.add_state_listener(states.append)
    started = time.monotonic()
    with pytest.raises(ActionTimeout):
        await client.send_action([("Action", "CoreStatus")], timeout=0.1)
    assert time.monotonic() - started < 0.3
    # The keepalive notices the dead peer and the client reconnects.
    await until(lambda: pbx.logins >= 2, within=3)
    assert any("keepalive" in (s.last_error or "") for s in states)
    assert client.state.reconnects >= 1


async def test_keepalive_detects_peer_that_stops_answering(pbx, make_client) -> None:
    client = await make_client(pbx, ping_interval=0.05, ping_timeout=0.1)
    await until(lambda: len(pbx.received("Ping")) >= 3)
    assert pbx.logins == 1 and client.connected  # answered pings keep it up
    first_connection = pbx.connections[-1]
    pbx.answer_pings = False
    await asyncio.wait_for(first_connection.closed.wait(), 2)  # the client hung up
    assert (
        "no answer to keepalive Ping within 0.1s" in (client.state.last_error or "")
        or pbx.logins >= 2
    )
    await until(lambda: pbx.logins >= 2)


async def test_backoff_spaces_out_failing_attempts(make_client) -> None:
    silent = await ScriptedPbx(banner=False).start()
    stamps: list[float] = []
    try:
        client = await make_client(
            silent, wait=False, login_timeout=0.01, backoff_initial=0.04, backoff_max=0.16
        )
        client.add_state_listener(
            lambda s: (
                stamps.append(time.monotonic()) if s.status is ConnectionStatus.CONNECTING else None
            )
        )
        await until(lambda: len(stamps) >= 5, within=3)
    finally:
        await silent.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # attempt n waits in [step/2, step], step = 0.04 * 2**n capped at 0.16 (+ login_timeout)
    assert gaps[0] >= 0.02
    assert gaps[3] >= 0.08
    assert all(gap < 0.5 for gap in gaps)


async def test_reader_never_blocks_on_a_stalled_stream(pbx, make_client) -> None:
    client = await make_client(pbx)
    stream = client.events(maxsize=10)  # nobody reads it
    count = 0

    def counter(message: Message) -> None:
        nonlocal count
        count += 1

    client.add_listener(counter)
    payload = b"".join(
        b"Event: VarSet\r\nVariable: X\r\nValue: %d\r\n\r\n" % n for n in range(20_000)
    )
    pbx.connections[-1].send(payload)
    started = time.monotonic()
    assert (await client.send_action([("Action", "Ping")], timeout=5)).ok
    assert time.monotonic() - started < 3
    await until(lambda: count == 20_000)
    assert stream.dropped == 20_000 - 10
    stream.close()


async def test_close_logs_off_fails_pending_and_is_idempotent(pbx, make_client) -> None:
    pbx.on("CoreStatus", lambda conn, action: None)
    client = await make_client(pbx)
    stream = client.events()
    waiter = client.wait_event(lambda m: False, timeout=10)
    pending = asyncio.create_task(client.send_action([("Action", "CoreStatus")], timeout=10))
    await until(lambda: bool(pbx.received("CoreStatus")))
    await asyncio.gather(client.close(), client.close())
    await client.close()
    assert pbx.received("Logoff")
    for future in (pending, waiter):
        with pytest.raises(PbxUnavailable, match="client closed"):
            await future
    assert stream.closed
    assert client.state.status is ConnectionStatus.DOWN
    assert client.state.last_error == "client closed"
    with pytest.raises(PbxUnavailable, match="client closed"):
        await client.send_action([("Action", "Ping")], timeout=1)
    with pytest.raises(PbxUnavailable, match="client closed"):
        await client.wait_connected(timeout=1)
    with pytest.raises(PbxUnavailable):
        await client.start()
    assert client.events().closed
    logins = pbx.logins
    await asyncio.sleep(0.1)
    assert pbx.logins == logins  # no reconnect after close


async def test_close_while_connecting(make_client) -> None:
    silent = await ScriptedPbx(banner=False).start()
    try:
        client = await make_client(silent, wait=False, login_timeout=5)
        await until(lambda: bool(silent.connections))
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 0.5
        assert client.state.status is ConnectionStatus.DOWN
    finally:
        await silent.stop()


async def test_ping_held_back_by_a_blocking_action_is_not_a_dead_peer(pbx, make_client) -> None:
    # Asterisk answers a session's actions in order: while a sync Originate rings, the
    # keepalive Pings queue behind it and are answered only afterwards.
    held: list[tuple[object, Message]] = []

    async def sync_originate(conn, action: Message) -> None:
        pbx.answer_pings = False
        await asyncio.sleep(0.3)  # ringing: 3 ping timeouts long
        conn.reply(action, ("Message", "Originate successfully queued"))
        pbx.answer_pings = True
        for c, ping in held:
            c.reply(ping, ("Ping", "Pong"))

    def ping(conn, action: Message) -> None:
        if pbx.answer_pings:
            conn.reply(action, ("Ping", "Pong"))
        else:
            held.append((conn, action))

    pbx.on("Originate", sync_originate)
    pbx.on("Ping", ping)
    client = await make_client(pbx, ping_interval=0.05, ping_timeout=0.1)
    result = await client.send_action([("Action", "Originate"), ("Channel", "SIP/1")], timeout=3)
    assert result.ok
    assert held  # pings were sent, and held back, while it rang
    assert pbx.logins == 1 and client.connected


async def test_dead_peer_still_detected_after_a_pending_action_times_out(pbx, make_client) -> None:
    pbx.answer_pings = False
    pbx.on("Originate", lambda conn, action: None)  # hung: never answers anything again
    client = await make_client(pbx, ping_interval=0.05, ping_timeout=0.1)
    with pytest.raises(ActionTimeout):
        await client.send_action([("Action", "Originate")], timeout=0.3)
    await until(lambda: pbx.logins >= 2)


async def test_unforeseen_connect_error_is_a_failure_not_the_end_of_the_loop() -> None:
    # IDNA cannot encode "a..b": open_connection raises UnicodeError, not OSError.
    client = AmiClient(
        AmiSettings(host="a..b", username="u", secret="s", backoff_initial=0.02, backoff_max=0.05)
    )
    await client.start()
    try:
        await until(lambda: client.state.reconnects >= 2)
        assert "connect failed" in (client.state.last_error or "")
        with pytest.raises(PbxUnavailable, match="connect failed"):
            await client.wait_connected(timeout=0.01)
    finally:
        await client.close()
