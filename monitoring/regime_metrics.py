"""The market regime as Prometheus gauges, read at scrape time from the ``market_regime`` view's file.

The same decoded history the gateway serves (:func:`feature_repo.market.regime_history`): the
label of the last session, and the classifier's inputs on it. Series:
``portfolio_os_market_regime{benchmark,regime}`` (1 for the current regime, 0 for the others),
``portfolio_os_market_trend{benchmark}`` (trailing compound return),
``portfolio_os_market_volatility{benchmark}`` and ``portfolio_os_market_volatility_median{benchmark}``
(annualised), ``portfolio_os_market_regime_session_timestamp_seconds{benchmark}`` (its session).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow.parquet as pq
from prometheus_client.core import GaugeMetricFamily, Metric

from feature_repo.definitions import feature_file
from feature_repo.market import REGIME_VIEW, RegimeHistory, regime_history
from feature_repo.transforms.regime import REGIMES

PREFIX: Final = "portfolio_os_market"
REGIME_METRICS: Final[frozenset[str]] = frozenset(
    {
        f"{PREFIX}_regime",
        f"{PREFIX}_trend",
        f"{PREFIX}_volatility",
        f"{PREFIX}_volatility_median",
        f"{PREFIX}_regime_session_timestamp_seconds",
    }
)
ANNUAL: Final = math.sqrt(252)


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
    yield from (regime, trend, vol, median, session)
