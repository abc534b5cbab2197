"""One strategy of a backtest job over a window: the book, its costs and its schedule, from a spec.

* ``topk``: the turnover-aware top-k book (:func:`training.evaluation.book.book_backtest`).
* ``equal_weight``: every name with a bar, equally (:func:`training.evaluation.book.equal_weight_book`).
* ``topk_dropout``, ``min_variance``, ``hrp``: the allocation optimisers' rules
  (:mod:`training.allocation.optimisers`) deciding on the history through each signal close,
  traded by :func:`training.evaluation.target_book.target_book`.
* ``allocator``: the registered allocator champion's weights from the features of each signal
  close (:mod:`training.backtest_allocator`), traded by the same target book.

Every strategy pays the same cost model (brokerage + half-spread by ADV tercile + square-root
impact) on the same schedule, so their figures compare. Scores are point-in-time: the momentum and
reversal baselines read only closes up to their date; the model's scores are the out-of-sample
ones the train stage wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.backtests import BacktestSpec, StrategyParams
from training.allocation.data import SCORE, scores_path
from training.allocation.optimisers import HierarchicalRiskParity, MinimumVariance, TopkDropout
from training.allocation.panel import MarketPanel, panel_from_frames
from training.backtest_allocator import allocator_decide
from training.backtest_data import JobData
from training.errors import TrainingError
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.book import BookRules, Schedule, book_backtest, equal_weight_book
from training.evaluation.liquidity import BPS, FloatArray, TradeCosts
from training.evaluation.target_book import Progress, target_book
from training.evaluation.topk import BacktestResult

Strategy = Callable[[int, FloatArray], FloatArray]


@dataclass(frozen=True)
class Window:
    """The sessions a run covers (inclusive) and how often it trades."""

    start: date
    end: date
    rebalance_every: int


def trade_costs(spec: BacktestSpec, data: JobData) -> TradeCosts:
    """The spec's costs as the liquidity model's rates (basis points to fractions).

    Close-only data (no volume, so no ADV) cannot place a name in a tercile or size its impact: every
    trade then pays the brokerage plus the widest half-spread, with no impact (:func:`cost_model`).
    """
    c = spec.costs
    s = tuple(v / BPS for v in c.half_spread_bps)
    if data.liquidity is None:
        return TradeCosts.flat(c.brokerage_bps / BPS + s[2])
    return TradeCosts(c.brokerage_bps / BPS, (s[0], s[1], s[2]), c.impact_coefficient)


def cost_model(spec: BacktestSpec, data: JobData) -> str:
    """How trades were charged, in words, for the result and the tear sheet."""
    c = spec.costs
    if data.liquidity is None:
        return (
            f"flat {c.brokerage_bps + c.half_spread_bps[2]:g} bps per side (brokerage + the widest half-spread): "
            "the prices hold no volume, so no ADV terciles or market impact"
        )
    return (
        f"brokerage {c.brokerage_bps:g} bps + half-spread {list(c.half_spread_bps)} bps by ADV tercile + impact "
        f"{c.impact_coefficient:g} x sigma x sqrt(traded / ADV), ADV over {c.adv_sessions} sessions, book AUD "
        f"{c.book_aud:,.0f}"
    )


def signal_scores(spec: BacktestSpec, data: JobData, data_dir: Path) -> pd.DataFrame:
    """Long ``date, ticker, score`` of the spec's signal on the data's closes."""
    if spec.signal == "momentum_12_1":
        return momentum_12_1(data.close)
    if spec.signal == "short_term_reversal":
        return short_term_reversal(data.close)
    path = scores_path(data_dir)
    if not path.exists():
        raise TrainingError(f"signal 'model' needs the train stage's out-of-sample scores at {path}; none there")
    frame = pd.read_parquet(path, columns=["date", "ticker", SCORE])
    frame["date"] = pd.DatetimeIndex(frame["date"]).normalize()
    frame = frame[frame["ticker"].isin(data.close.columns) & frame["date"].isin(data.close.index)]
    if frame.empty:
        raise TrainingError("the model's out-of-sample scores cover none of the universe's sessions")
    return frame.reset_index(drop=True)


def _panel(data: JobData, scores: pd.DataFrame | None) -> MarketPanel:
    priced = data.close.notna()
    names = [SCORE] if scores is not None else []
    return panel_from_frames(data.close, scores, names, benchmark_close=None, label=data.label, members=priced)


def _optimiser(spec: BacktestSpec, params: StrategyParams, data: JobData, scores: pd.DataFrame | None) -> Strategy:
    """The decide function of a history-driven rule, on the history through the signal close."""
    panel = _panel(data, scores)
    rule: MinimumVariance | HierarchicalRiskParity | TopkDropout
    if spec.strategy == "min_variance":
        rule = MinimumVariance(lookback=params.lookback, max_weight=params.max_weight)
    elif spec.strategy == "hrp":
        rule = HierarchicalRiskParity(lookback=params.lookback, max_weight=params.max_weight)
    else:
        rule = TopkDropout(params.held(), min(params.n_drop, params.held()), score_feature=SCORE)
    rule.fit(panel)

    def decide(position: int, current: FloatArray) -> FloatArray:
        return np.asarray(rule.target(panel.slice(0, position + 1), current), dtype=np.float64)

    return decide


def _allocator(data: JobData) -> Strategy:
    if data.allocator is None:
        raise TrainingError("strategy 'allocator' needs the champion and its features loaded with the job's data")
    return allocator_decide(data.allocator, data.close)


def _first_decision(spec: BacktestSpec, params: StrategyParams, data: JobData, start: date) -> date:
    """The optimisers need ``lookback`` sessions of returns before deciding: start no earlier."""
    if spec.strategy not in ("min_variance", "hrp"):
        return start
    sessions = pd.DatetimeIndex(data.close.index)
    if sessions.size <= params.lookback:
        raise TrainingError(
            f"{spec.strategy} needs more than lookback={params.lookback} sessions; the data hold {sessions.size}"
        )
    earliest = sessions[params.lookback].date()
    return max(start, earliest)


def run_window(
    spec: BacktestSpec,
    params: StrategyParams,
    data: JobData,
    window: Window,
    *,
    data_dir: Path,
    progress: Progress | None = None,
) -> BacktestResult:
    """Backtest ``spec.strategy`` with ``params`` over ``window`` (module docstring: the books).

    Raises:
        TrainingError: a window without a rebalance, too little history, missing scores, fewer
            eligible names than k on some date (named), or costs needing volume the data lack.
    """
    costs = trade_costs(spec, data)
    book_aud = spec.costs.book_aud
    first = _first_decision(spec, params, data, window.start)
    if first >= window.end:
        raise TrainingError(f"{spec.strategy} has no session to decide on before end {window.end}")
    schedule = Schedule(window.rebalance_every, pd.Timestamp(first), pd.Timestamp(window.end), spec.execution_lag)
    if spec.strategy == "equal_weight":
        return equal_weight_book(
            data.close,
            costs=costs,
            schedule=schedule,
            liquidity=data.liquidity,
            adv_cap=params.adv_cap,
            book_aud=book_aud,
        )
    scores = signal_scores(spec, data, data_dir) if spec.strategy in ("topk", "topk_dropout") else None
    if spec.strategy == "topk":
        assert scores is not None
        rules = BookRules(
            k=params.held(),
            buffer=params.buffer,
            max_replace=params.max_replace,
            min_hold=params.min_hold,
            adv_cap=params.adv_cap,
            book_aud=book_aud,
        )
        return book_backtest(scores, data.close, rules=rules, costs=costs, schedule=schedule, liquidity=data.liquidity)
    decide = _allocator(data) if spec.strategy == "allocator" else _optimiser(spec, params, data, scores)
    return target_book(
        data.close,
        decide,
        costs=costs,
        schedule=schedule,
        liquidity=data.liquidity,
        book_aud=book_aud,
        progress=progress,
    )
