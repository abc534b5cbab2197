"""Test data for the RL allocator: seeded policies with hand-made layers (no training)."""

from __future__ import annotations

import numpy as np

from training.allocation.policy import PolicyParams


def mlp_policy(n_inputs: int, n_actions: int, seed: int = 0) -> PolicyParams:
    """An MLP policy with one hidden layer of 8 tanh units, Gaussian weights from ``seed``, and actions
    clipped to [-10, 10]: a deterministic, non-trivial policy for ``n_inputs`` observations."""
    rng = np.random.default_rng(seed)
    return PolicyParams(
        weights=(rng.normal(size=(n_inputs, 8)), rng.normal(size=(8, n_actions))),
        biases=(rng.normal(size=8), rng.normal(size=n_actions)),
        activation="tanh",
        action_low=np.full(n_actions, -10.0),
        action_high=np.full(n_actions, 10.0),
    )


def zero_policy(n_inputs: int, n_actions: int) -> PolicyParams:
    """A policy whose action is 0 for every observation: under an overlay it holds the base book."""
    return PolicyParams(
        weights=(np.zeros((n_inputs, 4)), np.zeros((4, n_actions))),
        biases=(np.zeros(4), np.zeros(n_actions)),
        activation="tanh",
        action_low=np.full(n_actions, -10.0),
        action_high=np.full(n_actions, 10.0),
    )
