"""Benchmark: the allocator over a changing universe (fixed-width slots, masks, forced exits) vs a fixed universe.

What is measured, on SYNTHETIC panels (``training.allocation.panel.synthetic_panel`` plus a
generated membership: each name listed for one random span, delisted at its end), one core:

* ``env_steps_per_s``: :class:`training.allocation.env.PortfolioEnv` ``step()`` calls per second
  with random actions, for (a) **fixed**: ``--members`` names always available, the panel's own
  width (no slots, no masks: the allocator before issue 18), and (b) **changing**: ``--names``
  names ever listed, about ``--members`` available at a time, ``max_assets = --members`` slots
  filled point in time, masks and forced exits at delistings;
* ``ppo_steps_per_s``: Stable-Baselines3 PPO ``learn()`` steps per second on each (one torch
  thread), the rate RL training runs at.

Both have the same observation width (``--members`` slots or names) and the same costs, so the
difference is what the changing universe costs per step: slot assignment, masks, exits.
"""

# The thread settings below must precede the first numpy import, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import os

for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_pool] = "1"

import argparse
import json
import time
from dataclasses import replace
from typing import Any, Final

import numpy as np

from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import MarketPanel, synthetic_panel
from training.allocation.rl import log_nowhere

NAME: Final = "allocation_universe"
LABEL: Final = "SYNTHETIC data: a speed figure, NOT a quality figure"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.allocation_universe", description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1500, help="names ever listed, changing universe (1500)")
    parser.add_argument("--members", type=int, default=300, help="names available at a time = slots (300)")
    parser.add_argument("--sessions", type=int, default=2000, help="sessions (2000)")
    parser.add_argument("--features", type=int, default=6, help="features per name (6)")
    parser.add_argument("--steps", type=int, default=3000, help="timed environment steps (3000)")
    parser.add_argument("--ppo-steps", type=int, default=2048, help="timed PPO learn steps (2048)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def changing_panel(names: int, members: int, sessions: int, features: int, seed: int) -> MarketPanel:
    """SYNTHETIC: each name listed for one random span so that about ``members`` are listed at a time."""
    base = synthetic_panel(sessions, names, features, seed=seed)
    rng = np.random.default_rng(seed + 1)
    length = np.clip(rng.exponential(sessions * members / names, names), 60, sessions).astype(int)
    start = rng.integers(-length + 60, sessions - 60)
    start = np.clip(start, 0, sessions - 60)
    stop = np.minimum(start + length, sessions)
    t = np.arange(sessions)[:, None]
    priced = (t >= start[None, :]) & (t < stop[None, :])
    exits = np.zeros_like(priced)
    ended = stop < sessions
    exits[stop[ended] - 1, np.flatnonzero(ended)] = True
    returns = np.where(priced, base.returns, 0.0)
    return MarketPanel(
        base.dates,
        base.tickers,
        returns,
        base.features,
        base.feature_names,
        base.benchmark,
        LABEL,
        priced & ~exits,
        priced,
        exits,
    )


def env_rate(env: PortfolioEnv, steps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-3, 3, (steps, env.width + int(env.config.allow_cash))).astype(np.float32)
    env.reset(seed=seed)
    began = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - began)


def ppo_rate(env: PortfolioEnv, steps: int, seed: int) -> float:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = log_nowhere(
        PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=5, seed=seed, device="cpu", verbose=0)
    )
    began = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = EnvConfig(window=1, cost_bps=20.0, slippage_bps=5.0, rebalance_every=5, max_weight=0.05, episode_length=50)
    fixed = PortfolioEnv(synthetic_panel(args.sessions, args.members, args.features, seed=args.seed), config)
    panel = changing_panel(args.names, args.members, args.sessions, args.features, args.seed)
    assert panel.available is not None
    changing = PortfolioEnv(panel, replace(config, max_assets=args.members, slot_feature="f0"))
    result: dict[str, Any] = {
        "benchmark": NAME,
        "data": LABEL,
        "names_ever": args.names,
        "available_mean": round(float(panel.available.sum(axis=1).mean()), 1),
        "available_max": int(panel.available.sum(axis=1).max()),
        "delistings": int(panel.exits.sum()) if panel.exits is not None else 0,
        "observation": {
            "fixed": int(fixed.reset(seed=0)[0].size),
            "changing": int(changing.reset(seed=0)[0].size),
        },
        "env_steps_per_s": {
            "fixed": round(env_rate(fixed, args.steps, args.seed), 1),
            "changing": round(env_rate(changing, args.steps, args.seed), 1),
        },
        "ppo_steps_per_s": {
            "fixed": round(ppo_rate(fixed, args.ppo_steps, args.seed), 1),
            "changing": round(ppo_rate(changing, args.ppo_steps, args.seed), 1),
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
