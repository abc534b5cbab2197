"""The RL policy inside the walk-forward backtester: same returns as the environment, re-trained per window."""

from __future__ import annotations

import numpy as np
import pytest

from tests.allocation_fixtures import mlp_policy
from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.panel import synthetic_panel
from training.allocation.policy import policy_action
from training.allocation.policy_strategy import PolicyStrategy, Retrain
from training.errors import TrainingError


@pytest.mark.parametrize(("window", "sessions"), [(1, 120), (3, 120), (1, 121)])  # 121: last session is a rebalance day
def test_backtester_and_environment_give_the_same_returns_for_a_policy(window: int, sessions: int) -> None:
    panel = synthetic_panel(sessions, 5, 3, seed=4)
    env_cfg = EnvConfig(window=window, rebalance_every=5, max_weight=0.4, turnover_cap=0.8, cost_bps=10, slippage_bps=5)
    start = 30
    policy = mlp_policy(window * 5 * 3 + 6, 6)
    # The environment trades at t on features lagged one session; the backtester on history through t - 1.
    env = PortfolioEnv(panel.with_feature_lag(1).slice(start - (window - 1), sessions), env_cfg)
    in_env = run_policy(env, lambda obs: policy_action(policy, obs))
    strategy = PolicyStrategy("rl", policy, env_cfg, panel.feature_names)
    cfg = BacktestConfig(rebalance_every=5, cost_bps=10, slippage_bps=5, min_history=start)
    in_backtest = backtest(strategy, panel, cfg, start=start)
    np.testing.assert_array_equal(in_env.dates, in_backtest.dates)
    np.testing.assert_allclose(in_backtest.returns, in_env.returns, atol=1e-12)
    np.testing.assert_allclose(in_backtest.weights, in_env.weights, atol=1e-12)
    np.testing.assert_allclose(in_backtest.turnover, in_env.turnover, atol=1e-12)


def test_the_policy_reads_its_features_by_name_and_refuses_a_panel_without_them() -> None:
    panel = synthetic_panel(60, 4, 3, seed=1)
    strategy = PolicyStrategy("rl", mlp_policy(4 * 2 + 5, 5), EnvConfig(window=1), ("f2", "f0"))
    weights = strategy.target(panel.slice(0, 40), np.zeros(4))
    assert weights.sum() <= 1.0 + 1e-12 and (weights >= 0).all()
    with pytest.raises(TrainingError, match=r"lacks the policy's feature\(s\) \['score'\]"):
        PolicyStrategy("rl", mlp_policy(9, 5), EnvConfig(window=1), ("score",)).target(panel, np.zeros(4))


@pytest.mark.slow
def test_retraining_walk_forward_fits_once_per_window_on_past_data_only() -> None:
    panel = synthetic_panel(260, 4, 2, seed=2)
    env_cfg = EnvConfig(window=1, rebalance_every=5, max_weight=0.5)
    retrain = Retrain(
        hyper_parameters={
            "algorithm": "a2c",
            "learning_rate": 1e-3,
            "gamma": 0.5,
            "ent_coef": 1e-3,
            "rollout": 0,
            "seed": 3,
        },
        timesteps=64,
        episode_length=10,
        net_arch=(8,),
    )
    strategy = PolicyStrategy("rl", mlp_policy(4 * 2 + 5, 5), env_cfg, panel.feature_names, retrain=retrain)
    seen: list[str] = []
    original_fit = strategy.fit

    def recording_fit(history):  # type: ignore[no-untyped-def]
        seen.append(str(history.dates[-1]))
        original_fit(history)

    strategy.fit = recording_fit  # type: ignore[method-assign]
    result = backtest(strategy, panel, BacktestConfig(rebalance_every=5, refit_every=60, min_history=100), start=100)
    assert strategy.fits == 3  # sessions 100, 160, 220
    assert seen == [str(panel.dates[t - 1]) for t in (100, 160, 220)]
    assert np.isfinite(result.returns).all()
