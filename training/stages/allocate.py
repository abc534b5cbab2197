"""Stage ``allocate``: train the RL allocator (Ray Tune), backtest it with every baseline, tear sheet, registry.

1. The registry is checked first (an unreachable registry fails in seconds, not after training).
2. Data: closes, the ``allocator_v1`` features (point in time, lagged one session so a decision
   trades at the close after its inputs) and the signal models' out-of-sample test scores.
3. RL: PPO/A2C trials on the train segment, chosen on walk-forward windows over the valid segment.
4. Backtest on the test segment, untouched by tuning: the chosen policy, the five classic
   optimisers and the top-k-by-score strategy, same costs and schedule; the benchmark beside them.
5. Comparison table (deflated Sharpe for the number of configurations tried), stress windows,
   regimes, a block-bootstrap Monte Carlo of the policy, one HTML tear sheet
   (:mod:`training.allocation.comparison`, :mod:`training.allocation.report`).
6. The policy is registered as ``allocator`` (challenger), promoted to champion only when its test
   Sharpe beats the current champion's on the same window by the configured margin
   (:mod:`training.allocation.registration`, :func:`training.registry.gate.register_and_gate`).
"""

from __future__ import annotations

import logging
import math

from feature_repo.store import FeatureRepo
from training.allocation.comparison import AllocationInputs, allocation_inputs, compare, policy_name, rl_data
from training.allocation.config import AllocationRunConfig
from training.allocation.data import load_allocation_data
from training.allocation.env import WINDOW_BASES
from training.allocation.registration import allocator_challenger
from training.allocation.report import print_panel, print_report, print_search, write_sheet
from training.allocation.rl import run_rl_search
from training.allocation.weights import SERVABLE_BASES
from training.cards import data_label
from training.context import RunContext
from training.ray_runtime import ray_session
from training.registry.gate import register_and_gate
from training.registry.model_registry import code_version
from training.signals.config import SignalRunConfig
from training.stages.common import open_registry, quiet_libraries


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
    with ray_session() as session:
        print(f"  ray: {session.address}, {session.cpus} CPU(s)", file=ctx.out, flush=True)
        search = run_rl_search(rl_data(inputs), cfg.rl, storage_dir=ctx.data_dir / "ray_results", progress=ctx.progress)
    print_search(ctx.out, search, policy_name(search))
    comparison = compare(inputs, search, progress=ctx.progress)
    label = data_label(ctx.config.data.kind)
    sheet = write_sheet(ctx.data_dir / "reports", comparison, benchmark_name=signals.benchmark, label=label)
    print_report(ctx.out, comparison, label=label, sheet=sheet)
    promoted = False
    if cfg.window != 1:
        print(
            f"  not registered: a served allocator reads one online row per ticker (window 1, not {cfg.window})",
            file=ctx.out,
        )
    elif cfg.rl.overlay.base not in SERVABLE_BASES:
        print(
            f"  not registered: the overlay base {cfg.rl.overlay.base!r} needs a returns window, and a served "
            f"request carries one row of features per ticker (servable bases: {', '.join(SERVABLE_BASES)})",
            file=ctx.out,
        )
    else:
        challenger = allocator_challenger(
            inputs,
            search,
            comparison,
            code=code_version(),
            data_kind=ctx.config.data.kind,
            policy_file=ctx.data_dir / "ray_results" / "allocator_policy.npz",
        )
        decision = register_and_gate(registry, challenger)
        print(f"  {decision.describe()}", file=ctx.out, flush=True)
        promoted = decision.promoted
    return {
        "policy": comparison.policy_name,
        "test_sharpe": round(float(comparison.table["sharpe"].astype(float)[comparison.policy_name]), 3),
        "promoted": promoted,
        "tear_sheet": sheet.name,
    }


def _inputs(ctx: RunContext, cfg: AllocationRunConfig, signals: SignalRunConfig) -> AllocationInputs:
    """The panel (with the warm-up RL's first observation needs) and the environment's settings."""
    label = data_label(ctx.config.data.kind)
    # RL's first observation needs the window (plus the one-session feature lag) before the train
    # segment; the optimisers' lookback before the test segment is always there (train + valid).
    warmup = cfg.window + 1
    if cfg.rl.overlay.base in WINDOW_BASES:  # the base's first book, at the train segment's start, needs its lookback
        warmup += cfg.lookback + 1
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
    print_panel(ctx.out, data, label)
    return allocation_inputs(cfg, signals, data)
