"""RL training of the allocator: PPO and A2C (Stable-Baselines3) as Ray Tune trials, selected on validation windows.

Each trial draws an algorithm, its hyper-parameters and a seed, trains on the train segment's
environment (episodes of ``episode_sessions`` from random starts), and every ``timesteps /
evaluations`` steps exports its policy to numpy (:mod:`training.allocation.policy`) and runs it
deterministically over each walk-forward validation window (inside the valid segment, never the
test segment). The reported objective is the mean annualised Sharpe across those windows, net of
every cost; ASHA stops trials already poor at the early checks. The best check of the best trial
is the chosen policy: exactly the numpy forward pass that the registered model serves.

Every trial uses one CPU and one torch thread, so local Ray runs as many trials as cores.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from training.allocation.config import RLConfig
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.panel import MarketPanel
from training.allocation.policy import PolicyParams, export_policy, policy_action
from training.allocation.results import StrategyResult
from training.evaluation.metrics import SESSIONS_PER_YEAR
from training.ray_runtime import ray_cpus

METRIC: Final = "val_sharpe_mean"
POLICY_FILE: Final = "policy.npz"
# Rollout lengths per algorithm: PPO learns from long rollouts in minibatches, A2C from short ones.
ROLLOUTS: Final[dict[str, tuple[int, ...]]] = {"ppo": (64, 128, 256), "a2c": (5, 16, 32)}


@dataclass(frozen=True, eq=False)
class RLData:
    """What every trial needs, shipped to the Ray object store once.

    Attributes:
        train: the train segment's panel (features already lagged by the execution lag).
        validation: the walk-forward validation windows, each with ``window`` warm-up sessions.
        env: the environment's costs and constraints (``episode_length`` is set per use).
        bases: with a window overlay base, its book for every decision date of the panels' grids.
    """

    train: MarketPanel
    validation: list[MarketPanel]
    env: EnvConfig
    bases: dict[np.datetime64, np.ndarray] | None = None


@dataclass(frozen=True, eq=False)
class RLResult:
    """The search's outcome: the chosen policy, its validation figures and a row per trial."""

    policy: PolicyParams
    config: dict[str, Any]
    val_sharpe_mean: float
    val_sharpes: list[float]
    trials: pd.DataFrame
    seconds: float
    cpus: int
    timesteps: int
    stopped_early: int

    @property
    def trials_per_minute(self) -> float:
        return len(self.trials) / self.seconds * 60 if self.seconds > 0 else float("nan")


def search_space(rl: RLConfig) -> dict[str, Any]:
    """Algorithm, hyper-parameters and seed: the seed is searched too, since RL results vary with it."""
    from ray import tune

    return {
        "algorithm": tune.choice(list(rl.algorithms)),
        "learning_rate": tune.loguniform(1e-4, 2e-3),
        "gamma": tune.uniform(0.0, 0.99),
        "ent_coef": tune.loguniform(1e-5, 1e-2),
        "rollout": tune.randint(0, 3),
        "seed": tune.randint(0, 10_000),
    }


def build_model(hp: dict[str, Any], env: PortfolioEnv, net_arch: tuple[int, ...]) -> Any:
    """A Stable-Baselines3 PPO or A2C model for ``env`` from one trial's hyper-parameters."""
    from stable_baselines3 import A2C, PPO

    algorithm = str(hp["algorithm"])
    n_steps = ROLLOUTS[algorithm][int(hp["rollout"])]
    common: dict[str, Any] = {
        "policy": "MlpPolicy",
        "env": env,
        "learning_rate": float(hp["learning_rate"]),
        "gamma": float(hp["gamma"]),
        "ent_coef": float(hp["ent_coef"]),
        "n_steps": n_steps,
        "seed": int(hp["seed"]),
        "device": "cpu",
        "verbose": 0,
        "policy_kwargs": {"net_arch": list(net_arch)},
    }
    model = PPO(batch_size=min(64, n_steps), n_epochs=5, **common) if algorithm == "ppo" else A2C(**common)
    return log_nowhere(model)


def log_nowhere(model: Any) -> Any:
    """``model`` with a logger of its own that writes nowhere, so ``learn()`` leaves no folder behind.

    Without one, every ``learn()`` call has SB3 create an empty ``/tmp/SB3-<timestamp>`` folder (its
    default log folder): thousands over a tuning run. Every SB3 model built here goes through this.
    """
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def validate(policy: PolicyParams, data: RLData) -> list[StrategyResult]:
    """Run the numpy policy deterministically over every validation window, from cash."""
    results = []
    config = replace(data.env, episode_length=None)
    for panel in data.validation:
        env = PortfolioEnv(panel, config, bases=data.bases)
        results.append(run_policy(env, lambda obs: policy_action(policy, obs)))
    return results


def annualised_sharpe(returns: np.ndarray) -> float:
    """``mean * 252 / (std * sqrt(252))`` of daily returns, rf = 0; 0 for a flat series."""
    sd = float(np.std(returns, ddof=1)) if returns.size > 1 else 0.0
    return float(np.mean(returns)) / sd * np.sqrt(SESSIONS_PER_YEAR) if sd > 0 else 0.0


def allocator_trainable(config: dict[str, Any], data: RLData, rl: RLConfig) -> None:
    """One Tune trial: train, and after each chunk of steps validate and checkpoint the policy."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    env = PortfolioEnv(data.train, replace(data.env, episode_length=_episode_steps(rl, data.env)), bases=data.bases)
    model = build_model(config, env, rl.net_arch)
    chunk = max(64, rl.timesteps // rl.evaluations)
    for check in range(rl.evaluations):
        model.learn(total_timesteps=chunk, reset_num_timesteps=check == 0)
        policy = export_policy(model.policy)
        sharpes = [annualised_sharpe(r.returns) for r in validate(policy, data)]
        with tempfile.TemporaryDirectory() as folder:
            policy.save(Path(folder) / POLICY_FILE)
            tune.report(
                {
                    METRIC: float(np.mean(sharpes)),
                    "val_sharpe_min": float(np.min(sharpes)),
                    "val_sharpes": sharpes,
                    "timesteps": int(model.num_timesteps),
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def _episode_steps(rl: RLConfig, env: EnvConfig) -> int:
    return max(1, rl.episode_sessions // env.rebalance_every)


def run_rl_search(data: RLData, rl: RLConfig, *, storage_dir: Path, progress: bool = False) -> RLResult:
    """Search with ASHA + Optuna on an already started Ray (see :mod:`training.ray_runtime`)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if rl.smoke_test:
        rl = rl.model_copy(update={"num_samples": 1, "timesteps": 256, "evaluations": 1})
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=rl.evaluations, grace_period=1, reduction_factor=2)
    trainable = tune.with_resources(tune.with_parameters(allocator_trainable, data=data, rl=rl), {"cpu": 1})
    callbacks = [_progress_callback(rl.num_samples)] if progress else []
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(rl),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=rl.num_samples,
            max_concurrent_trials=rl.max_concurrent_trials,
            scheduler=scheduler,
            search_alg=OptunaSearch(seed=rl.seed),
        ),
        run_config=tune.RunConfig(
            name="allocator", storage_path=str(storage_dir.resolve()), verbose=0, callbacks=callbacks
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    return _summarise(grid, rl, time.perf_counter() - started)


def _summarise(grid: Any, rl: RLConfig, seconds: float) -> RLResult:
    errors = [r.error for r in grid if r.error is not None]
    if len(errors) == len(grid):
        raise RuntimeError(f"every allocator trial failed; the first error: {errors[0]}")
    best = grid.get_best_result(metric=METRIC, mode="max", scope="all")
    checkpoint = best.get_best_checkpoint(metric=METRIC, mode="max")
    with checkpoint.as_directory() as folder:
        policy = PolicyParams.load(Path(folder) / POLICY_FILE)
    best_row = max(
        (m for m in best.metrics_dataframe.to_dict("records") if np.isfinite(m.get(METRIC, np.nan))),
        key=lambda m: m[METRIC],
    )
    rows = []
    for result in grid:
        if result.metrics is None or METRIC not in result.metrics:
            continue
        history = result.metrics_dataframe
        rows.append(
            {
                **{k: result.config[k] for k in ("algorithm", "learning_rate", "gamma", "ent_coef", "rollout", "seed")},
                "best_val_sharpe": float(history[METRIC].max()),
                "last_val_sharpe": float(result.metrics[METRIC]),
                "checks": int(result.metrics["training_iteration"]),
                "timesteps": int(result.metrics["timesteps"]),
            }
        )
    trials = pd.DataFrame(rows).sort_values("best_val_sharpe", ascending=False, ignore_index=True)
    return RLResult(
        policy=policy,
        config=dict(best.config),
        val_sharpe_mean=float(best_row[METRIC]),
        val_sharpes=[float(v) for v in _as_list(best_row.get("val_sharpes"))],
        trials=trials,
        seconds=seconds,
        cpus=ray_cpus(),
        timesteps=int(best_row["timesteps"]),
        stopped_early=int((trials["checks"] < rl.evaluations).sum()) if len(trials) else 0,
    )


def _as_list(value: Any) -> list[float]:
    """Tune flattens list metrics into strings in its dataframe; take either form."""
    if isinstance(value, str):
        import json

        return [float(v) for v in json.loads(value)]
    return [float(v) for v in (value or [])]


def _progress_callback(total: int) -> Any:
    """A tqdm bar advancing as allocator trials finish (built on call: ray is imported lazily)."""
    from ray.tune import Callback
    from tqdm.auto import tqdm

    class ProgressBar(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bar = tqdm(total=total, desc="  tuning allocator", leave=False)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.bar.update(1)

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            self.bar.close()

    return ProgressBar()
