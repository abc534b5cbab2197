"""The gymnasium portfolio environment: API conformance, hand-computed costs and constraints, timing.

Every panel here is SYNTHETIC (hand-made or ``synthetic_panel``), built to check the accounting;
no performance figure is derived from them. Expected numbers are written out from the formulas
in the module docstring of ``training.allocation.env``, not computed with the code under test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from training.allocation.env import ACTION_BOUND, EnvConfig, PortfolioEnv, run_policy
from training.allocation.observation import FEATURE_CLIP, normalise_features
from training.allocation.panel import MarketPanel, synthetic_panel
from training.allocation.weights import constrained_target
from training.errors import TrainingError

# Session 0 has no return; session 1: A +10%, B -5%; then small moves.
RETURNS = [[0.0, 0.0], [0.10, -0.05], [0.02, 0.03], [-0.01, 0.04]]
FREE: dict[str, Any] = {"cost_bps": 0.0, "slippage_bps": 0.0}
# gymnasium's checker advises [-1, 1] action boxes; the logits' [-10, 10] box is deliberate.
pytestmark = pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")


def hand_panel(returns: list[list[float]], features: np.ndarray | None = None) -> MarketPanel:
    """A SYNTHETIC panel from explicit returns; features default to distinct finite values."""
    r = np.asarray(returns, dtype=np.float64)
    t, n = r.shape
    feats = np.arange(t * n, dtype=np.float32).reshape(t, n, 1) if features is None else features
    dates = np.busday_offset(np.datetime64("2024-01-01", "D"), np.arange(t), roll="forward")
    names = tuple(f"f{i}" for i in range(feats.shape[2]))
    return MarketPanel(dates, tuple("ABCDEFGH"[:n]), r, feats, names, None, "SYNTHETIC hand-made test panel")


def logits(*weights: float) -> np.ndarray:
    """Logits whose softmax is exactly ``weights`` (up to rounding): their logs."""
    return np.log(np.asarray(weights, dtype=np.float64))


def first_step(
    config: EnvConfig, action: np.ndarray, returns: list[list[float]] = RETURNS
) -> tuple[float, dict[str, Any]]:
    env = PortfolioEnv(hand_panel(returns), config)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(action)
    return reward, info


# ---------------------------------------------------------------- gymnasium API


@pytest.mark.parametrize("allow_cash", [True, False])
@pytest.mark.parametrize("episode_length", [None, 30])
def test_env_checker_passes(allow_cash: bool, episode_length: int | None) -> None:
    panel = synthetic_panel(120, 4, 3, seed=1)
    config = EnvConfig(window=5, allow_cash=allow_cash, episode_length=episode_length, max_weight=0.5)
    check_env(PortfolioEnv(panel, config), skip_render_check=True)


def test_seeded_reset_is_deterministic_and_seeds_pick_different_starts() -> None:
    panel = synthetic_panel(200, 4, 3, seed=2)
    config = EnvConfig(window=10, episode_length=20)
    actions = np.random.default_rng(0).uniform(-3, 3, (20, 5))

    def episode(seed: int) -> tuple[np.ndarray, list[float]]:
        env = PortfolioEnv(panel, config)
        obs, _ = env.reset(seed=seed)
        rewards = [env.step(a)[1] for a in actions]
        return obs, rewards

    obs_a, rewards_a = episode(7)
    obs_b, rewards_b = episode(7)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rewards_a == rewards_b
    env = PortfolioEnv(panel, config)
    starts = {env.reset(seed=s)[1]["session"] for s in range(8)}
    assert len(starts) > 1
    assert all(env.first_decision <= s <= env.last_start for s in starts)


def test_episode_is_truncated_after_episode_length_and_terminated_at_the_data_end() -> None:
    panel = synthetic_panel(60, 3, 2, seed=3)
    env = PortfolioEnv(panel, EnvConfig(window=5, episode_length=3))
    env.reset(seed=1)
    flags = [env.step(np.zeros(4))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]

    env = PortfolioEnv(panel, EnvConfig(window=5))
    env.reset(seed=1)
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, truncated, _ = env.step(np.zeros(4))
        assert not truncated
        steps += 1
    assert steps == 60 - 5  # decisions at sessions 4 .. 58
    with pytest.raises(TrainingError, match="reached the data end"):
        env.step(np.zeros(4))


def test_a_pinned_start_outside_the_data_is_refused() -> None:
    env = PortfolioEnv(synthetic_panel(40, 3, 2), EnvConfig(window=5))
    assert env.reset(options={"start": 10})[1]["session"] == 10
    with pytest.raises(TrainingError, match=r"options\['start'\] = 39 is outside the possible starts 4\.\.38"):
        env.reset(options={"start": 39})


def test_step_touches_no_global_random_state() -> None:
    env = PortfolioEnv(synthetic_panel(50, 3, 2), EnvConfig(window=5, episode_length=10))
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    env.reset(seed=4)
    for _ in range(10):
        env.step(env.action_space.sample())
    assert np.random.random() == expected


# ---------------------------------------------------------------- costs and constraints, by hand


def test_first_trade_from_cash_charges_commission_and_slippage_on_the_turnover() -> None:
    reward, info = first_step(EnvConfig(window=1, cost_bps=10.0, slippage_bps=5.0), logits(0.5, 0.3, 0.2))
    gross = 0.5 * 0.10 + 0.3 * -0.05  # cash earns 0
    cost = 0.8 * 0.0015  # 80% bought from cash at 15 bps
    net = (1 + gross) * (1 - cost) - 1
    assert info["turnover"] == pytest.approx(0.8, abs=1e-12)
    assert info["cost"] == pytest.approx(cost, abs=1e-15)
    assert info["gross_return"] == pytest.approx(gross, abs=1e-12)
    assert info["net_return"] == pytest.approx(net, abs=1e-12)
    assert reward == pytest.approx(math.log(1 + net), abs=1e-12)
    np.testing.assert_allclose(info["weights"], [0.5, 0.3], atol=1e-12)
    assert info["date"] == np.datetime64("2024-01-01") and info["session"] == 0


@pytest.mark.parametrize(("cost_bps", "slippage_bps"), [(10.0, 0.0), (0.0, 5.0), (10.0, 5.0), (25.0, 7.5)])
def test_costs_lower_the_reward_by_exactly_log_one_minus_cost(cost_bps: float, slippage_bps: float) -> None:
    action = logits(0.5, 0.3, 0.2)
    free, _ = first_step(EnvConfig(window=1, **FREE), action)
    charged, info = first_step(EnvConfig(window=1, cost_bps=cost_bps, slippage_bps=slippage_bps), action)
    cost = 0.8 * (cost_bps + slippage_bps) / 1e4
    assert info["cost"] == pytest.approx(cost, abs=1e-15)
    assert charged - free == pytest.approx(math.log(1 - cost), abs=1e-12)


def test_slippage_adds_to_the_commission() -> None:
    action = logits(0.5, 0.3, 0.2)
    commission, _ = first_step(EnvConfig(window=1, cost_bps=10.0, slippage_bps=0.0), action)
    both, _ = first_step(EnvConfig(window=1, cost_bps=10.0, slippage_bps=5.0), action)
    assert commission - both == pytest.approx(math.log(1 - 0.8 * 0.0010) - math.log(1 - 0.8 * 0.0015), abs=1e-12)


def test_the_second_trade_pays_for_moving_the_drifted_book_back_to_target() -> None:
    env = PortfolioEnv(hand_panel(RETURNS), EnvConfig(window=1))
    env.reset(seed=0)
    env.step(logits(0.5, 0.3, 0.2))
    obs, reward, _, _, info = env.step(logits(0.5, 0.3, 0.2))
    value = 0.5 * 1.10 + 0.3 * 0.95 + 0.2  # the book after session 1
    drifted = [0.5 * 1.10 / value, 0.3 * 0.95 / value]
    turnover = abs(0.5 - drifted[0]) + abs(0.3 - drifted[1])
    gross = 0.5 * 0.02 + 0.3 * 0.03
    net = (1 + gross) * (1 - 0.0015 * turnover) - 1
    assert info["turnover"] == pytest.approx(turnover, abs=1e-12)
    assert reward == pytest.approx(math.log(1 + net), abs=1e-12)
    assert env.wealth == pytest.approx(1.035 * (1 - 0.0012) * (1 + net), abs=1e-12)
    # the observation after the step holds the book drifted over session 2, then cash
    grown = np.array([0.5 * 1.02, 0.3 * 1.03])
    np.testing.assert_allclose(obs[-3:-1], grown / (grown.sum() + 0.2), atol=1e-7)
    assert obs[-1] == pytest.approx(0.2 / (grown.sum() + 0.2), abs=1e-7)


def test_cash_earns_nothing() -> None:
    # both assets gain 10% over session 1; 40% in cash, so the book gains 6%
    _, info = first_step(EnvConfig(window=1, **FREE), logits(0.3, 0.3, 0.4), [[0.0, 0.0], [0.10, 0.10]])
    assert info["gross_return"] == pytest.approx(0.06, abs=1e-12)
    assert info["session_weights"][0].sum() == pytest.approx(0.66 / 1.06, abs=1e-12)


def test_max_weight_caps_every_asset() -> None:
    # softmax gives A 0.7, B 0.2; A is capped at 0.4 and its excess lifts B to the cap too
    _, info = first_step(EnvConfig(window=1, max_weight=0.4, **FREE), logits(0.7, 0.2, 0.1))
    np.testing.assert_allclose(info["weights"], [0.4, 0.4], atol=1e-12)
    assert info["turnover"] == pytest.approx(0.8, abs=1e-12)

    env = PortfolioEnv(synthetic_panel(80, 5, 2, seed=5), EnvConfig(window=3, max_weight=0.25))
    env.reset(seed=0)
    for action in np.random.default_rng(1).uniform(-10, 10, (40, 6)):
        assert env.step(action)[4]["weights"].max() <= 0.25 + 1e-12


def test_turnover_cap_limits_the_trade_and_its_cost() -> None:
    reward, info = first_step(EnvConfig(window=1, turnover_cap=0.4), logits(0.5, 0.3, 0.2))
    # wanted 0.8 from cash, allowed 0.4: half of the way to the target
    np.testing.assert_allclose(info["weights"], [0.25, 0.15], atol=1e-12)
    assert info["trade_share"] == pytest.approx(0.5, abs=1e-12)
    assert info["turnover"] == pytest.approx(0.4, abs=1e-12)
    assert info["cost"] == pytest.approx(0.4 * 0.0015, abs=1e-15)
    gross = 0.25 * 0.10 + 0.15 * -0.05
    assert reward == pytest.approx(math.log((1 + gross) * (1 - 0.4 * 0.0015)), abs=1e-12)


def test_risk_penalty_subtracts_its_coefficient_times_the_squared_net_return() -> None:
    action = logits(0.5, 0.3, 0.2)
    plain, info = first_step(EnvConfig(window=1), action)
    penalised, _ = first_step(EnvConfig(window=1, risk_penalty=2.5), action)
    net = 1.035 * (1 - 0.0012) - 1
    assert info["net_return"] == pytest.approx(net, abs=1e-12)
    assert plain - penalised == pytest.approx(2.5 * net**2, abs=1e-14)


def test_without_cash_the_episode_starts_from_cash_and_the_first_trade_buys_the_whole_book() -> None:
    env = PortfolioEnv(hand_panel(RETURNS), EnvConfig(window=1, allow_cash=False))
    assert env.action_space.shape == (2,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[-3:], [0.0, 0.0, 1.0])
    obs, reward, _, _, info = env.step(logits(0.6, 0.4))
    np.testing.assert_allclose(info["weights"], [0.6, 0.4], atol=1e-12)
    assert info["turnover"] == pytest.approx(1.0, abs=1e-12)
    assert info["cost"] == pytest.approx(0.0015, abs=1e-15)
    assert reward == pytest.approx(math.log((1 + 0.6 * 0.10 + 0.4 * -0.05) * (1 - 0.0015)), abs=1e-12)
    assert obs[-1] == 0.0


# ---------------------------------------------------------------- numerical safety and refusals


def test_huge_logits_are_clipped_to_the_box_and_the_softmax_stays_finite() -> None:
    env = PortfolioEnv(hand_panel(RETURNS), EnvConfig(window=1))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([1e6, 0.0, -1e6]))
    clipped = np.array([ACTION_BOUND, 0.0, -ACTION_BOUND])
    expected, _ = constrained_target(clipped, np.zeros(2), max_weight=1.0, turnover_cap=None, allow_cash=True)
    np.testing.assert_allclose(info["weights"], expected, rtol=0, atol=1e-15)
    assert math.isfinite(reward)

    for big in (1e6, 1e300):
        weights, share = constrained_target(
            np.array([big, 0.0, -big]), np.zeros(2), max_weight=1.0, turnover_cap=None, allow_cash=True
        )
        assert np.isfinite(weights).all() and share == 1.0
        np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-300)


def test_non_finite_actions_are_refused() -> None:
    env = PortfolioEnv(hand_panel(RETURNS), EnvConfig(window=1))
    env.reset(seed=0)
    with pytest.raises(TrainingError, match="logits must be finite"):
        env.step(np.array([np.nan, 0.0, 0.0]))


def test_infeasible_max_weight_without_cash_is_refused_by_name() -> None:
    panel = synthetic_panel(30, 3, 2)
    with pytest.raises(TrainingError, match=r"infeasible constraints: max_weight 0\.2 x 3 names"):
        PortfolioEnv(panel, EnvConfig(window=5, max_weight=0.2, allow_cash=False))
    PortfolioEnv(panel, EnvConfig(window=5, max_weight=0.2, allow_cash=True))  # cash absorbs the rest


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", 0, "window must be an integer >= 1"),
        ("window", 2.5, "window must be an integer >= 1"),
        ("cost_bps", -1.0, "cost_bps must be a finite number >= 0"),
        ("slippage_bps", float("nan"), "slippage_bps must be a finite number >= 0"),
        ("risk_penalty", -0.1, "risk_penalty must be a finite number >= 0"),
        ("cost_bps", 5000.0, "cost_bps \\+ slippage_bps = 5005.0 bps"),
        ("max_weight", 0.0, r"max_weight must be in \(0, 1\]"),
        ("max_weight", 1.5, r"max_weight must be in \(0, 1\]"),
        ("turnover_cap", 0.0, "turnover_cap must be None or a finite number > 0"),
        ("turnover_cap", "0.5", "turnover_cap must be a number"),
        ("episode_length", 0, "episode_length must be an integer >= 1"),
        ("rebalance_every", 0, "rebalance_every must be an integer >= 1"),
        ("allow_cash", 1, "allow_cash must be True or False"),
    ],
)
def test_config_refuses_bad_values_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        EnvConfig(**{field: value})  # type: ignore[arg-type]


def test_a_window_as_long_as_the_history_is_refused() -> None:
    panel = synthetic_panel(5, 3, 2)
    with pytest.raises(TrainingError, match="the observation window is 5 sessions but the data hold only 5"):
        PortfolioEnv(panel, EnvConfig(window=5))
    assert PortfolioEnv(panel, EnvConfig(window=4)).last_start == 3


def test_an_episode_longer_than_the_panel_is_refused_by_name() -> None:
    with pytest.raises(TrainingError, match=r"episode_length 10 x rebalance_every 5 .* needs 55 sessions"):
        PortfolioEnv(synthetic_panel(54, 3, 2), EnvConfig(window=5, episode_length=10, rebalance_every=5))
    env = PortfolioEnv(synthetic_panel(55, 3, 2), EnvConfig(window=5, episode_length=10, rebalance_every=5))
    assert env.last_start == env.first_decision == 4


def test_nan_returns_are_refused_by_the_panel() -> None:
    returns = np.array(RETURNS)
    returns[2, 1] = np.nan
    with pytest.raises(TrainingError, match="the first is ticker 'B' on 2024-01-03"):
        hand_panel(returns.tolist())


# ---------------------------------------------------------------- observations


def test_normalise_features_is_a_cross_sectional_z_score_with_missing_values_at_zero() -> None:
    raw = np.array(
        [
            [[1.0, 5.0, np.nan, np.nan], [2.0, 5.0, 7.0, np.inf], [3.0, 5.0, np.nan, np.nan]],
            [[1.0, 0.1, 1.0, 0.0], [np.nan, 0.1, 100.0, 0.0], [3.0, 0.1, 1.0, 1e6]],
        ]
    )
    z = normalise_features(raw)
    assert z.dtype == np.float32 and z.shape == raw.shape
    np.testing.assert_allclose(z[0, :, 0], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)], atol=1e-6)
    np.testing.assert_array_equal(z[0, :, 1], 0.0)  # no spread
    np.testing.assert_array_equal(z[0, :, 2:], 0.0)  # one finite value, inf is missing
    np.testing.assert_allclose(z[1, :, 0], [-1.0, 0.0, 1.0], atol=1e-6)  # the NaN gets 0
    np.testing.assert_array_equal(z[1, :, 1], 0.0)  # 0.1 three times: rounding is no spread
    np.testing.assert_allclose(z[1, :, 2], [-1 / math.sqrt(2), math.sqrt(2), -1 / math.sqrt(2)], atol=1e-6)
    assert np.abs(z).max() <= FEATURE_CLIP


def test_an_outlier_is_clipped_to_the_feature_clip() -> None:
    cross_section = np.zeros((1, 100, 1))
    cross_section[0, 0, 0] = 1e9
    z = normalise_features(cross_section)
    assert z[0, 0, 0] == FEATURE_CLIP and np.abs(z[0, 1:, 0]).max() < 0.2


def test_normalising_a_window_gives_the_same_numbers_as_normalising_the_panel() -> None:
    features = synthetic_panel(60, 6, 4, seed=8).features.copy()
    features[10:20, 2, 1] = np.nan
    whole = normalise_features(features)
    np.testing.assert_array_equal(normalise_features(features[31:41]), whole[31:41])


def test_nan_features_give_finite_observations_inside_the_space() -> None:
    panel = synthetic_panel(40, 4, 3, seed=6)
    features = panel.features.copy()
    features[5:15] = np.nan  # whole sessions missing
    features[:, 1, :] = np.nan  # one ticker never has features
    features[20, 2, 0] = np.inf
    rng = np.random.default_rng(0)
    features[rng.random(features.shape) < 0.3] = np.nan
    panel = MarketPanel(panel.dates, panel.tickers, panel.returns, features, panel.feature_names, None, panel.label)
    env = PortfolioEnv(panel, EnvConfig(window=8))
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    terminated = False
    while not terminated:
        assert np.isfinite(obs).all() and env.observation_space.contains(obs)
        obs, _, terminated, _, _ = env.step(env.action_space.sample())


def test_the_observation_layout_is_the_window_of_features_then_weights_then_cash() -> None:
    panel = synthetic_panel(30, 3, 2, seed=9)
    env = PortfolioEnv(panel, EnvConfig(window=4, **FREE))
    env.reset(seed=0)
    obs, _, _, _, info = env.step(logits(0.4, 0.2, 0.2, 0.2))
    t = env.session  # 4: the decision at 3 held over session 4
    assert obs.shape == (4 * 3 * 2 + 3 + 1,) and t == 4
    features = normalise_features(panel.features[t - 3 : t + 1])
    np.testing.assert_array_equal(obs[:24], features.reshape(-1))
    assert obs[(3 * 3 + 2) * 2 + 1] == features[3, 2, 1]  # session s, ticker i, feature f
    np.testing.assert_allclose(obs[24:27], info["session_weights"][-1], atol=1e-7)
    assert obs[27] == pytest.approx(1 - info["session_weights"][-1].sum(), abs=1e-7)


def test_the_observation_at_t_holds_nothing_from_after_t() -> None:
    panel = synthetic_panel(50, 4, 3, seed=10)
    t = 20
    returns, features = panel.returns.copy(), panel.features.copy()
    rng = np.random.default_rng(1)
    returns[t + 1 :] = rng.normal(0, 0.2, returns[t + 1 :].shape).clip(-0.9)
    features[t + 1 :] = rng.normal(0, 50, features[t + 1 :].shape)
    features[t + 1 :: 3] = np.nan
    future = MarketPanel(panel.dates, panel.tickers, returns, features, panel.feature_names, None, panel.label)
    actions = rng.uniform(-5, 5, (t, 5))

    def observation_at_t(p: MarketPanel) -> np.ndarray:
        env = PortfolioEnv(p, EnvConfig(window=6))
        obs, _ = env.reset(seed=0)
        for action in actions[: t - env.first_decision]:
            obs = env.step(action)[0]
        assert env.session == t
        return obs

    np.testing.assert_array_equal(observation_at_t(panel), observation_at_t(future))


# ---------------------------------------------------------------- rebalancing periods and run_policy


def test_rebalance_every_five_trades_every_five_sessions_and_drifts_in_between() -> None:
    panel = synthetic_panel(21, 2, 2, seed=11)
    env = PortfolioEnv(panel, EnvConfig(window=3, rebalance_every=5))
    env.reset(seed=0)
    infos, rewards, terminated = [], [], False
    while not terminated:
        _, reward, terminated, _, info = env.step(logits(0.6, 0.3, 0.1))
        infos.append(info)
        rewards.append(reward)
    assert [i["session"] for i in infos] == [2, 7, 12, 17]
    assert [len(i["session_gross_returns"]) for i in infos] == [5, 5, 5, 3]  # the data end at 20

    first = infos[0]
    held = np.array([0.6, 0.3])  # drift by hand: asset values grow, cash stays 0.1
    values = [held * np.prod(1 + panel.returns[3 : s + 1], axis=0) for s in range(3, 8)]
    book = np.array([v.sum() + 0.1 for v in values])
    np.testing.assert_allclose(first["session_gross_returns"], book / np.r_[1.0, book[:-1]] - 1, atol=1e-12)
    np.testing.assert_allclose(first["session_weights"][-1], values[-1] / book[-1], atol=1e-12)
    assert first["cost"] == pytest.approx(0.9 * 0.0015, abs=1e-15)
    assert rewards[0] == pytest.approx(math.log(book[-1] * (1 - 0.9 * 0.0015)), abs=1e-12)
    assert env.wealth == pytest.approx(math.exp(sum(rewards)), rel=1e-12)


@pytest.mark.parametrize("every", [1, 5])
def test_run_policy_returns_daily_series_whose_equity_is_the_envs_wealth(every: int) -> None:
    panel = synthetic_panel(63, 4, 3, seed=12)
    env = PortfolioEnv(panel, EnvConfig(window=5, rebalance_every=every, max_weight=0.4, turnover_cap=0.8))

    def policy(obs: np.ndarray) -> np.ndarray:  # deterministic: feature 0 of each ticker on the decision session
        return np.concatenate([obs[48:60:3] * 2.0, [0.0]])

    result = run_policy(env, policy, name="test")
    assert result.dates.tolist() == panel.dates[4:].tolist()  # the first decision session to the end
    assert np.prod(1 + result.returns) == pytest.approx(env.wealth, rel=1e-12)
    assert result.returns[0] == pytest.approx(-result.costs[0], abs=1e-15)  # the first buy, from cash
    trades = np.flatnonzero(result.turnover > 0)
    assert trades.tolist() == list(range(0, 58, every))
    assert (result.costs[result.turnover == 0] == 0).all()
    np.testing.assert_allclose(result.costs, result.turnover * 0.0015, atol=1e-15)
    np.testing.assert_allclose(result.weights.sum(axis=1) + result.cash, 1.0, atol=1e-12)
    # each day's gross return is the previous close's book times that day's asset returns
    held = result.weights[:-1] * panel.returns[5:]
    np.testing.assert_allclose(result.gross_returns[1:], held.sum(axis=1), atol=1e-12)
    assert result.rebalance_every == every and result.label == panel.label and result.name == "test"
