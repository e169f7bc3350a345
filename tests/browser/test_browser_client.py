"""The JavaScript client (/client.js, /client.global.js) in chromium, against the real
server: login, call() matched by reqId, errors with errCode, per-call timeouts,
on/once/unsubscribe with local filter matching, and reconnecting across a server
restart (re-login, re-subscribe, state callbacks, pending calls rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.browser_support import RestartableServer, open_client_page, require_browser
from tests.support import ADMIN, AGENT, SUPERVISOR
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

require_browser()  # before importing playwright: skip the module with a reason

from playwright.async_api import Page, expect  # noqa: E402

pytestmark = pytest.mark.slow  # chromium


async def test_client_api(page: Page, server: RunningServer, simulator: PbxSimulator) -> None:
    # One browser for the three parts: launching chromium is most of a test's time here.
    await check_calls(page, server, simulator)
    await check_subscriptions(page, server)
    await check_global_script_build(page, server)


async def check_calls(page: Page, server: RunningServer, simulator: PbxSimulator) -> None:
    """call() resolves with the answer or rejects with errCode; login; timeouts."""
    exports = await open_client_page(page, server.http_url)
    assert {"connect", "Client", "PbxError", "sha1Hex", "matches", "default", "VwellPbx"} <= set(
        exports
    )
    result: dict[str, Any] = await page.evaluate(
        """async ([url, agent, admin]) => {
          const {connect, sha1Hex} = window.mod;
          const out = {};
          out.sha1 = await sha1Hex('demo');
          out.badLogin = await failure(connect(url, {...agent, password: 'nope'}));
          const states = [];
          const pbx = await connect(url, {...agent, password: 'demo',
                                         onState: (s) => states.push(s)});
          out.states = states.slice();
          out.state = pbx.state;
          const [ping, pong2] = await Promise.all([
            pbx.call('send', {fields: {action: 'Ping'}, callbackAwait: true}),
            pbx.call('send', {fields: {action: 'Ping'}, callbackAwait: true})]);
          out.ping = ping;
          out.distinctReqIds = ping.reqId !== pong2.reqId;
          out.unknown = await failure(pbx.call('noSuchMethod', {}));
          out.forbidden = await failure(
            pbx.call('send', {fields: {action: 'Command', command: 'core show version'}}));
          out.badArg = await failure(pbx.call('dial', {from: '269'}));
          pbx.close();
          out.closedState = pbx.state;
          out.afterClose = await failure(pbx.call('send', {fields: {action: 'Ping'}}));
          // {sha1} instead of a password.
          const admin2 = await connect(url, admin);
          out.adminAnswer = await admin2.call('send', {fields: {action: 'CoreStatus'},
                                                       callbackAwait: true});
          admin2.close();
          return out;
        }""",
        [server.ws_url, {"login": AGENT["login"], "login2": AGENT["login2"]}, ADMIN],
    )
    assert result["sha1"] == AGENT["sha1"]
    assert result["badLogin"]["errCode"] == "auth_failed"
    assert result["badLogin"]["isPbxError"] and result["badLogin"]["name"] == "PbxError"
    assert result["badLogin"]["response"]["errCode"] == "auth_failed"
    assert result["states"] == ["connecting", "open"] and result["state"] == "open"
    assert result["ping"]["err"] is None and result["ping"]["event"]["Ping"] == "Pong"
    assert result["distinctReqIds"]
    assert result["unknown"]["errCode"] == "unknown_method"
    assert result["unknown"]["response"]["reqId"]  # the server echoed our reqId
    assert result["forbidden"]["errCode"] == "forbidden"
    assert result["badArg"]["errCode"] == "bad_request" and "to" in result["badArg"]["message"]
    assert result["closedState"] == "closed"
    assert result["afterClose"]["errCode"] == "closed"
    assert result["adminAnswer"]["err"] is None

    # A per-call timeout: the PBX hangs, the call gives up after 300 ms.
    simulator.mute = True
    try:
        timed_out = await page.evaluate(
            """async ([url, agent]) => {
              const pbx = await window.mod.connect(url, agent);
              const started = Date.now();
              const f = await failure(pbx.call('send', {fields: {action: 'Ping'},
                                                        callbackAwait: true}, {timeout: 300}));
              f.elapsed = Date.now() - started;
              pbx.close();
              return f;
            }""",
            [server.ws_url, AGENT],
        )
    finally:
        simulator.mute = False
    assert timed_out["errCode"] == "request_timeout"
    assert 250 <= timed_out["elapsed"] < 3000


async def check_subscriptions(page: Page, server: RunningServer) -> None:
    """on/once/unsubscribe, with every local handler whose filter matches called."""
    await open_client_page(page, server.http_url)
    # dispatchEvent (supervisor) makes events without the PBX; the sender receives them too.
    result: dict[str, Any] = await page.evaluate(
        """async ([url, boss]) => {
          const pbx = await window.mod.connect(url, boss);
          const got = {a: [], b: [], c: []};
          const offA = pbx.on('TestEvt', {color: ['red', 'blue']}, (e) => got.a.push(e.color));
          const offB = pbx.on('test*', (e) => got.b.push(e.color));
          const offC = pbx.on({name: 'testevt', SIZE: 'x*'}, (e) => got.c.push(e.size));
          const ids = await Promise.all([offA.ready, offB.ready, offC.ready]);
          const first = pbx.once({name: 'TESTEVT', color: 'Blue'});
          const onceHandled = [];
          pbx.once('TestEvt', {color: 'red'}, (e) => onceHandled.push(e.color));
          const send = (event) => pbx.call('dispatchEvent', {event});
          const d1 = await send({name: 'TestEvt', color: 'Red', size: 'xl'});
          await send({name: 'TestEvt', color: 'blue', size: 's'});
          const onceEvent = await first;
          const subsBefore = pbx.subscriptions;
          const removed = await offA();
          const removedAgain = await offA();
          await send({name: 'TestEvt', color: 'red', size: 'xs'});
          await send({name: 'Other', color: 'red'});
          await waitFor(() => got.b.length === 3);
          return {ids, got, onceEvent, onceHandled, removed, removedAgain, subsBefore,
                  subsAfter: pbx.subscriptions, delivered: d1.delivered,
                  matches: [window.mod.matches({name: 'new*', CallerIDNum: ['1', '+7978*']},
                                               {name: 'Newchannel', callerIDnum: '+79781'}),
                            window.mod.matches({name: 'Hangup'}, {name: 'Newchannel'})]};
        }""",
        [server.ws_url, SUPERVISOR],
    )
    assert all(isinstance(i, str) and i for i in result["ids"])
    assert result["got"]["a"] == ["Red", "blue"]
    assert result["got"]["b"] == ["Red", "blue", "red"]
    assert result["got"]["c"] == ["xl", "xs"]
    assert result["onceEvent"]["color"] == "blue" and result["onceEvent"]["name"] == "TestEvt"
    assert result["onceEvent"]["origin"] == "api" and result["onceEvent"]["login"] == "boss"
    assert "err" not in result["onceEvent"] and "errCode" not in result["onceEvent"]
    assert result["onceHandled"] == ["Red"]
    assert result["subsBefore"] == 3  # both once subscriptions ended after their event
    assert result["removed"] == 1 and result["removedAgain"] == 0
    assert result["subsAfter"] == 2
    assert result["delivered"] == 1  # one connection, however many subscriptions matched
    assert result["matches"] == [True, False]
    stats = server.api.bus.stats
    assert stats.subscriptions == 2  # offA and both once subscriptions are gone on the server

    # A filter the client itself cannot compile throws at once; one the server refuses
    # (more than 64 field filters) rejects .ready and is dropped locally.
    refused = await page.evaluate(
        """async ([url, agent]) => {
          const pbx = await window.mod.connect(url, agent);
          let syncError = null;
          try { pbx.on('X', {a: [[1]]}, () => {}); } catch (e) { syncError = e.errCode; }
          const filters = {};
          for (let i = 0; i < 65; i++) filters['f' + i] = 'x';
          const off = pbx.on('Newchannel', filters, () => {});
          const failed = await failure(off.ready);
          const out = {syncError, errCode: failed && failed.errCode, subs: pbx.subscriptions};
          pbx.close();
          return out;
        }""",
        [server.ws_url, AGENT],
    )
    assert refused == {"syncError": "bad_request", "errCode": "bad_request", "subs": 0}


async def check_global_script_build(page: Page, server: RunningServer) -> None:
    """The plain <script> build on a page without the module."""
    # A same-origin page without the module: the plain <script> sets window.VwellPbx.
    await page.goto(server.http_url + "/client.d.ts")
    assert await page.evaluate("typeof window.VwellPbx") == "undefined"
    await page.add_script_tag(url="/client.global.js")
    answer = await page.evaluate(
        """async ([url, agent]) => {
          const pbx = await VwellPbx.connect(url, agent);
          const answer = await pbx.call('send', {fields: {action: 'Ping'}, callbackAwait: 1});
          pbx.close();
          return answer;
        }""",
        [server.ws_url, AGENT],
    )
    assert answer["event"]["Ping"] == "Pong"


async def test_reconnect_after_server_restart(
    browser: Any, restartable: RestartableServer, simulator: PbxSimulator, artifacts: Path
) -> None:
    context = await browser.new_context(viewport={"width": 1366, "height": 800})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await _subscribe_client_page(page, restartable)
        console = await context.new_page()
        console.on("pageerror", lambda error: errors.append(str(error)))
        await _subscribe_console(console, restartable.http_url)

        await _server_goes_away(page, console, restartable, simulator, artifacts)
        restarted = await restartable.start()
        await _both_come_back(page, console, restarted, simulator, artifacts)

        states: list[str] = await page.evaluate("window.states")
        assert states[:2] == ["connecting", "open"]
        assert "reconnecting" in states and states[-1] == "open"
        assert states.index("reconnecting") > 1

        # The unsubscribe function still works with the new subscription id.
        new_id = await page.evaluate("window.off.subscriptionId")
        assert isinstance(new_id, str) and new_id
        removed = await page.evaluate("window.off()")
        assert removed == 1
        await page.evaluate("window.pbx.close()")
        assert await page.evaluate("window.pbx.state") == "closed"
    finally:
        await context.close()
    assert not errors, errors


# The steps of the restart test above, in order.


async def _subscribe_client_page(page: Any, restartable: RestartableServer) -> None:
    """The client library on a page, subscribed to Newchannel from one caller, noting its
    states. The page is served by the HTTP port; the client talks to the WebSocket port."""
    await open_client_page(page, restartable.http_url)
    await page.evaluate(
        """async ([url, agent]) => {
          window.states = [];
          window.events = [];
          const pbx = await window.mod.connect(url, {...agent,
            backoff: {initial: 50, max: 400},
            onState: (s, d) => window.states.push(s)});
          window.pbx = pbx;
          const off = pbx.on('Newchannel', {CallerIDNum: '+79787342741'},
                             (e) => window.events.push(e));
          window.off = off;
          await off.ready;
        }""",
        [restartable.ws_url, AGENT],
    )


async def _subscribe_console(console: Any, http_url: str) -> None:
    """The console too, on the same server, subscribed to Newchannel."""
    await console.goto(http_url + "/console")
    await console.wait_for_selector("html[data-ready=true]")
    await console.get_by_label("Login", exact=True).fill(AGENT["login"])
    await console.get_by_label("Name (login2)").fill(AGENT["login2"])
    await console.get_by_label("Password", exact=True).fill("demo")
    await console.get_by_label("Password", exact=True).press("Enter")
    await expect(console.locator("#state")).to_have_attribute("data-state", "open")
    await console.get_by_label("Event name").press("Enter")
    await expect(console.locator("#subscriptions li")).to_have_attribute("data-state", "active")


async def _server_goes_away(
    page: Any,
    console: Any,
    restartable: RestartableServer,
    simulator: PbxSimulator,
    artifacts: Path,
) -> None:
    """The server stops: the pending call fails, both clients reconnect, and what is
    asked meanwhile waits for the connection."""
    # A call in flight when the server goes away: the PBX hangs so it stays pending.
    simulator.mute = True
    await page.evaluate("""() => {
      window.pending = failure(window.pbx.call('send', {fields: {action: 'Ping'},
                                                        callbackAwait: true}));
    }""")
    await restartable.stop()
    simulator.mute = False
    pending = await page.evaluate("window.pending")
    assert pending["errCode"] == "disconnected", pending
    await page.evaluate("waitFor(() => window.pbx.state === 'reconnecting')")
    await expect(console.locator("#state")).to_have_attribute("data-state", "reconnecting")
    await expect(console.locator("#subscriptions li")).to_have_attribute("data-state", "waiting")
    assert await page.evaluate("window.off.subscriptionId") is None
    await console.screenshot(path=artifacts / "console-4-reconnecting.png")
    # A call made while reconnecting waits for the connection; so does a subscription.
    await page.evaluate("""() => {
      window.queued = window.pbx.call('send', {fields: {action: 'Ping'},
                                               callbackAwait: true}, {timeout: 20000});
      window.hangups = [];
      window.offLate = window.pbx.on('Hangup', (e) => window.hangups.push(e));
    }""")


async def _both_come_back(
    page: Any,
    console: Any,
    restarted: RunningServer,
    simulator: PbxSimulator,
    artifacts: Path,
) -> None:
    """After the restart: the queued call is answered, every subscription is made
    again, and a new call reaches the page and the console."""
    await page.evaluate("waitFor(() => window.pbx.state === 'open', 10000)")
    queued = await page.evaluate("window.queued")
    assert queued["event"]["Ping"] == "Pong"
    late_id = await page.evaluate("window.offLate.ready")
    assert isinstance(late_id, str) and late_id
    await expect(console.locator("#state")).to_have_attribute("data-state", "open")
    await expect(console.locator("#subscriptions li")).to_have_attribute("data-state", "active")
    # Both clients subscribed again on the new server: the page twice, the console once
    # for its events panel and once for its Live calls panel (call.*).
    await _wait_for_subscriptions(restarted, 4)

    await simulator.incoming_call("+79787342741")
    await page.evaluate("waitFor(() => window.events.length >= 1 && window.hangups.length)")
    event = await page.evaluate("window.events[0]")
    assert event["name"] == "Newchannel" and event["CallerIDNum"] == "+79787342741"
    await expect(
        console.locator("#events li").filter(has_text="CallerIDNum=+79787342741").first
    ).to_be_visible()
    await console.screenshot(path=artifacts / "console-5-reconnected.png")


async def _wait_for_subscriptions(running: RunningServer, count: int) -> None:
    await until(
        lambda: running.api.bus.stats.subscriptions == count,
        what=f"{count} subscriptions on the restarted server",
    )
