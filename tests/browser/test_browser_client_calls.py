"""The JavaScript client's calls API (pbx.calls) in chromium, against the real server and
the PBX simulator: active() with filters, history() page by page with more() and
pages(), on(kind, filter, handler) with the server's filtering and unsubscribing,
watch() keeping a map of the active calls, and callSeconds() counting on; bad input
refused with errCode bad_request naming what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser.browser_support import open_client_page, require_browser
from tests.browser.calls_support import CALL_SIMULATOR, hang_up
from tests.support import SUPERVISOR, ApiClient, fast_simulator
from tests.support.waiting import until
from vwell_pbx.calls import CALL_EVENT_NAMES
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Page  # noqa: E402

pytestmark = pytest.mark.slow  # chromium


@pytest.fixture
async def simulator() -> AsyncIterator[PbxSimulator]:
    """Calls that last until the test ends them."""
    async with fast_simulator(**CALL_SIMULATOR) as sim:
        yield sim


@pytest.fixture
async def client(page: Page, server: RunningServer) -> Page:
    """The console's page (a secure context) with a signed-in client as window.pbx."""
    await open_client_page(page, server.http_url)
    await page.evaluate(
        "async ([url, boss]) => { window.pbx = await mod.connect(url, boss); }",
        [server.ws_url, SUPERVISOR],
    )
    return page


async def stored(api: ApiClient, count: int) -> None:
    async def enough() -> bool:
        answer = await api.post("callHistory", creds=SUPERVISOR)
        return len(answer["calls"]) >= count

    await until(enough, within=10, what=f"{count} calls in the history", every=0.1)


async def test_active_calls_and_ticking_seconds(client: Page, simulator: PbxSimulator) -> None:
    channel = await simulator.incoming_call("+79787342741", to="269", answer=False, hold=600)
    result: dict[str, Any] = await client.evaluate("""async () => {
      const {callSeconds} = window.mod;
      const out = {};
      const all = await pbx.calls.active();
      out.all = all;
      out.at269 = (await pbx.calls.active({extension: '269'})).length;
      out.at270 = (await pbx.calls.active({extension: '270'})).length;
      out.byNumber = (await pbx.calls.active({number: '+7 978 734-27-41'})).length;
      out.outbound = (await pbx.calls.active({direction: 'outbound'})).length;
      out.unknownFilter = await failure(() => pbx.calls.active({colour: 'red'}));
      // The ring time counts on from the answer (no clock of the server's needed).
      const first = callSeconds(all[0]).ringSeconds;
      await waitFor(() => callSeconds(all[0]).ringSeconds >= first + 1.2);
      out.counted = callSeconds(all[0]);
      // A copy is not what the client handed out: it keeps its own values.
      out.copy = callSeconds({...all[0]});
      out.kinds = window.VwellPbx.callEventKinds;
      out.sameInBothBuilds = window.VwellPbx.callSeconds === callSeconds;
      return out;
    }""")
    (call,) = result["all"]
    assert (call["status"], call["direction"], call["extension"]) == ("ringing", "inbound", "269")
    assert call["channels"][0] == channel
    assert (result["at269"], result["at270"], result["byNumber"], result["outbound"]) == (
        1,
        0,
        1,
        0,
    )
    assert result["unknownFilter"]["errCode"] == "bad_request"
    assert "colour" in result["unknownFilter"]["message"]
    assert result["counted"]["ringSeconds"] >= call["ringSeconds"] + 1.2
    assert result["counted"]["talkSeconds"] == 0
    assert result["copy"] == {"ringSeconds": call["ringSeconds"], "talkSeconds": 0}
    assert result["kinds"] == [name.removeprefix("call.") for name in CALL_EVENT_NAMES]
    assert result["sameInBothBuilds"] is True
    await hang_up(simulator, channel)


async def test_on_filters_by_kind_and_field(client: Page, simulator: PbxSimulator) -> None:
    await client.evaluate("""async () => {
      window.got = {at269: [], at270: [], all: [], missed: []};
      window.offs = [
        pbx.calls.on('ringing', {extension: ['269']}, (e) => got.at269.push(e)),
        pbx.calls.on('call.ringing', {extension: '270'}, (e) => got.at270.push(e)),
        pbx.calls.on('*', (e) => got.all.push(e)),
        pbx.calls.on('missed', (e) => got.missed.push(e)),
      ];
      await Promise.all(offs.map((off) => off.ready));
    }""")
    await simulator.incoming_call("+79780000269", to="269", answer=False, hold=0.05)
    await simulator.incoming_call("+79780000270", to="270", answer=False, hold=0.05)
    got: dict[str, list[dict[str, Any]]] = await client.evaluate(
        "async () => { await waitFor(() => got.missed.length === 2); return got; }"
    )
    assert [(e["name"], e["extension"]) for e in got["at269"]] == [("call.ringing", "269")]
    assert [(e["name"], e["extension"]) for e in got["at270"]] == [("call.ringing", "270")]
    assert [e["fromNumber"] for e in got["missed"]] == ["89780000269", "89780000270"]
    for number in ("89780000269", "89780000270"):
        story = [e["name"] for e in got["all"] if e["fromNumber"] == number]
        assert story == ["call.ringing", "call.ended", "call.missed"]
    assert all(isinstance(e["eventId"], str) for e in got["all"])

    # Unsubscribing stops them; a kind that does not exist, or no handler, is refused.
    result: dict[str, Any] = await client.evaluate("""async () => {
      const removed = await Promise.all(offs.map((off) => off()));
      const wrongKind = await failure(() => pbx.calls.on('ring', () => {}));
      const noHandler = await failure(() => pbx.calls.on('ringing', {extension: '269'}));
      return {removed, wrongKind, noHandler, subscriptions: pbx.subscriptions};
    }""")
    assert result["removed"] == [1, 1, 1, 1]
    assert result["subscriptions"] == 0
    assert result["wrongKind"]["errCode"] == "bad_request"
    assert "kind must be one of ringing, answered" in result["wrongKind"]["message"]
    assert '"ring"' in result["wrongKind"]["message"]
    assert result["noHandler"]["name"] == "TypeError"


async def test_watch_keeps_the_active_calls(
    client: Page, simulator: PbxSimulator, api: ApiClient
) -> None:
    already = await simulator.incoming_call("+79781112233", to="267", hold=600)
    await client.evaluate("""async () => {
      window.changes = [];
      window.outboundChanges = [];
      const summary = (calls) => [...calls.values()].map((c) => [c.fromNumber, c.status]);
      window.watch = pbx.calls.watch((calls, event) => {
        changes.push([event && event.name, summary(calls)]);
      });
      window.outbound = pbx.calls.watch({direction: 'outbound'}, (calls, event) => {
        outboundChanges.push([event && event.name, calls.size]);
      });
      await Promise.all([watch.ready, outbound.ready]);
    }""")
    # A watch started mid-call has that call at once (the subscription's answer).
    assert await client.evaluate("changes") == [[None, [["89781112233", "up"]]]]

    channel = await simulator.incoming_call("+79787342741", to="269", answer=False, hold=600)
    await client.evaluate("waitFor(() => watch.calls.size === 2)")
    answer = await api.post("redirect", creds=SUPERVISOR, channel=channel, toTel="271")
    assert answer["err"] is None, answer
    await client.evaluate(
        "waitFor(() => [...watch.calls.values()].every((c) => c.status === 'up'))"
    )
    await hang_up(simulator, channel)
    await hang_up(simulator, already)
    await client.evaluate("waitFor(() => watch.calls.size === 0)")
    changes = await client.evaluate("changes")
    assert [name for name, _ in changes] == [
        None,
        "call.ringing",
        "call.ringing",  # the redirect: it rings at 271
        "call.answered",
        "call.ended",
        "call.ended",
    ]
    assert changes[1][1] == [["89781112233", "up"], ["89787342741", "ringing"]]
    assert changes[3][1] == [["89781112233", "up"], ["89787342741", "up"]]
    assert changes[-1][1] == []
    # Nothing outbound: that map stayed empty, though it saw every event go by.
    outbound = await client.evaluate("outboundChanges")
    assert outbound[0] == [None, 0] and {size for _, size in outbound} == {0}
    assert await client.evaluate("watch.stop()") == 1


async def test_history_page_by_page(client: Page, simulator: PbxSimulator, api: ApiClient) -> None:
    for index in range(5):
        await simulator.incoming_call(f"+7978000001{index}", to="269", answer=False, hold=0.05)
    await stored(api, 5)
    result: dict[str, Any] = await client.evaluate("""async () => {
      const out = {};
      const first = await pbx.calls.history({limit: 2, extension: '', number: null});
      const second = await first.more();
      const third = await second.more();
      out.sizes = [first, second, third].map((page) => page.calls.length);
      out.nexts = [first, second, third].map((page) => typeof page.next);
      out.afterLast = await third.more();
      out.numbers = [first, second, third].flatMap((p) => p.calls.map((c) => c.fromNumber));
      out.pages = [];
      for await (const page of pbx.calls.pages({limit: 2, endReason: 'cancelled'})) {
        out.pages.push(page.calls.length);
      }
      out.tomorrow = (await pbx.calls.history({since: new Date(Date.now() + 86400e3)})).calls;
      out.badDate = await failure(() => pbx.calls.history({since: new Date('not a date')}));
      out.badLimit = await failure(() => pbx.calls.history({limit: 0}));
      out.badCursor = await failure(() => pbx.calls.history({before: 'made.up'}));
      return out;
    }""")
    assert result["sizes"] == [2, 2, 1]
    assert result["nexts"] == ["string", "string", "object"]  # the last one's is null
    assert result["afterLast"] is None
    assert result["numbers"] == [f"8978000001{index}" for index in (4, 3, 2, 1, 0)]
    assert result["pages"] == [2, 2, 1]
    assert result["tomorrow"] == []
    assert result["badDate"]["errCode"] == "bad_request"
    assert "since is an invalid Date" in result["badDate"]["message"]
    assert result["badLimit"]["errCode"] == "bad_request"
    assert "argument.limit" in result["badLimit"]["message"]
    assert result["badCursor"]["errCode"] == "bad_request"
    assert "argument.before" in result["badCursor"]["message"]
