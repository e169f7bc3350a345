"""redirect() against the real simulator: live channels, dual redirect, missing channel."""

from __future__ import annotations

import pytest

from tests.support.simulator import PbxFactory, received
from vwell_pbx.pbx.errors import InvalidArgument, PbxRejected
from vwell_pbx.pbx.redirect import redirect


@pytest.mark.parametrize("dialect", ["asterisk20", "yeastar"])
async def test_redirect_a_live_call(make_pbx: PbxFactory, dialect: str) -> None:
    sim, client = await make_pbx(dialect=dialect)
    channel = await sim.incoming_call("+79787342741", span=11, to="269", hold=5)
    assert channel.startswith("YSGSM/11-")
    gone = client.wait_event(
        lambda m: m.name == "Hangup" and (m.get("Channel") or "").startswith("SIP/269"), 5
    )
    response = await redirect(client, channel, "267", context="default", timeout=5)
    assert response.get("Message") == "Redirect successful"
    await gone  # the bridged extension is left behind and hangs up
    (sent,) = received(sim, "Redirect")
    assert [(k, v) for k, v in sent.headers if k != "ActionID"] == [
        ("Action", "Redirect"),
        ("Channel", channel),
        ("Exten", "267"),
        ("Context", "default"),
        ("Priority", "1"),
    ]


async def test_dual_redirect(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx()
    channel = await sim.incoming_call(to="269", hold=5)
    peer = next(name for name in sim.live_channels if name.startswith("SIP/269"))
    response = await redirect(
        client, channel, "700", context="default", extra_channel=peer, timeout=5
    )
    assert response.get("Message") == "Dual Redirect successful"


async def test_missing_channel_is_rejected(make_pbx: PbxFactory) -> None:
    _, client = await make_pbx()
    with pytest.raises(PbxRejected, match=r"^Channel does not exist: SIP/nobody-00000000$") as info:
        await redirect(client, "SIP/nobody-00000000", "269", context="default", timeout=5)
    assert info.value.response.name == "Error"


async def test_bad_channel_sends_nothing(make_pbx: PbxFactory) -> None:
    sim, client = await make_pbx()
    with pytest.raises(InvalidArgument, match=r"^argument\.channel "):
        await redirect(client, "YSGSM/11-1\r\nAction: Hangup", "269", context="default", timeout=5)
    assert received(sim, "Redirect") == []
