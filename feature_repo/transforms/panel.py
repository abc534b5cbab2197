"""Long <-> wide panel helpers shared by the transforms.

Transforms work on wide frames (one row per session, one column per ticker), so every rolling,
exponential and cross-sectional operation is one vectorised call over all tickers at once, and a
fill can never cross from one ticker to another (each ticker is its own column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, TICKER


def to_wide(long: pd.DataFrame, value: str, dates: pd.DatetimeIndex, tickers: pd.Index) -> pd.DataFrame:
    """Pivot one value column of a (ticker, date) frame onto a sessions x tickers grid."""
    wide = long.pivot(index=DATE, columns=TICKER, values=value)
    return wide.reindex(index=dates, columns=tickers)


def grid(long: pd.DataFrame, extra_sessions: pd.Index | None = None) -> tuple[pd.DatetimeIndex, pd.Index]:
    """The sorted session calendar and the sorted tickers.

    The calendar is the union of every ticker's dates and ``extra_sessions`` (the benchmark's
    sessions) within the span of the prices, so a ticker's missing bar is a missing session of
    the market, whatever else is in the universe.
    """
    dates = pd.DatetimeIndex(long[DATE].unique())
    if extra_sessions is not None and len(dates):
        extra = pd.DatetimeIndex(extra_sessions)
        dates = dates.union(extra[(extra >= dates.min()) & (extra <= dates.max())])
    dates = pd.DatetimeIndex(np.sort(dates.unique()), name=DATE)
    tickers = pd.Index(np.sort(long[TICKER].unique()), name=TICKER)
    return dates, tickers


def to_long(columns: dict[str, pd.DataFrame], present: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Stack wide frames back to (ticker, date) rows, keeping only the cells where ``present``.

    Rows come out sorted by ticker then date; columns in the order of ``columns``.
    """
    mask = present.to_numpy().T  # tickers x dates, so the flattened order is ticker-major
    ticker_idx, date_idx = np.nonzero(mask)
    out: dict[str, object] = {
        TICKER: present.columns.to_numpy()[ticker_idx],
        DATE: present.index.to_numpy()[date_idx],
    }
    for name, wide in columns.items():
        values = wide.to_numpy(dtype="float64").T[mask]
        out[name] = values.astype(dtypes[name]) if dtypes[name] != "float64" else values
    return pd.DataFrame(out)


def cross_sectional_rank(wide: pd.DataFrame) -> pd.DataFrame:
    """Percentile rank across the tickers present on each date (NaN stays NaN)."""
    return wide.rank(axis=1, pct=True)


def cross_sectional_zscore(wide: pd.DataFrame) -> pd.DataFrame:
    """Z-score across the tickers present on each date; NaN where fewer than two have a value."""
    mean = wide.mean(axis=1)
    std = wide.std(axis=1).replace(0.0, np.nan)
    return wide.sub(mean, axis=0).div(std, axis=0)
