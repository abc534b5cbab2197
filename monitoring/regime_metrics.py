"""The market regime as Prometheus gauges, read at scrape time from the ``market_regime`` view's file.

The same decoded history the gateway serves (:func:`feature_repo.market.regime_history`): the
label of the last session, and the classifier's inputs on it. Series:
``portfolio_os_market_regime{benchmark,regime}`` (1 for the current regime, 0 for the others),
``portfolio_os_market_trend{benchmark}`` (trailing compound return),
``portfolio_os_market_volatility{benchmark}`` and ``portfolio_os_market_volatility_median{benchmark}``
(annualised), ``portfolio_os_market_regime_session_timestamp_seconds{benchmark}`` (its session).

Volatility spikes: the same stored volatility of the last session against the volatilities of the
:data:`SPIKE_LOOKBACK` sessions before it (its own trailing distribution, the last session left
out): ``portfolio_os_market_volatility_zscore{benchmark}`` (standard deviations above their mean)
and ``portfolio_os_market_volatility_percentile{benchmark}`` (share of them below it, 0..1). Both
are absent until :data:`SPIKE_MIN_HISTORY` earlier volatilities exist (or when they are all equal).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow.parquet as pq
from prometheus_client.core import GaugeMetricFamily, Metric

from feature_repo.definitions import feature_file
from feature_repo.market import REGIME_VIEW, RegimeHistory, regime_history
from feature_repo.transforms.regime import REGIMES, VOL_WINDOW, RegimeSeries

PREFIX: Final = "portfolio_os_market"
REGIME_METRICS: Final[frozenset[str]] = frozenset(
    {
        f"{PREFIX}_regime",
        f"{PREFIX}_trend",
        f"{PREFIX}_volatility",
        f"{PREFIX}_volatility_median",
        f"{PREFIX}_regime_session_timestamp_seconds",
        f"{PREFIX}_volatility_zscore",
        f"{PREFIX}_volatility_percentile",
    }
)
ANNUAL: Final = math.sqrt(252)
SPIKE_LOOKBACK: Final = 252  # a year of sessions: the trailing distribution a volatility is judged against
SPIKE_MIN_HISTORY: Final = VOL_WINDOW  # earlier volatilities needed before a z-score means anything


@dataclass(frozen=True)
class VolatilitySpike:
    """The last session's volatility against its own trailing distribution (daily, not annualised).

    Attributes:
        volatility: the last session's volatility.
        mean, std: mean and std (ddof=1) of the earlier volatilities.
        zscore: ``(volatility - mean) / std``.
        percentile: share of the earlier volatilities strictly below it, in [0, 1].
        history: how many earlier volatilities were used.
    """

    volatility: float
    mean: float
    std: float
    zscore: float
    percentile: float
    history: int


def volatility_spike(
    series: RegimeSeries, *, lookback: int = SPIKE_LOOKBACK, min_history: int = SPIKE_MIN_HISTORY
) -> VolatilitySpike | None:
    """The last session's stored volatility against the ``lookback`` sessions before it.

    Only finite volatilities count (the window fills after ``vol_window`` sessions). Point in time:
    the last session and earlier ones only, as stored by the regime view.

    Returns:
        None when the last volatility is missing, fewer than ``min_history`` earlier ones exist,
        or they are all equal (no spread to measure against).

    Raises:
        ValueError: ``lookback`` or ``min_history`` below 2, or ``min_history`` above ``lookback``.
    """
    if not 2 <= min_history <= lookback:
        raise ValueError(f"need 2 <= min_history <= lookback, got min_history={min_history}, lookback={lookback}")
    vol = np.asarray(series.volatility, dtype=np.float64)
    if vol.size == 0 or not np.isfinite(vol[-1]):
        return None
    earlier = vol[:-1][-lookback:]
    earlier = earlier[np.isfinite(earlier)]
    if earlier.size < min_history:
        return None
    mean, std = float(earlier.mean()), float(earlier.std(ddof=1))
    if not std > 0:
        return None
    now = float(vol[-1])
    return VolatilitySpike(
        volatility=now,
        mean=mean,
        std=std,
        zscore=(now - mean) / std,
        percentile=float((earlier < now).mean()),
        history=int(earlier.size),
    )


def read_regime(data_dir: Path) -> RegimeHistory | None:
    """The regime history in the view's file under ``data_dir``; None without the file or a row."""
    path = Path(feature_file(str(data_dir), REGIME_VIEW))
    if not path.exists():
        return None
    rows = pq.read_table(path).to_pylist()
    return regime_history(rows[-1]) if rows else None


def regime_families(data_dir: Path) -> Iterator[Metric]:
    """The regime gauges (empty families when the view has no row yet)."""
    regime = GaugeMetricFamily(
        f"{PREFIX}_regime", "1 for the benchmark's current regime.", labels=["benchmark", "regime"]
    )
    trend = GaugeMetricFamily(f"{PREFIX}_trend", "Trailing compound return of the benchmark.", labels=["benchmark"])
    vol = GaugeMetricFamily(f"{PREFIX}_volatility", "Annualised trailing volatility.", labels=["benchmark"])
    median = GaugeMetricFamily(
        f"{PREFIX}_volatility_median",
        "Annualised expanding median volatility (the high/low line).",
        labels=["benchmark"],
    )
    session = GaugeMetricFamily(
        f"{PREFIX}_regime_session_timestamp_seconds", "Unix time of the regime's session.", labels=["benchmark"]
    )
    zscore = GaugeMetricFamily(
        f"{PREFIX}_volatility_zscore",
        f"Volatility of the last session in std units of the {SPIKE_LOOKBACK} sessions' volatilities before it.",
        labels=["benchmark"],
    )
    percentile = GaugeMetricFamily(
        f"{PREFIX}_volatility_percentile",
        f"Share (0..1) of the {SPIKE_LOOKBACK} sessions' volatilities before the last one that are below it.",
        labels=["benchmark"],
    )
    history = read_regime(data_dir)
    if history is not None:
        series, name = history.series, history.benchmark
        for label in REGIMES:
            regime.add_metric([name, label], 1.0 if series.labels[-1] == label else 0.0)
        trend.add_metric([name], float(series.trend[-1]))
        vol.add_metric([name], float(series.volatility[-1]) * ANNUAL)
        median.add_metric([name], float(series.volatility_median[-1]) * ANNUAL)
        seconds = (series.dates[-1] - np.datetime64("1970-01-01", "D")) / np.timedelta64(1, "s")
        session.add_metric([name], float(seconds))
        spike = volatility_spike(series)
        if spike is not None:
            zscore.add_metric([name], spike.zscore)
            percentile.add_metric([name], spike.percentile)
    yield from (regime, trend, vol, median, session, zscore, percentile)
