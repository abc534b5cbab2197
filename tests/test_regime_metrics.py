"""The regime gauges monitoring exports read the market_regime view's file (SYNTHETIC index levels)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feature_repo.files import write_market_file
from feature_repo.market import REGIME_VIEW, regime_view_frame
from feature_repo.transforms.regime import benchmark_returns, regime_series
from monitoring.exporter import EXPORTED_METRICS, MonitoringCollector
from monitoring.regime_metrics import REGIME_METRICS


def _scrape(data_dir) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(data_dir))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_current_regime_and_its_inputs_are_exported(tmp_path) -> None:
    rng = np.random.default_rng(3)
    close = pd.Series(
        100 * np.cumprod(1 + rng.normal(0.0004, 0.01, 400)), index=pd.bdate_range("2020-01-01", periods=400)
    )
    write_market_file(tmp_path, REGIME_VIEW, regime_view_frame(close, "SYNTH"))
    series = regime_series(*benchmark_returns(close))
    samples = _scrape(tmp_path)
    states = {dict(k[1])["regime"]: v for k, v in samples.items() if k[0] == "portfolio_os_market_regime"}
    assert states == {r: float(r == series.labels[-1]) for r in ("unknown", "bull", "bear", "sideways")}
    bench = (("benchmark", "SYNTH"),)
    assert samples[("portfolio_os_market_trend", bench)] == series.trend[-1]
    assert math.isclose(samples[("portfolio_os_market_volatility", bench)], series.volatility[-1] * math.sqrt(252))
    stamp = samples[("portfolio_os_market_regime_session_timestamp_seconds", bench)]
    assert pd.Timestamp(stamp, unit="s") == close.index[-1]
    assert REGIME_METRICS <= EXPORTED_METRICS


def test_no_view_file_means_no_regime_series(tmp_path) -> None:
    assert not any(name.startswith("portfolio_os_market") for name, _ in _scrape(tmp_path))
