"""Signal scores judged on the test segment: metrics against realised outcomes, the top-k book, baselines.

The plain top-k table's books (each model's, the ensemble's, the baselines') pay the run's one cost
model (:meth:`training.evaluation.liquidity.TradeCosts.from_costs`: costs by liquidity when the
config has them, else flat), the same rates and book size as the portfolio section's books. They
are the plain construction: equal weight on the k best-scored members of the point-in-time
universe, re-formed at every rebalance, with no hold band, replacement limit, minimum hold or ADV
cap (those are the portfolio section's turnover-aware book).
"""

from __future__ import annotations

import pandas as pd

from feature_repo.tables import DATE
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.book import BookRules, Schedule, book_backtest, equal_weight_book
from training.evaluation.liquidity import TradeCosts
from training.evaluation.metrics import SignalMetrics, signal_metrics
from training.evaluation.topk import BacktestResult
from training.signals.inputs import KEYS, SignalInputs


def evaluate_scores(scores: pd.DataFrame, inputs: SignalInputs) -> SignalMetrics:
    """Signal metrics of long ``date, ticker, score`` rows against the realised outcomes."""
    h = inputs.config.horizon
    outcomes = inputs.outcomes[[*KEYS, f"fwd_excess_{h}d", f"label_{h}d"]].rename(
        columns={f"fwd_excess_{h}d": "target", f"label_{h}d": "label"}
    )
    joined = scores[[*KEYS, "score"]].merge(outcomes, on=KEYS, how="inner")
    return signal_metrics(joined, h)


def _schedule(inputs: SignalInputs) -> Schedule:
    """Every ``rebalance_every`` sessions over the test segment, traded ``execution_lag`` later."""
    evaluation = inputs.config.evaluation
    first, last = inputs.test_window
    return Schedule(evaluation.rebalance_every, first, last, evaluation.execution_lag)


def backtest_scores(scores: pd.DataFrame, inputs: SignalInputs) -> BacktestResult:
    """The plain top-k long-only book of the scores over the test segment, members only, net of the run's costs."""
    cfg = inputs.config
    return book_backtest(
        scores[[*KEYS, "score"]],
        inputs.close,
        rules=BookRules(k=cfg.evaluation.top_k, book_aud=cfg.evaluation.book.book_aud),
        costs=TradeCosts.from_costs(cfg.costs),
        schedule=_schedule(inputs),
        members=inputs.members,
        liquidity=inputs.liquidity,
    )


def baselines(inputs: SignalInputs) -> dict[str, tuple[SignalMetrics | None, BacktestResult]]:
    """12-1 momentum, short-term reversal and equal weight over the test segment, under the same costs."""
    cfg = inputs.config
    first, last = inputs.test_window
    rows: dict[str, tuple[SignalMetrics | None, BacktestResult]] = {}
    for name, scorer in (("momentum_12_1", momentum_12_1), ("reversal_1m", short_term_reversal)):
        scores = scorer(inputs.close)
        scores = scores[(scores[DATE] >= first) & (scores[DATE] <= last)]
        rows[name] = (evaluate_scores(scores, inputs), backtest_scores(scores, inputs))
    equal = equal_weight_book(
        inputs.close,
        costs=TradeCosts.from_costs(cfg.costs),
        schedule=_schedule(inputs),
        members=inputs.members,
        liquidity=inputs.liquidity,
        book_aud=cfg.evaluation.book.book_aud,
    )
    rows["equal_weight"] = (None, equal)
    return rows
