"""What the calls browser tests share: a simulator whose calls last until a test ends
them, a second operator, signing in to the console and to the pop-up example, and real
AMI for what the PBX does behind the server's back (hanging up, holding).

Nothing here is a mock: calls are played by the simulator and seen through the real
server; a hang-up is an AMI ``Hangup`` sent to the simulator, a hold is the ``Hold``
event the PBX would send for that channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from tests.support import SUPERVISOR, ApiClient
from tests.support.ami_peer import RawAmi
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password

if TYPE_CHECKING:
    from playwright.async_api import Page

#: A second operator, with extension 270 (Agent has 269).
OTHER = {"login": "Agent", "login2": "Сидоров С.С.", "sha1": sha1_of_password("other-pw")}
OTHER_PASSWORD = "other-pw"

#: The simulator's options (on top of ``fast_simulator``'s): answered calls last until
#: hung up, 270 rings until the caller gives up, 900 is busy; every other extension
#: answers.
CALL_SIMULATOR: Mapping[str, Any] = {
    "call_hold": 600.0,
    "no_answer_after": 600.0,
    "extensions": {"270": "noanswer", "900": "busy"},
}

# Runs in a page: remember every pop-up card ever added to #cards (and when it went),
# so a test can say a card *never* appeared, not just that none is shown now.
RECORD_CARDS = """
() => {
  window.cardsSeen = [];
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.dataset && node.dataset.callId) window.cardsSeen.push(node.dataset.callId);
      }
    }
  }).observe(document.getElementById('cards'), {childList: true});
}
"""


async def sign_in_console(
    page: Page, http_url: str, creds: Mapping[str, str], password: str
) -> None:
    """Open the console and sign in; returns once it is connected."""
    from playwright.async_api import expect

    await page.goto(http_url + "/console")
    await page.wait_for_selector("html[data-ready=true]")
    await page.locator("#login").fill(creds["login"])
    await page.locator("#login2").fill(creds["login2"])
    await page.locator("#password").fill(password)
    await page.locator("#password").press("Enter")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open")


async def sign_in_popup(page: Page, http_url: str, creds: Mapping[str, str], password: str) -> None:
    """Open /examples/popup.html and sign in; returns once it watches the calls."""
    from playwright.async_api import expect

    await page.goto(http_url + "/examples/popup.html")
    await page.wait_for_selector("html[data-ready=true]")
    await page.locator("#login").fill(creds["login"])
    await page.locator("#login2").fill(creds["login2"])
    await page.locator("#password").fill(password)
    await page.locator("#password").press("Enter")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open")
    await expect(page.locator("#desk")).to_be_visible()
    await page.evaluate(RECORD_CARDS)


async def active_calls(api: ApiClient) -> list[dict[str, Any]]:
    """The active calls, as the supervisor sees them."""
    answer = await api.post("calls", creds=SUPERVISOR)
    assert answer["err"] is None, answer
    calls: list[dict[str, Any]] = answer["calls"]
    return calls


async def channel_ids(api: ApiClient, name: str) -> tuple[str, str]:
    """(Uniqueid, Linkedid) of a live channel, from the PBX's own channel list."""
    answer = await api.post(
        "send", creds=SUPERVISOR, fields={"action": "CoreShowChannels"}, callbackAwait=True
    )
    assert answer["err"] is None, answer
    for item in answer["events"]:
        if item.get("Channel") == name:
            return item["Uniqueid"], item["Linkedid"]
    raise AssertionError(f"{name} is not in {orjson.dumps(answer['events']).decode()}")


async def hold(sim: PbxSimulator, api: ApiClient, channel: str, *, on: bool) -> None:
    """The PBX reports that ``channel`` put its call on hold (or resumed it)."""
    uniqueid, linkedid = await channel_ids(api, channel)
    sim.emit(
        Message.build(
            ("Event", "Hold" if on else "Unhold"),
            ("Privilege", "call,all"),
            ("Channel", channel),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("Uniqueid", uniqueid),
            ("Linkedid", linkedid),
        )
    )


async def hang_up(sim: PbxSimulator, channel: str) -> None:
    """Hang ``channel`` up with AMI straight to the PBX (works while our server is down)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    ami = RawAmi(reader, writer)
    try:
        await ami.login(events="off")
        response = await ami.action(
            ("Action", "Hangup"), ("Channel", channel), ("ActionID", "test-hangup")
        )
        assert response.get("Response") == "Success", response
    finally:
        writer.close()
