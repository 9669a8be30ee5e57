"""One node's Prometheus metrics (prometheus-client), in a registry of its own.

Every metric is declared here, so the names and labels the README documents and the Grafana
dashboard (``deploy/grafana/openssm.json``) uses have one source:

- ``openssm_agents_connected``: control channels open on this node (gauge);
- ``openssm_sessions_active{type}``: sessions relayed by this node; ``type`` is ``shell``,
  ``port`` or ``command`` (gauge);
- ``openssm_relayed_bytes_total{direction}``: stream payload bytes relayed by this node;
  ``direction`` is ``client_to_agent`` or ``agent_to_client`` (counter);
- ``openssm_api_requests_total{action,code}``: API requests answered; ``action`` is the IAM-style
  action (``ssm:StartSession``) or ``unknown``, ``code`` the HTTP status (counter);
- ``openssm_api_request_duration_seconds{action}``: how long they took (histogram);
- ``openssm_authorization_denied_total{action}``: authorisation decisions that refused (counter);
- ``openssm_log_upload_backlog``: session-log uploads this node still has to ship (gauge).

The gateway's figures are read when scraped (``GatewayFigures``), from counters the relay keeps
anyway, so the relay's hot path does no work for them. Figures that need a database query are
refreshed by async refreshers just before a scrape is rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# The text format every Prometheus version reads; generate_latest writes it for names like ours
# (newer prometheus-client releases label it 1.0.0, which older servers do not know).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
SESSION_TYPES: Final = ("shell", "port", "command")
DIRECTIONS: Final = ("client_to_agent", "agent_to_client")
UNKNOWN_ACTION: Final = "unknown"
# API latency buckets (seconds): most calls are one or two database round trips; GetMessages is a
# 20 s long poll.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Refresher = Callable[[], Awaitable[None]]


class GatewayFigures(Protocol):
    """What a gateway node reports, read at scrape time."""

    def agents_connected(self) -> int: ...

    def sessions_active(self) -> Mapping[str, int]:
        """Live sessions by type (``SESSION_TYPES``)."""
        ...

    def relayed_bytes(self) -> Mapping[str, int]:
        """Bytes relayed since the node started, by direction (``DIRECTIONS``): never decreasing."""
        ...


class _GatewayCollector:
    def __init__(self, figures: GatewayFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        agents = GaugeMetricFamily("openssm_agents_connected", "Agent control channels open on this node.")
        agents.add_metric([], self.figures.agents_connected())
        yield agents
        sessions = GaugeMetricFamily(
            "openssm_sessions_active", "Sessions relayed by this node, by type.", labels=["type"]
        )
        active = self.figures.sessions_active()
        for kind in SESSION_TYPES:
            sessions.add_metric([kind], active.get(kind, 0))
        yield sessions
        relayed = CounterMetricFamily(
            "openssm_relayed_bytes",
            "Session stream payload bytes relayed by this node, by direction.",
            labels=["direction"],
        )
        totals = self.figures.relayed_bytes()
        for direction in DIRECTIONS:
            relayed.add_metric([direction], totals.get(direction, 0))
        yield relayed


class Metrics:
    """The metrics of one node. Each instance has its own registry, so several servers in one
    process (tests) do not share figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.api_requests = Counter(
            "openssm_api_requests",
            "API requests answered, by action and HTTP status.",
            ["action", "code"],
            registry=self.registry,
        )
        self.api_request_duration = Histogram(
            "openssm_api_request_duration_seconds",
            "Time to answer an API request, by action.",
            ["action"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.authorization_denied = Counter(
            "openssm_authorization_denied",
            "Authorisation decisions that refused an action.",
            ["action"],
            registry=self.registry,
        )
        self.log_upload_backlog = Gauge(
            "openssm_log_upload_backlog",
            "Session log uploads this node has still to ship to S3 or CloudWatch Logs.",
            registry=self.registry,
        )
        self._gateway: _GatewayCollector | None = None
        self._refreshers: list[Refresher] = []

    def add_gateway(self, figures: GatewayFigures) -> None:
        if self._gateway is not None:
            raise ValueError("a node has one gateway")
        self._gateway = _GatewayCollector(figures)
        self.registry.register(self._gateway)

    def remove_gateway(self, figures: GatewayFigures) -> None:
        if self._gateway is not None and self._gateway.figures is figures:
            self.registry.unregister(self._gateway)
            self._gateway = None

    def add_refresher(self, refresher: Refresher) -> None:
        """``refresher`` updates figures that need I/O; it runs before every scrape."""
        self._refreshers.append(refresher)

    async def render(self) -> bytes:
        """The text exposition format. A refresher that fails leaves its figure as it was."""
        for refresher in self._refreshers:
            try:
                await refresher()
            except Exception:
                log.warning(
                    "metrics refresher %s failed",
                    getattr(refresher, "__qualname__", refresher),
                    exc_info=True,
                )
        return bytes(generate_latest(self.registry))
