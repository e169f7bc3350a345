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

from tests.support.simulator import Pbx, PbxFactory, TimedSimulator
from vwell_pbx.ami import AmiClient, AmiSettings

#: On top of the fast simulator: a call, once answered, lasts while a test looks at it;
#: an unanswered one gives up at once.
CALLS = {"call_hold": 5.0, "no_answer_after": 0.05}


@pytest.fixture
async def make_pbx() -> AsyncIterator[PbxFactory]:
    """``sim, client = await make_pbx(dialect="yeastar", spans=[...])``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**options: Any) -> Pbx:
            sim = TimedSimulator(**{**CALLS, **options})
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
