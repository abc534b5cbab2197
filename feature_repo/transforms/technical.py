"""Technical features from daily adjusted closes, volumes and a benchmark.

Pure and vectorised: every formula runs on a sessions x tickers grid in one call. Point-in-time
safe by construction: each value at session t uses only rows at or before t (rolling windows,
exponential averages and shifts look backwards; cross-sectional statistics use the same date
only). A short gap in one ticker's bars is bridged by carrying *that ticker's* last price forward
for at most ``max_gap_sessions``; nothing is ever filled across tickers or from the future.

"Sessions" are those of the market calendar: the union of the benchmark's sessions, the exchange's
sessions when given, and every ticker's bars, so a ticker's 21-session return spans the same 21
sessions whatever else is in the universe, and a week missing from the data is five missing
sessions, not skipped. Series breaks split a ticker's history into segments computed apart: no
window or return reaches from one segment into the next.
"""

from __future__ import annotations

from typing import TypeVar, cast

import numpy as np
import pandas as pd

from feature_repo.schema import (
    RETURN_WINDOWS,
    TECHNICAL_CROSS_SECTIONAL,
    TECHNICAL_FEATURES,
)
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.panel import (
    cross_sectional_rank,
    cross_sectional_zscore,
    grid,
    restore_tickers,
    split_at_breaks,
    to_long,
    to_wide,
)

TRADING_DAYS = 252
MAX_GAP_SESSIONS = 5


def technical_features(
    prices: pd.DataFrame,
    benchmark: pd.Series,
    *,
    max_gap_sessions: int = MAX_GAP_SESSIONS,
    sessions: pd.Index | None = None,
    breaks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute every technical feature for every (ticker, date) bar in ``prices``.

    Args:
        prices: rows with at least ``ticker``, ``date``, ``adj_close`` and ``volume``
            (volume may be all NaN).
        benchmark: benchmark level indexed by date.
        max_gap_sessions: longest run of missing sessions bridged with the ticker's own last price.
        sessions: the exchange's sessions, in place of the benchmark's dates, so that a session
            missing from the data for every ticker still counts in every window (``None``: the
            benchmark's and the data's dates). Pass bars on sessions only
            (:func:`training.calendar.on_sessions`): a bar on another day adds that day.
        breaks: series breaks (:data:`feature_repo.tables.SERIES_BREAK_COLUMNS`); each segment of
            a ticker's history is computed on its own, so no window or return spans a break.

    Returns:
        One row per input bar, sorted by ticker and date: ``ticker``, ``date`` and the
        features of :data:`feature_repo.schema.TECHNICAL_FEATURES` in that order.
    """
    segments = split_at_breaks(prices, breaks)
    features = _technical(segments.frame, benchmark, max_gap_sessions, _sessions(benchmark, sessions))
    return restore_tickers(features, segments)


def _sessions(benchmark: pd.Series, sessions: pd.Index | None) -> pd.Index:
    """The exchange's sessions when given (a benchmark row on a closed day is no session), else the benchmark's."""
    return pd.DatetimeIndex(benchmark.dropna().index) if sessions is None else pd.DatetimeIndex(sessions)


def _technical(prices: pd.DataFrame, benchmark: pd.Series, max_gap_sessions: int, sessions: pd.Index) -> pd.DataFrame:
    dates, tickers = grid(prices, sessions)
    close = to_wide(prices, "adj_close", dates, tickers)
    present = close.notna()
    filled = close.ffill(limit=max_gap_sessions)
    volume = to_wide(prices, "volume", dates, tickers)
    bench = benchmark.reindex(dates).astype("float64")

    logret = log_returns(filled)
    market = log_returns(bench)
    out: dict[str, pd.DataFrame] = {}
    for w in RETURN_WINDOWS:
        out[f"ret_{w}d"] = filled / filled.shift(w) - 1.0
    out.update(_volatility(logret))
    out["rsi_14"] = rsi(filled, 14)
    out.update(_macd(filled))
    for w in (50, 200):
        out[f"dist_sma_{w}"] = filled / filled.rolling(w, min_periods=w).mean() - 1.0
    out["volume_zscore_21d"] = _volume_zscore(volume, 21)
    out.update(_beta_and_residual_momentum(logret, market))
    for name in TECHNICAL_CROSS_SECTIONAL:
        out[f"{name}_csrank"] = cross_sectional_rank(out[name].where(present))
    for name in TECHNICAL_CROSS_SECTIONAL:
        out[f"{name}_csz"] = cross_sectional_zscore(out[name].where(present))
    ordered = {s.name: out[s.name] for s in TECHNICAL_FEATURES}
    return to_long(ordered, present, {s.name: s.dtype for s in TECHNICAL_FEATURES})


Panel = TypeVar("Panel", pd.DataFrame, pd.Series)


def log_returns(levels: Panel) -> Panel:
    """Daily log returns of a level frame or series (NaN where either level is missing)."""
    # numpy ufuncs on pandas objects return pandas objects of the same shape and labels.
    return cast(Panel, np.log(levels)).diff()


def _volatility(logret: pd.DataFrame) -> dict[str, pd.DataFrame]:
    annualise = np.sqrt(TRADING_DAYS)
    downside_sq = logret.clip(upper=0.0) ** 2
    return {
        "vol_21d": logret.rolling(21, min_periods=17).std() * annualise,
        "vol_63d": logret.rolling(63, min_periods=50).std() * annualise,
        "downside_vol_63d": downside_sq.rolling(63, min_periods=50).mean().pow(0.5) * annualise,
    }


def rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Wilder's RSI: exponential averages of gains and losses with alpha = 1/window."""
    delta = close.diff()
    gain = delta.clip(lower=0.0).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    loss = (-delta.clip(upper=0.0)).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    # A window with no losses at all is RSI 100, not a division error.
    rs = gain / loss.where(loss > 0)
    value = 100.0 - 100.0 / (1.0 + rs)
    return value.where(loss > 0, 100.0).where(gain.notna() & loss.notna())


def _macd(close: pd.DataFrame) -> dict[str, pd.DataFrame]:
    fast = close.ewm(span=12, adjust=False, min_periods=26).mean()
    slow = close.ewm(span=26, adjust=False, min_periods=26).mean()
    line = (fast - slow) / close
    signal = line.ewm(span=9, adjust=False, min_periods=9).mean()
    return {"macd": line, "macd_signal": signal, "macd_hist": line - signal}


def _volume_zscore(volume: pd.DataFrame, window: int) -> pd.DataFrame:
    logvol = cast(pd.DataFrame, np.log1p(volume.where(volume >= 0)))
    rolling = logvol.rolling(window, min_periods=15)
    return (logvol - rolling.mean()) / rolling.std().replace(0.0, np.nan)


def _beta_and_residual_momentum(logret: pd.DataFrame, market: pd.Series) -> dict[str, pd.DataFrame]:
    # The market return is masked where the ticker has no return, so the covariance and the
    # variance are computed over exactly the same sessions for each ticker.
    market_wide = pd.DataFrame(
        np.broadcast_to(market.to_numpy()[:, None], logret.shape), index=logret.index, columns=logret.columns
    ).where(logret.notna())
    stock = logret.where(market_wide.notna())
    window, min_periods = TRADING_DAYS, 126
    cov = stock.rolling(window, min_periods=min_periods).cov(market_wide)
    var = market_wide.rolling(window, min_periods=min_periods).var()
    beta = cov / var.replace(0.0, np.nan)
    residual = stock - beta.shift(1) * market_wide
    momentum = residual.rolling(126, min_periods=100).sum()
    return {"beta_252d": beta, "resid_mom_126d": momentum}


def feature_frame_columns() -> list[str]:
    """Columns of the frame :func:`technical_features` returns."""
    return [TICKER, DATE, *(s.name for s in TECHNICAL_FEATURES)]
