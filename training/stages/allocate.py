"""Stage ``allocate``: train the RL allocator (Ray Tune), backtest it with every baseline, tear sheet, registry.

1. The registry is checked first (an unreachable registry fails in seconds, not after training).
2. Data: closes, the ``allocator_v1`` features (point in time, lagged one session so a decision
   trades at the close after its inputs) and the signal models' out-of-sample test scores.
3. RL: PPO/A2C trials on the train segment, chosen on walk-forward windows over the valid segment.
4. Backtest on the test segment, untouched by tuning: the chosen policy, the five classic
   optimisers and the top-k-by-score strategy, same costs and schedule; the benchmark beside them.
5. Comparison table (deflated Sharpe for the number of configurations tried), stress windows,
   regimes, a block-bootstrap Monte Carlo of the policy, one HTML tear sheet.
6. The policy is registered as ``allocator`` (challenger), promoted to champion only when its test
   Sharpe beats the current champion's on the same window by the configured margin.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.schema import ALLOCATOR_FEATURES, ALLOCATOR_SERVICE
from feature_repo.store import FeatureRepo
from training.allocation.backtest import BacktestConfig, backtest, backtest_all
from training.allocation.card import AllocatorFacts, render_card
from training.allocation.config import AllocationRunConfig
from training.allocation.data import SCORE, AllocationData, load_allocation_data
from training.allocation.env import EnvConfig
from training.allocation.optimisers import TopkDropout, classic_strategies
from training.allocation.panel import MarketPanel
from training.allocation.performance import (
    DEFINITIONS,
    STRESS_WINDOWS,
    block_bootstrap,
    classify_regimes,
    comparison_table,
    format_table,
    regime_table,
    stress_table,
)
from training.allocation.policy import PolicyParams
from training.allocation.policy_strategy import PolicyStrategy, Retrain
from training.allocation.results import StrategyResult
from training.allocation.rl import RLData, RLResult, annualised_sharpe, run_rl_search
from training.allocation.strategy import Strategy
from training.allocation.tearsheet import write_tearsheet
from training.cards import data_label
from training.context import RunContext
from training.errors import TrainingError
from training.ray_runtime import ray_session
from training.registry.model_registry import ModelRegistry, PromotionDecision, RunRecord, code_version
from training.signals.config import SignalRunConfig
from training.stages.common import open_registry, quiet_libraries

NAME: Final = "allocator"


@dataclass(frozen=True, eq=False)
class _Inputs:
    cfg: AllocationRunConfig
    signals: SignalRunConfig
    data: AllocationData
    panel: MarketPanel  # features lagged one session: the environment's view (it trades at t on features[t])
    env: EnvConfig


def run(ctx: RunContext) -> dict[str, object]:
    """Train, select, backtest, report and register the allocator (see the module docstring)."""
    cfg, signals = ctx.config.allocation, ctx.config.signals
    if cfg is None or not cfg.enabled or signals is None:
        print(f"  skipped: the run config '{ctx.config.name}' has no enabled 'allocation' section", file=ctx.out)
        return {"skipped": "no allocation section"}
    quiet_libraries()
    # Each optimiser fallback is logged as it happens; the stage prints one summary line per strategy.
    logging.getLogger("training.allocation.optimisers").setLevel(logging.ERROR)
    registry = open_registry(ctx)
    inputs = _inputs(ctx, cfg, signals)
    rl_data = _rl_data(inputs)
    with ray_session() as session:
        print(f"  ray: {session.address}, {session.cpus} CPU(s)", file=ctx.out, flush=True)
        search = run_rl_search(rl_data, cfg.rl, storage_dir=ctx.data_dir / "ray_results", progress=ctx.progress)
    policy_name = f"rl_{search.config['algorithm']}"
    _print_search(ctx, search, policy_name)
    notes: list[str] = []
    results, seconds = _backtests(inputs, search, policy_name, progress=ctx.progress, notes=notes)
    test = results[0].dates
    benchmark = _benchmark(inputs, test)
    n_trials = len(search.trials) + len(results) - 1
    table = comparison_table(results, benchmark, n_trials=n_trials)
    regimes = classify_regimes(inputs.data.panel.benchmark, inputs.data.panel.dates)
    test_regimes = regimes[inputs.data.test[0] : inputs.data.test[1]]
    extra = {
        "Stress windows": _stress(inputs, search.policy, policy_name, results, benchmark, notes=notes),
        "By regime (trailing trend and volatility of the benchmark)": regime_table(results, test_regimes),
    }
    mc = block_bootstrap(
        results[0].returns, block=cfg.monte_carlo.block, n_paths=cfg.monte_carlo.n_paths, seed=cfg.monte_carlo.seed
    )
    extra["Monte Carlo (block bootstrap) of " + policy_name] = mc.summary
    label = data_label(ctx.config.data.kind)
    sheet = _write_sheet(
        ctx,
        results=results,
        table=table,
        extra=extra,
        benchmark=benchmark,
        benchmark_name=signals.benchmark,
        regimes=test_regimes,
        fan=mc.fan,
        policy_name=policy_name,
        label=label,
        notes=notes,
    )
    _print_report(ctx, table=table, extra=extra, label=label, sheet=sheet, seconds=seconds, notes=notes)
    decision = _register(
        ctx, registry=registry, inputs=inputs, search=search, policy_name=policy_name, table=table, result=results[0]
    )
    return {
        "policy": policy_name,
        "test_sharpe": round(float(table["sharpe"].astype(float)[policy_name]), 3),
        "promoted": decision.promoted,
        "tear_sheet": sheet.name,
    }


def _inputs(ctx: RunContext, cfg: AllocationRunConfig, signals: SignalRunConfig) -> _Inputs:
    label = data_label(ctx.config.data.kind)
    # RL's first observation needs the window (plus the one-session feature lag) before the train
    # segment; the optimisers' lookback before the test segment is always there (train + valid).
    warmup = cfg.window + 1
    # A universe rule must leave enough members for the top-k book and a fully invested book under the cap.
    need = max(cfg.topk.k, math.ceil(1.0 / cfg.max_weight - 1e-9), 2)
    data = load_allocation_data(
        signals,
        ctx.offline_store_path,
        FeatureRepo.open(ctx.settings),
        ctx.data_dir,
        label=label,
        warmup=warmup,
        min_members=need,
    )
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
    )
    print(
        f"  panel: {data.panel.n_assets} tickers x {data.panel.n_sessions} sessions "
        f"({data.panel.dates[0]}..{data.panel.dates[-1]}); {label}",
        file=ctx.out,
    )
    if data.dropped:
        shown = ", ".join(data.dropped[:10]) + (" ..." if len(data.dropped) > 10 else "")
        print(f"  left out {len(data.dropped)} ticker(s) without a close on every session: {shown}", file=ctx.out)
    return _Inputs(cfg, signals, data, data.panel.with_feature_lag(1), env)


def _observation_panel(inputs: _Inputs, start: int, stop: int) -> MarketPanel:
    """Sessions ``start..stop`` plus the window's warm-up, without the score column (RL never sees it)."""
    panel = inputs.panel.slice(start - (inputs.cfg.window - 1), stop)
    if SCORE not in panel.feature_names:
        return panel
    keep = [i for i, name in enumerate(panel.feature_names) if name != SCORE]
    return panel.with_features(
        np.ascontiguousarray(panel.features[:, :, keep]), tuple(panel.feature_names[i] for i in keep)
    )


def validation_windows(valid: tuple[int, int], count: int, min_sessions: int) -> list[tuple[int, int]]:
    """``count`` consecutive windows over the valid segment (fewer when it is short)."""
    start, stop = valid
    count = max(1, min(count, (stop - start) // max(min_sessions, 1)))
    edges = np.linspace(start, stop, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _rl_data(inputs: _Inputs) -> RLData:
    windows = validation_windows(inputs.data.valid, inputs.cfg.validation_windows, 4 * inputs.cfg.rebalance_every)
    return RLData(
        train=_observation_panel(inputs, *inputs.data.train),
        validation=[_observation_panel(inputs, a, b) for a, b in windows],
        env=inputs.env,
    )


def _backtests(
    inputs: _Inputs, search: RLResult, policy_name: str, *, progress: bool, notes: list[str]
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
    policy = PolicyStrategy(policy_name, search.policy, inputs.env, ALLOCATOR_FEATURES, retrain=retrain)
    strategies: list[Strategy] = [policy, *_classic(inputs, with_topk=True)]
    config = _backtest_config(inputs)
    results, seconds = backtest_all(strategies, inputs.data.panel, config, start=start, end=stop - 1, progress=progress)
    notes.extend(_fallback_notes(strategies, "test segment"))
    return results, seconds


def _stress(
    inputs: _Inputs,
    policy: PolicyParams,
    policy_name: str,
    results: list[StrategyResult],
    benchmark: np.ndarray,
    *,
    notes: list[str],
) -> pd.DataFrame:
    """Stress windows: from the test backtests where they fall in the test segment, else from a backtest of the window.

    A window before the test segment (2008 for the demo data) is backtested on its own: the
    classic strategies only look back ``lookback`` sessions, so their figures are out of sample
    there too; the RL policy trained or was selected on those years, so its row says ``in-sample``.
    """
    in_test = stress_table(results, benchmark, results[0].dates)
    missing = in_test["coverage"].astype(str).str.startswith("none")
    frames = [in_test[~missing]]
    panel = inputs.panel
    for window in in_test.loc[missing, "window"]:
        first, last = STRESS_WINDOWS[window]
        # From the close on the window's first day, or the last session before it (a holiday).
        start = panel.position(first)
        if start >= panel.n_sessions:  # the window lies after the data (a development split ending early)
            frames.append(in_test[in_test["window"] == window])
            continue
        start -= int(start > 0 and panel.dates[start] > np.datetime64(first, "D"))
        stop = min(panel.position(last) + 1, panel.n_sessions)
        if start < inputs.cfg.lookback + 1 or stop - start < 2 or start >= inputs.data.test[0]:
            frames.append(in_test[in_test["window"] == window])
            continue
        window_results = _backtest_window(inputs, policy, f"{policy_name} (in-sample)", (start, stop), notes)
        bench = _benchmark(inputs, window_results[0].dates, start=start)
        frames.append(stress_table(window_results, bench, window_results[0].dates, windows={window: (first, last)}))
    return pd.concat(frames, ignore_index=True)


def _backtest_window(
    inputs: _Inputs, policy: PolicyParams, policy_name: str, window: tuple[int, int], notes: list[str]
) -> list[StrategyResult]:
    start, stop = window
    strategies: list[Strategy] = [
        PolicyStrategy(policy_name, policy, inputs.env, ALLOCATOR_FEATURES),
        *_classic(inputs, with_topk=False),
    ]
    results, _ = backtest_all(strategies, inputs.data.panel, _backtest_config(inputs), start=start, end=stop - 1)
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


def _classic(inputs: _Inputs, *, with_topk: bool) -> list[Strategy]:
    cfg = inputs.cfg
    strategies: list[Strategy] = list(classic_strategies(max_weight=cfg.max_weight, lookback=cfg.lookback))
    if with_topk and inputs.data.has_scores:
        strategies.append(
            TopkDropout(k=cfg.topk.k, n_drop=cfg.topk.n_drop, score_feature=SCORE, max_weight=cfg.max_weight)
        )
    return strategies


def _backtest_config(inputs: _Inputs) -> BacktestConfig:
    cfg = inputs.cfg
    return BacktestConfig(
        rebalance_every=cfg.rebalance_every,
        cost_bps=cfg.cost_bps,
        slippage_bps=cfg.slippage_bps,
        refit_every=cfg.refit_every,
        min_history=cfg.lookback + 1,
    )


def _benchmark(inputs: _Inputs, dates: np.ndarray, *, start: int | None = None) -> np.ndarray:
    bench = inputs.data.panel.benchmark
    if bench is None:
        raise TrainingError("the allocation stage needs a benchmark")
    first = inputs.data.test[0] if start is None else start
    return np.asarray(bench[first : first + dates.size], dtype=np.float64)


def _print_search(ctx: RunContext, s: RLResult, name: str) -> None:
    print(
        f"  allocator: {len(s.trials)} trials in {s.seconds:.0f} s ({s.trials_per_minute:.1f}/min on {s.cpus} CPU), "
        f"{s.stopped_early} stopped early by ASHA; chosen {name} after {s.timesteps} steps, validation Sharpe "
        f"{s.val_sharpe_mean:+.2f} (windows: {', '.join(f'{v:+.2f}' for v in s.val_sharpes)})",
        file=ctx.out,
        flush=True,
    )


def _write_sheet(
    ctx: RunContext,
    *,
    results: list[StrategyResult],
    table: pd.DataFrame,
    extra: dict[str, pd.DataFrame],
    benchmark: np.ndarray,
    benchmark_name: str,
    regimes: np.ndarray,
    fan: dict[float, np.ndarray],
    policy_name: str,
    label: str,
    notes: list[str],
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return write_tearsheet(
        ctx.data_dir / "reports" / f"allocation-{stamp}.html",
        results,
        table=table,
        benchmark=benchmark,
        benchmark_name=benchmark_name,
        extra_tables=extra,
        regimes=regimes,
        fan=fan,
        fan_strategy=policy_name,
        weights_strategy=policy_name,
        title="Portfolio OS: allocator and baselines on the test segment",
        notes=[
            label,
            "The test segment was untouched by tuning: RL trained on the train segment and was chosen on "
            "walk-forward windows of the valid segment.",
            "Every strategy trades at the close after the data it decides on, and pays the same costs.",
            *notes,
        ],
    )


def _print_report(
    ctx: RunContext,
    *,
    table: pd.DataFrame,
    extra: dict[str, pd.DataFrame],
    label: str,
    sheet: Path,
    seconds: dict[str, float],
    notes: list[str],
) -> None:
    print(f"\n  Test segment, untouched by tuning; {label}:\n", file=ctx.out)
    print("\n".join("  " + line for line in format_table(table).splitlines()), file=ctx.out)
    for name, frame in extra.items():
        print(f"\n  {name}:", file=ctx.out)
        print("\n".join("  " + line for line in _plain(frame).splitlines()), file=ctx.out)
    for note in notes:
        print(f"  note: {note}", file=ctx.out)
    slow = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    print(f"\n  backtest wall time: {slow}", file=ctx.out)
    reports = sheet.parent
    (reports / sheet.name.replace(".html", ".md")).write_text(
        f"# Allocation, test segment\n\n{label}\n\n```\n{format_table(table)}\n```\n\n```\n{DEFINITIONS}\n```\n",
        encoding="utf-8",
    )
    table.to_csv(reports / sheet.name.replace(".html", ".csv"))
    print(f"  tear sheet: {sheet}", file=ctx.out, flush=True)


def _plain(frame: pd.DataFrame) -> str:
    """A small table as text: counts as integers, other numbers to 4 decimals, no row index."""
    shown = frame.copy()
    for column in shown.columns:
        if column in ("days", "n_days"):
            shown[column] = shown[column].astype("Int64")
    keep_index = not isinstance(shown.index, pd.RangeIndex)
    return shown.to_string(index=keep_index, float_format=lambda v: f"{v:.4f}", na_rep="-")


def _register(
    ctx: RunContext,
    *,
    registry: ModelRegistry,
    inputs: _Inputs,
    search: RLResult,
    policy_name: str,
    table: pd.DataFrame,
    result: StrategyResult,
) -> PromotionDecision:
    cfg, seg = inputs.cfg, inputs.signals.segments
    if cfg.window != 1:
        print(
            f"  not registered: a served allocator reads one online row per ticker (window 1, not {cfg.window})",
            file=ctx.out,
        )
        return PromotionDecision(NAME, "-", False, "window > 1", None, float("nan"), None)
    tickers = list(inputs.panel.tickers)
    code = code_version()
    windows = validation_windows(inputs.data.valid, cfg.validation_windows, 4 * cfg.rebalance_every)
    dates = inputs.panel.dates
    baselines = [b for b in table.index if b != policy_name]
    card_table = table.rename(index={policy_name: NAME})
    facts = AllocatorFacts(
        name=NAME,
        tickers=tickers,
        features=list(ALLOCATOR_FEATURES),
        segments={"train": seg.train, "valid": seg.valid, "test": seg.test},
        validation_windows=[f"{dates[a]}..{dates[b - 1]}" for a, b in windows],
        config={k: search.config[k] for k in sorted(search.config)},
        constraints={
            "max_weight": cfg.max_weight,
            "turnover_cap": cfg.turnover_cap,
            "allow_cash": cfg.allow_cash,
            "max_assets": cfg.max_assets,
            "rebalance_every": cfg.rebalance_every,
            "cost_bps": cfg.cost_bps,
            "slippage_bps": cfg.slippage_bps,
        },
        val_sharpes=search.val_sharpes,
        trials=search.trials,
        table=card_table,
        baselines=baselines,
        code_version=code,
        data_kind=ctx.config.data.kind,
    )
    sharpe = annualised_sharpe(result.returns)
    record = RunRecord(
        name=NAME,
        params={**{k: str(v) for k, v in search.config.items()}, "timesteps": search.timesteps},
        metrics={
            "val_sharpe_mean": search.val_sharpe_mean,
            **{f"test_{k}": float(v) for k, v in table.loc[policy_name].items() if isinstance(v, int | float)},
        },
        tags={"feature_service": ALLOCATOR_SERVICE, "code_version": code, "algorithm": str(search.config["algorithm"])},
        card=render_card(facts),
        tables={"comparison": table, "trials": search.trials},
    )
    policy_file = search.policy.save(ctx.data_dir / "ray_results" / "allocator_policy.npz")
    model_config = {
        "tickers": tickers,
        "features": list(ALLOCATOR_FEATURES),
        "max_weight": cfg.max_weight,
        "turnover_cap": cfg.turnover_cap,
        "allow_cash": cfg.allow_cash,
        "max_assets": cfg.max_assets,
        "slot_feature": cfg.slot_feature,
    }
    champion = _champion_sharpe(registry, inputs)
    version = registry.log_allocator(record, policy_file, model_config)
    decision = registry.promote_if_better(NAME, version, sharpe, champion, metric="sharpe", margin=0.0)
    verdict = "champion" if decision.promoted else "challenger only"
    print(f"  {NAME} v{version}: {verdict} ({decision.reason})", file=ctx.out, flush=True)
    return decision


def _champion_sharpe(registry: ModelRegistry, inputs: _Inputs) -> float | None:
    """The champion allocator's net Sharpe on this run's test window, or None when it cannot run on it."""
    version = registry.champion_version(NAME)
    if version is None:
        return None
    try:
        champion = PolicyStrategy(NAME, registry.load_allocator_policy(version), inputs.env, ALLOCATOR_FEATURES)
        start, stop = inputs.data.test
        result = backtest(champion, inputs.data.panel, _backtest_config(inputs), start=start, end=stop - 1)
        return annualised_sharpe(result.returns)
    except (TrainingError, ValueError):
        return None
