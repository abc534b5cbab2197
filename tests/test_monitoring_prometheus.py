"""A real Prometheus scraping a real ``python -m monitoring serve-metrics`` and a contract exporter.

Drift runs on the bundled real S&P 500 prices; the rules are the real file with every ``for:``
shortened to 1 s. Measures the latency from a change (a drift run on a shifted window, a model
server turning unready) to the alert reaching ``firing`` through scrape and rule evaluation.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from feature_repo.files import write_feature_file
from feature_repo.transforms.technical import technical_features
from monitoring import contract, dashboards
from monitoring.drift import run_view
from monitoring.exporter import EXPORTED_METRICS
from monitoring.local_prometheus import PrometheusAPI, local_prometheus, scrape_config
from monitoring.promql import metric_names
from monitoring.regime_metrics import REGIME_METRICS
from monitoring.rules import load_rules, with_short_for
from monitoring.sentiment_metrics import SENTIMENT_METRICS
from monitoring.windows import Window
from tests.servers import free_port
from tests.serving_fixtures import wait_for

VIEW = "technical_features"
REFERENCE = Window.parse("2006-01-01:2006-12-31")


def _contract_exporter(port: int) -> tuple[CollectorRegistry, Gauge, Callable[[], None]]:
    """Every gateway/model-server series of the contract, one sample each, on 127.0.0.1:port."""
    registry = CollectorRegistry()
    ready = None
    for name in sorted(contract.GATEWAY_METRICS | contract.MODEL_SERVER_METRICS):
        labels = ["model"] if name in ("portfolio_os_model_ready", "portfolio_os_gateway_circuit_state") else []
        if name in contract.HISTOGRAMS:
            Histogram(name, name, registry=registry, buckets=(0.1, 0.25, 1.0)).observe(0.05)
        elif name.endswith("_total"):
            Counter(name.removesuffix("_total"), name, registry=registry).inc()
        else:
            gauge = Gauge(name, name, labels, registry=registry)
            (gauge.labels(model="technical") if labels else gauge).set(1 if name.endswith("ready") else 0)
            ready = gauge if name == "portfolio_os_model_ready" else ready
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    assert ready is not None

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return registry, ready, stop


@pytest.mark.slow
def test_drift_and_readiness_alerts_fire_in_a_real_prometheus(tmp_path, sp500):
    prices = sp500.prices[(sp500.prices["date"] >= "2003-01-01") & (sp500.prices["date"] <= "2009-12-31")]
    benchmark = sp500.benchmark.set_index("date")["close"].loc["2003-01-01":"2009-12-31"]
    data_dir = tmp_path / "data"
    frame = write_feature_file(data_dir, VIEW, technical_features(prices, benchmark))
    assert frame.exists()
    run_view(data_dir, VIEW, REFERENCE, Window.parse("2006-07-01:2006-12-31"), reports_dir=data_dir / "reports")

    monitoring_port, contract_port, prom_port = free_port(), free_port(), free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitoring",
            "--data-dir",
            str(data_dir),
            "serve-metrics",
            "--port",
            str(monitoring_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _, ready, stop_contract = _contract_exporter(contract_port)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(with_short_for(load_rules(), "1s")))
    config = scrape_config(
        {"monitoring": [f"127.0.0.1:{monitoring_port}"], "contract": [f"127.0.0.1:{contract_port}"]},
        [rules_file],
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    try:
        assert exporter.stdout is not None and "serving" in exporter.stdout.readline()
        with local_prometheus(config, tmp_path / "prometheus", prom_port) as api:
            _check_series_and_quiet_state(api)
            _check_drift_alert(api, data_dir)
            _check_not_ready_alert(api, ready)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        stop_contract()


def _check_series_and_quiet_state(api: PrometheusAPI) -> None:
    wait_for(lambda: "portfolio_os_drift_share" in api.series_names(), 60, "the first scrape of serve-metrics")
    wait_for(lambda: "portfolio_os_model_ready" in api.series_names(), 60, "the first scrape of the contract exporter")
    names = api.series_names()
    groups = load_rules()["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    used = {n for g in groups for r in g["rules"] for n in metric_names(r["expr"])}
    for board in dashboards.render_all().values():
        used |= {n for e in dashboards.exprs(yaml.safe_load(board)) for n in metric_names(e)}
    # Series exported only once their job has written to the data folder: no decay, sentinel or
    # regime run and no sentiment file here (their exporters are tested in test_monitoring_exporter,
    # test_sentinel_job, test_regime_metrics and test_sentiment_metrics); every other series a rule or
    # panel reads must be scraped.
    decay_series = {"portfolio_os_model_rolling_rank_ic", "portfolio_os_model_rolling_ic_tstat"}
    sentinel_series = {n for n in EXPORTED_METRICS if "_data_anomalies" in n or "_data_sentinel_" in n}
    job_series = decay_series | sentinel_series | REGIME_METRICS | SENTIMENT_METRICS
    missing = used - recorded - job_series - names
    assert missing == set(), f"series used by rules/dashboards that no target exports: {missing}"
    (share,) = api.query('portfolio_os_drift_share{view="technical_features"}')
    assert float(share["value"][1]) < 0.5
    wait_for(lambda: api.alert_state("PortfolioOSFeaturesStale") == "firing", 60, "stale 2009 data to alert")
    assert api.alert_state("PortfolioOSFeatureDriftDetected") is None
    assert api.alert_state("PortfolioOSModelNotReady") is None


def _check_drift_alert(api: PrometheusAPI, data_dir) -> None:
    landed = time.monotonic()  # the 2008 rows are the "new data"; the drift job starts now
    result = run_view(
        data_dir, VIEW, REFERENCE, Window.parse("2008-07-01:2008-12-31"), reports_dir=data_dir / "reports"
    )
    written = time.monotonic()
    assert result.detected
    wait_for(lambda: api.alert_state("PortfolioOSFeatureDriftDetected") == "firing", 60, "the drift alert")
    fired = time.monotonic()
    print(
        f"\ndrift: job {written - landed:.1f}s + summary->firing {fired - written:.1f}s"
        f" = data->firing {fired - landed:.1f}s"
    )


def _check_not_ready_alert(api: PrometheusAPI, ready: Gauge) -> None:
    ready.labels(model="technical").set(0)
    # The deadlines only stop a hung test; the latencies are printed, not asserted.
    latency = wait_for(lambda: api.alert_state("PortfolioOSModelNotReady") == "firing", 60, "the not-ready alert")
    print(f"model_ready=0 -> firing {latency:.1f}s")
    (alert,) = [a for a in api.alerts() if a["labels"]["alertname"] == "PortfolioOSModelNotReady"]
    assert alert["labels"]["model"] == "technical" and alert["labels"]["severity"] == "critical"
