"""This instance's database and its relay to the other instances, for ``/health`` and
``/metrics``.

``/health`` must say whether the database answers without hanging when it does not:
:meth:`InstanceHealth.probe` runs one small query (the schema version) bounded by
``probe_timeout``, and remembers the result for ``probe_cache_seconds`` so that a load
balancer polling every instance often costs the database almost nothing. Pool use and
the LISTEN connection's state are read from memory. Nothing here ever shows a
password: the location is the storage URL without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vwell_pbx.events.bus import EventBus
from vwell_pbx.events.relay import EventRelay
from vwell_pbx.storage import LATEST, Storage, StorageError

__all__ = ["DatabaseProbe", "InstanceHealth", "relay_between_instances"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0
PROBE_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    """The outcome of one probe query."""

    reachable: bool
    schema_version: int | None
    seconds: float
    error: str | None
    at: float


class InstanceHealth:
    """Reads this instance's database and relay state; see the module docstring."""

    def __init__(
        self,
        name: str,
        storage: Storage,
        relay: EventRelay | None,
        *,
        channel: str | None = None,
        probe_timeout: float = PROBE_TIMEOUT,
        probe_cache_seconds: float = PROBE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.storage = storage
        self.relay = relay
        self.channel = channel
        self._timeout = probe_timeout
        self._cache_seconds = probe_cache_seconds
        self._clock = clock
        self._last: DatabaseProbe | None = None
        self._running: asyncio.Task[DatabaseProbe] | None = None

    @property
    def last_probe(self) -> DatabaseProbe | None:
        """The latest probe, if any."""
        return self._last

    async def probe(self) -> DatabaseProbe:
        """A recent probe: the cached one, or a new query (one at a time, shared)."""
        last = self._last
        if last is not None and self._clock() - last.at < self._cache_seconds:
            return last
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._query())
        # shield: a /health client that leaves must not cancel the others' probe.
        return await asyncio.shield(self._running)

    async def _query(self) -> DatabaseProbe:
        started = self._clock()
        version: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self.storage.db.fetch_value("SELECT MAX(version) FROM schema_version")
            version = int(value or 0)
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except StorageError as exc:  # its messages never hold a password
            error = str(exc)
        done = self._clock()
        self._last = DatabaseProbe(
            reachable=error is None,
            schema_version=version,
            seconds=done - started,
            error=error,
            at=done,
        )
        return self._last

    def location(self) -> str:
        """Where the database is, without any password."""
        url = self.storage.url
        return url.dsn() if url.backend == "postgresql" else str(url)

    async def database(self) -> tuple[dict[str, Any], bool]:
        """The ``database`` part of ``/health`` and whether it is healthy."""
        probe = await self.probe()
        db = self.storage.db
        pool = db.pool_use()
        listener = db.listener_state()
        body: dict[str, Any] = {
            "backend": self.storage.url.backend,
            "location": self.location(),
            "reachable": probe.reachable,
            "latencyMs": round(probe.seconds * 1000, 2),
            "schemaVersion": probe.schema_version,
            "schemaLatest": LATEST,
            "pool": {"open": pool.open, "busy": pool.busy, "max": pool.max},
            "listener": {
                "status": listener.status,
                "channels": list(listener.channels),
                "reconnects": listener.reconnects,
                "lastError": listener.last_error,
            },
            "error": probe.error,
        }
        return body, probe.reachable and listener.status != "down"

    def instance(self) -> dict[str, Any]:
        """The ``instance`` part of ``/health``: this instance's name and its relay."""
        relay = self.relay
        if relay is None:
            return {"name": self.name, "relay": None}
        stats = relay.stats
        return {
            "name": self.name,
            "relay": {
                "channel": self.channel,
                "queued": relay.queued,
                "sent": stats.sent,
                "received": stats.received,
                "dropped": stats.dropped,
                "failed": stats.failed,
                "invalid": stats.invalid,
                "gaps": stats.gaps,
            },
        }

    def collector(self) -> Collector:
        """Prometheus metrics of the database and the relay (read at scrape time)."""
        return _InstanceCollector(self)


@contextlib.asynccontextmanager
async def relay_between_instances(
    storage: Storage,
    bus: EventBus,
    *,
    channel: str,
    max_event_bytes: int,
    queue_size: int,
) -> AsyncIterator[EventRelay | None]:
    """The relay of ``dispatchEvent`` to the other instances on ``channel``, running for
    the block; ``None`` when the storage cannot carry messages (SQLite: one instance)."""
    db = storage.db
    if not db.supports_messages:
        yield None
        return
    relay = EventRelay(
        bus,
        functools.partial(db.send, channel),
        max_event_bytes=max_event_bytes,
        queue_size=queue_size,
    )
    stop_listening = db.listen(channel, relay.receive, relay.resumed)
    sender = asyncio.create_task(relay.run(), name="vwell event relay")
    # Start serving once the other instances' events arrive (bounded: a LISTEN that
    # cannot connect yet is retried in the background, and /health says so).
    if not await db.wait_listening(db.settings.connect_timeout):
        log.warning("events: not listening on channel %s yet; retrying", channel)
    log.info("events: dispatchEvent reaches every instance through channel %s", channel)
    try:
        yield relay
    finally:
        stop_listening()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


class _InstanceCollector(Collector):
    def __init__(self, health: InstanceHealth) -> None:
        self._health = health

    def collect(self) -> Iterable[Metric]:
        health = self._health
        db = health.storage.db
        backend = health.storage.url.backend
        probe = health.last_probe
        if probe is not None:
            yield GaugeMetricFamily(
                "vwell_storage_up",
                "1 when the database answered the latest probe (made by /health or /metrics)",
                value=1.0 if probe.reachable else 0.0,
            )
            yield GaugeMetricFamily(
                "vwell_storage_probe_seconds",
                "How long the latest database probe took",
                value=probe.seconds,
            )
        pool = db.pool_use()
        connections = GaugeMetricFamily(
            "vwell_storage_connections",
            "Database connections of this instance by state (busy, idle) and the maximum",
            labels=["backend", "state"],
        )
        connections.add_metric([backend, "busy"], pool.busy)
        connections.add_metric([backend, "idle"], pool.open - pool.busy)
        connections.add_metric([backend, "max"], pool.max)
        yield connections
        yield CounterMetricFamily(
            "vwell_storage_statements", "Statements sent to the database", value=db.statements
        )
        listener = db.listener_state()
        yield GaugeMetricFamily(
            "vwell_storage_listener_up",
            "1 while the LISTEN connection is up (PostgreSQL; 1 when none is needed)",
            value=0.0 if listener.status == "down" else 1.0,
        )
        yield CounterMetricFamily(
            "vwell_storage_listener_reconnects",
            "Times the LISTEN connection was lost and listened again",
            value=listener.reconnects,
        )
        relay = health.relay
        if relay is not None:
            stats = relay.stats
            events = CounterMetricFamily(
                "vwell_relay_events",
                "dispatchEvent events between instances by outcome",
                labels=["outcome"],
            )
            for outcome in ("sent", "received", "dropped", "failed", "invalid"):
                events.add_metric([outcome], getattr(stats, outcome))
            yield events
            yield CounterMetricFamily(
                "vwell_relay_gaps",
                "Times events from other instances may have been missed (listener lost)",
                value=stats.gaps,
            )
            yield GaugeMetricFamily(
                "vwell_relay_queued", "Events waiting to be sent", value=relay.queued
            )
