"""The RL policy as an overlay on a base book: zero tilt holds the base, masks and exits hold, serving agrees.

Every price and feature here is SYNTHETIC, generated in the test (the panel of test_allocation_universe).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.allocation_fixtures import mlp_policy, zero_policy
from tests.test_allocation_universe import DELIST, FEATURES, LISTS, NAMES, panel
from training.allocation.allocator_pyfunc import AllocatorPyfunc, allocate, allocate_slots
from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.config import AllocationRunConfig, RLConfig
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.observation import slot_observation_size
from training.allocation.optimisers import MinimumVariance
from training.allocation.overlay import base_optimiser, base_table, decision_dates
from training.allocation.panel import synthetic_panel
from training.allocation.policy import policy_action
from training.allocation.policy_strategy import PolicyStrategy
from training.allocation.weights import inverse_variance_base, overlay_slot_target, overlay_target
from training.errors import TrainingError

WIDTH = 8


def _slot_config(**overrides: object) -> EnvConfig:
    values: dict[str, object] = {
        "window": 1,
        "cost_bps": 10.0,
        "slippage_bps": 5.0,
        "rebalance_every": 3,
        "max_assets": WIDTH,
        "slot_feature": "vol_63d",
        "max_weight": 0.6,
        "overlay": "inverse_variance",
        "overlay_scale": 0.7,
    }
    values.update(overrides)
    return EnvConfig(**values)  # type: ignore[arg-type]


def test_a_zero_action_holds_the_base_exactly_and_cash_keeps_its_share() -> None:
    base = np.array([0.1, 0.25, 0.0, 0.4])  # 0.25 in cash
    for allow_cash in (True, False):
        action = np.zeros(5 if allow_cash else 4)
        target, share = overlay_target(
            action, base, np.zeros(4), scale=0.5, max_weight=1.0, turnover_cap=None, allow_cash=allow_cash
        )
        expected = base if allow_cash else base / base.sum()
        np.testing.assert_allclose(target, expected, rtol=0, atol=1e-15)
        assert share == 1.0


def test_the_tilt_is_bounded_by_the_scale_masked_and_capped() -> None:
    rng = np.random.default_rng(0)
    base = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    present = np.array([True, True, False, True, True])
    for _ in range(50):
        action = rng.normal(0.0, 5.0, 6)
        target, _ = overlay_target(
            action, base, np.zeros(5), scale=0.5, max_weight=0.3, turnover_cap=None, allow_cash=True, present=present
        )
        assert target[2] == 0.0  # an absent name gets nothing, whatever its action
        assert target.max() <= 0.3 + 1e-12 and target.sum() <= 1.0 + 1e-12 and (target >= 0).all()
    # Without the cap, the ratio between two names' weights moves by at most e**(2 * scale) from the base's.
    action = np.array([10.0, -10.0, 0.0, 0.0, 0.0])
    target, _ = overlay_target(
        action, base, np.zeros(5), scale=0.5, max_weight=1.0, turnover_cap=None, allow_cash=False
    )
    assert target[0] / target[1] == pytest.approx(np.exp(2 * 0.5 * np.tanh(10.0)))


def test_the_turnover_cap_limits_the_move_to_the_tilted_base() -> None:
    base = np.array([0.5, 0.5, 0.0])
    drifted = np.array([0.0, 0.0, 1.0])
    target, share = overlay_target(
        np.zeros(3), base, drifted, scale=1.0, max_weight=1.0, turnover_cap=0.5, allow_cash=False
    )
    assert share == pytest.approx(0.25) and np.abs(target - drifted).sum() == pytest.approx(0.5)


def test_inverse_variance_base_is_one_over_vol_squared_over_tradable_names_with_unknowns_at_the_median() -> None:
    vol = np.array([0.1, 0.2, np.nan, 0.4, 0.1])
    tradable = np.array([True, True, True, True, False])
    base = inverse_variance_base(vol, tradable, 1.0)
    raw = np.array([100.0, 25.0, 25.0, 6.25, 0.0])  # the NaN takes the median of 100, 25, 6.25
    np.testing.assert_allclose(base, raw / raw.sum())
    capped = inverse_variance_base(vol, tradable, 0.4)
    assert capped.max() <= 0.4 + 1e-12 and capped.sum() == pytest.approx(1.0)


def test_in_the_environment_a_zero_policy_holds_the_base_and_masks_and_exits_still_hold() -> None:
    p = panel()
    config = _slot_config(rebalance_every=5)
    env = PortfolioEnv(p, config)
    policy = zero_policy(slot_observation_size(1, WIDTH, len(FEATURES)), WIDTH + 1)
    result = run_policy(env, lambda obs: policy_action(policy, obs))
    vol = np.array([0.3, 0.1, 0.2, 0.4, 0.5])
    available = p.available
    assert available is not None
    # The first trade (session 0, from cash) buys the inverse-variance book of the names available then.
    np.testing.assert_allclose(result.weights[0], inverse_variance_base(vol, available[0], 0.6), atol=1e-12)
    # No name is ever bought while unavailable (D before it lists), and E is sold at its last close.
    assert (result.weights[:LISTS, 3] == 0).all() and result.weights[LISTS + 5, 3] > 0
    assert result.weights[DELIST - 1, 4] > 0 and (result.weights[DELIST:, 4] == 0).all() and result.costs[DELIST] > 0


def test_served_overlay_weights_equal_the_environment_step_on_the_same_inputs() -> None:
    rows = pd.DataFrame(
        {
            "ticker": NAMES,
            "ret_21d": [0.05, -0.02, 0.01, np.nan, 0.03],
            "vol_63d": [0.3, 0.1, np.nan, 0.4, 0.5],
            "current_weight": [0.1, 0.2, 0.0, 0.3, 0.0],
        }
    )
    policy = mlp_policy(slot_observation_size(1, WIDTH, len(FEATURES)), WIDTH + 1, seed=7)
    served = allocate_slots(
        rows,
        features=FEATURES,
        policy=policy,
        max_assets=WIDTH,
        slot_feature="vol_63d",
        max_weight=0.6,
        turnover_cap=0.5,
        allow_cash=True,
        overlay="inverse_variance",
        overlay_scale=0.7,
    )
    values = rows[FEATURES].to_numpy(np.float32)[None]
    p = synthetic_panel(2, len(NAMES), len(FEATURES))
    p = type(p)(
        p.dates, tuple(NAMES), np.zeros((2, len(NAMES))), np.concatenate([values, values]), tuple(FEATURES), None, "t"
    )
    env = PortfolioEnv(p, _slot_config(turnover_cap=0.5))
    env.reset(options={"start": 0})
    env._weights = rows["current_weight"].to_numpy(np.float64)
    _, _, _, _, info = env.step(policy_action(policy, env._observation()))
    np.testing.assert_allclose(served["weight"].to_numpy(), info["weights"], atol=1e-12)
    # The fixed-universe form agrees with the overlay too (no slots: the names in panel order).
    fixed = allocate(
        rows,
        tickers=NAMES,
        features=FEATURES,
        policy=mlp_policy(len(NAMES) * 2 + len(NAMES) + 1, len(NAMES) + 1, seed=2),
        max_weight=0.6,
        turnover_cap=None,
        allow_cash=True,
        overlay="inverse_variance",
        overlay_scale=0.7,
    )
    assert fixed["weight"].sum() <= 1.0 + 1e-12 and fixed["weight"].max() <= 0.6 + 1e-12


def test_the_policy_strategy_matches_the_environment_under_the_overlay() -> None:
    p = panel().slice(LISTS, DELIST)
    policy = mlp_policy(slot_observation_size(1, WIDTH, len(FEATURES)), WIDTH + 1, seed=4)
    config = _slot_config()
    start = 5
    in_env = run_policy(
        PortfolioEnv(p.with_feature_lag(1).slice(start, p.n_sessions), config), lambda o: policy_action(policy, o)
    )
    strategy = PolicyStrategy("rl", policy, config, tuple(FEATURES))
    cfg = BacktestConfig(rebalance_every=3, cost_bps=10.0, slippage_bps=5.0, refit_every=1000, min_history=start)
    in_backtest = backtest(strategy, p, cfg, start=start)
    np.testing.assert_allclose(in_backtest.weights, in_env.weights, atol=1e-12)
    np.testing.assert_allclose(in_backtest.returns, in_env.returns, atol=1e-12)


def test_a_zero_tilt_on_a_minimum_variance_base_is_the_minimum_variance_strategy() -> None:
    p = synthetic_panel(160, 6, 2, seed=3)
    lookback, start, every = 60, 70, 10
    config = EnvConfig(window=1, rebalance_every=every, max_weight=0.5, overlay="min_variance", overlay_scale=0.5)
    policy = zero_policy(6 * 2 + 7, 7)
    optimiser = base_optimiser("min_variance", lookback=lookback, max_weight=0.5)
    cfg = BacktestConfig(rebalance_every=every, cost_bps=10, slippage_bps=5, min_history=start)
    overlay = backtest(
        PolicyStrategy("rl", policy, config, p.feature_names, base_optimiser=optimiser), p, cfg, start=start
    )
    classic = backtest(MinimumVariance(lookback=lookback, max_weight=0.5), p, cfg, start=start)
    np.testing.assert_allclose(overlay.weights, classic.weights, atol=1e-9)
    np.testing.assert_allclose(overlay.returns, classic.returns, atol=1e-9)
    # The environment on the precomputed table makes the same decisions as the backtest.
    env_panel = p.with_feature_lag(1).slice(start, p.n_sessions)
    table = base_table(p, decision_dates(env_panel, 1, every), optimiser)
    in_env = run_policy(PortfolioEnv(env_panel, config, bases=table), lambda o: policy_action(policy, o))
    np.testing.assert_allclose(in_env.weights, classic.weights, atol=1e-9)
    with pytest.raises(TrainingError, match="needs its base books"):
        PortfolioEnv(env_panel, config)


def test_a_table_base_keeps_random_episode_starts_on_its_grid() -> None:
    p = synthetic_panel(200, 4, 2, seed=1)
    config = EnvConfig(window=1, rebalance_every=7, max_weight=0.5, overlay="hrp", episode_length=3)
    env_panel = p.with_feature_lag(1).slice(80, 200)
    table = base_table(p, decision_dates(env_panel, 1, 7), base_optimiser("hrp", lookback=40, max_weight=0.5))
    env = PortfolioEnv(env_panel, config, bases=table)
    for seed in range(20):
        env.reset(seed=seed)
        assert env.session % 7 == 0
        for _ in range(3):
            env.step(np.zeros(5))


def test_config_defaults_to_no_overlay_and_refuses_what_cannot_work() -> None:
    assert AllocationRunConfig().rl.overlay.base == "none"
    assert RLConfig.model_validate({"overlay": {"base": "hrp", "scale": 0.3}}).overlay.scale == 0.3
    with pytest.raises(ValueError, match="walk_forward_retrain is not supported"):
        RLConfig.model_validate({"walk_forward_retrain": True, "overlay": {"base": "min_variance"}})
    with pytest.raises(ValueError, match="Input should be"):
        RLConfig.model_validate({"overlay": {"base": "max_sharpe"}})
    with pytest.raises(TrainingError, match="overlay must be one of"):
        EnvConfig(overlay="risk_parity")


def test_the_served_model_refuses_a_base_it_cannot_rebuild_from_a_request(tmp_path: Path) -> None:
    policy_file = zero_policy(4, 3).save(tmp_path / "p.npz")
    config = {"tickers": ["A", "B"], "features": FEATURES, "max_weight": 1.0, "allow_cash": True}
    model = AllocatorPyfunc()
    model.load_context(SimpleNamespace(model_config=config, artifacts={"policy": str(policy_file)}))
    assert model.overlay == "none"  # a version logged before the overlay
    for base in ("min_variance", "hrp"):
        context = SimpleNamespace(
            model_config={**config, "overlay": {"base": base, "scale": 0.5}}, artifacts={"policy": str(policy_file)}
        )
        with pytest.raises(ValueError, match=f"overlay base '{base}' cannot be served"):
            AllocatorPyfunc().load_context(context)


def test_the_slot_overlay_gives_names_outside_the_slots_nothing() -> None:
    base = np.full(6, 1.0 / 6.0)
    slots = np.array([4, 1, 2])
    out, _ = overlay_slot_target(
        np.zeros(4),
        np.zeros(6),
        slots,
        np.array([True, True, False]),
        3,
        base=base,
        scale=0.5,
        max_weight=1.0,
        turnover_cap=None,
        allow_cash=True,
    )
    # Only the tradable slot names (4, 1) keep their base; the rest of the base is cash.
    np.testing.assert_allclose(out, [0.0, 1 / 6, 0.0, 0.0, 1 / 6, 0.0], atol=1e-15)


@pytest.mark.slow
def test_a_logged_overlay_allocator_predicts_the_same_weights_without_the_project(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    from training.audit import AuditLog
    from training.registry.config import RegistryConfig
    from training.registry.model_registry import ModelRegistry, RunRecord

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    registry.check_reachable()
    policy = mlp_policy(slot_observation_size(1, WIDTH, len(FEATURES)), WIDTH + 1, seed=3)
    config = {
        "tickers": NAMES,
        "features": FEATURES,
        "max_weight": 0.6,
        "turnover_cap": None,
        "allow_cash": True,
        "max_assets": WIDTH,
        "slot_feature": "vol_63d",
        "overlay": {"base": "inverse_variance", "scale": 0.7},
    }
    record = RunRecord(name="allocator", params={}, metrics={"val_sharpe_mean": 0.1}, tags={}, card="# card")
    version = registry.log_allocator(record, policy.save(tmp_path / "policy.npz"), config)
    rows = pd.DataFrame({"ticker": ["B", "A", "E"], "ret_21d": [0.01, -0.02, 0.03], "vol_63d": [0.1, 0.3, 0.5]})
    direct = allocate_slots(
        rows,
        features=FEATURES,
        policy=policy,
        max_assets=WIDTH,
        slot_feature="vol_63d",
        max_weight=0.6,
        turnover_cap=None,
        allow_cash=True,
        overlay="inverse_variance",
        overlay_scale=0.7,
    )
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["training"] = None  # a model server without the project
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({uri!r}); mlflow.set_registry_uri({uri!r})
        model = mlflow.pyfunc.load_model("models:/allocator/{version}")
        print(model.predict(pd.read_json({rows.to_json()!r}))["weight"].round(12).tolist())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    served = np.array(eval(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(served, direct["weight"].to_numpy(), atol=1e-10)
