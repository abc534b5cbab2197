"""The regime gauges monitoring exports read the market_regime view's file (SYNTHETIC index levels)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feature_repo.files import write_market_file
from feature_repo.market import REGIME_VIEW, regime_view_frame
from feature_repo.transforms.regime import RegimeSeries, benchmark_returns, regime_series
from monitoring.exporter import EXPORTED_METRICS, MonitoringCollector
from monitoring.regime_metrics import REGIME_METRICS, SPIKE_LOOKBACK, volatility_spike


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


def _close(calm: int, stormy: int, seed: int = 5) -> pd.Series:
    """SYNTHETIC index levels: ``calm`` sessions of 0.8% daily moves, then ``stormy`` ones of 3%."""
    rng = np.random.default_rng(seed)
    returns = np.concatenate([rng.normal(0.0004, 0.008, calm), rng.normal(-0.002, 0.03, stormy)])
    return pd.Series(100 * np.cumprod(1 + returns), index=pd.bdate_range("2019-01-01", periods=calm + stormy))


def _reference_z(volatility: np.ndarray) -> tuple[float, float]:
    """The rule written out: the last volatility against the 252 before it."""
    earlier = volatility[:-1][-SPIKE_LOOKBACK:]
    earlier = earlier[np.isfinite(earlier)]
    z = (volatility[-1] - earlier.mean()) / earlier.std(ddof=1)
    return float(z), float(np.sum(earlier < volatility[-1]) / earlier.size)


def test_a_volatility_spike_is_exported_against_the_trailing_year(tmp_path) -> None:
    close = _close(calm=500, stormy=30)
    write_market_file(tmp_path, REGIME_VIEW, regime_view_frame(close, "SYNTH"))
    series = regime_series(*benchmark_returns(close))
    z, percentile = _reference_z(series.volatility)
    samples = _scrape(tmp_path)
    bench = (("benchmark", "SYNTH"),)
    assert math.isclose(samples[("portfolio_os_market_volatility_zscore", bench)], z)
    assert samples[("portfolio_os_market_volatility_percentile", bench)] == percentile > 0.95
    assert z > 2  # a 63-session window half-filled with 3% days stands far above a calm year


def test_a_calm_benchmark_has_a_small_z_score(tmp_path) -> None:
    close = _close(calm=530, stormy=0)
    write_market_file(tmp_path, REGIME_VIEW, regime_view_frame(close, "SYNTH"))
    z, percentile = _reference_z(regime_series(*benchmark_returns(close)).volatility)
    samples = _scrape(tmp_path)
    bench = (("benchmark", "SYNTH"),)
    assert math.isclose(samples[("portfolio_os_market_volatility_zscore", bench)], z) and z < 2
    assert samples[("portfolio_os_market_volatility_percentile", bench)] == percentile < 1.0


def test_too_short_a_history_exports_the_regime_but_no_z_score(tmp_path) -> None:
    # 100 returns: volatilities from the 63rd on, so 37 earlier ones (< 63 needed) at the last session.
    write_market_file(tmp_path, REGIME_VIEW, regime_view_frame(_close(calm=101, stormy=0), "SYNTH"))
    names = {name for name, _ in _scrape(tmp_path)}
    assert "portfolio_os_market_volatility" in names
    assert not names & {"portfolio_os_market_volatility_zscore", "portfolio_os_market_volatility_percentile"}


def _series(volatility: list[float]) -> RegimeSeries:
    n = len(volatility)
    nan = np.full(n, np.nan)
    days = np.arange(n).astype("datetime64[D]")
    return RegimeSeries(days, nan, np.asarray(volatility), nan, np.full(n, "unknown"), 1, 2)


def test_the_z_score_by_hand() -> None:
    spike = volatility_spike(_series([np.nan, 1.0, 2.0, 3.0, 6.0]), lookback=3, min_history=3)
    assert spike is not None
    assert (spike.mean, spike.std, spike.history) == (2.0, 1.0, 3)
    assert spike.zscore == 4.0 and spike.percentile == 1.0
    # Only the lookback's sessions count: the 100.0 four sessions back is outside a lookback of 3.
    older = volatility_spike(_series([100.0, 1.0, 2.0, 3.0, 2.5]), lookback=3, min_history=3)
    assert older is not None and older.zscore == 0.5 and older.percentile == 2 / 3


def test_no_z_score_without_a_spread_or_a_last_volatility() -> None:
    assert volatility_spike(_series([1.0, 1.0, 1.0, 2.0]), lookback=3, min_history=3) is None
    assert volatility_spike(_series([1.0, 2.0, 3.0, np.nan]), lookback=3, min_history=3) is None
    assert volatility_spike(_series([1.0, 2.0, 3.0]), lookback=3, min_history=3) is None
    with pytest.raises(ValueError, match="min_history <= lookback"):
        volatility_spike(_series([1.0, 2.0, 3.0]), lookback=3, min_history=4)


def test_the_z_score_of_a_session_never_depends_on_later_data() -> None:
    close = _close(calm=500, stormy=30)
    full = regime_series(*benchmark_returns(close))
    for cut in (400, 510):  # before the storm, inside it
        known = regime_series(*benchmark_returns(close.iloc[: cut + 1]))  # cut + 1 levels: cut returns
        then = volatility_spike(known)
        assert then is not None and known.dates[-1] == full.dates[cut - 1]
        truncated = RegimeSeries(
            full.dates[:cut],
            full.trend[:cut],
            full.volatility[:cut],
            full.volatility_median[:cut],
            full.labels[:cut],
            full.trend_window,
            full.vol_window,
        )
        now = volatility_spike(truncated)
        assert now is not None and math.isclose(now.zscore, then.zscore) and now.percentile == then.percentile
