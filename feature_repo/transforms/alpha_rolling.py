"""The rolling operators of the Alpha158-style library, on sessions x tickers grids.

Each function takes wide frames (one row per session, one column per ticker) and returns a frame
of the same shape, computed for every ticker in one vectorised call. Every window is *full*: a
value needs ``w`` sessions with an input, so a NaN anywhere in the window gives NaN (Qlib computes
partial windows from the first bar on; a full window is the stricter, comparable choice). Nothing
looks forward: the value at row t uses rows t-w+1..t only.

Qlib's expressions (``qlib/contrib/data/loader.py``, ``Alpha158DL``) are the reference; each
function's docstring quotes the one it implements.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

# Qlib adds this to denominators that may be zero (a bar with high == low, a flat window).
EPS = 1e-12

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Window:
    """Rolling statistics over ``w`` sessions of every ticker of a grid, each in ONE pandas call.

    pandas rolls a DataFrame column by column (a Python-level call per ticker and statistic: most
    of the time at 2,400 tickers). Here the grid is flattened ticker after ticker into one series,
    with ``w - 1`` NaN rows ahead of each ticker, so no window reaches into the previous ticker,
    and each statistic is one Cython pass over the whole grid.
    """

    def __init__(self, frame: pd.DataFrame, w: int, min_periods: int | None = None) -> None:
        self._frame, self._w = frame, w
        self._min_periods = w if min_periods is None else min_periods
        self._rolling = self._flat(frame).rolling(w, min_periods=self._min_periods)

    def _flat(self, frame: pd.DataFrame) -> pd.Series:
        values = frame.to_numpy(dtype=np.float64)
        padded = np.full((values.shape[0] + self._w - 1, values.shape[1]), np.nan)
        padded[self._w - 1 :] = values
        return pd.Series(padded.ravel(order="F"))

    def _grid(self, flat: pd.Series) -> pd.DataFrame:
        rows = self._frame.shape[0] + self._w - 1
        values = flat.to_numpy(dtype=np.float64).reshape((rows, self._frame.shape[1]), order="F")
        return pd.DataFrame(values[self._w - 1 :], index=self._frame.index, columns=self._frame.columns)

    def mean(self) -> pd.DataFrame:
        return self._grid(self._rolling.mean())

    def sum(self) -> pd.DataFrame:
        return self._grid(self._rolling.sum())

    def std(self) -> pd.DataFrame:
        return self._grid(self._rolling.std())

    def var(self, ddof: int = 1) -> pd.DataFrame:
        return self._grid(self._rolling.var(ddof=ddof))

    def max(self) -> pd.DataFrame:
        return self._grid(self._rolling.max())

    def min(self) -> pd.DataFrame:
        return self._grid(self._rolling.min())

    def median(self) -> pd.DataFrame:
        return self._grid(self._rolling.median())

    def quantile(self, q: float) -> pd.DataFrame:
        return self._grid(self._rolling.quantile(q))

    def rank(self) -> pd.DataFrame:
        """Percentile of the last value among the window's (ties averaged), as Qlib's ``Rank``."""
        return self._grid(self._rolling.rank(pct=True))

    def cov(self, other: pd.DataFrame) -> pd.DataFrame:
        return self._grid(self._rolling.cov(self._flat(other)))


def full(frame: pd.DataFrame, w: int) -> Window:
    """Rolling statistics that need every one of the ``w`` sessions."""
    return Window(frame, w)


def keep(frame: pd.DataFrame, condition: pd.DataFrame | BoolArray, other: float = np.nan) -> pd.DataFrame:
    """``frame.where(condition, other)`` in numpy.

    pandas' ``where`` checks every column's dtype on each call: at thousands of tickers that cost
    more than the operators themselves.
    """
    mask = condition.to_numpy() if isinstance(condition, pd.DataFrame) else condition
    return _frame(np.where(mask, frame.to_numpy(dtype=np.float64), other), frame)


def safe_div(num: pd.DataFrame, den: pd.DataFrame) -> pd.DataFrame:
    """``num / den`` with NaN where ``den`` is not positive (a zero volume, a missing open)."""
    return num / keep(den, den.to_numpy() > 0)


def trend(close: pd.DataFrame, w: int) -> dict[str, pd.DataFrame]:
    """Linear trend of the close on time over ``w`` sessions.

    ``Slope($close, w)/$close``, ``Rsquare($close, w)`` and ``Resi($close, w)/$close``: the least
    squares line through (1, c_{t-w+1}) .. (w, c_t); the residual is that of today's close.
    Sums over lags are w vectorised passes over the grid, exact in float64 (no running sums).
    """
    y = close.to_numpy(dtype=np.float64)
    k = np.arange(w, dtype=np.float64) - (w - 1) / 2.0  # centred time, oldest first
    sxy = np.zeros_like(y)
    for lag in range(w):
        sxy += k[w - 1 - lag] * _shifted(y, lag)
    slope = sxy / float((k**2).sum())
    mean = full(close, w).mean().to_numpy()
    var = full(close, w).var(ddof=0).to_numpy()
    fitted_today = mean + slope * k[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        rsqr = np.where(var > 0, slope**2 * float((k**2).mean()) / var, np.nan)
    resi = y - fitted_today
    return {
        "beta": _frame(slope, close) / close,
        "rsqr": _frame(np.clip(rsqr, 0.0, 1.0), close),
        "resi": _frame(resi, close) / close,
    }


def _shifted(y: FloatArray, lag: int) -> FloatArray:
    """``y`` moved down ``lag`` rows (NaN on top): row t holds y[t - lag]."""
    if lag == 0:
        return y
    out = np.full_like(y, np.nan)
    out[lag:] = y[:-lag]
    return out


def _frame(values: FloatArray, like: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(values, index=like.index, columns=like.columns)


def position_of_extreme(values: pd.DataFrame, w: int, *, highest: bool) -> pd.DataFrame:
    """``IdxMax(x, w)`` / ``IdxMin(x, w)``: 1-based position of the first extreme in the window.

    Position 1 is the oldest session of the window, ``w`` today. One pass per position over the
    whole grid (a strict comparison keeps the first of equal extremes, as ``argmax`` does), in
    place of ``argmax`` over a sliding-window view, which is strided and needs a (T, N, w) copy.
    """
    y = values.to_numpy(dtype=np.float64)
    best = _shifted(y, w - 1)  # the oldest value of each window
    position = np.zeros_like(y)
    incomplete = np.isnan(best)
    for j in range(1, w):
        candidate = _shifted(y, w - 1 - j)
        better = candidate > best if highest else candidate < best
        best = np.where(better, candidate, best)
        position[better] = j
        incomplete |= np.isnan(candidate)
    return _frame(np.where(incomplete, np.nan, position + 1.0), values)


def ups_and_downs(series: pd.DataFrame, w: int, prefix: str) -> dict[str, pd.DataFrame]:
    """Shares of rises and falls: ``Sum(Greater(d, 0), w) / (Sum(Abs(d), w) + 1e-12)``.

    ``d`` is the session's change of ``series``; gives ``{prefix}p``, ``{prefix}n`` and
    ``{prefix}d`` (their difference), as Qlib's SUMP/SUMN/SUMD and VSUMP/VSUMN/VSUMD.
    """
    change = series.diff()
    total = full(change.abs(), w).sum() + EPS
    up = full(change.clip(lower=0.0), w).sum() / total
    down = full((-change).clip(lower=0.0), w).sum() / total
    return {f"{prefix}p": up, f"{prefix}n": down, f"{prefix}d": up - down}


def counts(close: pd.DataFrame, w: int) -> dict[str, pd.DataFrame]:
    """``Mean($close>Ref($close,1), w)`` and its fall twin: CNTP, CNTN and CNTD."""
    change = close.diff()
    valid = change.notna()
    rise = keep((change > 0).astype(np.float64), valid)
    fall = keep((change < 0).astype(np.float64), valid)
    p, n = full(rise, w).mean(), full(fall, w).mean()
    return {"cntp": p, "cntn": n, "cntd": p - n}


def correlation(a: pd.DataFrame, b: pd.DataFrame, w: int) -> pd.DataFrame:
    """``Corr(a, b, w)`` of matching columns; NaN (not inf) over a window where either is flat."""
    both = a.notna() & b.notna()
    a, b = keep(a, both), keep(b, both)
    cov = full(a, w).cov(b)
    var_a, var_b = full(a, w).var(), full(b, w).var()
    corr = cov / np.sqrt(keep(var_a, var_a.to_numpy() > 0) * keep(var_b, var_b.to_numpy() > 0))
    return cast(pd.DataFrame, corr.clip(-1.0, 1.0))


def log_volume_change(volume: pd.DataFrame) -> pd.DataFrame:
    """``Log($volume/Ref($volume, 1)+1)``; NaN where the previous volume is zero."""
    previous = volume.shift(1)
    return cast(pd.DataFrame, np.log(volume / keep(previous, previous.to_numpy() > 0) + 1.0))
