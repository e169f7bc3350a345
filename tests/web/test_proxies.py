"""``[server] trusted_proxies``: the client's address behind nginx, never from anyone else.

The rules are a table (``client_address``); the server is then tried over real sockets
with forged headers: login throttling per address, WebSockets per address and the log
lines must see the address the trusted proxy reported, and only that.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import AGENT, ApiClient, make_config
from vwell_pbx.config import ConfigError, load_config
from vwell_pbx.web.app import PER_ADDRESS_KEY
from vwell_pbx.web.peers import client_address, parse_proxy_networks
from vwell_pbx.web.server import RunningServer

PROXIES = parse_proxy_networks(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("remote", "header", "values", "expected"),
    [
        # Not from a trusted proxy: the header is never read.
        ("192.0.2.7", "x-forwarded-for", ["203.0.113.5"], "192.0.2.7"),
        ("192.0.2.7", "forwarded", ["for=203.0.113.5"], "192.0.2.7"),
        # From a trusted proxy: the address it appended.
        ("127.0.0.1", "x-forwarded-for", ["203.0.113.5"], "203.0.113.5"),
        ("::ffff:127.0.0.1", "x-forwarded-for", ["203.0.113.5"], "203.0.113.5"),
        # A client that forges the header: the proxy appends the real address last.
        ("127.0.0.1", "x-forwarded-for", ["198.51.100.1, 203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", "x-forwarded-for", ["198.51.100.1", "203.0.113.5"], "203.0.113.5"),
        # Two trusted proxies in a row: the first untrusted address from the right.
        ("127.0.0.1", "x-forwarded-for", ["203.0.113.5, 10.1.2.3"], "203.0.113.5"),
        ("127.0.0.1", "x-forwarded-for", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),
        # Ports, brackets, IPv6.
        ("127.0.0.1", "x-forwarded-for", ["203.0.113.5:5555"], "203.0.113.5"),
        ("127.0.0.1", "x-forwarded-for", ["[2001:db8::1]:4711"], "2001:db8::1"),
        # Not an address: the walk stops at the last trusted hop.
        ("127.0.0.1", "x-forwarded-for", ["junk"], "127.0.0.1"),
        ("127.0.0.1", "x-forwarded-for", ["203.0.113.5, junk, 10.1.2.3"], "10.1.2.3"),
        ("127.0.0.1", "x-forwarded-for", [], "127.0.0.1"),
        # RFC 7239.
        ("127.0.0.1", "forwarded", ['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (
            "127.0.0.1",
            "forwarded",
            ["for=198.51.100.1, for=203.0.113.5;proto=https"],
            "203.0.113.5",
        ),
        ("127.0.0.1", "forwarded", ["For=203.0.113.5;by=10.0.0.1"], "203.0.113.5"),
        ("127.0.0.1", "forwarded", ["for=unknown"], "127.0.0.1"),
        ("127.0.0.1", "forwarded", ["for=_hidden, for=203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", "forwarded", ["proto=https"], "127.0.0.1"),
        # Only the configured header counts.
        ("127.0.0.1", "forwarded", [], "127.0.0.1"),
    ],
)
def test_client_address_rules(remote: str, header: Any, values: list[str], expected: str) -> None:
    assert client_address(remote, values, PROXIES, header) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"


def test_bad_proxy_entries_stop_start_up(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[server]\ntrusted_proxies = ["10.0.0.0/8", "nginx.local"]\n'
        '[[pbx]]\nname = "a"\nhost = "h"\nusername = "u"\nsecret = "s"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.field == "server.trusted_proxies"
    assert "nginx.local" in str(caught.value)
    path.write_text(
        '[server]\nproxy_header = "X-Real-IP"\n'
        '[[pbx]]\nname = "a"\nhost = "h"\nusername = "u"\nsecret = "s"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"server\.proxy_header"):
        load_config(path, env={})
    config = make_config(tmp_path, 5038, server={"proxy_header": "Forwarded"})
    assert config.server.proxy_header == "forwarded"


BAD = {**AGENT, "sha1": "0" * 40}
# Failed logins are counted per address (after 2, a lock-out); per login they are not
# limited here, so only the address decides.
THROTTLE = {"users": {"throttle_after": 1000, "throttle_after_address": 2}}


async def _post(api: ApiClient, creds: dict[str, str], forwarded: str | None) -> dict[str, Any]:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    envelope = {"method": "send", "argument": {**creds, "fields": {"action": "Ping"}}}
    async with api.session.post(api.url, json=envelope, headers=headers) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def _lock_out(api: ApiClient, forwarded: str | None) -> None:
    for _ in range(4):  # the 4th failure locks the address for 4 s
        answer = await _post(api, BAD, forwarded)
        assert answer["errCode"] in ("auth_failed", "rate_limited"), answer


@pytest.mark.parametrize(
    "server_overrides", [{**THROTTLE, "server": {"trusted_proxies": ["127.0.0.1"]}}]
)
async def test_throttling_sees_the_client_behind_a_trusted_proxy(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vwell_pbx")
    await _lock_out(api, "203.0.113.1")
    assert (await _post(api, AGENT, "203.0.113.1"))["errCode"] == "rate_limited"
    # Another client behind the same proxy is not locked out.
    assert (await _post(api, AGENT, "203.0.113.2"))["err"] is None
    # The locked-out client cannot escape by forging an address in front of its own.
    forged = await _post(api, AGENT, "203.0.113.2, 203.0.113.1")
    assert forged["errCode"] == "rate_limited", forged
    # The log names the real client, not the proxy.
    failures = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert failures and all(m.endswith("from 203.0.113.1") for m in failures), failures


@pytest.mark.parametrize("server_overrides", [THROTTLE])
async def test_forwarding_headers_are_ignored_without_trusted_proxies(api: ApiClient) -> None:
    await _lock_out(api, "203.0.113.1")
    # Every request came from 127.0.0.1 whatever it claimed: that address is locked.
    assert (await _post(api, AGENT, "203.0.113.2"))["errCode"] == "rate_limited"
    assert (await _post(api, AGENT, None))["errCode"] == "rate_limited"


@pytest.mark.parametrize(
    "server_overrides",
    [
        {
            "server": {"trusted_proxies": ["127.0.0.0/8"], "proxy_header": "forwarded"},
            "limits": {"max_ws_per_address": 1},
        }
    ],
)
async def test_websockets_per_address_behind_a_proxy(api: ApiClient, server: RunningServer) -> None:
    def forwarded(address: str) -> dict[str, str]:
        return {"Forwarded": f'for="{address}";proto=http', "X-Forwarded-For": "192.0.2.99"}

    first = await api.session.ws_connect(server.ws_url, headers=forwarded("[2001:db8::5]:1"))
    assert server.app[PER_ADDRESS_KEY] == {"2001:db8::5": 1}
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await api.session.ws_connect(server.ws_url, headers=forwarded("2001:db8::5"))
    assert caught.value.status == 429
    second = await api.session.ws_connect(server.ws_url, headers=forwarded("198.51.100.7"))
    await second.send_json({"method": "whoami", "argument": {**AGENT, "reqId": 1}})
    answer = await second.receive_json(timeout=5)
    assert answer["err"] is None and answer["login"] == AGENT["login"]
    assert server.app[PER_ADDRESS_KEY] == {"2001:db8::5": 1, "198.51.100.7": 1}
    await first.close()
    await second.close()
