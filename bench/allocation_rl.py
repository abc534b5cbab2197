"""Benchmark: RL training throughput (PPO and A2C from Stable-Baselines3) on the portfolio environment, one core.

What is measured: environment steps consumed per second of ``model.learn`` for PPO and A2C with the
demo's settings (20 assets, window 1, weekly rebalancing, MLP 64 x 64, torch on one thread), on a
SYNTHETIC panel (``synthetic_panel``: speed only, no quality figure). The baseline in the same run
is the environment alone stepped with random actions: ``env_share`` is the fraction of training
time spent inside the environment, i.e. how much a faster environment could still gain.

Threads: BLAS/OpenMP pools and torch are set to one thread before they are imported.
"""

# The thread settings below must precede the first numpy/torch import, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import os

for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_pool] = "1"

import argparse
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import common
from training.allocation.config import RLConfig
from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import synthetic_panel
from training.allocation.rl import build_model

NAME: Final = "allocation_rl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="environment steps learned per algorithm")
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import torch

    torch.set_num_threads(1)
    args = parse_args(argv)
    started = time.perf_counter()
    panel = synthetic_panel(2520, args.assets, 6, seed=args.seed)
    rl = RLConfig()
    config = EnvConfig(window=1, rebalance_every=5, max_weight=0.2, episode_length=rl.episode_sessions // 5)
    env = PortfolioEnv(panel, config)
    rates: dict[str, float] = {}
    assert env.action_space.shape is not None
    actions = np.random.default_rng(args.seed).uniform(-10, 10, (args.steps, env.action_space.shape[0]))
    env.reset(seed=args.seed)
    began = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rates["env_only_random_actions"] = args.steps / (time.perf_counter() - began)
    hp: dict[str, Any] = {"learning_rate": 3e-4, "gamma": 0.9, "ent_coef": 1e-3, "rollout": 1, "seed": args.seed}
    for algorithm in ("ppo", "a2c"):
        common.log(f"learning {args.steps} steps with {algorithm}")
        model = build_model({**hp, "algorithm": algorithm}, PortfolioEnv(panel, config), rl.net_arch)
        began = time.perf_counter()
        model.learn(total_timesteps=args.steps)
        rates[algorithm] = args.steps / (time.perf_counter() - began)
    doc = {
        "benchmark": NAME,
        "data": f"{panel.label}: synthetic_panel(2520 sessions, {args.assets} tickers, seed {args.seed})",
        "settings": {"window": 1, "rebalance_every": 5, "net_arch": list(rl.net_arch), "torch_threads": 1},
        "steps_per_s": {k: common.rounded(v) for k, v in rates.items()},
        "env_share_of_training_time": {
            a: common.rounded(rates[a] / rates["env_only_random_actions"]) for a in ("ppo", "a2c")
        },
        "demo_budget_seconds_per_trial": {a: common.rounded(rl.timesteps / rates[a], 3) for a in ("ppo", "a2c")},
        "total_seconds": common.rounded(time.perf_counter() - started, 3),
        **common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)


if __name__ == "__main__":
    main()
