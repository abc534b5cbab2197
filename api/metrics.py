"""Prometheus metrics of the gateway, named exactly as in docs/serving-contract.md.

Each app owns its registry (not the process-global one), so several apps in one process (tests)
never collide and ``/metrics`` shows only the gateway's series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

# Request and model-call latencies: loopback model calls take ~2 ms, the default timeout is 0.5 s.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FEATURE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BUILD_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SCORE_BUCKETS: Final = tuple(round(0.1 * i, 1) for i in range(1, 10))
PREFIX: Final = "portfolio_os_gateway"


class BulkHistogram(Collector):
    """A histogram with one label that takes a request's scores in one call.

    prometheus_client's ``Histogram.observe`` takes one value at a time, under a lock each: 50
    tickers x 2-4 models per request made the score histogram a tenth of the gateway's CPU per
    request. Here a batch is bucketed with numpy and added under one lock. The exposition is the
    same as a ``Histogram``'s (``_bucket{le}``, ``_sum``, ``_count``, cumulative buckets, ``+Inf``).
    """

    def __init__(
        self, name: str, documentation: str, label: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._bounds = np.asarray(buckets, dtype="float64")
        self._les = [repr(float(b)) for b in buckets] + ["+Inf"]  # as prometheus_client writes le
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, label_value: str, values: Sequence[float]) -> None:
        """Count every value of ``values`` (finite floats) under ``label_value``."""
        data = np.asarray(values, dtype="float64")
        self.add_counts(label_value, self.counts_of(data), float(data.sum()))

    def counts_of(self, values: np.ndarray) -> np.ndarray:
        """Per-bucket counts of ``values``, for :meth:`add_counts` (bucketed once, added as often as served)."""
        # A value equal to a bound belongs to that bound's bucket (``le``): the first bound >= value.
        out: np.ndarray = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._les))
        return out

    def add_counts(self, label_value: str, counts: np.ndarray, total: float) -> None:
        """Add counts from :meth:`counts_of` and the sum of the values they count."""
        with self._lock:
            if label_value in self._counts:
                self._counts[label_value] += counts
                self._sums[label_value] += total
            else:
                self._counts[label_value], self._sums[label_value] = counts.copy(), total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            snapshot = {k: (np.cumsum(v), self._sums[k]) for k, v in self._counts.items()}
        for label_value, (cumulative, total) in sorted(snapshot.items()):
            buckets = [(le, float(c)) for le, c in zip(self._les, cumulative, strict=True)]
            family.add_metric([label_value], buckets, sum_value=total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])


@dataclass
class GatewayMetrics:
    """Every series the gateway exports, in its own registry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    # Long on purpose (tests/test_architecture.py LONG_FUNCTIONS): one flat list of every series, in
    # docs/serving-contract.md's order, so a reader finds any series in one place.
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
        self.signal_score = BulkHistogram(
            f"{PREFIX}_signal_score", "Scores served, per model.", "model", SCORE_BUCKETS, registry=r
        )
        self.tenant_requests = Counter(
            f"{PREFIX}_tenant_requests", "Authenticated requests per tenant.", ["tenant", "route"], registry=r
        )
        self.rate_limited = Counter(f"{PREFIX}_rate_limited", "Requests refused by quota.", ["tenant"], registry=r)
        # Not in the contract: the gateway's own failure modes, for alerts.
        self.audit_failures = Counter(f"{PREFIX}_audit_failures", "Audit batch commits that failed.", registry=r)
        self.audit_rows_dropped = Counter(
            f"{PREFIX}_audit_rows_dropped", "Audit rows lost (the answer went out).", ["reason"], registry=r
        )
        self.audit_waits = Counter(
            f"{PREFIX}_audit_waits",
            "Requests that waited for room in the audit queue (the store is slower than the traffic).",
            registry=r,
        )
        for reason in ("queue_full", "write_failed"):  # exported from the start: an alert sees 0 before a loss
            self.audit_rows_dropped.labels(reason=reason)
        # The scored universe (api/scored.py): how old, how long to build, how many requests it answered.
        self.scored_age = Gauge(
            f"{PREFIX}_scored_universe_age_seconds",
            "Seconds since the scored snapshot was last confirmed current (NaN: none yet).",
            registry=r,
        )
        self.scored_build_duration = Histogram(
            f"{PREFIX}_scored_universe_build_seconds",
            "One build of the scored universe (read, batched model calls, composition), by outcome.",
            ["outcome"],
            buckets=BUILD_BUCKETS,
            registry=r,
        )
        self.scored_tickers = Gauge(
            f"{PREFIX}_scored_universe_tickers", "Tickers in the current scored snapshot.", registry=r
        )
        self.scored_lookups = Counter(
            f"{PREFIX}_scored_universe_lookups",
            "Signal requests by how the scored universe served them: hit, or why not (none, stale, missing).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("hit", "none", "stale", "missing"):
            self.scored_lookups.labels(outcome=outcome)
        # Backtest jobs (api/backtest_dispatch.py): how many are in each state, refreshed every poll.
        self.backtest_jobs = Gauge(f"{PREFIX}_backtest_jobs", "Backtest jobs by state.", ["state"], registry=r)
        self.backtest_submissions = Counter(
            f"{PREFIX}_backtest_submissions", "Backtest job submissions by outcome.", ["outcome"], registry=r
        )
        self.backtest_submissions.labels(outcome="accepted")  # exported from the start, as 0
        self.usage_flush_failures = Counter(
            f"{PREFIX}_usage_flush_failures", "Usage counter flushes that failed.", registry=r
        )
        # The gateway's caches (api/cache.py), by cache name: features, auth, model answers, ...
        self.cache_hits = Counter(f"{PREFIX}_cache_hits", "Cache lookups served from an entry.", ["cache"], registry=r)
        self.cache_misses = Counter(
            f"{PREFIX}_cache_misses", "Cache lookups that needed a load (or waited on one).", ["cache"], registry=r
        )
        self.cache_loads = Counter(
            f"{PREFIX}_cache_loads", "Loads run by a cache (one per batch; refreshes included).", ["cache"], registry=r
        )
        self.cache_load_errors = Counter(
            f"{PREFIX}_cache_load_errors", "Cache loads that raised (never cached).", ["cache"], registry=r
        )
        self.cache_evictions = Counter(
            f"{PREFIX}_cache_evictions", "Entries dropped by a cache's size bound.", ["cache"], registry=r
        )
        self.cache_size = Gauge(f"{PREFIX}_cache_entries", "Entries a cache holds.", ["cache"], registry=r)
