"""A burst of PBX events does not drop a subscriber that reads.

After a pause the PBX's socket holds a few hundred KB of events, which one read
returns at once. The AMI reader lets the event loop run every ``DISPATCH_BURST``
messages, so the subscribers' senders write as the burst is handed out; only a client
that stops reading fills its queue (tests/web/test_slow_clients.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ADMIN, ApiClient
from vwell_pbx.ami.client import DISPATCH_BURST
from vwell_pbx.protocol.codec import encode_message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.app import METRICS_KEY
from vwell_pbx.web.server import RunningServer

QUEUE = 2 * DISPATCH_BURST
"""The subscribers' queue bound here: room for one burst's worth and a write's delay,
far less than the burst below."""
BURST = 4000


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    return {"limits": {"ws_queue_size": QUEUE}}


async def test_a_burst_of_events_reaches_a_reading_catch_all(
    api: ApiClient, server: RunningServer, simulator: PbxSimulator
) -> None:
    watcher = await api.ws()
    await watcher.call("onEvent", creds=ADMIN, name="UserEvent")
    burst = b"".join(
        encode_message(
            (("Event", "UserEvent"), ("UserEvent", "burst"), ("Seq", str(n)), ("Pad", "x" * 60))
        )
        for n in range(BURST)
    )
    assert len(burst) > 256 * 1024  # more than the event loop's one socket read
    simulator.emit_bytes(burst)  # one write: the server reads it as fast as it can
    seqs = [int((await watcher.next_event(within=5))["Seq"]) for _ in range(BURST)]
    assert seqs == list(range(BURST))
    assert server.api.bus.stats.dropped == 0
    assert server.app[METRICS_KEY].slow_clients._value.get() == 0
    await watcher.close()
