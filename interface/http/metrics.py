"""Prometheus metrics. With several workers, each process writes to a shared directory
(PROMETHEUS_MULTIPROC_DIR, set by `tokenledger serve`) and /metrics adds them up."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = None if self.multiprocess else self.registry
        self.verifications = Counter(
            "tokenledger_verifications",
            "Token verifications by outcome",
            ["outcome"],
            registry=registry,
        )
        self.verification_seconds = Histogram(
            "tokenledger_verification_seconds",
            "Time to verify a token value",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.projection_lag = Gauge(
            "tokenledger_projection_lag_events",
            "Events in the log not yet applied to the read models",
            multiprocess_mode="max",
            registry=registry,
        )
        self.projection_leader = Gauge(
            "tokenledger_projection_leader",
            "1 in the process that runs the background projection catch-up (summed over workers)",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.usage_queue = Gauge(
            "tokenledger_usage_queue_tokens",
            "Tokens with uses waiting to be written as Used events",
            multiprocess_mode="sum",
            registry=registry,
        )
        self.requests = Counter(
            "tokenledger_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
