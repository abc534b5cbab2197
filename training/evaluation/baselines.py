"""Point-in-time baseline scores that every signal model must beat, from a wide frame of closes.

Input: adjusted closes, index = sessions (ascending), columns = tickers, NaN before a ticker's
first bar and after its last. A score at session t uses closes at or before t only (shifts move
the past forward, never the future back), and a ticker without a bar at t gets no score at t, so
a delisted ticker is never ranked on stale prices. Output is long: ``date``, ``ticker``, ``score``,
rows without enough history dropped, sorted by date then ticker, ready for
:func:`training.evaluation.topk.topk_backtest` or to be joined to outcomes for
:func:`training.evaluation.metrics.signal_metrics`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, TICKER
from training.errors import TrainingError
from training.evaluation.metrics import SCORE


def momentum_12_1(close: pd.DataFrame, *, lookback: int = 252, skip: int = 21) -> pd.DataFrame:
    """Twelve-minus-one-month momentum: ``close[t - skip] / close[t - lookback] - 1``.

    The most recent month is skipped because one-month returns tend to reverse (Jegadeesh 1990),
    which would muddy the trend signal.

    Args:
        close: wide adjusted closes (sessions x tickers).
        lookback: sessions back to the start of the window (252, about a year).
        skip: sessions back to the end of the window (21, about a month); 0 <= skip < lookback.

    Returns:
        Long ``date, ticker, score``; rows lacking ``lookback`` sessions of history are dropped.

    Raises:
        TrainingError: a malformed close frame or window.
    """
    check_close(close)
    if not 0 <= skip < lookback:
        raise TrainingError(f"momentum needs 0 <= skip < lookback, got skip={skip}, lookback={lookback}")
    score = close.shift(skip) / close.shift(lookback) - 1.0
    return _to_long(score, close)


def short_term_reversal(close: pd.DataFrame, *, window: int = 21) -> pd.DataFrame:
    """One-month reversal: ``-(close[t] / close[t - window] - 1)``; last month's losers score high.

    Args:
        close: wide adjusted closes (sessions x tickers).
        window: sessions in the look-back (21, about a month); >= 1.

    Returns:
        Long ``date, ticker, score``; rows lacking ``window`` sessions of history are dropped.

    Raises:
        TrainingError: a malformed close frame or window.
    """
    check_close(close)
    if window < 1:
        raise TrainingError(f"window must be at least one session, got {window}")
    score = -(close / close.shift(window) - 1.0)
    return _to_long(score, close)


def _to_long(score: pd.DataFrame, close: pd.DataFrame) -> pd.DataFrame:
    """Stack a wide score frame, keeping only tickers with a bar at t and a finite score."""
    values = score.to_numpy(np.float64, na_value=np.nan)
    # A ticker without a bar at t (not yet listed, or delisted) cannot be traded at t.
    rows, cols = np.nonzero(np.isfinite(values) & close.notna().to_numpy())
    out = pd.DataFrame(
        {
            DATE: pd.DatetimeIndex(score.index[rows]),
            TICKER: score.columns[cols].astype(str),
            SCORE: values[rows, cols],
        }
    )
    return out.sort_values([DATE, TICKER], kind="stable").reset_index(drop=True)


def check_close(close: pd.DataFrame) -> None:
    """Refuse a close frame that positional shifts would misread.

    Raises:
        TrainingError: the index is not unique ascending session dates, or tickers repeat.
    """
    if not isinstance(close.index, pd.DatetimeIndex):
        raise TrainingError(f"close must be indexed by session dates, got {type(close.index).__name__}")
    if not close.index.is_monotonic_increasing or not close.index.is_unique:
        raise TrainingError("close index must hold unique sessions in ascending order")
    if not close.columns.is_unique:
        raise TrainingError("close columns (tickers) must be unique")
