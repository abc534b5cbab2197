"""Walk-forward backtest of allocation strategies: periodic re-fitting, daily or weekly rebalancing, costs.

Timing, in sessions of the panel (positions ``start..end`` inclusive):

* **Execution lag of one session.** A rebalance at the close of t decides on the history through
  the close of ``t - 1`` (``panel.slice(.., t)``) and trades at the close of t; the new book earns
  from session ``t + 1``. Trading at the close that produced the inputs would be look-ahead.
* **Schedule.** Rebalances at ``start``, ``start + k``, ... with ``k = rebalance_every`` (1 daily,
  5 weekly), except on the window's last session (a book bought there would be held for nothing).
  Re-fits (``Strategy.fit``) at ``start`` and every ``refit_every`` sessions after, on the history
  through ``t - 1``: an expanding window, or the last ``fit_window`` sessions.
* **Drift.** Between trades the weights drift with prices; uninvested weight is cash earning 0.
  The book starts in cash, so the first trade buys the whole book.
* **Costs.** ``(cost_bps + slippage_bps) / 1e4`` per unit of one-way turnover
  ``sum |w_target - w_drifted|``, charged on that close's equity:
  ``net = (1 + gross) * (1 - turnover * cost) - 1`` (the convention of
  :mod:`training.evaluation.topk`, so the two backtests agree).
* **Names that enter and leave** (a panel with masks, :mod:`training.allocation.panel`). A
  strategy deciding on the history through ``t - 1`` must not buy a name unavailable at ``t - 1``
  (a target above the weight held is refused, named: a strategy that ignores the mask is a bug;
  keeping part of a held name, as a turnover cap does, is not). A name available at
  ``t - 1`` but not at the trade session ``t`` (out of the universe, or its last close) is not
  bought, and sold if held: its target weight stays in cash. A held name without a close at ``t``
  (a halt) cannot trade: it keeps its weight, carried at its last close, and the rest of the
  target is scaled to fit. A held name whose series ends at ``t`` (a delisting, or the last bar
  before a series break) is sold at that close, rebalance day or not, and the sale pays the costs
  like any trade; after a break the name may be bought again once available.

Daily returns run from ``start`` (whose return is minus the first buy's cost) to ``end``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.allocation.panel import MarketPanel
from training.allocation.results import FloatArray, StrategyResult
from training.allocation.strategy import Strategy
from training.allocation.weights import drift, hold_unpriced, sell_exits
from training.errors import TrainingError

_WEIGHT_TOL = 1e-6


@dataclass(frozen=True)
class BacktestConfig:
    """How a walk-forward backtest trades.

    Attributes:
        rebalance_every: sessions between trades (1 daily, 5 weekly, 21 monthly).
        cost_bps: commission + half-spread per side, in basis points of the traded amount.
        slippage_bps: market impact per side, in basis points of the traded amount.
        refit_every: sessions between re-fits of each strategy (252: yearly walk-forward windows).
        fit_window: sessions of history each fit sees (None: everything before the fit).
        min_history: sessions a strategy needs before its first decision (the optimisers' lookback).
    """

    rebalance_every: int = 5
    cost_bps: float = 10.0
    slippage_bps: float = 5.0
    refit_every: int = 252
    fit_window: int | None = None
    min_history: int = 252

    def __post_init__(self) -> None:
        for name in ("rebalance_every", "refit_every", "min_history"):
            if getattr(self, name) < 1:
                raise TrainingError(f"backtest {name} must be at least 1, got {getattr(self, name)}")
        if self.fit_window is not None and self.fit_window < 1:
            raise TrainingError(f"backtest fit_window must be at least 1 or null, got {self.fit_window}")
        for name in ("cost_bps", "slippage_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 5000):
                raise TrainingError(f"backtest {name} must be in [0, 5000) basis points, got {value}")

    @property
    def cost_per_unit_turnover(self) -> float:
        return (self.cost_bps + self.slippage_bps) / 1e4


def backtest(
    strategy: Strategy, panel: MarketPanel, config: BacktestConfig, *, start: int, end: int | None = None
) -> StrategyResult:
    """Run ``strategy`` over sessions ``start..end`` of ``panel`` (see the module docstring).

    Raises:
        TrainingError: a window without enough history before ``start``, or a strategy that returns
            weights of the wrong shape, negative, non-finite or summing above 1 (named with the date).
    """
    last = panel.n_sessions - 1 if end is None else end
    if not 0 <= start <= last < panel.n_sessions:
        raise TrainingError(f"backtest window {start}..{last} is outside the panel's 0..{panel.n_sessions - 1}")
    if start < config.min_history:
        raise TrainingError(
            f"the backtest starts at session {start} ({panel.dates[start]}) but strategies need "
            f"{config.min_history} sessions of history before it"
        )
    n_days, n = last - start + 1, panel.n_assets
    weights = np.zeros((n_days, n))
    gross = np.zeros(n_days)
    turnover = np.zeros(n_days)
    costs = np.zeros(n_days)
    w = np.zeros(n)
    unit_cost = config.cost_per_unit_turnover
    for i, t in enumerate(range(start, last + 1)):
        if i:
            w, gross[i] = drift(w, panel.returns[t])
        if i % config.refit_every == 0:
            lo = 0 if config.fit_window is None else max(0, t - config.fit_window)
            strategy.fit(panel.slice(lo, t))
        # No trade on the window's last session: nothing would be held after it, only the cost paid
        # (the environment stops there too).
        if i % config.rebalance_every == 0 and t < last:
            target = _checked(strategy.target(panel.slice(0, t), w.copy()), strategy.name, panel, t, w)
            if panel.available is not None:
                target = np.where(panel.available[t], target, 0.0)
            target = hold_unpriced(target, w, None if panel.priced is None else panel.priced[t])
            turnover[i] = float(np.abs(target - w).sum())
            w = target
        w, sold = sell_exits(w, None if panel.exits is None else panel.exits[t])
        turnover[i] += sold
        costs[i] = turnover[i] * unit_cost
        weights[i] = w
    net = (1.0 + gross) * (1.0 - costs) - 1.0
    return StrategyResult(
        name=strategy.name,
        dates=panel.dates[start : last + 1],
        returns=net,
        gross_returns=gross,
        weights=weights,
        cash=1.0 - weights.sum(axis=1),
        turnover=turnover,
        costs=costs,
        tickers=panel.tickers,
        rebalance_every=config.rebalance_every,
        label=panel.label,
    )


def backtest_all(
    strategies: Sequence[Strategy],
    panel: MarketPanel,
    config: BacktestConfig,
    *,
    start: int,
    end: int | None = None,
    progress: bool = False,
) -> tuple[list[StrategyResult], dict[str, float]]:
    """Backtest every strategy on the same window; also return each one's wall time in seconds."""
    results: list[StrategyResult] = []
    seconds: dict[str, float] = {}
    bar = _progress(len(strategies), progress)
    for strategy in strategies:
        began = time.perf_counter()
        results.append(backtest(strategy, panel, config, start=start, end=end))
        seconds[strategy.name] = time.perf_counter() - began
        if bar is not None:
            bar.set_postfix_str(f"{strategy.name} {seconds[strategy.name]:.1f}s")
            bar.update()
    if bar is not None:
        bar.close()
    return results, seconds


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="backtests", unit="strategy")


def _checked(target: FloatArray, name: str, panel: MarketPanel, t: int, current: FloatArray) -> FloatArray:
    where = f"strategy {name!r} on {panel.dates[t]}"
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (panel.n_assets,):
        raise TrainingError(f"{where} returned {target.shape} weights for {panel.n_assets} assets")
    if not np.isfinite(target).all():
        raise TrainingError(f"{where} returned non-finite weights")
    if (target < -_WEIGHT_TOL).any():
        worst = int(np.argmin(target))
        raise TrainingError(f"{where} returned a short weight {target[worst]:.4f} on {panel.tickers[worst]!r}")
    if target.sum() > 1.0 + _WEIGHT_TOL:
        raise TrainingError(f"{where} returned weights summing to {target.sum():.6f} > 1 (leverage)")
    if panel.available is not None and t > 0:
        # Buying is refused; keeping part of a held name is not (a turnover cap sells it over time).
        barred = np.flatnonzero((target > current + _WEIGHT_TOL) & ~panel.available[t - 1])
        if barred.size:
            raise TrainingError(
                f"{where} put weight {target[barred[0]]:.4f} on {panel.tickers[barred[0]]!r}, which was not "
                f"available (not a member, or no close) on {panel.dates[t - 1]}, the last session it saw"
            )
    clipped: FloatArray = np.clip(target, 0.0, None)
    return clipped
