"""What the registry's gate needs for the allocator: its record, card, policy file and champion Sharpe.

The policy is registered as ``allocator`` with its layers, the observation and weight code
(:mod:`training.allocation.allocator_pyfunc`) and its constraints in ``model_config``, and gated on
its net Sharpe on the test segment against the current champion's on the same window.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from feature_repo.contract import ALLOCATOR, ALLOCATOR_SERVICE, TAG_FEATURE_SERVICE
from feature_repo.schema import ALLOCATOR_FEATURES
from training.allocation.backtest import backtest
from training.allocation.card import AllocatorFacts, render_card
from training.allocation.comparison import AllocationInputs, Comparison, backtest_config, input_validation_windows
from training.allocation.policy_strategy import PolicyStrategy
from training.allocation.rl import RLResult, annualised_sharpe
from training.errors import TrainingError
from training.registry.gate import Challenger
from training.registry.model_registry import ModelRegistry, RunRecord

NAME: Final = ALLOCATOR


def allocator_challenger(
    inputs: AllocationInputs, search: RLResult, comparison: Comparison, *, code: str, data_kind: str, policy_file: Path
) -> Challenger:
    """The chosen policy for the gate, judged on its test net Sharpe (margin 0); its layers saved to ``policy_file``."""
    table = comparison.table
    record = RunRecord(
        name=NAME,
        params={**{k: str(v) for k, v in search.config.items()}, "timesteps": search.timesteps},
        metrics={
            "val_sharpe_mean": search.val_sharpe_mean,
            **{
                f"test_{k}": float(v)
                for k, v in table.loc[comparison.policy_name].items()
                if isinstance(v, int | float)
            },
        },
        tags={
            TAG_FEATURE_SERVICE: ALLOCATOR_SERVICE,
            "code_version": code,
            "algorithm": str(search.config["algorithm"]),
        },
        card=render_card(_facts(inputs, search, comparison, code=code, data_kind=data_kind)),
        tables={"comparison": table, "trials": search.trials},
    )

    def log(registry: ModelRegistry, record: RunRecord) -> str:
        saved = search.policy.save(policy_file)
        return registry.log_allocator(record, saved, _model_config(inputs))

    def score_champion(registry: ModelRegistry, version: str) -> float | None:
        return _champion_sharpe(registry, version, inputs)

    sharpe = annualised_sharpe(comparison.results[0].returns)
    return Challenger(record, log, sharpe, score_champion, metric="sharpe", margin=0.0)


def _facts(
    inputs: AllocationInputs, search: RLResult, comparison: Comparison, *, code: str, data_kind: str
) -> AllocatorFacts:
    cfg, seg = inputs.cfg, inputs.signals.segments
    dates = inputs.panel.dates
    return AllocatorFacts(
        name=NAME,
        tickers=list(inputs.panel.tickers),
        features=list(ALLOCATOR_FEATURES),
        segments={"train": seg.train, "valid": seg.valid, "test": seg.test},
        validation_windows=[f"{dates[a]}..{dates[b - 1]}" for a, b in input_validation_windows(inputs)],
        config={k: search.config[k] for k in sorted(search.config)},
        constraints={
            "max_weight": cfg.max_weight,
            "turnover_cap": cfg.turnover_cap,
            "allow_cash": cfg.allow_cash,
            "max_assets": cfg.max_assets,
            "rebalance_every": cfg.rebalance_every,
            "cost_bps": cfg.cost_bps,
            "slippage_bps": cfg.slippage_bps,
            "overlay": _overlay_words(cfg.rl.overlay.base, cfg.rl.overlay.scale),
        },
        val_sharpes=search.val_sharpes,
        trials=search.trials,
        table=comparison.table.rename(index={comparison.policy_name: NAME}),
        baselines=[b for b in comparison.table.index if b != comparison.policy_name],
        code_version=code,
        data_kind=data_kind,
    )


def _model_config(inputs: AllocationInputs) -> dict[str, Any]:
    """What the served model needs besides its layers: tickers in trained order, features, constraints."""
    cfg = inputs.cfg
    return {
        "tickers": list(inputs.panel.tickers),
        "features": list(ALLOCATOR_FEATURES),
        "max_weight": cfg.max_weight,
        "turnover_cap": cfg.turnover_cap,
        "allow_cash": cfg.allow_cash,
        "max_assets": cfg.max_assets,
        "slot_feature": cfg.slot_feature,
        "overlay": {"base": cfg.rl.overlay.base, "scale": cfg.rl.overlay.scale},
    }


def _overlay_words(base: str, scale: float) -> str:
    if base == "none":
        return "none (the policy chooses the whole book)"
    return f"{base} base tilted by exp({scale:g} * tanh(action))"


def champion_overlay(registry: ModelRegistry, version: str) -> tuple[str, float]:
    """The overlay (base, scale) a registered allocator version serves; ``("none", 0.5)`` for one without."""
    import mlflow

    del registry  # the registry's tracking URI is already set
    info = mlflow.models.get_model_info(f"models:/{NAME}/{version}")
    config = (info.flavors.get("python_function") or {}).get("model_config") or {}
    overlay = config.get("overlay") or {}
    return str(overlay.get("base", "none")), float(overlay.get("scale", 0.5))


def _champion_sharpe(registry: ModelRegistry, version: str, inputs: AllocationInputs) -> float | None:
    """The champion allocator's net Sharpe on this run's test window, or None when it cannot run on it."""
    try:
        base, scale = champion_overlay(registry, version)
        env = replace(inputs.env, overlay=base, overlay_scale=scale)
        champion = PolicyStrategy(NAME, registry.load_allocator_policy(version), env, ALLOCATOR_FEATURES)
        start, stop = inputs.data.test
        result = backtest(champion, inputs.data.panel, backtest_config(inputs), start=start, end=stop - 1)
        return annualised_sharpe(result.returns)
    except (TrainingError, ValueError):
        return None
