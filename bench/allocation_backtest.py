"""Benchmark: walk-forward backtest wall time, 2,400 SYNTHETIC tickers x 36 months, weekly rebalancing.

What is measured, on ``training.allocation.panel.synthetic_panel`` (a seeded one-factor SYNTHETIC
panel: scale only, no quality figure), with 10 bps + 5 bps slippage and yearly re-fits:

* **ours**: :func:`training.allocation.backtest.backtest` for equal weight, inverse volatility
  (skfolio, 252-session lookback), top-k dropout (k 100, at most 10 names swapped a week, on a
  synthetic score) and, with ``--optimisers``, minimum variance and HRP (cvxpy / clustering on a
  2,400 x 2,400 covariance per rebalance: minutes; off by default). Plus the RL path: a policy
  MLP (64 x 64, random weights) run through the environment (:func:`run_policy`), observation
  and all, on the same window.
* **the baseline**: the same equal-weight weekly book computed the way a first pandas version
  would: a DataFrame of weights updated row by row with ``.loc`` (drift, trade, cost per day).
  ``speedup_over_pandas_loop`` compares it with ours on the same strategy, and ``agreement``
  checks both give the same returns.

Every figure is one timed run after the panel is built (the build is timed separately).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.optimisers import (
    EqualWeight,
    HierarchicalRiskParity,
    InverseVolatility,
    MinimumVariance,
    TopkDropout,
)
from training.allocation.panel import MarketPanel, synthetic_panel
from training.allocation.policy import PolicyParams, policy_action
from training.allocation.strategy import Strategy

NAME: Final = "allocation_backtest"
SESSIONS_PER_MONTH: Final = 21
LOOKBACK: Final = 252
# The first decision needs a full lookback of returns before it (history through t - 1).
START: Final = LOOKBACK + 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-tickers", type=int, default=common.FULL_TICKERS)
    parser.add_argument(
        "--n-months", type=int, default=common.FULL_MONTHS, help="months backtested (after a year of warm-up)"
    )
    parser.add_argument("--small", action="store_true", help="200 tickers x 12 months: a quick smoke run")
    parser.add_argument("--optimisers", action="store_true", help="also min variance and HRP (slow at 2,400 names)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.small:
        args.n_tickers, args.n_months = common.SMALL_TICKERS, common.SMALL_MONTHS
    return args


def pandas_loop_equal_weight(panel: MarketPanel, start: int, every: int, cost: float) -> np.ndarray:
    """The baseline: an equal-weight weekly book, row by row with pandas ``.loc`` (same rules as ours)."""
    returns = pd.DataFrame(panel.returns, columns=list(panel.tickers))
    weights: pd.Series = pd.Series(0.0, index=returns.columns)
    out = []
    for i, t in enumerate(range(start, panel.n_sessions)):
        gross = 0.0
        if i:
            grown: pd.Series = weights * (1.0 + returns.loc[t])
            gross = float(grown.sum()) - float(weights.sum())
            weights = grown / (1.0 + gross)
        charge = 0.0
        if i % every == 0:
            target = pd.Series(1.0 / len(weights), index=weights.index)
            charge = float((target - weights).abs().sum()) * cost
            weights = target
        out.append((1.0 + gross) * (1.0 - charge) - 1.0)
    return np.asarray(out)


def _timed(fn: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    sessions = START + args.n_months * SESSIONS_PER_MONTH
    (panel, build_s) = _timed(lambda: synthetic_panel(sessions, args.n_tickers, 6, seed=args.seed))
    scored = MarketPanel(
        panel.dates,
        panel.tickers,
        panel.returns,
        panel.features,
        ("score", *panel.feature_names[1:]),
        panel.benchmark,
        panel.label,
    )
    cfg = BacktestConfig(rebalance_every=5, cost_bps=10, slippage_bps=5, refit_every=252, min_history=START)
    strategies: list[Strategy] = [
        EqualWeight(),
        InverseVolatility(lookback=LOOKBACK),
        TopkDropout(k=min(100, args.n_tickers), n_drop=10),
    ]
    if args.optimisers:
        strategies += [MinimumVariance(lookback=LOOKBACK), HierarchicalRiskParity(lookback=LOOKBACK)]
    seconds: dict[str, float] = {}
    results = {}
    for strategy in strategies:
        common.log(f"backtest {strategy.name}")
        results[strategy.name], seconds[strategy.name] = _timed(
            lambda s=strategy: backtest(s, scored, cfg, start=START)
        )
    common.log("RL policy through the environment")
    rl_seconds = _rl_policy_seconds(panel, args.seed)
    common.log("baseline: pandas row loop")
    baseline, pandas_s = _timed(lambda: pandas_loop_equal_weight(panel, START, 5, cfg.cost_per_unit_turnover))
    ours = results["equal_weight"].returns
    doc = {
        "benchmark": NAME,
        "data": f"{panel.label}: synthetic_panel({sessions} sessions, {args.n_tickers} tickers, seed {args.seed})",
        "window": {"sessions_backtested": sessions - START, "months": args.n_months, "rebalance_every": 5},
        "panel_build_seconds": common.rounded(build_s, 3),
        "backtest_seconds": {k: common.rounded(v, 4) for k, v in seconds.items()},
        "rl_policy_run_seconds": common.rounded(rl_seconds, 4),
        "baseline_pandas_loop_equal_weight_seconds": common.rounded(pandas_s, 4),
        "speedup_over_pandas_loop": common.ratio(pandas_s, seconds["equal_weight"]),
        "agreement": {
            "equal_weight_max_abs_return_difference": float(np.abs(ours - baseline).max()),
            "match_1e-12": bool(np.allclose(ours, baseline, atol=1e-12, rtol=0)),
        },
        "total_seconds": common.rounded(time.perf_counter() - started, 3),
        **common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)


def _rl_policy_seconds(panel: MarketPanel, seed: int) -> float:
    env = PortfolioEnv(panel.slice(START, panel.n_sessions), EnvConfig(window=1, rebalance_every=5, max_weight=0.05))
    rng = np.random.default_rng(seed)
    assert env.observation_space.shape is not None and env.action_space.shape is not None
    n_in, n_out = env.observation_space.shape[0], env.action_space.shape[0]
    sizes = [n_in, 64, 64, n_out]
    policy = PolicyParams(
        weights=tuple(rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in itertools.pairwise(sizes)),
        biases=tuple(np.zeros(b) for b in sizes[1:]),
        activation="tanh",
        action_low=np.full(n_out, -10.0),
        action_high=np.full(n_out, 10.0),
    )
    _, seconds = _timed(lambda: run_policy(env, lambda obs: policy_action(policy, obs)))
    return seconds


if __name__ == "__main__":
    main()
