"""A book that trades any strategy's target weights under the schedule, drift and costs of :mod:`.book`.

The turnover-aware top-k book decides who is held from scores; an optimiser (minimum variance,
HRP) or a rule with memory (top-k dropout) decides weights from the history instead. Both trade
the same way here: a decision on the history through the signal session's close, a trade
``execution_lag`` sessions later at that close, drift in between, and each name's trade charged
by :class:`~training.evaluation.liquidity.TradeCosts` (:func:`training.evaluation.book.simulate`).
A name without a bar on the trade session is not bought (its target weight stays in cash).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training.errors import TrainingError
from training.evaluation.book import Plan, Schedule, simulate
from training.evaluation.liquidity import FloatArray, Liquidity, TradeCosts
from training.evaluation.topk import BacktestResult, _check_schedule, _prices, _schedule, _window

# decide(signal position, weights held after the previous trade) -> target weights [N], summing to <= 1.
Decide = Callable[[int, FloatArray], FloatArray]
Progress = Callable[[int, int], None]
_SUM_TOLERANCE = 1e-6


def target_book(
    close: pd.DataFrame,
    decide: Decide,
    *,
    costs: TradeCosts,
    schedule: Schedule,
    liquidity: Liquidity | None,
    book_aud: float,
    progress: Progress | None = None,
) -> BacktestResult:
    """Trade ``decide``'s targets at every rebalance of ``schedule`` (module docstring).

    Args:
        close: wide adjusted closes (sessions x tickers), positive, NaN without a bar.
        decide: the strategy; it must read nothing after the signal position it is given.
        costs: cost rates per side; by-liquidity rates need ``liquidity``.
        schedule: rebalance spacing, window and execution lag.
        liquidity: ADV and volatility on ``close``'s grid.
        book_aud: book size in AUD (market impact's scale).
        progress: called with (rebalances decided, rebalances in all) after each decision.

    Raises:
        TrainingError: bad schedule, liquidity needed but missing, or a target that is negative,
            not finite or sums above 1 (named with its date).
    """
    _check_schedule(schedule.rebalance_every, costs.brokerage, schedule.execution_lag)
    if costs.needs_liquidity and liquidity is None:
        raise TrainingError("costs by liquidity need ADV: the prices hold no volume (use flat costs)")
    raw = _prices(close)
    lo, hi = _window(pd.DatetimeIndex(close.index), schedule.start, schedule.end)
    signal_pos, trade_pos = _schedule(lo, hi, schedule.rebalance_every, schedule.execution_lag)
    eligible = np.isfinite(raw[signal_pos]) & np.isfinite(raw[trade_pos])
    targets = np.zeros((signal_pos.size, raw.shape[1]))
    current: FloatArray = np.zeros(raw.shape[1])
    for j, s in enumerate(signal_pos):
        target = np.asarray(decide(int(s), current.copy()), dtype=np.float64)
        if target.shape != current.shape or not np.isfinite(target).all() or (target < 0).any():
            raise TrainingError(f"the strategy's target on {close.index[s].date()} is not {current.size} weights >= 0")
        if target.sum() > 1.0 + _SUM_TOLERANCE:
            raise TrainingError(f"the strategy's target on {close.index[s].date()} sums to {target.sum():.6f} > 1")
        targets[j] = np.where(eligible[j], target, 0.0)
        current = targets[j]
        if progress is not None:
            progress(j + 1, signal_pos.size)
    plan = Plan(signal_pos, trade_pos, targets, eligible, hi)
    return simulate(close, raw, plan, costs=costs, book_aud=book_aud, liquidity=liquidity)
