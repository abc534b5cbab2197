"""A plain per-ticker pandas implementation of the technical features.

Deliberately the obvious way to write them: a Python loop over tickers, a Series per ticker, a
``groupby('date')`` for the cross-sectional statistics. It is the oracle the tests compare the
vectorised transform against and the baseline the feature benchmark times it against. Nothing
in production calls it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.schema import RETURN_WINDOWS, TECHNICAL_CROSS_SECTIONAL, TECHNICAL_FEATURES
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.technical import log_returns

TRADING_DAYS = 252


def technical_features_per_ticker(
    prices: pd.DataFrame, benchmark: pd.Series, *, max_gap_sessions: int = 5
) -> pd.DataFrame:
    """Same contract and values as :func:`feature_repo.transforms.technical.technical_features`."""
    own = pd.DatetimeIndex(prices[DATE].unique())
    sessions = pd.DatetimeIndex(benchmark.dropna().index)
    sessions = sessions[(sessions >= own.min()) & (sessions <= own.max())]
    calendar = own.union(sessions).sort_values()
    market = log_returns(benchmark.reindex(calendar).astype("float64"))
    parts = []
    for ticker, rows in prices.groupby(TICKER, sort=True):
        series = rows.set_index(DATE).sort_index()
        part = _one_ticker(series, calendar, market, max_gap_sessions)
        part.insert(0, TICKER, ticker)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    by_date = frame.groupby(DATE)
    for name in TECHNICAL_CROSS_SECTIONAL:
        frame[f"{name}_csrank"] = by_date[name].rank(pct=True)
    for name in TECHNICAL_CROSS_SECTIONAL:
        mean = by_date[name].transform("mean")
        std = by_date[name].transform("std").replace(0.0, np.nan)
        frame[f"{name}_csz"] = (frame[name] - mean) / std
    return frame[[TICKER, DATE, *(s.name for s in TECHNICAL_FEATURES)]]


def _one_ticker(series: pd.DataFrame, calendar: pd.DatetimeIndex, market: pd.Series, max_gap: int) -> pd.DataFrame:
    own = calendar[(calendar >= series.index.min()) & (calendar <= series.index.max())]
    close = series["adj_close"].reindex(own)
    present = close.notna()
    filled = close.ffill(limit=max_gap)
    logret = log_returns(filled)
    out = pd.DataFrame(index=own)
    for w in RETURN_WINDOWS:
        out[f"ret_{w}d"] = filled / filled.shift(w) - 1.0
    out["vol_21d"] = logret.rolling(21, min_periods=17).std() * np.sqrt(TRADING_DAYS)
    out["vol_63d"] = logret.rolling(63, min_periods=50).std() * np.sqrt(TRADING_DAYS)
    down = logret.clip(upper=0.0) ** 2
    out["downside_vol_63d"] = np.sqrt(down.rolling(63, min_periods=50).mean()) * np.sqrt(TRADING_DAYS)
    out["rsi_14"] = _rsi(filled)
    fast = filled.ewm(span=12, adjust=False, min_periods=26).mean()
    slow = filled.ewm(span=26, adjust=False, min_periods=26).mean()
    out["macd"] = (fast - slow) / filled
    out["macd_signal"] = out["macd"].ewm(span=9, adjust=False, min_periods=9).mean()
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    for w in (50, 200):
        out[f"dist_sma_{w}"] = filled / filled.rolling(w, min_periods=w).mean() - 1.0
    logvol = np.log1p(series["volume"].reindex(own).where(lambda v: v >= 0))
    roll = logvol.rolling(21, min_periods=15)
    out["volume_zscore_21d"] = (logvol - roll.mean()) / roll.std().replace(0.0, np.nan)
    mkt = market.reindex(own).where(logret.notna())
    stock = logret.where(mkt.notna())
    beta = stock.rolling(252, min_periods=126).cov(mkt) / mkt.rolling(252, min_periods=126).var()
    out["beta_252d"] = beta
    out["resid_mom_126d"] = (stock - beta.shift(1) * mkt).rolling(126, min_periods=100).sum()
    out = out[present]
    return out.rename_axis(DATE).reset_index()


def _rsi(close: pd.Series) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0.0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-delta.clip(upper=0.0)).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    value = 100.0 - 100.0 / (1.0 + gain / loss.where(loss > 0))
    return value.where(loss > 0, 100.0).where(gain.notna() & loss.notna())
