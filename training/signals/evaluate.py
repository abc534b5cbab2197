"""Signal scores judged on the test segment: metrics against realised outcomes, the top-k book, baselines."""

from __future__ import annotations

import pandas as pd

from feature_repo.tables import DATE
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.metrics import SignalMetrics, signal_metrics
from training.evaluation.topk import BacktestResult, equal_weight_backtest, topk_backtest
from training.signals.inputs import KEYS, SignalInputs
from training.universe import restrict_to_members


def evaluate_scores(scores: pd.DataFrame, inputs: SignalInputs) -> SignalMetrics:
    """Signal metrics of long ``date, ticker, score`` rows against the realised outcomes."""
    h = inputs.config.horizon
    outcomes = inputs.outcomes[[*KEYS, f"fwd_excess_{h}d", f"label_{h}d"]].rename(
        columns={f"fwd_excess_{h}d": "target", f"label_{h}d": "label"}
    )
    joined = scores[[*KEYS, "score"]].merge(outcomes, on=KEYS, how="inner")
    return signal_metrics(joined, h)


def backtest_scores(scores: pd.DataFrame, inputs: SignalInputs) -> BacktestResult:
    """The top-k long-only book of the scores over the test segment, net of costs (members only)."""
    cfg = inputs.config
    if inputs.members is not None:
        scores = restrict_to_members(scores, inputs.members)
    return topk_backtest(
        scores[[*KEYS, "score"]],
        inputs.close,
        k=cfg.evaluation.top_k,
        rebalance_every=cfg.evaluation.rebalance_every,
        cost_per_side=cfg.costs.per_side_fraction,
        start=inputs.test_window[0],
        end=inputs.test_window[1],
        execution_lag=cfg.evaluation.execution_lag,
    )


def baselines(inputs: SignalInputs) -> dict[str, tuple[SignalMetrics | None, BacktestResult]]:
    """12-1 momentum, short-term reversal and equal weight over the test segment."""
    cfg = inputs.config
    first, last = inputs.test_window
    rows: dict[str, tuple[SignalMetrics | None, BacktestResult]] = {}
    for name, scorer in (("momentum_12_1", momentum_12_1), ("reversal_1m", short_term_reversal)):
        scores = scorer(inputs.close)
        scores = scores[(scores[DATE] >= first) & (scores[DATE] <= last)]
        rows[name] = (evaluate_scores(scores, inputs), backtest_scores(scores, inputs))
    rows["equal_weight"] = (
        None,
        equal_weight_backtest(
            inputs.close,
            rebalance_every=cfg.evaluation.rebalance_every,
            cost_per_side=cfg.costs.per_side_fraction,
            start=first,
            end=last,
            execution_lag=cfg.evaluation.execution_lag,
            members=inputs.members,
        ),
    )
    return rows
