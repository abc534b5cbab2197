"""Monitoring's Prometheus metrics, built at scrape time from the newest reports and feature files.

The drift and decay jobs are batch jobs (CronJobs); they write JSON summaries (see
:mod:`monitoring.reports`). This exporter reads them on every scrape, so a long-running
``serve-metrics`` always shows the newest run without a Pushgateway, and a job without a server can
write the same series in the text format instead (:func:`write_textfile`).

Series (gauges): ``portfolio_os_drift_share{view}``, ``portfolio_os_drift_score{view,feature}``,
``portfolio_os_drift_detected{view,feature}``, ``portfolio_os_drift_last_run_timestamp_seconds{view}``,
``portfolio_os_feature_freshness_seconds{view}``, ``portfolio_os_model_rolling_rank_ic{model}``,
``portfolio_os_model_rolling_ic_tstat{model}``, ``portfolio_os_data_anomalies{ticker_class}`` (the
sentinel's anomalies on its newest session), ``portfolio_os_data_sentinel_tickers{ticker_class}``
(tickers it scored that session) and ``portfolio_os_data_sentinel_last_run_timestamp_seconds``;
the market regime and volatility spikes (:mod:`monitoring.regime_metrics`) and sentiment spikes
(:mod:`monitoring.sentiment_metrics`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feature_repo.definitions import EVENT_TIMESTAMP, feature_file
from feature_repo.schema import FEATURES_BY_VIEW
from monitoring import reports
from monitoring.regime_metrics import REGIME_METRICS, regime_families
from monitoring.sentiment_metrics import SENTIMENT_METRICS, sentiment_families

PREFIX: Final = "portfolio_os"
# The sentinel's summary under reports/ (monitoring.sentinel.job writes it; importing the job here
# would load scikit-learn's caller into every scrape).
SENTINEL_SUMMARY: Final = "sentinel/latest.json"
# Every series this module exports: the dashboards test checks their PromQL against this set.
EXPORTED_METRICS: Final[frozenset[str]] = frozenset(
    {
        f"{PREFIX}_drift_share",
        f"{PREFIX}_drift_score",
        f"{PREFIX}_drift_detected",
        f"{PREFIX}_drift_last_run_timestamp_seconds",
        f"{PREFIX}_feature_freshness_seconds",
        f"{PREFIX}_model_rolling_rank_ic",
        f"{PREFIX}_model_rolling_ic_tstat",
        f"{PREFIX}_data_anomalies",
        f"{PREFIX}_data_sentinel_tickers",
        f"{PREFIX}_data_sentinel_last_run_timestamp_seconds",
    }
    | REGIME_METRICS  # the market regime and volatility spikes (monitoring.regime_metrics)
    | SENTIMENT_METRICS  # sentiment spikes (monitoring.sentiment_metrics)
)


def newest_event_time(data_dir: Path, view: str) -> float | None:
    """Unix time of the newest event timestamp in the view's feature file; None without rows."""
    path = Path(feature_file(str(data_dir), view))
    if not path.exists():
        return None
    column = pq.read_table(path, columns=[EVENT_TIMESTAMP]).column(0)
    if len(column) == 0 or column.null_count == len(column):
        return None
    newest: Any = max(v for v in column.to_pylist() if v is not None)
    return float(newest.timestamp())


class MonitoringCollector(Collector):
    """Builds every monitoring gauge from files under ``data_dir`` at collection time."""

    def __init__(self, data_dir: Path, views: Sequence[str] | None = None, clock: Callable[[], float] = time.time):
        self.data_dir = data_dir
        self.reports_dir = data_dir / "reports"
        self.views = list(views) if views is not None else list(FEATURES_BY_VIEW)
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._drift()
        yield self._freshness()
        yield from self._decay()
        yield from self._sentinel()
        yield from regime_families(self.data_dir)
        yield from sentiment_families(self.data_dir)

    def _drift(self) -> Iterator[Metric]:
        share = GaugeMetricFamily(f"{PREFIX}_drift_share", "Share of tested features that drifted.", labels=["view"])
        score = GaugeMetricFamily(
            f"{PREFIX}_drift_score", "Drift score (distance or p-value, see method).", labels=["view", "feature"]
        )
        detected = GaugeMetricFamily(
            f"{PREFIX}_drift_detected", "1 when the feature drifted in the last run.", labels=["view", "feature"]
        )
        last_run = GaugeMetricFamily(
            f"{PREFIX}_drift_last_run_timestamp_seconds", "Unix time of the last drift run.", labels=["view"]
        )
        for summary in reports.latest_drift_summaries(self.reports_dir):
            view = summary["view"]
            share.add_metric([view], float(summary["share"]))
            last_run.add_metric([view], float(summary["run_at"]))
            for f in summary["features"]:
                score.add_metric([view, f["feature"]], float(f["score"]))
                detected.add_metric([view, f["feature"]], 1.0 if f["detected"] else 0.0)
        yield from (share, score, detected, last_run)

    def _freshness(self) -> Metric:
        family = GaugeMetricFamily(
            f"{PREFIX}_feature_freshness_seconds",
            "Seconds since the newest event timestamp of the view's offline feature rows.",
            labels=["view"],
        )
        now = self.clock()
        for view in self.views:
            newest = newest_event_time(self.data_dir, view)
            if newest is not None:
                family.add_metric([view], max(now - newest, 0.0))
        return family

    def _decay(self) -> Iterator[Metric]:
        rank_ic = GaugeMetricFamily(
            f"{PREFIX}_model_rolling_rank_ic", "Rolling mean rank IC over the decay window.", labels=["model"]
        )
        tstat = GaugeMetricFamily(
            f"{PREFIX}_model_rolling_ic_tstat", "Newey-West t-stat of the rolling rank IC.", labels=["model"]
        )
        path = reports.latest_decay_file(self.reports_dir)
        for result in reports.read_json(path)["models"] if path.exists() else []:
            rank_ic.add_metric([result["model"]], float(result["rolling_rank_ic"]))
            tstat.add_metric([result["model"]], float(result["rank_ic_tstat"]))
        yield from (rank_ic, tstat)

    def _sentinel(self) -> Iterator[Metric]:
        anomalies = GaugeMetricFamily(
            f"{PREFIX}_data_anomalies",
            "Tickers the data-quality sentinel flagged on its newest scored session.",
            labels=["ticker_class"],
        )
        tickers = GaugeMetricFamily(
            f"{PREFIX}_data_sentinel_tickers",
            "Tickers the data-quality sentinel scored on its newest scored session.",
            labels=["ticker_class"],
        )
        last_run = GaugeMetricFamily(
            f"{PREFIX}_data_sentinel_last_run_timestamp_seconds", "Unix time of the last sentinel run."
        )
        path = self.reports_dir / SENTINEL_SUMMARY
        if path.exists():
            summary = reports.read_json(path)
            for ticker_class, count in summary["anomalies_by_class"].items():
                anomalies.add_metric([ticker_class], float(count))
            for ticker_class, count in summary["tickers_by_class"].items():
                tickers.add_metric([ticker_class], float(count))
            last_run.add_metric([], float(summary["run_at"]))
        yield from (anomalies, tickers, last_run)


def build_registry(data_dir: Path, views: Sequence[str] | None = None) -> CollectorRegistry:
    """A registry holding only monitoring's collector (not the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(data_dir, views))
    return registry


def write_textfile(path: Path, data_dir: Path) -> Path:
    """Write the current series in the text exposition format (node-exporter textfile style)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), build_registry(data_dir))
    return path


def serve(data_dir: Path, host: str, port: int, stop: threading.Event | None = None) -> None:
    """Serve ``/metrics`` on ``host:port`` until ``stop`` is set (forever without one)."""
    server, thread = start_http_server(port, addr=host, registry=build_registry(data_dir))
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
