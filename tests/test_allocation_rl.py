"""The RL search on Ray: PPO/A2C trials, chosen on validation windows, the policy exported and reloaded.

SYNTHETIC panel: a wiring check of the search, not a quality figure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from training.allocation.config import RLConfig
from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import synthetic_panel
from training.allocation.policy import policy_action
from training.allocation.rl import RLData, annualised_sharpe, build_model, run_rl_search, validate
from training.ray_runtime import ray_session


@pytest.mark.slow
def test_search_runs_both_algorithms_and_the_chosen_policy_reproduces_its_validation_score(tmp_path: Path) -> None:
    panel = synthetic_panel(400, 5, 3, seed=11)
    env = EnvConfig(window=1, rebalance_every=5, max_weight=0.5)
    data = RLData(train=panel.slice(0, 250), validation=[panel.slice(250, 325), panel.slice(325, 400)], env=env)
    rl = RLConfig(
        num_samples=2, timesteps=256, evaluations=2, max_concurrent_trials=2, episode_sessions=60, net_arch=(8,)
    )
    with ray_session(num_cpus=2):
        result = run_rl_search(data, rl, storage_dir=tmp_path)
    assert len(result.trials) == 2
    assert set(result.trials["algorithm"]) <= {"ppo", "a2c"}
    assert result.config["algorithm"] in {"ppo", "a2c"}
    # The chosen checkpoint is the policy that scored val_sharpe_mean: re-running it gives that figure.
    sharpes = [annualised_sharpe(r.returns) for r in validate(result.policy, data)]
    assert np.mean(sharpes) == pytest.approx(result.val_sharpe_mean, abs=1e-9)
    assert result.val_sharpes == pytest.approx(sharpes, abs=1e-9)
    assert result.policy.n_inputs == PortfolioEnv(data.train, env).observation_space.shape[0]
    assert np.isfinite(policy_action(result.policy, np.zeros(result.policy.n_inputs))).all()


@pytest.mark.parametrize("algorithm", ["ppo", "a2c"])
def test_learning_leaves_no_log_folder_behind(algorithm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SB3's default logger makes a /tmp/SB3-<timestamp> folder on every learn(): thousands over a search.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    panel = synthetic_panel(120, 4, 3, seed=3)
    env = PortfolioEnv(panel, EnvConfig(window=1, rebalance_every=5, max_weight=0.5, episode_length=20))
    hp = {"algorithm": algorithm, "rollout": 0, "learning_rate": 1e-3, "gamma": 0.9, "ent_coef": 1e-4, "seed": 1}
    model = build_model(hp, env, (8,))
    model.learn(total_timesteps=64)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("SB3-")] == []
