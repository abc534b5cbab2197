"""Realised outcomes (forward returns and labels) from daily adjusted closes.

**Outcomes look forward by design.** The outcome of the bar at session t is the return from t to
the session h sessions later, t+h, so it is unknown until that session's close. Every row
therefore carries ``known_at`` = t+h, the session the outcome becomes known, and no training row,
fold or monitoring job may use an outcome before its ``known_at`` (join point-in-time on it; purge
and embargo walk-forward folds by it). This module is the one place that is allowed to shift
prices backwards in time; what it guarantees is the timestamping: an outcome at t
uses prices in [t, t+h] only, never a price after t+h.

Pure and vectorised on a sessions x tickers grid, like the feature transforms. "Sessions" are
those of the market calendar (the union of every ticker's bars and the benchmark's sessions), so a
21-session horizon spans the same 21 sessions for every ticker. A missing bar at t+h is bridged
with *that ticker's* last price at most ``max_gap_sessions`` before t+h; otherwise, and for a
delisted ticker, there is no outcome. Nothing is filled across tickers or back-filled. With the
exchange's sessions given, a session missing from the data still counts towards h. Series breaks
split a ticker's history into segments: no outcome runs from one segment into the next.

Columns of the frame :func:`forward_outcomes` returns, in order: ``ticker``, ``date``,
``known_at``, then :func:`feature_repo.schema.outcome_fields` for the horizon: ``fwd_ret_{h}d``,
``fwd_excess_{h}d``, ``label_{h}d`` and, only when a benchmark is given, ``fwd_bench_ret_{h}d``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.schema import OUTCOME_HORIZON, outcome_fields
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.panel import cut_at_ends, grid, restore_tickers, split_at_breaks, to_long, to_wide

MAX_GAP_SESSIONS = 5
KNOWN_AT = "known_at"


# Over 60 lines (tests/test_architecture.py LONG_FUNCTIONS) by its docstring, the outcome contract; the code is 28.
def forward_outcomes(
    prices: pd.DataFrame,
    benchmark: pd.Series | None = None,
    *,
    horizon: int = OUTCOME_HORIZON,
    max_gap_sessions: int = MAX_GAP_SESSIONS,
    sessions: pd.Index | None = None,
    breaks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Forward returns, excess returns over the cross-sectional median, and binary labels.

    For each bar (ticker, t): ``fwd_ret`` = price at t+h / price at t - 1; ``fwd_excess`` =
    ``fwd_ret`` minus the median ``fwd_ret`` of the tickers that have one on t; ``label`` = 1 when
    ``fwd_excess`` > 0, else 0 (so with an odd number of tickers the median ticker is labelled 0).

    Args:
        prices: rows with at least ``ticker``, ``date`` and ``adj_close``.
        benchmark: optional benchmark level indexed by date; adds its sessions to the calendar
            and a ``fwd_bench_ret_{h}d`` column.
        horizon: h, the number of market sessions ahead.
        max_gap_sessions: how many sessions before t+h a ticker's own last price may come from
            when it has no bar at t+h.
        sessions: the exchange's sessions, in place of the benchmark's dates, so that h counts
            sessions the exchange was open even where the data holds no rows (``None``: the data's
            and the benchmark's dates). Pass bars on sessions only.
        breaks: series breaks (:data:`feature_repo.tables.SERIES_BREAK_COLUMNS`): a bar before a
            break whose t+h is at or after it has no outcome, and the bars from the break on are
            labelled from their own segment only.

    Returns:
        One row per bar that has a forward return, sorted by ticker and date: ``ticker``,
        ``date``, ``known_at`` (the session t+h) and the outcome columns in the order of
        :func:`outcome_frame_columns`. Bars in the last ``horizon`` sessions of the calendar, or
        whose ticker has no price at or shortly before t+h, have no row.

    Raises:
        ValueError: if ``horizon`` < 1 or ``max_gap_sessions`` < 0.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least one session, got {horizon}")
    if max_gap_sessions < 0:
        raise ValueError(f"max_gap_sessions must be >= 0, got {max_gap_sessions}")
    extra = None if benchmark is None else pd.DatetimeIndex(benchmark.dropna().index)
    if sessions is not None:
        extra = pd.DatetimeIndex(sessions)  # a benchmark row on a day the exchange was closed is no session
    segments = split_at_breaks(prices, breaks)
    dates, tickers = grid(segments.frame, extra)
    close = to_wide(segments.frame, "adj_close", dates, tickers)

    # The start price is the bar at t itself (never a filled one), and the end price is the last
    # price at or before t+h within the bridge; since the bar at t exists, that end price always
    # lies in [t, t+h]. A segment's bridge stops at the break that ends it.
    fwd_ret = cut_at_ends(_bridge(close, max_gap_sessions), segments).shift(-horizon) / close - 1.0
    has_outcome = fwd_ret.notna()
    # Every return in the median ends at the same session t+h, so the excess is known at t+h too.
    excess = fwd_ret.sub(fwd_ret.median(axis=1), axis=0)
    label = (excess > 0.0).astype("float64").where(has_outcome)

    h = horizon
    computed = {f"fwd_ret_{h}d": fwd_ret, f"fwd_excess_{h}d": excess, f"label_{h}d": label}
    if benchmark is not None:
        computed[f"fwd_bench_ret_{h}d"] = _benchmark_outcome(benchmark, dates, tickers, h, max_gap_sessions)
    specs = outcome_fields(h, with_benchmark=benchmark is not None)
    ordered = {s.name: computed[s.name] for s in specs}
    out = to_long(ordered, has_outcome, {s.name: s.dtype for s in specs})
    out.insert(2, KNOWN_AT, _sessions_ahead(dates, pd.DatetimeIndex(out[DATE]), horizon).to_numpy())
    return restore_tickers(out, segments)


def _bridge(levels: pd.DataFrame, max_gap_sessions: int) -> pd.DataFrame:
    """Carry each column's own last value forward over at most ``max_gap_sessions`` sessions."""
    # pandas refuses limit=0; no bridge at all is simply the levels themselves.
    return levels.ffill(limit=max_gap_sessions) if max_gap_sessions > 0 else levels


def _benchmark_outcome(
    benchmark: pd.Series, dates: pd.DatetimeIndex, tickers: pd.Index, horizon: int, max_gap_sessions: int
) -> pd.DataFrame:
    """The benchmark's forward return on each session, broadcast to every ticker's column."""
    bench = benchmark.reindex(dates).astype("float64").to_frame()
    ret = (_bridge(bench, max_gap_sessions).shift(-horizon) / bench - 1.0).to_numpy()
    return pd.DataFrame(np.broadcast_to(ret, (len(dates), len(tickers))), index=dates, columns=tickers)


def _sessions_ahead(calendar: pd.DatetimeIndex, dates: pd.DatetimeIndex, horizon: int) -> pd.DatetimeIndex:
    """The calendar session ``horizon`` sessions after each of ``dates`` (all in ``calendar``)."""
    return calendar[calendar.get_indexer(dates) + horizon]


def outcome_frame_columns(horizon: int = OUTCOME_HORIZON, *, with_benchmark: bool = False) -> list[str]:
    """Columns of the frame :func:`forward_outcomes` returns for ``horizon``."""
    specs = outcome_fields(horizon, with_benchmark=with_benchmark)
    return [TICKER, DATE, KNOWN_AT, *(s.name for s in specs)]


# The cross-sectional labels of issue 18: what the signal models learn is how a name ranks against
# the other names of the same date, not the market's level that month. They, and the binary label
# beside them, are computed per date over exactly the rows passed in, so the caller decides the
# cross-section (the point-in-time universe's members of that date: restrict first, then label).
# Every row of a date shares the date's ``known_at`` (t+h), so a row's label is known when its own
# outcome is: no look-ahead.
CROSS_SECTIONAL_LABELS = ("rank", "zscore", "raw")


def label_column(kind: str, horizon: int = OUTCOME_HORIZON) -> str:
    """The outcome column holding the ``kind`` label (rank, zscore or raw) at ``horizon``.

    Raises:
        ValueError: an unknown kind, naming the known ones.
    """
    columns = {"rank": f"xs_rank_{horizon}d", "zscore": f"xs_z_{horizon}d", "raw": f"fwd_excess_{horizon}d"}
    if kind not in columns:
        raise ValueError(f"unknown label kind '{kind}'; known kinds: {', '.join(CROSS_SECTIONAL_LABELS)}")
    return columns[kind]


def cross_sectional_labels(outcomes: pd.DataFrame, horizon: int = OUTCOME_HORIZON) -> pd.DataFrame:
    """``outcomes`` with the per-date rank and z-score of ``fwd_excess_{h}d`` added, and the binary label redone.

    * ``xs_rank_{h}d``: the centred percentile rank within the date, ``(rank - 0.5) / n - 0.5``, in
      (-0.5, 0.5) with mean 0 (ties share their average rank; a date with one row gets 0);
    * ``xs_z_{h}d``: ``(x - mean) / std`` within the date (population std; 0 where it is 0);
    * ``label_{h}d`` (replaced, or added): 1 when ``x`` is above the date's median, else 0, as
      :func:`forward_outcomes` defines it but over these rows, so with an odd count the median row
      is 0 and a date with one row gets 0; NaN (and the column float) where ``x`` is missing.

    Rows are compared only with rows of the same date in ``outcomes``: pass the members of the
    point-in-time universe only, and a non-member can never move a member's label. Without a
    universe (every ticker's rows passed) the binary label equals :func:`forward_outcomes`' own.

    Raises:
        ValueError: ``outcomes`` lacks ``date`` or the horizon's excess return.
    """
    source = f"fwd_excess_{horizon}d"
    missing = [c for c in (DATE, source) if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lack column(s) {missing} for the {horizon}-session cross-sectional labels")
    out = outcomes.copy()
    values = out[source].astype("float64")
    by_date = values.groupby(out[DATE], sort=False)
    count = by_date.transform("count").to_numpy()
    rank = by_date.rank(method="average").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"xs_rank_{horizon}d"] = np.where(count > 0, (rank - 0.5) / count - 0.5, np.nan)
        std = by_date.transform("std", ddof=0).to_numpy()
        centred = values.to_numpy() - by_date.transform("mean").to_numpy()
        out[f"xs_z_{horizon}d"] = np.where(std > 0, centred / np.where(std > 0, std, 1.0), 0.0)
    out.loc[values.isna(), [f"xs_rank_{horizon}d", f"xs_z_{horizon}d"]] = np.nan
    # ``fwd_excess`` is the return less the median of *every* ticker with an outcome (forward_outcomes
    # sees no universe); a per-date shift, so "above the members' median of fwd_excess" is "above
    # the members' median of fwd_ret", and a non-member's return moves neither side.
    above = (values.to_numpy() > by_date.transform("median").to_numpy()).astype("int64")
    unknown = values.isna().to_numpy()
    out[f"label_{horizon}d"] = np.where(unknown, np.nan, above) if unknown.any() else above
    return out
