"""Prometheus metrics, on a registry per application (tests run several servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vwell_pbx.ami.client import AmiClient, ConnectionStatus
from vwell_pbx.events.bus import EventBus


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

    def observe(self, method: str, response: Mapping[str, Any], seconds: float) -> None:
        """Count one answered request (and, for ``gsmSendSMS``, its outcome)."""
        code = response.get("errCode")
        self.requests.labels(method, code or "ok").inc()
        self.latency.labels(method).observe(seconds)
        if method == "gsmSendSMS":
            self.sms.labels("refused" if code else str(response.get("status"))).inc()

    def watch(self, bus: EventBus, clients: Mapping[str, AmiClient]) -> None:
        """Export the bus's and the AMI clients' own counters at scrape time."""
        self.registry.register(_LiveCollector(lambda: bus, lambda: clients))


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
