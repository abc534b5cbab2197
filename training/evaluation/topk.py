"""Long-only top-k backtest of a score, net of trading costs, with an execution lag.

Timing, in sessions of the close frame's index:

* **Signal.** Rebalance signal dates are every ``rebalance_every`` sessions from the first session
  in ``[start, end]`` that has a score. A signal at t uses the scores dated t (known at t's close).
* **Execution lag.** The book is traded at the close of ``t + execution_lag`` (>= 1: trading at
  the close that produced the signal would be look-ahead), and the new weights earn returns from
  the session after. A rebalance whose trade session falls after ``end`` is not made.
* **Selection.** Equal weights ``1/k`` on the k highest scores at t among tickers that also have a
  bar on the trade session (a ticker delisted in between cannot be bought); ties go to the ticker
  that comes first in ``close.columns``.
* **Drift.** Between rebalances weights drift with prices; uninvested weight is cash earning 0.
  After a ticker's last bar its position is carried at its last close (return 0) until the next
  rebalance sells it: the data hold no delisting return.
* **Costs.** At each trade, turnover = sum over tickers of ``|w_target - w_drifted|`` (one-way:
  buys and sells both count, so switching a fully invested book is 2.0 and the first buy from cash
  is 1.0) and the cost ``turnover * cost_per_side`` is charged on that close's equity:
  ``net = (1 + gross) * (1 - turnover * cost_per_side) - 1``, which is ``gross - cost`` to first
  order and exactly ``-cost`` on a day without price moves. ``cost_per_side`` is a fraction (10 bps
  = 0.001, :attr:`training.evaluation.config.CostConfig.per_side_fraction`).

Daily returns start on the first trade session (that day's return is minus the first buy's cost)
and run to the last session at or before ``end``. Everything is numpy over the ticker axis; the
only Python loop is over sessions, so 2,400 tickers x 750 sessions take well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.tables import DATE, TICKER
from training.errors import TrainingError
from training.evaluation.baselines import check_close
from training.evaluation.metrics import SCORE, SESSIONS_PER_YEAR

DateBound = date | datetime | str | pd.Timestamp | None
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Turnover is at most 2, so a cost per side of 0.5 or more would wipe out the book in one trade:
# such a value is almost surely basis points passed where a fraction was meant.
MAX_COST_PER_SIDE: Final = 0.5


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """What a backtest did and earned.

    Attributes:
        returns: daily net returns (after costs), indexed by session.
        gross_returns: daily returns before costs.
        turnover: one-way turnover of each rebalance, indexed by its trade session.
        weights: target weights set at each rebalance (rows: trade sessions; columns: the tickers
            ever held).
        signal_dates: the signal date of each rebalance, indexed by its trade session.
        cost_per_side: the cost charged per unit of turnover, as a fraction (with costs by
            liquidity: the brokerage, the part every trade pays).
        costs: the cost charged at each rebalance as a fraction of that close's equity, indexed by
            its trade session; None means ``turnover * cost_per_side``.
    """

    returns: pd.Series
    gross_returns: pd.Series
    turnover: pd.Series
    weights: pd.DataFrame
    signal_dates: pd.Series
    cost_per_side: float
    costs: pd.Series | None = None

    def metrics(self) -> dict[str, float]:
        """Summary statistics of the net returns, with n the number of daily returns.

        * ``ann_return``: compound, ``prod(1 + r) ** (252 / n) - 1``.
        * ``ann_vol``: ``std(r, ddof=1) * sqrt(252)``.
        * ``sharpe``: ``mean(r) * 252 / ann_vol``, with a risk-free rate of 0.
        * ``max_drawdown``: the worst fall of the compounded net equity from its running peak,
          starting from 1.0 before the first day (a negative number, 0 if it never fell).
        * ``avg_turnover``: mean one-way turnover per rebalance, the initial buy (1.0) included.
        * ``n_rebalances``: rebalances made.
        * ``one_way_turnover``: ``avg_turnover / 2``, the share of the book replaced per rebalance
          (a full switch is 1.0).
        * ``total_cost``: sum over rebalances of the cost charged (``turnover * cost_per_side``
          with flat costs), each a fraction of the equity at that trade.
        * ``cost_ann``: ``total_cost`` per year, ``total_cost * 252 / n``.
        * ``gross_ann_return`` and ``gross_sharpe``: as ``ann_return`` and ``sharpe``, before costs.
        """
        r = self.returns.to_numpy(np.float64)
        n = r.size
        ann_return = float(np.prod(1.0 + r)) ** (SESSIONS_PER_YEAR / n) - 1.0 if n else math.nan
        ann_vol = float(r.std(ddof=1)) * math.sqrt(SESSIONS_PER_YEAR) if n > 1 else math.nan
        sharpe = float(r.mean()) * SESSIONS_PER_YEAR / ann_vol if ann_vol > 0 else math.nan
        equity = np.cumprod(1.0 + r)
        peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
        turnover = self.turnover.to_numpy(np.float64)
        charged = self.costs.to_numpy(np.float64) if self.costs is not None else turnover * self.cost_per_side
        g = self.gross_returns.to_numpy(np.float64)
        gross_vol = float(g.std(ddof=1)) if n > 1 else math.nan
        return {
            "ann_return": ann_return,
            "ann_vol": ann_vol,
            "sharpe": sharpe,
            "max_drawdown": float((equity / peak - 1.0).min()) if n else math.nan,
            "avg_turnover": float(turnover.mean()) if turnover.size else math.nan,
            "n_rebalances": int(turnover.size),
            "one_way_turnover": float(turnover.mean()) / 2.0 if turnover.size else math.nan,
            "total_cost": float(charged.sum()),
            "cost_ann": float(charged.sum()) * SESSIONS_PER_YEAR / n if n else math.nan,
            "gross_ann_return": float(np.prod(1.0 + g)) ** (SESSIONS_PER_YEAR / n) - 1.0 if n else math.nan,
            "gross_sharpe": float(g.mean()) * math.sqrt(SESSIONS_PER_YEAR) / gross_vol if gross_vol > 0 else math.nan,
        }


def topk_backtest(
    scores: pd.DataFrame,
    close: pd.DataFrame,
    *,
    k: int,
    rebalance_every: int,
    cost_per_side: float,
    start: DateBound = None,
    end: DateBound = None,
    execution_lag: int = 1,
) -> BacktestResult:
    """Hold the k highest-scored tickers in equal weight, rebalanced on a fixed schedule.

    See the module docstring for the exact timing, selection, drift and cost rules.

    Args:
        scores: long ``date, ticker, score``; dates must be sessions of ``close``.
        close: wide adjusted closes (sessions x tickers), positive, NaN outside a ticker's life.
        k: tickers held after each rebalance (>= 1).
        rebalance_every: sessions between signal dates (>= 1).
        cost_per_side: cost per unit of one-way turnover, as a fraction (0 <= c < 0.5).
        start: first signal day considered (inclusive); None for the first session.
        end: last day of the backtest (inclusive); None for the last session.
        execution_lag: sessions from signal to trade (>= 1).

    Returns:
        The backtest's returns, turnover and weights.

    Raises:
        TrainingError: a bad parameter (named), a score ticker missing from ``close``, a score
            date that is not a session, a duplicated score, no score in the window, or a
            rebalance date with fewer than k tradable scored tickers (the date and count named).
    """
    if k < 1:
        raise TrainingError(f"k must be at least 1, got {k}")
    _check_schedule(rebalance_every, cost_per_side, execution_lag)
    raw = _prices(close)
    score = _score_matrix(scores, close)
    signal_pos, trade_pos, hi = _scored_schedule(score, close, start, end, every=rebalance_every, lag=execution_lag)
    eligible = np.isfinite(score[signal_pos]) & np.isfinite(raw[trade_pos])
    counts = eligible.sum(axis=1)
    short = np.flatnonzero(counts < k)
    if short.size:
        j = int(short[0])
        raise TrainingError(
            f"k={k} exceeds the {int(counts[j])} ticker(s) with a score on rebalance date "
            f"{close.index[signal_pos[j]].date()} (and a bar on its trade session)"
        )
    masked = np.where(eligible, score[signal_pos], -np.inf)
    chosen = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    targets = np.zeros_like(masked)
    np.put_along_axis(targets, chosen, 1.0 / k, axis=1)
    return _simulate(close, raw, signal_pos, trade_pos, targets, cost=cost_per_side, last=hi)


def equal_weight_backtest(
    close: pd.DataFrame,
    *,
    rebalance_every: int,
    cost_per_side: float,
    start: DateBound,
    end: DateBound,
    execution_lag: int = 1,
    members: pd.DataFrame | None = None,
) -> BacktestResult:
    """Equal weight on every ticker with a bar, rebalanced on a fixed schedule: the no-skill baseline.

    Same timing, drift and costs as :func:`topk_backtest`; signal dates run every
    ``rebalance_every`` sessions from the first session in ``[start, end]``, and each rebalance
    holds every ticker with a bar on both its signal date and its trade session and, with
    ``members`` (a boolean sessions x tickers mask of a point-in-time universe), a member on the
    signal date; a ticker absent from the mask is never a member.

    Raises:
        TrainingError: a bad parameter (named), or a rebalance date where no ticker has a bar.
    """
    _check_schedule(rebalance_every, cost_per_side, execution_lag)
    raw = _prices(close)
    lo, hi = _window(pd.DatetimeIndex(close.index), start, end)
    signal_pos, trade_pos = _schedule(lo, hi, rebalance_every, execution_lag)
    eligible = np.isfinite(raw[signal_pos]) & np.isfinite(raw[trade_pos])
    if members is not None:
        aligned = members.reindex(index=close.index, columns=close.columns, fill_value=False)
        eligible &= aligned.to_numpy(bool)[signal_pos]
    counts = eligible.sum(axis=1)
    if (counts == 0).any():
        day = close.index[signal_pos[int(np.argmin(counts))]].date()
        raise TrainingError(f"no ticker has a bar on rebalance date {day} and its trade session")
    targets = (eligible / counts[:, None]).astype(np.float64)
    return _simulate(close, raw, signal_pos, trade_pos, targets, cost=cost_per_side, last=hi)


def _simulate(
    close: pd.DataFrame,
    raw: FloatArray,
    signal_pos: IntArray,
    trade_pos: IntArray,
    targets: FloatArray,
    *,
    cost: float,
    last: int,
) -> BacktestResult:
    """Run the book from the first trade session to ``last``: drift, trade, charge costs."""
    # Carry a position at its last close after delisting (within its own column only).
    filled = pd.DataFrame(raw).ffill().to_numpy(np.float64)
    first = int(trade_pos[0])
    growth = np.nan_to_num(filled[first : last + 1] / filled[first - 1 : last] - 1.0, nan=0.0)
    trade_of_day = np.full(last - first + 1, -1, dtype=np.int64)
    trade_of_day[trade_pos - first] = np.arange(trade_pos.size)
    gross = np.zeros(last - first + 1)
    net = np.zeros_like(gross)
    turnover = np.zeros(trade_pos.size)
    weights = np.zeros(raw.shape[1])
    for day, j in enumerate(trade_of_day):
        day_return = float(weights @ growth[day])
        weights = weights * (1.0 + growth[day]) / (1.0 + day_return)
        charged = 0.0
        if j >= 0:
            turnover[j] = float(np.abs(targets[j] - weights).sum())
            weights = targets[j].copy()
            charged = turnover[j] * cost
        gross[day] = day_return
        net[day] = (1.0 + day_return) * (1.0 - charged) - 1.0
    sessions = close.index[first : last + 1]
    trade_days = close.index[trade_pos]
    held = np.flatnonzero(targets.any(axis=0))
    return BacktestResult(
        returns=pd.Series(net, index=sessions, name="net_return"),
        gross_returns=pd.Series(gross, index=sessions, name="gross_return"),
        turnover=pd.Series(turnover, index=trade_days, name="turnover"),
        weights=pd.DataFrame(targets[:, held], index=trade_days, columns=close.columns[held]),
        signal_dates=pd.Series(close.index[signal_pos], index=trade_days, name="signal_date"),
        cost_per_side=cost,
    )


def _check_schedule(rebalance_every: int, cost_per_side: float, execution_lag: int) -> None:
    """Refuse schedule and cost parameters that would make the backtest meaningless."""
    if rebalance_every < 1:
        raise TrainingError(f"rebalance_every must be at least 1 session, got {rebalance_every}")
    if not 0.0 <= cost_per_side < MAX_COST_PER_SIDE:
        raise TrainingError(f"cost_per_side must be a fraction in [0, {MAX_COST_PER_SIDE}), got {cost_per_side}")
    if execution_lag < 1:
        raise TrainingError(f"execution_lag must be >= 1 (the signal's own close is look-ahead), got {execution_lag}")


def _prices(close: pd.DataFrame) -> FloatArray:
    """The closes as a float array, refused unless indexed by ascending sessions and positive."""
    check_close(close)
    raw = close.to_numpy(np.float64, na_value=np.nan)
    if (raw <= 0).any():
        column = close.columns[np.flatnonzero((raw <= 0).any(axis=0))[0]]
        raise TrainingError(f"close must be positive; ticker '{column}' has a close <= 0")
    return raw


def _score_matrix(scores: pd.DataFrame, close: pd.DataFrame) -> FloatArray:
    """The long scores laid on the close grid (sessions x tickers), NaN where there is none."""
    missing = [c for c in (DATE, TICKER, SCORE) if c not in scores.columns]
    if missing:
        raise TrainingError(f"scores lack column(s) {missing}; they have {list(scores.columns)}")
    rows = close.index.get_indexer(pd.DatetimeIndex(scores[DATE]))
    cols = close.columns.get_indexer(pd.Index(scores[TICKER]))
    if (cols < 0).any():
        unknown = sorted(set(scores[TICKER].to_numpy()[cols < 0]))
        raise TrainingError(f"score ticker(s) missing from close: {unknown[:5]} ({len(unknown)} in all)")
    if (rows < 0).any():
        bad = pd.Timestamp(scores[DATE].to_numpy()[np.flatnonzero(rows < 0)[0]])
        raise TrainingError(f"score {DATE} {bad} is not a session of close")
    flat = rows.astype(np.int64) * close.shape[1] + cols
    flat.sort()
    if (flat[1:] == flat[:-1]).any():
        raise TrainingError(f"scores must hold one row per ({DATE}, {TICKER}); some pairs repeat")
    grid = np.full(close.shape, np.nan)
    grid[rows, cols] = scores[SCORE].to_numpy(np.float64)
    return grid


def _window(sessions: pd.DatetimeIndex, start: DateBound, end: DateBound) -> tuple[int, int]:
    """Positions of the first and last sessions in ``[start, end]`` (inclusive)."""
    lo = 0 if start is None else int(sessions.searchsorted(pd.Timestamp(start), side="left"))
    hi = len(sessions) - 1 if end is None else int(sessions.searchsorted(pd.Timestamp(end), side="right")) - 1
    if lo > hi:
        raise TrainingError(f"no session of close lies between start={start} and end={end}")
    return lo, hi


def _scored_schedule(
    score: FloatArray, close: pd.DataFrame, start: DateBound, end: DateBound, *, every: int, lag: int
) -> tuple[IntArray, IntArray, int]:
    """Signal and trade positions from the first session in ``[start, end]`` that holds a score,
    and the window's last position: where every score-driven backtest starts trading."""
    lo, hi = _window(pd.DatetimeIndex(close.index), start, end)
    has_score = np.flatnonzero(np.isfinite(score[lo : hi + 1]).any(axis=1))
    if has_score.size == 0:
        raise TrainingError(f"scores hold no score between start={start} and end={end}")
    signal_pos, trade_pos = _schedule(lo + int(has_score[0]), hi, every, lag)
    return signal_pos, trade_pos, hi


def _schedule(first: int, last: int, every: int, lag: int) -> tuple[IntArray, IntArray]:
    """Signal and trade positions: every ``every`` sessions from ``first``, trades by ``last``."""
    signal_pos = np.arange(first, last + 1, every, dtype=np.int64)
    signal_pos = signal_pos[signal_pos + lag <= last]
    if signal_pos.size == 0:
        raise TrainingError(
            f"no rebalance fits the window: the first signal's trade session lies {lag} session(s) after it, "
            "past the end; widen the window or reduce execution_lag"
        )
    return signal_pos, signal_pos + lag
