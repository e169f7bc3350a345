"""Webhooks: matching events POSTed as JSON to configured URLs (``[[webhooks]]``).

Each configured webhook is a :class:`Webhook`: a bus listener
(:meth:`~vwell_pbx.events.bus.EventBus.listen`) with the configured filter
(``onEvent``'s ``event`` object), a bounded queue and one worker task that delivers the
queued events in order, one at a time.

A delivery is ``POST url`` with the event's JSON (the very bytes a WebSocket gets) and:

- ``Content-Type: application/json``
- ``X-Vwell-Event``: the event name (printable ASCII; anything else becomes ``?``)
- ``X-Vwell-Delivery``: an id unique to this event and receiver, the same on retries,
  so the receiver can drop duplicates
- ``X-Vwell-Attempt``: 1 for the first attempt, 2 for the first retry, ...
- ``X-Vwell-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body with the webhook's
  ``secret`` (only when one is configured). Verify it over the bytes received, before
  parsing, with a constant-time comparison.

Outcomes: a 2xx answer is *delivered*. A connection error, a timeout, 5xx, 408, 425
or 429 is retried after ``retry_seconds``, doubled after each failure (with jitter:
between half and all of it) up to ``retry_max_seconds``, at most ``max_retries``
times; then, or at once for any other answer (a 4xx will not change by retrying), the
event is *failed*. An event arriving while ``queue_size`` events wait is *dropped*.
All of these are counted per webhook on ``/health`` (``webhooks``) and ``/metrics``
(``vwell_webhook_deliveries_total{webhook,outcome}``, ``vwell_webhook_retries_total``,
``vwell_webhook_queued``). Redirects are not followed. Events still queued at
shutdown are not delivered (the count is logged).

Publishing never waits for a receiver: the listener only appends to the bounded queue,
so a slow or dead receiver can never slow the PBX reader or the other subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vwell_pbx.config import WebhookConfig, webhook_name
from vwell_pbx.events.bus import BusEvent, EventBus
from vwell_pbx.events.filters import EventFilter
from vwell_pbx.web import logs
from vwell_pbx.web.metrics import ServerMetrics

__all__ = [
    "WEBHOOKS_KEY",
    "Webhook",
    "WebhookDispatcher",
    "WebhookStats",
    "signature",
    "webhooks_health",
]

log = logging.getLogger(__name__)

#: Statuses worth retrying besides 5xx: the receiver says "not now", not "never".
RETRY_STATUSES = frozenset({408, 425, 429})

Sleep = Callable[[float], Awaitable[None]]


def signature(secret: str, body: bytes) -> str:
    """The ``X-Vwell-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _header_text(text: str, limit: int = 200) -> str:
    """A header-safe rendering of a client-chosen name: printable ASCII only."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment (they may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(slots=True)
class WebhookStats:
    """One webhook's counters since start-up and its latest outcome."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_success: float | None = None
    last_failure: float | None = None
    retrying: bool = False


class Webhook:
    """One receiver: filter, bounded queue, and the worker that POSTs in order."""

    def __init__(
        self,
        config: WebhookConfig,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        delivery_ids: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.url = config.url
        self.stats = WebhookStats()
        event = dict(config.event)
        names = [v for k, v in event.items() if k.lower() == "name"]
        self.filter = EventFilter.from_spec(
            str(names[0]) if names else None,
            {k: v for k, v in event.items() if k.lower() != "name"},
        )
        self._secret = config.secret.get_secret_value() if config.secret is not None else None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        if delivery_ids is None:
            prefix = secrets.token_hex(4)
            counter = itertools.count(1)

            def delivery_ids() -> str:
                return f"{prefix}-{next(counter)}"

        self._delivery_ids = delivery_ids
        self._queue: collections.deque[tuple[str, BusEvent]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._dropping = False

    @property
    def queued(self) -> int:
        """Events waiting (not counting the one being delivered)."""
        return len(self._queue)

    def offer(self, event: BusEvent) -> bool:
        """Queue ``event`` without waiting; ``False`` (and counted) when the queue is full."""
        if len(self._queue) >= self.config.queue_size:
            self.stats.dropped += 1
            if not self._dropping:  # one log line per overflow episode, not per event
                self._dropping = True
                log.warning(
                    "webhook %s: queue full (%d events), dropping events until "
                    "the receiver catches up",
                    self.name,
                    self.config.queue_size,
                )
            return False
        self._dropping = False
        event.payload()  # serialise now: fields must not be read after publish returns
        self._queue.append((self._delivery_ids(), event))
        self._wakeup.set()
        return True

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Deliver queued events for ever (until cancelled)."""
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            delivery, event = self._queue.popleft()
            try:
                await self.deliver(session, delivery, event)
            except Exception:
                # A bug must not kill the worker silently: the queue would fill and
                # drop every later event with nothing but a count to show for it.
                self.stats.failed += 1
                self.stats.last_failure = self._clock()
                self.stats.retrying = False
                log.exception("webhook %s: delivery %s failed", self.name, delivery)

    async def deliver(self, session: aiohttp.ClientSession, delivery: str, event: BusEvent) -> bool:
        """POST one event, retrying as documented; ``True`` once delivered."""
        token = logs.request_id.set(f"webhook-{self.name}-{delivery}")
        stats = self.stats
        try:
            body = event.payload()
            headers = {
                "Content-Type": "application/json",
                "X-Vwell-Event": _header_text(event.name),
                "X-Vwell-Delivery": delivery,
            }
            if self._secret is not None:
                headers["X-Vwell-Signature"] = signature(self._secret, body)
            attempt = 0
            while True:
                attempt += 1
                headers["X-Vwell-Attempt"] = str(attempt)
                retryable, error = await self._attempt(session, body, headers)
                if error is None:
                    stats.delivered += 1
                    stats.last_success = self._clock()
                    stats.last_error = None
                    stats.retrying = False
                    return True
                stats.last_error = error
                if not retryable or attempt > self.config.max_retries:
                    stats.failed += 1
                    stats.last_failure = self._clock()
                    stats.retrying = False
                    log.warning(
                        "webhook %s: gave up on %s after %d attempt(s): %s",
                        self.name,
                        event.name[:80],
                        attempt,
                        error,
                    )
                    return False
                stats.retries += 1
                stats.retrying = True
                await self._sleep(self.backoff(attempt))
        finally:
            logs.request_id.reset(token)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (with jitter)."""
        cap = self.config.retry_max_seconds
        base = min(cap, self.config.retry_seconds * 2.0 ** (failures - 1))
        return base * (0.5 + self._rng() / 2)

    async def _attempt(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> tuple[bool, str | None]:
        """One POST: ``(retryable, None)`` on success, else ``(retryable, error text)``."""
        try:
            async with session.post(
                self.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            ) as response:
                self.stats.last_status = response.status
                if 200 <= response.status < 300:
                    return True, None
                retryable = response.status >= 500 or response.status in RETRY_STATUSES
                return retryable, f"HTTP {response.status} {response.reason or ''}".rstrip()
        except TimeoutError:
            return True, f"no answer within {self.config.timeout:g} s"
        except aiohttp.ClientError as exc:
            return True, f"{type(exc).__name__}: {exc}"[:300]

    def health(self) -> dict[str, Any]:
        """The ``/health`` entry: counters, the latest outcome and a summary state."""
        stats = self.stats
        if stats.retrying:
            state = "retrying"
        elif stats.last_failure is not None and (
            stats.last_success is None or stats.last_failure > stats.last_success
        ):
            state = "failing"
        else:
            state = "ok"
        return {
            "name": self.name,
            "url": _public_url(self.url),
            "state": state,
            "queued": self.queued,
            "delivered": stats.delivered,
            "failed": stats.failed,
            "dropped": stats.dropped,
            "retries": stats.retries,
            "lastStatus": stats.last_status,
            "lastError": stats.last_error,
            "lastSuccess": stats.last_success,
            "lastFailure": stats.last_failure,
        }


class WebhookDispatcher:
    """Every configured webhook: listeners on the bus, one HTTP client session, the workers.

    Use as ``async with WebhookDispatcher(...)``; with no webhooks it does nothing.
    """

    def __init__(
        self,
        configs: Sequence[WebhookConfig],
        bus: EventBus,
        *,
        metrics: ServerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        skip: Callable[[BusEvent], bool] | None = None,
    ) -> None:
        """``skip(event)`` true: the event is not for this instance's webhooks (one that
        another server instance relayed here, and delivered to its own)."""
        self._bus = bus
        self._skip = skip
        self.webhooks = tuple(
            Webhook(config, webhook_name(config.name, index), clock=clock, sleep=sleep, rng=rng)
            for index, config in enumerate(configs, start=1)
        )
        names = [hook.name for hook in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names must be unique: {names}")
        self._stop_listening: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        if metrics is not None:
            metrics.registry.register(_WebhookCollector(self))

    async def start(self) -> None:
        """Open the HTTP client, start the workers, then start listening to the bus."""
        if not self.webhooks or self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": "vwell-pbx-srv webhooks"},
            connector=aiohttp.TCPConnector(limit_per_host=4),
        )
        for hook in self.webhooks:
            self._tasks.append(
                asyncio.create_task(hook.run(self._session), name=f"webhook {hook.name}")
            )
            self._stop_listening.append(self._bus.listen(hook.filter, self._offer_to(hook)))

    def _offer_to(self, hook: Webhook) -> Callable[[BusEvent], object]:
        skip = self._skip
        if skip is None:
            return hook.offer

        def offer(event: BusEvent) -> bool:
            return False if skip(event) else hook.offer(event)

        return offer

    async def close(self) -> None:
        """Stop listening, stop the workers (queued events are dropped), close the client."""
        for stop in self._stop_listening:
            stop()
        self._stop_listening.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        pending = sum(hook.queued for hook in self.webhooks)
        if pending:
            log.warning("webhooks: %d queued event(s) not delivered at shutdown", pending)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def health(self) -> list[dict[str, Any]]:
        """Each webhook's ``/health`` entry."""
        return [hook.health() for hook in self.webhooks]


class _WebhookCollector(Collector):
    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self._dispatcher = dispatcher

    def collect(self) -> Iterable[Metric]:
        deliveries = CounterMetricFamily(
            "vwell_webhook_deliveries",
            "Webhook events by outcome (delivered, failed, dropped)",
            labels=["webhook", "outcome"],
        )
        retries = CounterMetricFamily(
            "vwell_webhook_retries", "Webhook delivery retries", labels=["webhook"]
        )
        queued = GaugeMetricFamily(
            "vwell_webhook_queued", "Webhook events waiting", labels=["webhook"]
        )
        for hook in self._dispatcher.webhooks:
            stats = hook.stats
            for outcome, value in (
                ("delivered", stats.delivered),
                ("failed", stats.failed),
                ("dropped", stats.dropped),
            ):
                deliveries.add_metric([hook.name, outcome], value)
            retries.add_metric([hook.name], stats.retries)
            queued.add_metric([hook.name], hook.queued)
        yield deliveries
        yield retries
        yield queued


WEBHOOKS_KEY = web.AppKey("webhooks", WebhookDispatcher)


def webhooks_health(app: web.Application) -> list[dict[str, Any]]:
    """The ``webhooks`` section of ``/health`` (empty when none are configured)."""
    dispatcher = app.get(WEBHOOKS_KEY)
    return [] if dispatcher is None else dispatcher.health()
