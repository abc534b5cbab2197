"""The market regime (trend x volatility state of the benchmark), point in time: the one definition.

The allocation stage labels its backtest sessions with it, the ``market_regime`` feature view is
materialised from it, and the gateway's ``GET /v1/regime`` and monitoring read that view: every
reader gets the same labels from the same code.

At session t, with the benchmark's daily simple returns up to and including t (known at t's close):

* trend: the compound return over the last ``trend_window`` sessions (up, down, or flat at 0);
* volatility: the std (ddof=1) of the last ``vol_window`` daily returns, against the median of every
  such volatility up to t (an expanding median: "high" is judged against the history seen so far).

``bull`` when the trend is up and volatility is low (<= median); ``bear`` when the trend is down and
volatility is high; ``sideways`` otherwise; ``unknown`` until the trend has its window and the
median rests on ``vol_window`` volatilities. A label describes the past: it is no forecast, and it
never changes when later data change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

BULL: Final = "bull"
BEAR: Final = "bear"
SIDEWAYS: Final = "sideways"
UNKNOWN: Final = "unknown"
# Stored as integer codes in the feature view (index into this tuple); the order never changes.
REGIMES: Final[tuple[str, ...]] = (UNKNOWN, BULL, BEAR, SIDEWAYS)
TREND_STATES: Final[tuple[str, ...]] = ("unknown", "up", "down", "flat")
VOLATILITY_STATES: Final[tuple[str, ...]] = ("unknown", "low", "high")
TREND_WINDOW: Final = 126
VOL_WINDOW: Final = 63

DEFINITION: Final = (
    "trend: the benchmark's compound return over the last {trend} sessions (up > 0, down < 0); volatility: the "
    "std of its last {vol} daily returns, high when above the median of every such volatility up to the session "
    "(an expanding median). bull = up and not high; bear = down and high; sideways otherwise; unknown until both "
    "windows are full. Computed at each session's close from that session's data and earlier only."
)


class RegimeInputError(ValueError):
    """The benchmark series cannot be classified (missing, misaligned, non-finite, windows too short)."""


@dataclass(frozen=True, eq=False)
class RegimeSeries:
    """The classifier's inputs and labels, one value per session.

    Attributes:
        dates: the sessions, increasing, ``[n]`` (``datetime64[D]``).
        trend: compound return over the trailing ``trend_window`` sessions (NaN before it fills).
        volatility: std (ddof=1) of the trailing ``vol_window`` daily returns (NaN before it fills).
        volatility_median: expanding median of ``volatility`` (NaN until ``vol_window`` of them).
        labels: bull, bear, sideways or unknown.
        trend_window, vol_window: the windows used.
    """

    dates: npt.NDArray[np.datetime64]
    trend: npt.NDArray[np.float64]
    volatility: npt.NDArray[np.float64]
    volatility_median: npt.NDArray[np.float64]
    labels: npt.NDArray[np.str_]
    trend_window: int
    vol_window: int

    def trend_states(self) -> list[str]:
        """up, down, flat or unknown per session."""
        return [_trend_state(t) for t in self.trend]

    def volatility_states(self) -> list[str]:
        """low, high or unknown per session."""
        return [_vol_state(v, m) for v, m in zip(self.volatility, self.volatility_median, strict=True)]


def _trend_state(trend: float) -> str:
    if not np.isfinite(trend):
        return "unknown"
    return "up" if trend > 0 else "down" if trend < 0 else "flat"


def _vol_state(vol: float, median: float) -> str:
    if not (np.isfinite(vol) and np.isfinite(median)):
        return "unknown"
    return "high" if vol > median else "low"


def regime_series(
    benchmark_returns: npt.ArrayLike | None,
    dates: npt.ArrayLike,
    *,
    trend_window: int = TREND_WINDOW,
    vol_window: int = VOL_WINDOW,
) -> RegimeSeries:
    """The inputs and label of every session (see the module docstring for the rule).

    Args:
        benchmark_returns: the benchmark's daily simple returns (each > -1).
        dates: the sessions of those returns, strictly increasing; checked to line up with them.
        trend_window: sessions of the trailing trend (>= 1).
        vol_window: sessions of the trailing volatility (>= 2).

    Raises:
        RegimeInputError: no benchmark, returns and dates of different lengths, dates not
            increasing, windows too short, a non-finite return or one of -100% or worse.
    """
    b, days = _checked(benchmark_returns, dates, trend_window, vol_window)
    growth = np.concatenate([[0.0], np.cumsum(np.log1p(b))])
    trend = np.full(b.size, np.nan)
    if b.size >= trend_window:
        trend[trend_window - 1 :] = np.expm1(growth[trend_window:] - growth[:-trend_window])
    vol = pd.Series(b).rolling(vol_window).std(ddof=1)
    median = vol.expanding(min_periods=vol_window).median().to_numpy()
    vol_now = vol.to_numpy()
    labels = np.full(b.size, SIDEWAYS, dtype="<U8")
    labels[(trend > 0) & (vol_now <= median)] = BULL
    labels[(trend < 0) & (vol_now > median)] = BEAR
    labels[~(np.isfinite(trend) & np.isfinite(median))] = UNKNOWN
    return RegimeSeries(days, trend, vol_now, median, labels, trend_window, vol_window)


def classify_regimes(
    benchmark_returns: npt.ArrayLike | None,
    dates: npt.ArrayLike,
    *,
    trend_window: int = TREND_WINDOW,
    vol_window: int = VOL_WINDOW,
) -> npt.NDArray[np.str_]:
    """Label each session bull, bear, sideways or unknown from the benchmark's past alone."""
    return regime_series(benchmark_returns, dates, trend_window=trend_window, vol_window=vol_window).labels


def _checked(
    benchmark_returns: npt.ArrayLike | None, dates: npt.ArrayLike, trend_window: int, vol_window: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.datetime64]]:
    if benchmark_returns is None:
        raise RegimeInputError("regimes are read from the benchmark, and there is none")
    b = np.asarray(benchmark_returns, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise RegimeInputError(f"benchmark returns must be a non-empty 1-D series, got shape {b.shape}")
    bad = np.flatnonzero(~np.isfinite(b))
    if bad.size:
        raise RegimeInputError(
            f"benchmark returns hold {bad.size} non-finite value(s); the first is at position {int(bad[0])}"
        )
    days = np.asarray(dates, dtype="datetime64[D]")
    if days.shape != b.shape:
        raise RegimeInputError(f"{b.size} benchmark returns but {days.size} dates")
    if b.size > 1 and not (np.diff(days.astype(np.int64)) > 0).all():
        raise RegimeInputError("regime dates must be strictly increasing")
    if trend_window < 1 or vol_window < 2:
        raise RegimeInputError(f"trend_window must be >= 1 and vol_window >= 2, got {trend_window} and {vol_window}")
    if (b <= -1.0).any():
        raise RegimeInputError("a benchmark return of -100% or worse cannot be compounded")
    return b, days


def benchmark_returns(close: pd.Series) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.datetime64]]:
    """Daily simple returns of a benchmark's closing levels (indexed by date) and their sessions.

    Rows without a level are dropped (a level is the index as published: nothing is filled); the
    first session has no return and is left out.
    """
    level = close.dropna().astype("float64").sort_index()
    level = level[~level.index.duplicated(keep="last")]
    returns = level.pct_change().iloc[1:]
    values = np.asarray(returns.to_numpy(), dtype=np.float64)
    return values, np.asarray(returns.index, dtype="datetime64[D]")
