"""Prometheus metrics, on a registry per application (tests run several servers)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vwell_pbx.ami.client import AmiClient, ConnectionStatus
from vwell_pbx.api.live_calls import LiveCalls
from vwell_pbx.events.bus import EventBus
from vwell_pbx.storage import CallHistoryWriter


class ServerMetrics:
    """Every metric the server exports; the API layer reports requests through ``observe``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vwell_requests",
            "API requests by method and errCode",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vwell_request_seconds",
            "API request latency by method",
            ["method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
            registry=self.registry,
        )
        self.websockets = Gauge(
            "vwell_websocket_connections", "Open WebSocket connections", registry=self.registry
        )
        self.slow_clients = Counter(
            "vwell_slow_clients_dropped",
            "Connections closed because they did not read their events",
            registry=self.registry,
        )
        self.sms = Counter(
            "vwell_sms",
            "gsmSendSMS requests by answer: the SMS's status (queued; with wait also sent, "
            "failed, unknown), or refused",
            ["status"],
            registry=self.registry,
        )
        self.sms_status = Counter(
            "vwell_sms_status",
            "SMS status changes by new status (queued, sending, sent, failed, unknown; "
            "received for incoming SMS)",
            ["status"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, response: Mapping[str, Any], seconds: float) -> None:
        """Count one answered request (and, for ``gsmSendSMS``, its outcome)."""
        code = response.get("errCode")
        # The labelled children, looked up once per (method, code): labels() checks and
        # locks on every call, and a child stays the same object as long as nobody
        # removes it (nothing here does). Bounded: method names are registered ones or
        # "?", codes the ErrorCode values.
        key = (method, code or "ok")
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if method == "gsmSendSMS":
            self.sms.labels("refused" if code else str(response.get("status"))).inc()

    def watch(self, bus: EventBus, clients: Mapping[str, AmiClient]) -> None:
        """Export the bus's and the AMI clients' own counters at scrape time."""
        self.registry.register(_LiveCollector(lambda: bus, lambda: clients))

    def watch_calls(self, live: Mapping[str, LiveCalls], history: CallHistoryWriter[Any]) -> None:
        """Export the call trackers' sizes and the call history writer's counters."""
        self.registry.register(_CallsCollector(live, history))


class _CallsCollector(Collector):
    def __init__(self, live: Mapping[str, LiveCalls], history: CallHistoryWriter[Any]) -> None:
        self._live = live
        self._history = history

    def collect(self) -> Iterable[Metric]:
        tracked = GaugeMetricFamily(
            "vwell_calls_tracked", "Calls held by the call tracker", labels=["pbx"]
        )
        channels = GaugeMetricFamily(
            "vwell_call_channels_tracked", "Channels held by the call tracker", labels=["pbx"]
        )
        evicted = CounterMetricFamily(
            "vwell_calls_evicted",
            "Calls ended (endReason unknown) because a tracker bound was reached",
            labels=["pbx"],
        )
        reconciles = CounterMetricFamily(
            "vwell_call_reconciles", "Channel lists applied to the call tracker", labels=["pbx"]
        )
        failures = CounterMetricFamily(
            "vwell_call_reconcile_failures", "Channel lists that could not be read", labels=["pbx"]
        )
        for pbx, live in self._live.items():
            tracked.add_metric([pbx], live.tracker.tracked_calls)
            channels.add_metric([pbx], live.tracker.tracked_channels)
            evicted.add_metric([pbx], live.tracker.evicted_calls)
            reconciles.add_metric([pbx], live.reconciles)
            failures.add_metric([pbx], live.reconcile_failures)
        yield from (tracked, channels, evicted, reconciles, failures)
        history = self._history
        yield CounterMetricFamily(
            "vwell_call_history_written", "Ended calls stored", value=history.written
        )
        yield CounterMetricFamily(
            "vwell_call_history_dropped",
            "Ended calls not stored: the history queue was full, or at shutdown",
            value=history.dropped,
        )
        yield GaugeMetricFamily(
            "vwell_call_history_queued", "Ended calls waiting to be stored", value=history.queued
        )
        yield CounterMetricFamily(
            "vwell_call_history_purged", "Calls deleted past the retention", value=history.purged
        )


class _LiveCollector(Collector):
    def __init__(
        self, bus: Callable[[], EventBus], clients: Callable[[], Mapping[str, AmiClient]]
    ) -> None:
        self._bus = bus
        self._clients = clients

    def collect(self) -> Iterable[Metric]:
        stats = self._bus().stats
        yield CounterMetricFamily(
            "vwell_events_published", "Events published on the bus", value=stats.published
        )
        yield CounterMetricFamily(
            "vwell_events_delivered", "Event deliveries to connections", value=stats.delivered
        )
        yield CounterMetricFamily(
            "vwell_events_dropped",
            "Event deliveries refused by a full connection queue",
            value=stats.dropped,
        )
        yield GaugeMetricFamily(
            "vwell_subscriptions", "Active event subscriptions", value=stats.subscriptions
        )
        yield GaugeMetricFamily(
            "vwell_replay_events", "Events kept in the replay buffer", value=stats.replay_events
        )
        yield GaugeMetricFamily(
            "vwell_replay_bytes",
            "Bytes of JSON kept in the replay buffer",
            value=stats.replay_bytes,
        )
        yield GaugeMetricFamily(
            "vwell_gc_frozen_objects",
            "Objects start-up moved out of the garbage collector's passes (gc.freeze)",
            value=gc.get_freeze_count(),
        )
        yield CounterMetricFamily(
            "vwell_resumes", "Subscriptions made with since (resumes)", value=stats.resumes
        )
        yield CounterMetricFamily(
            "vwell_resume_gaps",
            "Resumes that answered gap: true",
            value=stats.resume_gaps,
        )
        up = GaugeMetricFamily(
            "vwell_pbx_up", "1 when the AMI connection is logged in", labels=["pbx"]
        )
        reconnects = CounterMetricFamily(
            "vwell_pbx_reconnects", "AMI reconnections", labels=["pbx"]
        )
        for name, client in self._clients().items():
            state = client.state
            up.add_metric([name], 1.0 if state.status is ConnectionStatus.CONNECTED else 0.0)
            reconnects.add_metric([name], state.reconnects)
        yield up
        yield reconnects
