"""The exported numpy policy acts exactly as the Stable-Baselines3 policy it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.panel import synthetic_panel
from training.allocation.policy import PolicyParams, export_policy, policy_action
from training.allocation.rl import log_nowhere


@pytest.fixture(scope="module")
def env() -> PortfolioEnv:
    panel = synthetic_panel(120, 5, 3, seed=3)
    return PortfolioEnv(panel, EnvConfig(window=2, max_weight=0.5, episode_length=10, rebalance_every=1))


@pytest.mark.parametrize("algorithm", ["ppo", "a2c"])
def test_numpy_forward_pass_matches_sb3_deterministic_actions(
    env: PortfolioEnv, algorithm: str, tmp_path: Path
) -> None:
    import torch
    from stable_baselines3 import A2C, PPO

    torch.set_num_threads(1)
    arch = {"net_arch": [16, 8]}
    if algorithm == "ppo":
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=16, n_epochs=1, seed=1, device="cpu", policy_kwargs=arch)
    else:
        model = A2C("MlpPolicy", env, n_steps=8, seed=1, device="cpu", policy_kwargs=arch)
    log_nowhere(model).learn(total_timesteps=64)  # move the weights away from their initial values
    params = export_policy(model.policy)
    rng = np.random.default_rng(0)
    observations = rng.uniform(env.observation_space.low, env.observation_space.high, (50, params.n_inputs))
    expected, _ = model.predict(observations.astype(np.float32), deterministic=True)
    np.testing.assert_allclose(policy_action(params, observations), expected, rtol=1e-5, atol=1e-5)
    reloaded = PolicyParams.load(params.save(tmp_path / "policy.npz"))
    np.testing.assert_array_equal(policy_action(reloaded, observations), policy_action(params, observations))


def test_large_actions_are_clipped_to_the_action_box() -> None:
    params = PolicyParams(
        weights=(np.full((2, 3), 100.0),),
        biases=(np.zeros(3),),
        activation="tanh",
        action_low=np.full(3, -10.0),
        action_high=np.full(3, 10.0),
    )
    np.testing.assert_array_equal(policy_action(params, [1.0, 1.0]), [10.0, 10.0, 10.0])


def test_a_policy_with_mismatched_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="layer 1 takes 4 inputs"):
        PolicyParams(
            weights=(np.zeros((2, 3)), np.zeros((4, 1))),
            biases=(np.zeros(3), np.zeros(1)),
            activation="tanh",
            action_low=np.zeros(1),
            action_high=np.ones(1),
        )
    params = PolicyParams((np.zeros((2, 1)),), (np.zeros(1),), "relu", np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="observations of 2 values, got 3"):
        policy_action(params, [1.0, 2.0, 3.0])
