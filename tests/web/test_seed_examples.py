"""The original server's own examples (tests/data/seed, verbatim) in a real browser.

A page on an origin of its own (a small web server on another loopback port, as a CRM
would be) runs each snippet of the original README against the
real server and the PBX simulator: the WebSocket example, jQuery's ``$.post`` (Debian's
jQuery: its own bracket form encoding) and the ``fb64json`` XMLHttpRequest, then every
method example over all three transports. What the test changes in the snippets, and
why, is in tests/data/seed/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.browser.browser_support import require_browser
from tests.support import AGENT
from tests.support.waiting import until
from tests.web.browser_page import HAVE_JQUERY
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer

pytestmark = pytest.mark.slow  # chromium

if TYPE_CHECKING:
    from playwright.async_api import Page

require_browser()

SEED = Path(__file__).resolve().parents[1] / "data" / "seed"


def seed(name: str, server: RunningServer) -> str:
    """A snippet, with the placeholder SHA-1 and the original's addresses replaced."""
    text = (SEED / name).read_text(encoding="utf-8")
    if "sha1: 'a9de7c...'" in text:
        text = text.replace("'a9de7c...'", f"'{AGENT['sha1']}'")
    text = text.replace("ws://127.0.0.1:8931/api", server.ws_url)
    return text.replace("http://localhost:8930/api", server.http_url + "/api")


async def run(page: Page, script: str) -> None:
    """Run a snippet as a classic script, as a page's <script> would (globals global)."""
    await page.add_script_tag(content=script)


async def logged(page: Page, count: int) -> list[Any]:
    """The first ``count`` values the page's scripts passed to console.log."""
    await page.wait_for_function(f"window.logged.length >= {count}", timeout=10_000)
    values: list[Any] = await page.evaluate(f"window.logged.slice(0, {count})")
    return values


async def answers(page: Page, count: int) -> list[dict[str, Any]]:
    """The first ``count`` answers the WebSocket example's listener logged (events skipped)."""
    await page.wait_for_function(
        "window.logged.filter(d => typeof d === 'string' && d.includes('\"errCode\"')).length"
        f" >= {count}",
        timeout=10_000,
    )
    texts: list[str] = await page.evaluate(
        "window.logged.filter(d => typeof d === 'string' && d.includes('\"errCode\"'))"
    )
    return [orjson.loads(text) for text in texts[:count]]


async def open_seed_websocket(page: Page, server: RunningServer) -> str:
    """The WebSocket example up to its send; returns the send part, to run when open
    (a browser refuses a send while the socket is still connecting)."""
    text = seed("websocket_request.js", server)
    opening, marker, sending = text.partition("// Отправить запрос в канал")
    assert marker and "new WebSocket" in opening and "ws.send(" in sending
    await run(page, opening)
    await page.wait_for_function("window.ws.readyState === WebSocket.OPEN", timeout=10_000)
    return marker + sending


async def test_the_seed_transport_examples_run_as_written(
    page: Page, server: RunningServer
) -> None:
    # WebSocket: the listener logs res.data; the envelope carries no method arguments
    # ("... другие аргументы"), so the answer names the missing one, reqId echoed.
    await run(page, await open_seed_websocket(page, server))
    [ws_answer] = await answers(page, 1)
    assert ws_answer["errCode"] == "bad_request", ws_answer
    assert ws_answer["err"] == "argument.fields is required"
    assert isinstance(ws_answer["reqId"], str) and ws_answer["reqId"].startswith("0.")
    await page.evaluate("window.logged = []")

    # XMLHttpRequest GET with fb64json: the example never reads the answer; the
    # browser's own view of the response is checked instead.
    async with page.expect_response(lambda r: "fb64json=" in r.url) as caught:
        await run(page, seed("xhr_fb64json.js", server))
    response = await caught.value
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "*"
    get_answer = await response.json()
    assert get_answer["errCode"] == "bad_request", get_answer
    assert get_answer["err"] == "argument.fields is required"

    # jQuery's $.post: the server decodes jQuery's own bracket encoding (Cyrillic
    # login2 included), authenticates, and the callback gets the parsed answer.
    if not HAVE_JQUERY:
        pytest.skip("Debian's jQuery is missing (apt-get install libjs-jquery)")
    await page.evaluate("window.logged = []")
    await run(page, seed("jquery_post.js", server))
    [post_answer] = await logged(page, 1)
    assert post_answer["errCode"] == "bad_request", post_answer
    assert post_answer["err"] == "argument.fields is required"
    assert post_answer["reqId"].startswith("0.")


# The method examples are ws.send(JSON.stringify({...})) snippets. Each is run as written
# on the example's WebSocket, and its envelope (what it passes to ws.send) is also sent
# as the other two examples send theirs: $.post, and GET with fb64json.
ENVELOPES_OF = """(script) => {
  const sent = [];
  new Function('ws', script)({send: (text) => sent.push(text)});
  return sent;
}"""
OVER_HTTP = """async ([url, text]) => {
  const envelope = JSON.parse(text);
  const posted = window.jQuery === undefined ? [] :
    [await new Promise((resolve) => $.post(url, envelope, resolve))];
  const fetched = await new Promise((resolve) => {
    const req = new XMLHttpRequest();
    req.open('GET', url + '?fb64json=' + Base64.encode(text), true);
    req.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
    req.onload = () => resolve(JSON.parse(req.responseText));
    req.send();
  });
  return [...posted, fetched];
}"""


async def over_every_transport(
    page: Page, server: RunningServer, script: str
) -> list[dict[str, Any]]:
    """Answers to ``script``'s envelopes: over the WebSocket (the snippet run as
    written), then for each envelope $.post (when jQuery is there) and fb64json."""
    envelopes: list[str] = await page.evaluate(ENVELOPES_OF, script)
    await page.evaluate("window.logged = []")
    await run(page, script)
    result = await answers(page, len(envelopes))
    for text in envelopes:
        result += await page.evaluate(OVER_HTTP, [server.http_url + "/api", text])
    return result


async def test_the_seed_method_examples_over_every_transport(
    page: Page, server: RunningServer, simulator: PbxSimulator
) -> None:
    # Without Debian's jQuery (libjs-jquery) the $.post leg is left out.
    transports = 3 if HAVE_JQUERY else 2
    await open_seed_websocket(page, server)

    # send: ping with callbackAwait and a numeric actionId, echoed as text.
    for answer in await over_every_transport(page, server, seed("send.js", server)):
        assert answer["err"] is None, answer
        assert answer["event"]["Ping"] == "Pong"
        assert float(answer["actionId"]) == float(answer["event"]["ActionID"])

    # gsmSendSMS: the number normalised, the text as sent (stored, then sent from the
    # outbox: the simulator counts what arrived).
    before = len(simulator.sms_sent)
    for answer in await over_every_transport(page, server, seed("gsmSendSMS.js", server)):
        assert answer["err"] is None, answer
        assert answer["tel"] == "81002003040"
    await until(lambda: len(simulator.sms_sent) >= before + transports, within=10)
    assert [(s.number, s.text) for s in simulator.sms_sent[before:]] == [
        ("81002003040", "lorem ipsum")
    ] * transports

    # dial as written: from and to are blank and are named; timeout: '' is "not given".
    dial = seed("dial.js", server)
    for answer in await over_every_transport(page, server, dial):
        assert answer["errCode"] == "bad_request", answer
        assert "argument.from" in answer["err"] and "timeout" not in answer["err"], answer
    # ...and with the numbers filled in: the PBX rings for the default 30 s.
    filled = dial.replace("from: ''", "from: '269'").replace("to: ''", "to: '100'")
    assert filled.count("'269'") == 1 and "timeout: ''" in filled
    before = len(simulator.actions_received)
    for answer in await over_every_transport(page, server, filled):
        assert answer["err"] is None, answer
        assert (answer["from"], answer["to"]) == ("269", "100")
    originates = [a for a in simulator.actions_received[before:] if a.name == "Originate"]
    assert [a.get("Timeout") for a in originates] == ["30000"] * transports

    # redirect: the example's channel is the first GSM call on span 11.
    channel = await simulator.incoming_call("+79787342741", hold=30)
    assert channel == "YSGSM/11-1"
    before = len(simulator.actions_received)
    for answer in await over_every_transport(page, server, seed("redirect.js", server)):
        assert answer["errCode"] in (None, "pbx_error"), answer  # moved once, maybe gone
    redirects = [a for a in simulator.actions_received[before:] if a.name == "Redirect"]
    assert [(a.get("Channel"), a.get("Exten")) for a in redirects] == [
        ("YSGSM/11-1", "269")
    ] * transports

    # onEvent (by name, then by name and CallerIDNum) and rmEvent by name: on the
    # WebSocket they subscribe and unsubscribe; over plain HTTP they say what is needed.
    subscribed = await over_every_transport(page, server, seed("onEvent.js", server))
    assert [bool(a.get("subscriptionId")) for a in subscribed[:2]] == [True, True], subscribed
    for answer in subscribed[2:]:
        assert answer["errCode"] == "not_supported" and "WebSocket" in answer["err"], answer
    await simulator.incoming_call("+71002003040", hold=1)
    await page.wait_for_function(
        "window.logged.some(d => typeof d === 'string' && d.includes('+71002003040')"
        " && !d.includes('errCode'))",
        timeout=10_000,
    )
    removed = await over_every_transport(page, server, seed("rmEvent.js", server))
    assert removed[0]["err"] is None and removed[0]["removed"] == 2, (
        removed
    )  # NewChannel = Newchannel
    assert all(a["errCode"] == "not_supported" for a in removed[1:]), removed
