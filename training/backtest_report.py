"""A backtest job's answer: its figures as JSON and its HTML tear sheet beside an equal-weight book.

The tear sheet is the allocation stage's (:mod:`training.allocation.tearsheet`); the comparison
table its :func:`~training.allocation.performance.comparison_table`, whose deflated Sharpe ratio
counts every configuration tried (the search's trials included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from training.allocation.performance import comparison_table
from training.allocation.results import StrategyResult
from training.allocation.tearsheet import build_tearsheet
from training.evaluation.topk import BacktestResult

EQUITY_POINTS: Final = 260  # the equity curve in the JSON answer: thinned to about a year of points


def strategy_result(
    name: str, result: BacktestResult, tickers: list[str], rebalance_every: int, label: str
) -> StrategyResult:
    """A book's result as the tear sheet's input: daily weights held (targets carried between trades)."""
    sessions = pd.DatetimeIndex(result.returns.index)
    weights = result.weights.reindex(columns=tickers, fill_value=0.0).reindex(sessions).ffill().fillna(0.0)
    turnover = result.turnover.reindex(sessions, fill_value=0.0).to_numpy(np.float64)
    costs = (
        result.costs.reindex(sessions, fill_value=0.0).to_numpy(np.float64)
        if result.costs is not None
        else turnover * result.cost_per_side
    )
    held = weights.to_numpy(np.float64)
    return StrategyResult(
        name=name,
        dates=sessions.values.astype("datetime64[D]"),
        returns=result.returns.to_numpy(np.float64),
        gross_returns=result.gross_returns.to_numpy(np.float64),
        weights=held,
        cash=1.0 - held.sum(axis=1),
        turnover=turnover,
        costs=costs,
        tickers=tuple(tickers),
        rebalance_every=rebalance_every,
        label=label,
    )


def finite(values: Mapping[str, Any]) -> dict[str, float | int | None]:
    """Metrics with NaN and infinities as None (JSON has no NaN)."""
    out: dict[str, float | int | None] = {}
    for key, value in values.items():
        number = float(value)
        out[key] = (int(value) if isinstance(value, int | np.integer) else number) if math.isfinite(number) else None
    return out


def equity_points(result: BacktestResult) -> list[dict[str, Any]]:
    """The net equity curve, thinned to about ``EQUITY_POINTS`` points (the last session always kept)."""
    equity = (1.0 + result.returns).cumprod()
    step = max(1, math.ceil(len(equity) / EQUITY_POINTS))
    keep = sorted({*range(0, len(equity), step), len(equity) - 1})
    return [{"date": equity.index[i].date().isoformat(), "equity": float(equity.iloc[i])} for i in keep]


def comparison(results: list[StrategyResult], n_trials: int) -> pd.DataFrame:
    """The comparison table of the strategy and the equal-weight book (DSR over ``n_trials``)."""
    return comparison_table(results, None, n_trials=max(n_trials, len(results)))


def tear_sheet(results: list[StrategyResult], table: pd.DataFrame, title: str, notes: list[str], now: datetime) -> str:
    """The HTML tear sheet of the job's strategy beside the equal-weight book."""
    window = min(63, max(2, results[0].dates.size // 4))
    return build_tearsheet(
        results,
        table=table,
        title=title,
        notes=notes,
        rolling_window=window,
        turnover_window=min(21, window),
        generated_at=now,
    )
