"""Fixtures of the AMI client's tests: a scripted PBX, and clients with test-sized timings.

``pbx`` is ``tests.support.ami_peer.ScriptedPbx``, the scripted AMI server, started;
``make_client`` makes started ``AmiClient``s for it or for the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.ami_peer import ScriptedPbx
from vwell_pbx.ami import AmiClient, AmiSettings
from vwell_pbx.simulator import PbxSimulator


@pytest.fixture
async def pbx() -> AsyncIterator[ScriptedPbx]:
    """A started scripted PBX (user ``admin`` / ``s3cret``)."""
    server = await ScriptedPbx().start()
    try:
        yield server
    finally:
        await server.stop()


ClientFactory = Callable[..., Awaitable[AmiClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``await make_client(pbx, **settings)``: a started client with test-sized timings,
    for a scripted peer or the simulator (both say their port, username and secret).

    Connected unless ``wait=False``; closed at teardown.
    """
    clients: list[AmiClient] = []

    async def make(
        server: ScriptedPbx | PbxSimulator,
        *,
        wait: bool = True,
        client_kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> AmiClient:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": server.port,
            "username": server.username,
            "secret": server.secret,
            "auth": "plain",
            "connect_timeout": 1.0,
            "login_timeout": 1.0,
            "ping_interval": 30.0,
            "ping_timeout": 1.0,
            "backoff_initial": 0.02,
            "backoff_max": 0.1,
            "name": "test",
        }
        settings.update(overrides)
        client = AmiClient(AmiSettings(**settings), **(client_kwargs or {}))
        clients.append(client)
        await client.start()
        if wait:
            await client.wait_connected(timeout=3.0)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()
