"""The allocator against its baselines: the RL data, the test backtests, stress windows, regimes, Monte Carlo.

The allocation stage's domain steps, each pure given its inputs (no printing, no files):

* :func:`rl_data`: the train segment and walk-forward validation windows over the valid segment,
  without the score column (RL never sees it);
* :func:`compare`: the chosen policy, the five classic optimisers and the top-k-by-score strategy
  through the same walk-forward backtester on the test segment, same costs and schedule; the
  comparison table (deflated Sharpe for the number of configurations tried), stress windows,
  regimes and a block-bootstrap Monte Carlo of the policy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feature_repo.schema import ALLOCATOR_FEATURES
from training.allocation.backtest import BacktestConfig, backtest_all
from training.allocation.config import AllocationRunConfig
from training.allocation.data import SCORE, AllocationData
from training.allocation.env import WINDOW_BASES, EnvConfig
from training.allocation.optimisers import ClassicStrategy, TopkDropout, classic_strategies
from training.allocation.overlay import base_optimiser as overlay_optimiser
from training.allocation.overlay import base_table, decision_dates
from training.allocation.panel import MarketPanel
from training.allocation.performance import (
    STRESS_WINDOWS,
    block_bootstrap,
    classify_regimes,
    comparison_table,
    regime_table,
    stress_table,
)
from training.allocation.policy import PolicyParams
from training.allocation.policy_strategy import PolicyStrategy, Retrain
from training.allocation.results import StrategyResult
from training.allocation.rl import RLData, RLResult
from training.allocation.strategy import Strategy
from training.errors import TrainingError
from training.signals.config import SignalRunConfig


@dataclass(frozen=True, eq=False)
class AllocationInputs:
    """What every step of the allocation stage reads."""

    cfg: AllocationRunConfig
    signals: SignalRunConfig
    data: AllocationData
    panel: MarketPanel  # features lagged one session: the environment's view (it trades at t on features[t])
    env: EnvConfig


@dataclass(frozen=True, eq=False)
class Comparison:
    """The test-segment comparison of the policy (``results[0]``) with every baseline."""

    policy_name: str
    results: list[StrategyResult]
    seconds: dict[str, float]  # backtest wall time per strategy
    benchmark: np.ndarray  # the benchmark's closes over the test sessions
    table: pd.DataFrame
    extra: dict[str, pd.DataFrame]  # stress windows, regimes, Monte Carlo: title -> table
    regimes: np.ndarray  # the regime of each test session
    fan: dict[float, np.ndarray]  # the Monte Carlo's quantile paths of the policy
    notes: list[str] = field(default_factory=list)


def allocation_inputs(cfg: AllocationRunConfig, signals: SignalRunConfig, data: AllocationData) -> AllocationInputs:
    """The stage's inputs: the environment's settings from the config, the panel lagged one session."""
    env = EnvConfig(
        window=cfg.window,
        cost_bps=cfg.cost_bps,
        slippage_bps=cfg.slippage_bps,
        risk_penalty=cfg.risk_penalty,
        max_weight=cfg.max_weight,
        turnover_cap=cfg.turnover_cap,
        allow_cash=cfg.allow_cash,
        rebalance_every=cfg.rebalance_every,
        max_assets=cfg.max_assets,
        slot_feature=cfg.slot_feature,
        overlay=cfg.rl.overlay.base,
        overlay_scale=cfg.rl.overlay.scale,
    )
    return AllocationInputs(cfg, signals, data, data.panel.with_feature_lag(1), env)


def validation_windows(valid: tuple[int, int], count: int, min_sessions: int) -> list[tuple[int, int]]:
    """``count`` consecutive windows over the valid segment (fewer when it is short)."""
    start, stop = valid
    count = max(1, min(count, (stop - start) // max(min_sessions, 1)))
    edges = np.linspace(start, stop, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def input_validation_windows(inputs: AllocationInputs) -> list[tuple[int, int]]:
    """The configured validation windows over the valid segment (at least four rebalances each)."""
    cfg = inputs.cfg
    return validation_windows(inputs.data.valid, cfg.validation_windows, 4 * cfg.rebalance_every)


def rl_data(inputs: AllocationInputs) -> RLData:
    """RL's train panel and validation panels (with the window's warm-up, without the score column).

    With a window base (``min_variance``, ``hrp``) the base books of every decision on the panels'
    rebalance grids are computed here, once, from the unlagged panel (:func:`overlay.base_table`).
    """
    train = _observation_panel(inputs, *inputs.data.train)
    validation = [_observation_panel(inputs, a, b) for a, b in input_validation_windows(inputs)]
    bases = None
    optimiser = base_optimiser(inputs)
    if optimiser is not None:
        every, window = inputs.cfg.rebalance_every, inputs.cfg.window
        dates = [d for p in (train, *validation) for d in decision_dates(p, window, every)]
        bases = base_table(inputs.data.panel, dates, optimiser)
    return RLData(train=train, validation=validation, env=inputs.env, bases=bases)


def base_optimiser(inputs: AllocationInputs) -> ClassicStrategy | None:
    """A fresh optimiser forming the overlay's window base, or None (no overlay, or a servable base)."""
    cfg = inputs.cfg
    if cfg.rl.overlay.base not in WINDOW_BASES:
        return None
    return overlay_optimiser(cfg.rl.overlay.base, lookback=cfg.lookback, max_weight=cfg.max_weight)


def _observation_panel(inputs: AllocationInputs, start: int, stop: int) -> MarketPanel:
    """Sessions ``start..stop`` plus the window's warm-up, without the score column (RL never sees it)."""
    panel = inputs.panel.slice(start - (inputs.cfg.window - 1), stop)
    if SCORE not in panel.feature_names:
        return panel
    keep = [i for i, name in enumerate(panel.feature_names) if name != SCORE]
    return panel.with_features(
        np.ascontiguousarray(panel.features[:, :, keep]), tuple(panel.feature_names[i] for i in keep)
    )


def policy_name(search: RLResult) -> str:
    """The chosen policy's row in every table: ``rl_ppo`` or ``rl_a2c``."""
    return f"rl_{search.config['algorithm']}"


def compare(inputs: AllocationInputs, search: RLResult, *, progress: bool) -> Comparison:
    """Backtest the chosen policy and every baseline on the test segment and build every table of the report."""
    cfg = inputs.cfg
    name = policy_name(search)
    notes: list[str] = []
    results, seconds = _test_backtests(inputs, search, name, progress=progress, notes=notes)
    bench = benchmark(inputs, results[0].dates)
    table = comparison_table(results, bench, n_trials=len(search.trials) + len(results) - 1)
    regimes = classify_regimes(inputs.data.panel.benchmark, inputs.data.panel.dates)
    test_regimes = regimes[inputs.data.test[0] : inputs.data.test[1]]
    extra = {
        "Stress windows": _stress(inputs, search.policy, name, results, bench, notes=notes),
        "By regime (trailing trend and volatility of the benchmark)": regime_table(results, test_regimes),
    }
    mc = block_bootstrap(
        results[0].returns, block=cfg.monte_carlo.block, n_paths=cfg.monte_carlo.n_paths, seed=cfg.monte_carlo.seed
    )
    extra["Monte Carlo (block bootstrap) of " + name] = mc.summary
    return Comparison(name, results, seconds, bench, table, extra, test_regimes, mc.fan, notes)


def _test_backtests(
    inputs: AllocationInputs, search: RLResult, policy_name: str, *, progress: bool, notes: list[str]
) -> tuple[list[StrategyResult], dict[str, float]]:
    """The policy and every classic strategy through the same walk-forward backtester on the test segment.

    The backtester imposes the one-session lag itself (a decision at t sees history through t - 1),
    so it gets the unlagged panel; the policy reads its features from it by name.
    """
    start, stop = inputs.data.test
    rl = inputs.cfg.rl
    retrain = None
    if rl.walk_forward_retrain:
        retrain = Retrain(
            hyper_parameters=dict(search.config),
            timesteps=search.timesteps,
            episode_length=max(1, rl.episode_sessions // inputs.cfg.rebalance_every),
            net_arch=rl.net_arch,
        )
        notes.append(
            f"{policy_name} was re-trained every {inputs.cfg.refit_every} sessions of the test segment on the "
            f"history before each window ({search.timesteps} steps, the chosen trial's hyper-parameters)"
        )
    policy = PolicyStrategy(
        policy_name,
        search.policy,
        inputs.env,
        ALLOCATOR_FEATURES,
        retrain=retrain,
        base_optimiser=base_optimiser(inputs),
    )
    strategies: list[Strategy] = [policy, *_classic(inputs, with_topk=True)]
    config = backtest_config(inputs)
    results, seconds = backtest_all(strategies, inputs.data.panel, config, start=start, end=stop - 1, progress=progress)
    notes.extend(_fallback_notes(strategies, "test segment"))
    return results, seconds


def _stress(
    inputs: AllocationInputs,
    policy: PolicyParams,
    policy_name: str,
    results: list[StrategyResult],
    bench: np.ndarray,
    *,
    notes: list[str],
) -> pd.DataFrame:
    """Stress windows: from the test backtests where they fall in the test segment, else from a backtest of the window.

    A window before the test segment (2008 for the demo data) is backtested on its own: the
    classic strategies only look back ``lookback`` sessions, so their figures are out of sample
    there too; the RL policy trained or was selected on those years, so its row says ``in-sample``.
    """
    in_test = stress_table(results, bench, results[0].dates)
    missing = in_test["coverage"].astype(str).str.startswith("none")
    frames = [in_test[~missing]]
    for window in in_test.loc[missing, "window"]:
        span = _stress_span(inputs, window)
        if span is None:  # after the data, too early for the lookback, or inside the test segment
            frames.append(in_test[in_test["window"] == window])
            continue
        window_results = _backtest_window(inputs, policy, f"{policy_name} (in-sample)", span, notes)
        window_bench = benchmark(inputs, window_results[0].dates, start=span[0])
        frames.append(
            stress_table(
                window_results, window_bench, window_results[0].dates, windows={window: STRESS_WINDOWS[window]}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _stress_span(inputs: AllocationInputs, window: str) -> tuple[int, int] | None:
    """The panel positions ``[start, stop)`` of a stress window before the test segment, or None."""
    first, last = STRESS_WINDOWS[window]
    panel = inputs.panel
    # From the close on the window's first day, or the last session before it (a holiday).
    start = panel.position(first)
    if start >= panel.n_sessions:  # the window lies after the data (a development split ending early)
        return None
    start -= int(start > 0 and panel.dates[start] > np.datetime64(first, "D"))
    stop = min(panel.position(last) + 1, panel.n_sessions)
    if start < inputs.cfg.lookback + 1 or stop - start < 2 or start >= inputs.data.test[0]:
        return None
    return start, stop


def _backtest_window(
    inputs: AllocationInputs, policy: PolicyParams, policy_name: str, window: tuple[int, int], notes: list[str]
) -> list[StrategyResult]:
    start, stop = window
    strategies: list[Strategy] = [
        PolicyStrategy(policy_name, policy, inputs.env, ALLOCATOR_FEATURES, base_optimiser=base_optimiser(inputs)),
        *_classic(inputs, with_topk=False),
    ]
    results, _ = backtest_all(strategies, inputs.data.panel, backtest_config(inputs), start=start, end=stop - 1)
    notes.extend(_fallback_notes(strategies, f"stress window from {inputs.panel.dates[start]}"))
    return results


def _fallback_notes(strategies: list[Strategy], where: str) -> list[str]:
    """One line per strategy whose optimiser failed on some rebalances and held equal weight there."""
    notes = []
    for s in strategies:
        records: list[str] = list(getattr(s, "fallbacks", []))
        if records:
            notes.append(
                f"{s.name} held equal weight on {len(records)} rebalance(s) of the {where} where its solve "
                f"failed; first: {records[0]}"
            )
    return notes


def _classic(inputs: AllocationInputs, *, with_topk: bool) -> list[Strategy]:
    cfg = inputs.cfg
    strategies: list[Strategy] = list(classic_strategies(max_weight=cfg.max_weight, lookback=cfg.lookback))
    if with_topk and inputs.data.has_scores:
        strategies.append(
            TopkDropout(k=cfg.topk.k, n_drop=cfg.topk.n_drop, score_feature=SCORE, max_weight=cfg.max_weight)
        )
    return strategies


def backtest_config(inputs: AllocationInputs) -> BacktestConfig:
    """The backtester's schedule and costs, the same for the policy and every baseline."""
    cfg = inputs.cfg
    return BacktestConfig(
        rebalance_every=cfg.rebalance_every,
        cost_bps=cfg.cost_bps,
        slippage_bps=cfg.slippage_bps,
        refit_every=cfg.refit_every,
        min_history=cfg.lookback + 1,
    )


def benchmark(inputs: AllocationInputs, dates: np.ndarray, *, start: int | None = None) -> np.ndarray:
    """The benchmark's closes over ``dates``, from ``start`` (the test segment's start by default).

    Raises:
        TrainingError: the data hold no benchmark.
    """
    bench = inputs.data.panel.benchmark
    if bench is None:
        raise TrainingError("the allocation stage needs a benchmark")
    first = inputs.data.test[0] if start is None else start
    return np.asarray(bench[first : first + dates.size], dtype=np.float64)
