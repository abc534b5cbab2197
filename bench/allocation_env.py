"""Benchmark: portfolio environment steps per second on one core, ours vs a reconstruction of FinRL's.

What is measured: ``step()`` calls per second with random actions, 20 assets, on a SYNTHETIC panel
(``training.allocation.panel.synthetic_panel``), for

* **ours**: :class:`training.allocation.env.PortfolioEnv` with the default config (cash, 10 bps
  commission + 5 bps slippage charged, daily rebalancing), then with every constraint on
  (max weight 0.1, turnover cap 0.5, risk penalty 1) and weekly (one step = five sessions);
* **the baseline**: :class:`FinRLStepReconstruction`, a re-implementation (in this file, no FinRL
  import: ``finrl`` 0.3.7 does not import here) of the step logic of FinRL's ``StockPortfolioEnv``
  (``finrl/meta/env_portfolio_allocation/env_portfolio.py``), kept as costly as the original: a
  long pandas frame indexed by day number, ``df.loc[day, :]`` per step, the covariance matrix
  stored per row (``cov_list``) and stacked into the state, ``len(df.index.unique())`` per step,
  an overflow-prone softmax, Python's ``sum`` over the weighted returns, and the transaction cost
  stored and never charged.

Each of ``--rounds`` rounds times every environment once, the order rotating every round (this
machine's CPU speed shifts for seconds at a time); figures are medians over rounds. Episodes that
end are reset inside the timed loop (``reset`` is part of training). Actions are drawn before the
clock starts: uniform over each environment's own action box.

``agreement`` checks both compute the same thing: with costs at zero, no cash and the same
actions, our per-step gross returns equal FinRL's portfolio returns; with our default costs, the
wealth our environment reports is lower by the costs it charged (FinRL's is not).

Threads: BLAS/OpenMP pools are set to one thread before numpy is imported, and the process is
pinned to one CPU, so the figures are per core.
"""

# The thread settings below must precede the first numpy import, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import os

for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_pool] = "1"

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import MarketPanel, synthetic_panel

NAME: Final = "allocation_env"
GOAL_STEPS_PER_S: Final = 1500.0
FINRL_LOOKBACK: Final = 252  # FinRL's tutorials: one year of returns per covariance matrix
AGREEMENT_STEPS: Final = 250
WINDOW: Final = EnvConfig().window


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.allocation_env",
        description="Portfolio environment steps/s on one core: ours vs a reconstruction of FinRL's "
        "StockPortfolioEnv step, on a SYNTHETIC panel; one JSON document on stdout.",
    )
    parser.add_argument("--assets", type=int, default=20, help="assets in the panel (default 20)")
    parser.add_argument("--sessions", type=int, default=2520, help="sessions after FinRL's lookback (default 2520)")
    parser.add_argument("--features", type=int, default=6, help="features per asset (default 6)")
    parser.add_argument("--steps", type=int, default=20000, help="timed steps per round, ours (default 20000)")
    parser.add_argument("--baseline-steps", type=int, default=1000, help="timed steps per round, FinRL (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the panel and the actions (default 0)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


class FinRLStepReconstruction:
    """RECONSTRUCTION of FinRL ``StockPortfolioEnv``'s reset/step logic, for timing only (old gym API).

    Same data layout and operations as the original; left out: the gym base class and the
    terminal branch's plots, prints and ``results/*.png`` writes (once per episode). The cost rate
    is stored and, as in FinRL, never used.
    """

    data: Any  # one day's rows (pandas' stubs type ``.values`` too loosely for the arithmetic below)

    def __init__(self, df: pd.DataFrame, stock_dim: int, tech_indicator_list: list[str]) -> None:
        self.df = df
        self.stock_dim = stock_dim
        self.tech_indicator_list = tech_indicator_list
        self.initial_amount = 1_000_000.0
        self.transaction_cost_pct = 0.001  # stored, never charged (the FinRL bug this project avoids)
        self.reset()

    def _load_day(self) -> None:
        self.data = self.df.loc[self.day, :]
        self.covs = self.data["cov_list"].values[0]
        techs = [self.data[tech].values.tolist() for tech in self.tech_indicator_list]
        self.state = np.append(np.array(self.covs), techs, axis=0)

    def reset(self) -> np.ndarray:
        self.day = 0
        self._load_day()
        self.portfolio_value = self.initial_amount
        self.terminal = False
        self.reward = self.initial_amount
        self.asset_memory = [self.initial_amount]
        self.portfolio_return_memory: list[float] = [0.0]
        self.actions_memory: list[Any] = [[1 / self.stock_dim] * self.stock_dim]
        self.date_memory = [self.data.date.unique()[0]]
        return self.state

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        self.terminal = self.day >= len(self.df.index.unique()) - 1
        if self.terminal:
            return self.state, self.reward, self.terminal, {}
        weights = np.exp(actions) / np.sum(np.exp(actions))  # FinRL's softmax: no max shift
        self.actions_memory.append(weights)
        previous = self.data
        self.day += 1
        self._load_day()
        portfolio_return = sum(((self.data.close.values / previous.close.values) - 1) * weights)
        self.portfolio_value = self.portfolio_value * (1 + portfolio_return)
        self.portfolio_return_memory.append(portfolio_return)
        self.date_memory.append(self.data.date.unique()[0])
        self.asset_memory.append(self.portfolio_value)
        self.reward = self.portfolio_value
        return self.state, self.reward, self.terminal, {}


def finrl_frame(panel: MarketPanel, lookback: int) -> pd.DataFrame:
    """The panel as FinRL's preprocessed portfolio frame, one row per (date, tic), index = day number.

    The columns of FinRL's portfolio tutorial: OHLCV (open/high/low set to the close, volume
    constant: the step reads only the close), ``day`` (weekday), the indicators (the panel's
    features), and per day the covariance matrix (``cov_list``) and the frame (``return_list``)
    of the previous ``lookback`` sessions' returns, repeated on each of the day's rows; days
    before the first full lookback dropped.
    """
    close = 100.0 * np.cumprod(1.0 + panel.returns, axis=0)
    days = range(lookback, panel.n_sessions)
    windows = [pd.DataFrame(panel.returns[d - lookback + 1 : d + 1], columns=panel.tickers) for d in days]
    n = panel.n_assets
    dates = pd.DatetimeIndex(np.repeat(panel.dates[lookback:], n))
    prices = close[lookback:].reshape(-1)
    frame = pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),  # FinRL keeps dates as strings
            "tic": np.tile(panel.tickers, len(days)),
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": 1e6,
            "day": dates.dayofweek,
            **{
                name: panel.features[lookback:, :, i].reshape(-1).astype(np.float64)
                for i, name in enumerate(panel.feature_names)
            },
            "cov_list": _per_row([window.cov().to_numpy() for window in windows], n),
            "return_list": _per_row(windows, n),
        }
    )
    frame.index = frame.date.factorize()[0]
    return frame


def _per_row(values: list[Any], n: int) -> np.ndarray:
    """An object column holding each day's value on each of its ``n`` rows (numpy must not unpack them)."""
    column = np.empty(len(values) * n, dtype=object)
    for i, value in enumerate(values):
        for j in range(n):
            column[i * n + j] = value
    return column


def steps_per_second(step: Callable[[np.ndarray], bool], reset: Callable[[], object], actions: np.ndarray) -> float:
    """Time ``step`` over ``actions``; ``step`` says when the episode ended, and then ``reset`` runs."""
    reset()
    started = time.perf_counter()
    for action in actions:
        if step(action):
            reset()
    return len(actions) / (time.perf_counter() - started)


def ours_case(panel: MarketPanel, config: EnvConfig) -> tuple[Callable[[np.ndarray], bool], Callable[[], object]]:
    env = PortfolioEnv(panel, config)

    def step(action: np.ndarray) -> bool:
        _, _, terminated, truncated, _ = env.step(action)
        return terminated or truncated

    return step, lambda: env.reset(seed=0)


def agreement(panel: MarketPanel, frame: pd.DataFrame, n_steps: int, seed: int) -> dict[str, Any]:
    """Same actions through both: zero-cost gross returns must match; ours at default costs must be lower."""
    aligned = panel.slice(FINRL_LOOKBACK - WINDOW + 1, panel.n_sessions)  # our first decision = FinRL's day 0
    actions = np.random.default_rng(seed + 1).uniform(0.0, 1.0, (n_steps, panel.n_assets))
    finrl = FinRLStepReconstruction(frame, panel.n_assets, list(panel.feature_names))
    for action in actions:
        finrl.step(action)
    wealth, gross = {}, {}
    for label, config in (
        ("free", EnvConfig(cost_bps=0.0, slippage_bps=0.0, allow_cash=False)),
        ("charged", EnvConfig(allow_cash=False)),
    ):
        env = PortfolioEnv(aligned, config)
        env.reset(seed=0)
        gross[label] = np.array([env.step(action)[4]["gross_return"] for action in actions])
        wealth[label] = env.wealth
    difference = np.abs(gross["free"] - np.array(finrl.portfolio_return_memory[1:])).max()
    return {
        "steps": n_steps,
        "zero_cost_gross_returns_max_abs_difference": float(difference),
        "zero_cost_gross_returns_match_1e-12": bool(difference <= 1e-12),
        "ours_wealth_zero_cost": common.rounded(wealth["free"], 8),
        "ours_wealth_default_costs": common.rounded(wealth["charged"], 8),
        "ours_cost_drag": common.rounded(1.0 - wealth["charged"] / wealth["free"]),
        "finrl_wealth_with_transaction_cost_pct_0.001": common.rounded(finrl.portfolio_value / finrl.initial_amount, 8),
    }


def measure(args: argparse.Namespace, panel: MarketPanel, frame: pd.DataFrame) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    n = panel.n_assets
    ours_window = panel.slice(FINRL_LOOKBACK - WINDOW + 1, panel.n_sessions)  # decides on FinRL's days
    cases: dict[str, tuple[Callable[[np.ndarray], bool], Callable[[], object], np.ndarray]] = {}
    for label, config in (
        ("ours_default", EnvConfig()),
        ("ours_constrained", EnvConfig(max_weight=0.1, turnover_cap=0.5, risk_penalty=1.0)),
        ("ours_weekly", EnvConfig(rebalance_every=5)),
    ):
        step, reset = ours_case(ours_window, config)
        cases[label] = (step, reset, rng.uniform(-10.0, 10.0, (args.steps, n + 1)).astype(np.float32))
    finrl = FinRLStepReconstruction(frame, n, list(panel.feature_names))
    cases["finrl_reconstruction"] = (
        lambda a: finrl.step(a)[2],
        finrl.reset,
        rng.uniform(0.0, 1.0, (args.baseline_steps, n)).astype(np.float32),
    )
    rates: dict[str, list[float]] = {label: [] for label in cases}
    order = list(cases)
    for round_no in range(args.rounds):
        for label in order[round_no % len(order) :] + order[: round_no % len(order)]:
            common.log(f"round {round_no + 1}/{args.rounds}: {label}")
            step, reset, actions = cases[label]
            rates[label].append(steps_per_second(step, reset, actions))
    medians = {label: statistics.median(values) for label, values in rates.items()}
    return {
        "steps_per_s": {label: common.rounded(value) for label, value in medians.items()},
        "steps_per_s_all_rounds": {label: [common.rounded(v) for v in values] for label, values in rates.items()},
        "speedup_ours_default_over_finrl": common.ratio(medians["ours_default"], medians["finrl_reconstruction"]),
        "goal_steps_per_s": GOAL_STEPS_PER_S,
        "meets_goal_ours_default": medians["ours_default"] >= GOAL_STEPS_PER_S,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    panel = synthetic_panel(FINRL_LOOKBACK + args.sessions, args.assets, args.features, seed=args.seed)
    frame = finrl_frame(panel, FINRL_LOOKBACK)
    doc = {
        "benchmark": NAME,
        "description": "gymnasium portfolio environment step() calls per second on one core, random actions: "
        "ours vs a reconstruction of FinRL's StockPortfolioEnv step",
        "data": f"synthetic (randomly generated, no real market data): training.allocation.panel.synthetic_panel("
        f"n_sessions={panel.n_sessions}, n_assets={args.assets}, n_features={args.features}, seed={args.seed})",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "assets": args.assets,
        "sessions": args.sessions,
        "features": args.features,
        "finrl_frame_rows": len(frame),
        "timed_steps_per_round": {"ours": args.steps, "finrl_reconstruction": args.baseline_steps},
        "rounds": args.rounds,
        "threads": "BLAS/OpenMP pools 1, process pinned to one CPU",
        **measure(args, panel, frame),
        "agreement": agreement(panel, frame, AGREEMENT_STEPS, args.seed),
        "total_seconds": common.rounded(time.perf_counter() - started, 3),
        "environment": {
            **common.environment(),
            "rl_packages": {name: _version(name) for name in ("gymnasium", "stable-baselines3")},
        },
    }
    common.emit(NAME, doc, args.results_dir)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
