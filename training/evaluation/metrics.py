"""Signal quality of a model's scores against realised outcomes: AUC, IC, rank IC, quintile spread.

Input is a *long* frame, one row per ``(date, ticker)``: ``score`` (higher = more bullish),
``target`` (the forward excess return over h sessions, see
:mod:`feature_repo.transforms.outcomes`) and ``label`` (1 when ``target`` > 0, else 0).

**Cross-sectional, per date.** IC, rank IC and the quintile spread are computed within each date
and then averaged over dates, never pooled: a pooled correlation rewards a score that merely tracks
the market's level through time, which a long-only ranker cannot trade.

**Honest t-statistics.** The targets span h sessions, so the targets of consecutive dates share
h-1 sessions of returns and the per-date series are autocorrelated up to lag h-1. The textbook
t-statistic ``mean / (std / sqrt(n))`` treats them as independent and overstates significance by
up to ``sqrt(h)``. Two honest alternatives are reported:

* ``*_t_nw``: the mean over every evaluated date divided by its Newey–West (HAC) standard error
  with ``h - 1`` lags and Bartlett weights (:func:`newey_west_tstat`).
* ``*_t_nonoverlap``: the textbook t-statistic on every h-th evaluated date only, whose targets
  do not overlap (fewer observations, but no autocorrelation from overlap).

Both treat the evaluated dates as consecutive; a gap in the calendar does not reset the lags.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import roc_auc_score

from feature_repo.significance import newey_west_tstat
from feature_repo.tables import DATE, TICKER
from training.errors import TrainingError

SCORE: Final = "score"
TARGET: Final = "target"
LABEL: Final = "label"
SESSIONS_PER_YEAR: Final = 252
N_QUANTILES: Final = 5
N_DECILES: Final = 10

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SignalMetrics:
    """Signal quality of one model (or baseline) over an evaluation window.

    Per-date statistics use only *evaluated dates*: dates with at least ``min_tickers`` tickers
    whose scores and targets are not all equal (a correlation is undefined otherwise).

    Attributes:
        horizon: h, the target horizon in sessions.
        n_obs: rows used (after dropping rows with a missing score, target or label).
        n_dates: evaluated dates.
        n_dates_nonoverlap: evaluated dates in the non-overlapping subsample (every h-th one).
        auc: pooled ROC AUC of score against label over all rows; NaN when only one class occurs.
        ic_mean: mean over dates of the per-date Pearson correlation of score and target.
        ic_std: standard deviation (ddof=1) of the per-date IC.
        ic_ir: ``ic_mean / ic_std``, per date.
        ic_ir_ann: ``ic_ir * sqrt(252 / h)``, annualised as if one independent bet every h sessions.
        ic_t_nw: ``ic_mean`` over its Newey–West standard error, h-1 lags, Bartlett weights.
        ic_t_nonoverlap: textbook t-statistic of the IC on every h-th evaluated date.
        rank_ic_mean: as ``ic_mean`` with the Spearman (rank) correlation, ties at average rank;
            likewise ``rank_ic_std``, ``rank_ic_ir``, ``rank_ic_ir_ann``, ``rank_ic_t_nw`` and
            ``rank_ic_t_nonoverlap``.
        quintile_spread: mean over dates of (mean target of the top score quintile minus mean
            target of the bottom quintile); quintiles by ``pd.qcut`` of the score rank, ties in
            score broken by ticker order. In target units (an h-session excess return).
        quintile_spread_t_nw: Newey–West t-statistic of the quintile spread, h-1 lags.
        decile_spread: as ``quintile_spread`` with deciles (top 10% minus bottom 10%).
        decile_spread_t_nw: its Newey–West t-statistic, h-1 lags.
        hit_rate: share of evaluated dates with a positive rank IC.
    """

    horizon: int
    n_obs: int
    n_dates: int
    n_dates_nonoverlap: int
    auc: float
    ic_mean: float
    ic_std: float
    ic_ir: float
    ic_ir_ann: float
    ic_t_nw: float
    ic_t_nonoverlap: float
    rank_ic_mean: float
    rank_ic_std: float
    rank_ic_ir: float
    rank_ic_ir_ann: float
    rank_ic_t_nw: float
    rank_ic_t_nonoverlap: float
    quintile_spread: float
    quintile_spread_t_nw: float
    decile_spread: float
    decile_spread_t_nw: float
    hit_rate: float

    def to_dict(self) -> dict[str, float | int]:
        """Every field by name, e.g. to log as MLflow metrics."""
        return asdict(self)


def signal_metrics(frame: pd.DataFrame, horizon: int, *, min_tickers: int = 5) -> SignalMetrics:
    """AUC, IC, rank IC, quintile spread and hit rate of ``score`` against realised outcomes.

    Rows with a missing score, target or label are dropped first. See the module docstring for
    why the statistics are per date and how the t-statistics account for overlapping targets.

    Args:
        frame: long frame with ``date``, ``ticker``, ``score``, ``target`` and ``label`` (0/1).
        horizon: h, the number of sessions each target spans (>= 1); sets the Newey–West lags
            (h-1), the non-overlapping subsample (every h-th date) and the annualisation.
        min_tickers: dates with fewer tickers are not evaluated (>= 2).

    Returns:
        The metrics; per-date statistics are NaN when fewer than two dates are evaluated.

    Raises:
        TrainingError: a missing column, a label other than 0/1, a duplicated (date, ticker),
            ``horizon`` < 1, ``min_tickers`` < 2, or no usable row.
    """
    data = _clean(frame, horizon, min_tickers)
    per_date = per_date_statistics(data, min_tickers=min_tickers)
    spread = per_date["quintile_spread"].to_numpy(np.float64)
    deciles = per_date["decile_spread"].dropna().to_numpy(np.float64)  # NaN on dates with < 10 names
    labels = data[LABEL].to_numpy()
    auc = float(roc_auc_score(labels, data[SCORE].to_numpy())) if np.unique(labels).size == 2 else math.nan
    return SignalMetrics(
        horizon=horizon,
        n_obs=len(data),
        n_dates=len(per_date),
        n_dates_nonoverlap=len(per_date.iloc[::horizon]),
        auc=auc,
        **_series_stats("ic", per_date["ic"].to_numpy(np.float64), horizon),
        **_series_stats("rank_ic", per_date["rank_ic"].to_numpy(np.float64), horizon),
        quintile_spread=float(spread.mean()) if spread.size else math.nan,
        quintile_spread_t_nw=newey_west_tstat(spread, horizon - 1),
        decile_spread=float(deciles.mean()) if deciles.size else math.nan,
        decile_spread_t_nw=newey_west_tstat(deciles, horizon - 1),
        hit_rate=float((per_date["rank_ic"] > 0).mean()) if len(per_date) else math.nan,
    )


def per_date_statistics(frame: pd.DataFrame, *, min_tickers: int = 5) -> pd.DataFrame:
    """Per evaluated date: IC, rank IC, quintile and decile spreads and the number of tickers.

    Vectorised (no Python loop over dates); on its own it feeds a rolling-IC (alpha decay) chart.

    Args:
        frame: long frame with ``date``, ``ticker``, ``score`` and ``target``, no missing values.
        min_tickers: dates with fewer tickers are skipped.

    Returns:
        Frame indexed by evaluated date (ascending) with ``ic``, ``rank_ic``, ``quintile_spread``,
        ``decile_spread`` and ``n_tickers``.
    """
    data = frame.sort_values([DATE, TICKER], kind="stable").reset_index(drop=True)
    grouped = data.groupby(DATE, sort=True)
    size = grouped[SCORE].transform("size")
    # A constant score (or target) has no ranking to correlate: such a date is not evaluated.
    varies = (grouped[SCORE].transform("max") > grouped[SCORE].transform("min")) & (
        grouped[TARGET].transform("max") > grouped[TARGET].transform("min")
    )
    keep = (size >= min_tickers) & varies
    if not keep.any():
        raise TrainingError(
            f"no date has at least {min_tickers} tickers with varying scores and targets "
            f"({data[DATE].nunique()} date(s), at most {int(size.max()) if len(size) else 0} ticker(s) on one): "
            "a universe this small cannot be evaluated"
        )
    n_tickers = size[keep].to_numpy().astype(np.int64)
    data = data.loc[keep].reset_index(drop=True)
    grouped = data.groupby(DATE, sort=True)
    dates = data[DATE]
    codes = grouped.ngroup().to_numpy().astype(np.int64)
    score_first, score_avg = group_ranks(codes, data[SCORE].to_numpy(np.float64))
    _, target_avg = group_ranks(codes, data[TARGET].to_numpy(np.float64))
    ic = _group_corr(dates, data[SCORE], data[TARGET])
    rank_ic = _group_corr(dates, pd.Series(score_avg), pd.Series(target_avg))
    bucket = pd.Series(_quantile_bucket(score_first, n_tickers, N_QUANTILES), index=data.index)
    target = data[TARGET]
    top = target.where(bucket == N_QUANTILES - 1).groupby(dates, sort=True).mean()
    bottom = target.where(bucket == 0).groupby(dates, sort=True).mean()
    deciles = pd.Series(_quantile_bucket(score_first, n_tickers, N_DECILES), index=data.index)
    top10 = target.where(deciles == N_DECILES - 1).groupby(dates, sort=True).mean()
    bottom10 = target.where(deciles == 0).groupby(dates, sort=True).mean()
    out = pd.DataFrame(
        {"ic": ic, "rank_ic": rank_ic, "quintile_spread": top - bottom, "decile_spread": top10 - bottom10}
    )
    out["n_tickers"] = grouped.size()
    out.index.name = DATE
    return out


def naive_tstat(values: npt.ArrayLike) -> float:
    """Textbook t-statistic ``mean / (std(ddof=1) / sqrt(n))``; NaN with < 2 values or zero spread."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return math.nan
    std = float(x.std(ddof=1))
    return float(x.mean() / (std / math.sqrt(x.size))) if std > 0 else math.nan


def _series_stats(name: str, series: FloatArray, horizon: int) -> dict[str, float]:
    """``{name}_mean``, ``_std``, ``_ir``, ``_ir_ann``, ``_t_nw`` and ``_t_nonoverlap`` of a per-date series."""
    mean = float(series.mean()) if series.size else math.nan
    std = float(series.std(ddof=1)) if series.size > 1 else math.nan
    ir = mean / std if std > 0 else math.nan
    return {
        f"{name}_mean": mean,
        f"{name}_std": std,
        f"{name}_ir": ir,
        f"{name}_ir_ann": ir * math.sqrt(SESSIONS_PER_YEAR / horizon),
        f"{name}_t_nw": newey_west_tstat(series, horizon - 1),
        f"{name}_t_nonoverlap": naive_tstat(series[::horizon]),
    }


def _group_corr(keys: pd.Series, x: pd.Series, y: pd.Series) -> pd.Series:
    """Pearson correlation of x and y within each key, sorted by key."""
    frame = pd.DataFrame({"key": keys.to_numpy(), "x": x.to_numpy(np.float64), "y": y.to_numpy(np.float64)})
    grouped = frame.groupby("key", sort=True)
    xc = frame["x"] - grouped["x"].transform("mean")
    yc = frame["y"] - grouped["y"].transform("mean")
    sums = pd.DataFrame({"key": frame["key"], "xy": xc * yc, "xx": xc * xc, "yy": yc * yc}).groupby("key").sum()
    corr: pd.Series = (sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])).clip(-1.0, 1.0)
    corr.index.name = DATE
    return corr


def _quantile_bucket(rank: IntArray, size: IntArray, q: int) -> IntArray:
    """The ``pd.qcut(rank, q, labels=False)`` bucket of distinct ranks 1..n, in integer arithmetic.

    qcut's edges on ranks 1..n are ``1 + i (n - 1) / q``; a rank r > 1 falls in bucket
    ``ceil(q (r - 1) / (n - 1)) - 1`` and rank 1 in bucket 0. Integer ceilings keep the edges
    exact, so a rank sitting on an edge lands where qcut puts it (the lower bucket).
    """
    bucket = -((-q * (rank - 1)) // np.maximum(size - 1, 1)) - 1
    return np.clip(bucket, 0, q - 1)


def group_ranks(codes: IntArray, values: FloatArray) -> tuple[IntArray, FloatArray]:
    """1-based ranks of ``values`` within each group code, as pandas' ``rank`` would give them.

    One stable sort replaces pandas' group-wise rank, several times faster on millions of rows.

    Returns:
        ``(first, average)``: ties broken by position (``method="first"``), and ties at the mean
        of their ranks (``method="average"``).
    """
    order = np.lexsort((values, codes))
    code, value = codes[order], values[order]
    n = order.size
    new_group = np.r_[True, code[1:] != code[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    sorted_first = np.arange(n) - group_start + 1
    run = np.cumsum(new_group | np.r_[True, value[1:] != value[:-1]]) - 1
    sorted_average = (np.bincount(run, weights=sorted_first) / np.bincount(run))[run]
    first, average = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64)
    first[order], average[order] = sorted_first, sorted_average
    return first, average


def _clean(frame: pd.DataFrame, horizon: int, min_tickers: int) -> pd.DataFrame:
    """Check the parameters and the frame's columns; drop incomplete rows."""
    if horizon < 1:
        raise TrainingError(f"horizon must be at least one session, got {horizon}")
    if min_tickers < 2:
        raise TrainingError(f"min_tickers must be at least 2 for a correlation, got {min_tickers}")
    missing = [c for c in (DATE, TICKER, SCORE, TARGET, LABEL) if c not in frame.columns]
    if missing:
        raise TrainingError(f"prediction frame lacks column(s) {missing}; it has {list(frame.columns)}")
    data = frame[[DATE, TICKER, SCORE, TARGET, LABEL]].dropna()
    if data.empty:
        raise TrainingError("prediction frame has no row with a score, a target and a label")
    bad = ~data[LABEL].isin([0, 1])
    if bad.any():
        raise TrainingError(f"column '{LABEL}' must be 0 or 1; found {sorted(set(data.loc[bad, LABEL]))[:5]}")
    duplicated = data.duplicated([DATE, TICKER])
    if duplicated.any():
        first = data.loc[duplicated].iloc[0]
        raise TrainingError(f"({DATE}, {TICKER}) must be unique; ({first[DATE]}, {first[TICKER]}) repeats")
    return data.astype({SCORE: "float64", TARGET: "float64", LABEL: "int64"})
