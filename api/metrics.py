"""Prometheus metrics of the gateway, named exactly as in docs/serving-contract.md.

Each app owns its registry (not the process-global one), so several apps in one process (tests)
never collide and ``/metrics`` shows only the gateway's series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Request and model-call latencies: loopback model calls take ~2 ms, the default timeout is 0.5 s.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FEATURE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCORE_BUCKETS: Final = tuple(round(0.1 * i, 1) for i in range(1, 10))
PREFIX: Final = "portfolio_os_gateway"


@dataclass
class GatewayMetrics:
    """Every series the gateway exports, in its own registry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Wall time from request to response.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_call_duration = Histogram(
            f"{PREFIX}_model_call_duration_seconds",
            "Model server calls by outcome.",
            ["model", "version", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(f"{PREFIX}_fallbacks", "Fallbacks taken.", ["model", "reason"], registry=r)
        self.circuit_state = Gauge(
            f"{PREFIX}_circuit_state", "Circuit per model: 0 closed, 1 half-open, 2 open.", ["model"], registry=r
        )
        self.degraded = Counter(f"{PREFIX}_degraded_responses", "Degraded answers.", ["route"], registry=r)
        self.feature_read_duration = Histogram(
            f"{PREFIX}_feature_read_duration_seconds",
            "One online feature read.",
            buckets=FEATURE_BUCKETS,
            registry=r,
        )
        self.feature_age = Gauge(
            f"{PREFIX}_feature_age_seconds", "Age of the newest online row read.", ["service"], registry=r
        )
        self.signal_score = Histogram(
            f"{PREFIX}_signal_score", "Scores served, per model.", ["model"], buckets=SCORE_BUCKETS, registry=r
        )
        self.tenant_requests = Counter(
            f"{PREFIX}_tenant_requests", "Authenticated requests per tenant.", ["tenant", "route"], registry=r
        )
        self.rate_limited = Counter(f"{PREFIX}_rate_limited", "Requests refused by quota.", ["tenant"], registry=r)
        # Not in the contract: the gateway's own failure modes, for alerts.
        self.audit_failures = Counter(f"{PREFIX}_audit_failures", "Audit writes that failed.", registry=r)
        self.usage_flush_failures = Counter(
            f"{PREFIX}_usage_flush_failures", "Usage counter flushes that failed.", registry=r
        )
