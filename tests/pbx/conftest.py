"""The real simulator on loopback and real AMI clients logged in to it.

``make_pbx(**simulator_options)`` starts a ``PbxSimulator`` (noting action arrival
times) with test-sized delays and an ``AmiClient`` connected to it; both are closed at
teardown, the client first.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pbx_support import FAST, Pbx, PbxFactory, TimedSimulator

from vwell_pbx.ami import AmiClient, AmiSettings


@pytest.fixture
async def make_pbx() -> AsyncIterator[PbxFactory]:
    """``sim, client = await make_pbx(dialect="yeastar", spans=[...])``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**options: Any) -> Pbx:
            sim = TimedSimulator(**{**FAST, **options})
            await stack.enter_async_context(sim)
            client = AmiClient(
                AmiSettings(
                    host="127.0.0.1",
                    port=sim.port,
                    username="admin",
                    secret="admin",
                    name="test",
                    connect_timeout=2.0,
                    login_timeout=2.0,
                )
            )
            await client.start()
            stack.push_async_callback(client.close)
            await client.wait_connected(5)
            return sim, client

        yield make
