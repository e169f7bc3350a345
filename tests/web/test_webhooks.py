"""Webhooks: deliveries to a real HTTP receiver on loopback, retries, signatures, bounds."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.support.waiting import until
from vwell_pbx.config import ConfigError, WebhookConfig, load_config, webhook_secret_env_name
from vwell_pbx.events.bus import BusEvent, EventBus
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer
from vwell_pbx.web.webhooks import WEBHOOKS_KEY, WebhookDispatcher, signature

SECRET = "s3cret-hook-key"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.body)
        return result


@dataclass
class Receiver:
    """A real web server that records what it receives and answers per path."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.deliveries.append(Delivery(request.path, dict(request.headers), body))
        delivery = request.headers.get("X-Vwell-Delivery", "")
        self.attempts[delivery] += 1
        if request.path == "/ok":
            return web.Response(status=204)
        if request.path == "/flaky":  # two failures, then success
            return web.Response(status=500 if self.attempts[delivery] <= 2 else 200)
        if request.path == "/down":
            return web.Response(status=503)
        if request.path == "/reject":
            return web.Response(status=400, text="bad signature")
        if request.path == "/slow":
            async with asyncio.timeout(10):
                await self.release.wait()
            return web.Response(status=200)
        return web.Response(status=404)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    rec.release.set()
    await runner.cleanup()


@pytest.fixture
def server_overrides(receiver: Receiver) -> dict[str, Any]:
    fast = {"retry_seconds": 0.01, "retry_max_seconds": 0.05, "timeout": 5}
    return {
        "webhooks": [
            {
                "name": "crm",
                "url": receiver.url + "/ok?token=abc",
                "secret": SECRET,
                "event": {"name": "Newchannel", "CallerIDNum": "+7978*"},
            },
            {
                "name": "flaky",
                "url": receiver.url + "/flaky",
                "event": {"name": "FlakyTest"},
                "max_retries": 3,
                **fast,
            },
            {
                "name": "down",
                "url": receiver.url + "/down",
                "event": {"name": "DownTest"},
                "max_retries": 2,
                **fast,
            },
            {
                "name": "picky",
                "url": receiver.url + "/reject",
                "event": {"name": "RejectTest"},
                "max_retries": 5,
                **fast,
            },
            {
                "name": "slow",
                "url": receiver.url + "/slow",
                "event": {"name": "SlowTest"},
                "queue_size": 2,
                **fast,
            },
        ]
    }


def publish(server: RunningServer, name: str, **fields: Any) -> None:
    server.api.bus.publish(
        BusEvent.from_client({"name": name, **fields}, login="root", login2="Admin")
    )


def stats(server: RunningServer, name: str) -> dict[str, Any]:
    for entry in server.app[WEBHOOKS_KEY].health():
        if entry["name"] == name:
            return entry
    raise KeyError(name)


async def health(server: RunningServer) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/health") as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


async def test_pbx_events_are_posted_signed(
    server: RunningServer, receiver: Receiver, simulator: PbxSimulator
) -> None:
    await simulator.incoming_call("+71002003040", hold=0.05)  # filtered out
    await simulator.incoming_call("+79787342741", hold=0.05)
    await until(lambda: bool(receiver.on("/ok")))
    delivery = receiver.on("/ok")[0]
    event = delivery.event
    assert (event["name"], event["CallerIDNum"]) == ("Newchannel", "+79787342741")
    assert event["eventId"].startswith(server.api.bus.run_id + "-")  # as every push
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery.headers["X-Vwell-Signature"], expected)
    assert delivery.headers["X-Vwell-Event"] == "Newchannel"
    assert delivery.headers["X-Vwell-Delivery"]
    assert delivery.headers["X-Vwell-Attempt"] == "1"
    assert delivery.headers["Content-Type"] == "application/json"
    await until(lambda: stats(server, "crm")["delivered"] >= 1)
    # In order, one at a time: had the first call's event passed the filter, it
    # would have been delivered first.
    assert all(d.event["CallerIDNum"].startswith("+7978") for d in receiver.on("/ok"))
    entry = stats(server, "crm")
    assert entry["url"].endswith("/ok")  # the query (a token) is never shown
    assert "token" not in entry["url"]


async def test_failures_are_retried_with_the_same_delivery_id(
    server: RunningServer, receiver: Receiver
) -> None:
    publish(server, "FlakyTest", n=1)
    await until(lambda: stats(server, "flaky")["delivered"] == 1)
    attempts = receiver.on("/flaky")
    assert [d.headers["X-Vwell-Attempt"] for d in attempts] == ["1", "2", "3"]
    assert len({d.headers["X-Vwell-Delivery"] for d in attempts}) == 1
    assert {d.body for d in attempts} == {attempts[0].body}
    assert "X-Vwell-Signature" not in attempts[0].headers  # no secret configured
    entry = stats(server, "flaky")
    assert (entry["retries"], entry["failed"], entry["state"]) == (2, 0, "ok")


async def test_giving_up_is_counted_on_health_and_metrics(
    server: RunningServer, receiver: Receiver
) -> None:
    publish(server, "DownTest", n=1)
    publish(server, "RejectTest", n=1)
    await until(lambda: stats(server, "down")["failed"] == 1)
    await until(lambda: stats(server, "picky")["failed"] == 1)
    assert len(receiver.on("/down")) == 3  # the first attempt and max_retries = 2
    assert len(receiver.on("/reject")) == 1  # a 4xx is not retried
    body = await health(server)
    entries = {entry["name"]: entry for entry in body["webhooks"]}
    down = entries["down"]
    assert (down["state"], down["lastStatus"], down["failed"], down["retries"]) == (
        "failing",
        503,
        1,
        2,
    )
    assert "503" in down["lastError"]
    assert entries["picky"]["lastStatus"] == 400
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + "/metrics") as response,
    ):
        text = await response.text()
    assert 'vwell_webhook_deliveries_total{outcome="failed",webhook="down"} 1.0' in text
    assert 'vwell_webhook_retries_total{webhook="down"} 2.0' in text


async def test_a_full_queue_drops_and_counts(server: RunningServer, receiver: Receiver) -> None:
    for n in range(5):  # synchronously: the worker takes none of them in between
        publish(server, "SlowTest", n=n)
    entry = stats(server, "slow")
    assert (entry["queued"], entry["dropped"]) == (2, 3)
    await until(lambda: len(receiver.on("/slow")) == 1)  # the first is in flight
    receiver.release.set()
    await until(lambda: stats(server, "slow")["delivered"] == 2)
    assert [d.event["n"] for d in receiver.on("/slow")] == [0, 1]
    assert (await health(server))["webhooks"][-1]["dropped"] == 3


async def test_connection_errors_are_retried_then_given_up() -> None:
    # A dispatcher on its own bus, aimed at a port nobody listens on; sleeps recorded.
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bus = EventBus()
    config = WebhookConfig(
        url="http://127.0.0.1:9/nowhere",
        max_retries=3,
        retry_seconds=1,
        retry_max_seconds=3,
        timeout=2,
    )
    async with WebhookDispatcher([config], bus, sleep=sleep, rng=lambda: 1.0) as dispatcher:
        bus.publish(BusEvent.from_client({"name": "Any"}, login="a", login2="b"))
        hook = dispatcher.webhooks[0]
        await until(lambda: hook.stats.failed == 1)
    assert waits == [1.0, 2.0, 3.0]  # doubling, capped at retry_max_seconds
    assert hook.stats.retries == 3
    assert hook.stats.last_error is not None
    assert hook.name == "webhook1"


def test_signature_helper_matches_hmac() -> None:
    body = b'{"name":"X"}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, "sha256").hexdigest()


async def test_a_delivery_bug_does_not_stop_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EventBus()
    config = WebhookConfig(url="http://127.0.0.1:9/nowhere", max_retries=0)
    async with WebhookDispatcher([config], bus) as dispatcher:
        hook = dispatcher.webhooks[0]
        calls: list[bytes] = []

        async def attempt(session: Any, body: bytes, headers: Any) -> tuple[bool, str | None]:
            calls.append(body)
            if len(calls) == 1:
                raise RuntimeError("a bug in the delivery code")
            return True, None

        monkeypatch.setattr(hook, "_attempt", attempt)
        bus.publish(BusEvent.from_client({"name": "First"}, login="a", login2="b"))
        bus.publish(BusEvent.from_client({"name": "Second"}, login="a", login2="b"))
        await until(lambda: hook.stats.delivered == 1)
    assert hook.stats.failed == 1
    assert [orjson.loads(body)["name"] for body in calls] == ["First", "Second"]


async def test_webhook_secrets_come_from_the_environment(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[[pbx]]\nname = "a"\nhost = "h"\nusername = "u"\nsecret = "s"\n'
        f'[[webhooks]]\nname = "crm-main"\nurl = "{receiver.url}/ok"\nsecret = "in-file"\n'
        f'[[webhooks]]\nurl = "{receiver.url}/ok"\nevent = {{ name = "Unnamed" }}\n',
        encoding="utf-8",
    )
    env = {
        webhook_secret_env_name("crm-main"): "from-env-1",  # VWELL_PBX_WEBHOOK_CRM_MAIN_SECRET
        "VWELL_PBX_WEBHOOK_WEBHOOK2_SECRET": "from-env-2",  # the second, unnamed one
    }
    assert webhook_secret_env_name("crm-main") == "VWELL_PBX_WEBHOOK_CRM_MAIN_SECRET"
    config = load_config(path, env=env)
    secrets = [hook.secret.get_secret_value() if hook.secret else None for hook in config.webhooks]
    assert secrets == ["from-env-1", "from-env-2"]
    assert "from-env" not in repr(config) and "from-env" not in str(config)
    assert load_config(path, env={}).webhooks[0].secret is not None  # the file's, without env
    # A delivery is signed with the secret from the environment.
    bus = EventBus()
    async with WebhookDispatcher(config.webhooks[1:], bus):
        bus.publish(BusEvent.from_client({"name": "Unnamed"}, login="a", login2="b"))
        await until(lambda: bool(receiver.on("/ok")))
    delivery = receiver.on("/ok")[0]
    assert delivery.headers["X-Vwell-Signature"] == signature("from-env-2", delivery.body)


def test_webhook_names_must_differ_as_environment_names(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        '[[pbx]]\nname = "a"\nhost = "h"\nusername = "u"\nsecret = "s"\n'
        '[[webhooks]]\nname = "crm-1"\nurl = "http://x/"\n'
        '[[webhooks]]\nname = "crm_1"\nurl = "http://x/"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="webhook names must be unique"):
        load_config(path, env={})
