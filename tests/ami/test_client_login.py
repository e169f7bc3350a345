"""Connect and log in: banner, plain and MD5 login, refused credentials, no secret leaks."""

from __future__ import annotations

import hashlib
import logging
import socket

import pytest

from tests.support.ami_peer import PeerConnection, ScriptedPbx
from tests.support.waiting import until
from vwell_pbx.ami import (
    AmiClient,
    AmiSettings,
    ConnectionState,
    ConnectionStatus,
    LoginFailed,
    PbxUnavailable,
)

SECRET = "s3cret"


async def test_plain_login(pbx, make_client) -> None:
    client = await make_client(pbx, auth="plain")
    assert client.connected
    state = client.state
    assert state.status is ConnectionStatus.CONNECTED
    assert state.greeting == "Asterisk Call Manager/9.0.0"
    assert state.last_error is None and state.reconnects == 0
    (login,) = pbx.received("Login")
    assert login.get("Username") == "admin"
    assert login.get("Secret") == SECRET
    assert login.get("Events") == "on"
    assert login.action_id  # the client always sends an ActionID
    assert pbx.received("Challenge") == []


async def test_md5_login(pbx, make_client) -> None:
    client = await make_client(pbx, auth="md5")
    assert client.connected
    (challenge,) = pbx.received("Challenge")
    assert challenge.get("AuthType") == "MD5"
    (login,) = pbx.received("Login")
    assert login.get("AuthType") == "MD5"
    assert "Secret" not in login
    (connection,) = pbx.connections
    assert login.get("Key") == hashlib.md5(f"{connection.challenge}{SECRET}".encode()).hexdigest()


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_refused_login_is_recorded_and_retried_with_backoff(
    pbx, make_client, caplog: pytest.LogCaptureFixture, auth: str
) -> None:
    caplog.set_level(logging.DEBUG)
    states: list[ConnectionState] = []
    client = await make_client(
        pbx, wait=False, auth=auth, secret="wrong-secret-xyz", backoff_initial=0.05, backoff_max=0.2
    )
    client.add_state_listener(states.append)
    with pytest.raises(LoginFailed) as caught:
        await client.wait_connected(timeout=0.6)
    assert "Authentication failed" in str(caught.value)
    assert client.state.status in (ConnectionStatus.DOWN, ConnectionStatus.CONNECTING)
    assert "Authentication failed" in (client.state.last_error or "")
    # Retried, but with a growing delay rather than in a tight loop.
    attempts = len(pbx.received("Login"))
    assert 2 <= attempts <= 6
    assert any(s.status is ConnectionStatus.DOWN for s in states)
    # The secret (and for MD5 nothing derived from it) never reaches logs or errors.
    assert "wrong-secret-xyz" not in caplog.text
    assert "wrong-secret-xyz" not in str(caught.value)
    assert "wrong-secret-xyz" not in repr(client.settings)
    for login in pbx.received("Login"):
        key = login.get("Key")
        if key:
            assert key not in caplog.text


async def test_secret_not_in_repr() -> None:
    settings = AmiSettings(host="h", username="u", secret="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


async def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        AmiSettings(host="h", username="u", secret="s", ping_timeout=0)
    with pytest.raises(ValueError):
        AmiSettings(host="h", username="u", secret="s", backoff_initial=2, backoff_max=1)


async def test_refused_tcp_connection_reported() -> None:
    # Find a port nobody listens on: bind, note it, close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AmiClient(
        AmiSettings(
            host="127.0.0.1",
            port=port,
            username="u",
            secret="s",
            backoff_initial=0.02,
            backoff_max=0.05,
        )
    )
    await client.start()
    try:
        with pytest.raises(PbxUnavailable) as caught:
            await client.wait_connected(timeout=0.3)
        assert not isinstance(caught.value, LoginFailed)
        assert "connect failed" in str(caught.value)
        assert client.state.reconnects >= 1
    finally:
        await client.close()


async def test_no_banner_login_timeout_then_retry(make_client) -> None:
    silent = await ScriptedPbx(banner=False).start()
    try:
        client = await make_client(silent, wait=False, login_timeout=0.15)
        with pytest.raises(PbxUnavailable) as caught:
            await client.wait_connected(timeout=0.6)
        assert "no banner or login answer within 0.15s" in str(caught.value)
        await until(lambda: len(silent.connections) >= 2)
        assert not client.connected
    finally:
        await silent.stop()


async def test_garbage_banner_reconnects(make_client) -> None:
    async def http_server(connection: PeerConnection) -> None:
        connection.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await connection.writer.drain()
        await connection.reader.read()  # hold until the client hangs up

    async with ScriptedPbx(http_server) as server:
        client = AmiClient(
            AmiSettings(
                host="127.0.0.1",
                port=server.port,
                username="u",
                secret="s",
                backoff_initial=0.02,
                backoff_max=0.05,
            )
        )
        await client.start()
        try:
            with pytest.raises(PbxUnavailable) as caught:
                await client.wait_connected(timeout=0.3)
            assert "expected an AMI banner" in str(caught.value)
            assert len(server.connections) >= 2
        finally:
            await client.close()


async def test_tls_setting_really_speaks_tls(pbx, make_client) -> None:
    # A plain-TCP AMI server answers the TLS ClientHello with its banner: handshake fails.
    client = await make_client(pbx, wait=False, tls=True)
    # Wait for the failed handshake itself: a fixed 0.5 s was once over before the first
    # attempt failed (the parallel suite on a 2-core machine at load 12: "last error: none").
    await until(lambda: client.state.last_error is not None, 10, what="the handshake to fail")
    with pytest.raises(PbxUnavailable) as caught:
        await client.wait_connected(timeout=0.1)
    assert "SSL" in str(caught.value) or "connect failed" in str(caught.value)
    assert pbx.received("Login") == []


@pytest.mark.parametrize("field", ["username", "secret", "host"])
async def test_settings_refuse_line_breaks(field: str) -> None:
    values = {"host": "h", "username": "u", "secret": "s"}
    values[field] = "bad\r\nAction: Hangup"
    with pytest.raises(ValueError) as caught:
        AmiSettings(**values)
    assert "Hangup" not in str(caught.value)
