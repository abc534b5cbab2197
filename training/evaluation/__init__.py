"""Evaluation of signal models: signal quality, baselines, and a top-k backtest net of costs.

* :mod:`~training.evaluation.metrics`: AUC, per-date IC and rank IC with Newey–West t-statistics,
  quintile spread, hit rate.
* :mod:`~training.evaluation.baselines`: point-in-time momentum and reversal scores.
* :mod:`~training.evaluation.topk`: long-only top-k and equal-weight backtests with an execution
  lag, drifting weights and per-side costs.
* :mod:`~training.evaluation.report`: one comparison table and its column definitions.
* :mod:`~training.evaluation.book`: the turnover-aware top-k book (hold band, replacement limit,
  minimum hold, ADV cap, point-in-time universe), equal-weight and long-short books.
* :mod:`~training.evaluation.liquidity`: point-in-time ADV and volatility, costs by ADV tercile
  and square-root impact.
* :mod:`~training.evaluation.capacity`: the book size where costs eat half the gross excess.
* :mod:`~training.evaluation.suite`: the portfolio report of models against the baselines.
"""

from __future__ import annotations

from feature_repo.significance import newey_west_tstat
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.metrics import (
    SignalMetrics,
    naive_tstat,
    per_date_statistics,
    signal_metrics,
)
from training.evaluation.report import DEFINITIONS, evaluation_table, format_table
from training.evaluation.topk import BacktestResult, equal_weight_backtest, topk_backtest

__all__ = [
    "DEFINITIONS",
    "BacktestResult",
    "SignalMetrics",
    "equal_weight_backtest",
    "evaluation_table",
    "format_table",
    "momentum_12_1",
    "naive_tstat",
    "newey_west_tstat",
    "per_date_statistics",
    "short_term_reversal",
    "signal_metrics",
    "topk_backtest",
]
