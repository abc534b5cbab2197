"""Allocation over a changing universe: masks, forced exits, optimisers on what is available, one policy of fixed width.

Every price and feature here is SYNTHETIC, generated in the test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.allocation_fixtures import mlp_policy
from training.allocation.allocator_pyfunc import allocate_slots
from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.observation import assign_slots, slot_observation_size
from training.allocation.optimisers import EqualWeight, MinimumVariance
from training.allocation.panel import MarketPanel, panel_from_frames
from training.allocation.policy import PolicyParams, policy_action
from training.allocation.policy_strategy import PolicyStrategy
from training.audit import AuditLog
from training.errors import TrainingError
from training.registry.config import RegistryConfig
from training.registry.model_registry import ModelRegistry, RunRecord

T = 120
DAYS = pd.bdate_range("2021-01-04", periods=T)
NAMES = ["A", "B", "C", "D", "E"]
FEATURES = ["ret_21d", "vol_63d"]
DELIST = 70  # E's last close
BREAK = 90  # C's new series starts here (a reused code): its last close before is 89
LISTS = 40  # D's first close


def closes() -> pd.DataFrame:
    """SYNTHETIC closes: D lists at 40, E delists after 70, C breaks at 90."""
    rng = np.random.default_rng(3)
    close = pd.DataFrame(
        10.0 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, (T, len(NAMES))), axis=0)), index=DAYS, columns=NAMES
    )
    close.iloc[:LISTS, 3] = np.nan
    close.iloc[DELIST + 1 :, 4] = np.nan
    return close


def features(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = len(DAYS) * len(NAMES)
    return pd.DataFrame(
        {
            "date": np.repeat(DAYS, len(NAMES)),
            "ticker": NAMES * len(DAYS),
            "ret_21d": rng.normal(0.0, 0.05, rows),
            "vol_63d": np.tile([0.3, 0.1, 0.2, 0.4, 0.5], len(DAYS)),  # slot order: B, C, A, D, E
        }
    )


def panel() -> MarketPanel:
    close = closes()
    members = pd.DataFrame(True, index=DAYS, columns=NAMES)
    breaks = pd.DataFrame({"ticker": ["C"], "date": [DAYS[BREAK]]})
    return panel_from_frames(
        close, features(), FEATURES, benchmark_close=None, label="SYNTHETIC", members=members, breaks=breaks
    )


def random_policy(width: int, n_features: int, seed: int = 0) -> PolicyParams:
    """A fixed-width policy of ``width`` slots (features, mask and weight per slot)."""
    return mlp_policy(slot_observation_size(1, width, n_features), width + 1, seed)


class Hold:
    """Buys an equal-weight book of A, C and E once, then keeps whatever it holds."""

    name = "hold"

    def fit(self, history: MarketPanel) -> None:
        pass

    def target(self, history: MarketPanel, current: np.ndarray) -> np.ndarray:
        if current.sum() > 0:
            return current
        out = np.zeros(history.n_assets)
        out[[0, 2, 4]] = 1.0 / 3.0
        return out


def test_the_panel_marks_delistings_and_series_breaks_as_exits() -> None:
    p = panel()
    assert p.exits is not None and p.available is not None and p.priced is not None
    assert sorted(map(tuple, np.argwhere(p.exits).tolist())) == [(DELIST, 4), (BREAK - 1, 2)]
    assert not p.available[DELIST:, 4].any() and p.available[:DELIST, 4].all()
    # C may not be bought on its last close before the break, and may be again from the new series.
    assert not p.available[BREAK - 1, 2] and p.available[BREAK:, 2].all()
    assert not p.available[:LISTS, 3].any() and p.available[LISTS:, 3].all()  # names without full history kept


def test_a_delisting_and_a_break_are_forced_exits_at_the_last_close_with_costs() -> None:
    p = panel()
    config = BacktestConfig(rebalance_every=100, cost_bps=20.0, slippage_bps=5.0, refit_every=1000, min_history=10)
    result = backtest(Hold(), p, config, start=10, end=T - 1)
    at_delist, at_break = DELIST - 10, BREAK - 1 - 10
    # Neither day is a rebalance: the sale is forced, at that close, and pays 25 bps of what was sold.
    held_e = result.weights[at_delist - 1, 4] * (1.0 + p.returns[DELIST, 4]) / (1.0 + result.gross_returns[at_delist])
    assert result.weights[at_delist, 4] == 0.0 and result.weights[at_delist:, 4].sum() == 0.0
    assert result.turnover[at_delist] == pytest.approx(held_e)
    assert result.costs[at_delist] == pytest.approx(held_e * 25e-4)
    assert result.returns[at_delist] == pytest.approx((1 + result.gross_returns[at_delist]) * (1 - held_e * 25e-4) - 1)
    assert result.weights[at_break, 2] == 0.0 and result.costs[at_break] > 0.0
    assert result.cash[-1] == pytest.approx(1.0 - result.weights[-1].sum()) and result.cash[-1] > 0.6


def test_the_environment_sells_a_delisted_name_inside_a_period_and_charges_it() -> None:
    p = panel()
    config = EnvConfig(
        window=1, cost_bps=20.0, slippage_bps=5.0, rebalance_every=10, max_assets=8, slot_feature="vol_63d"
    )
    env = PortfolioEnv(p, config)
    env.reset(options={"start": DELIST - 5})
    logits = np.full(9, -10.0)
    logits[4] = 10.0  # slot order B, C, A, D, E: slot 4 is E
    _, _, _, _, info = env.step(logits)
    assert info["weights"][4] > 0.99
    sold_on = int(np.flatnonzero(info["session_turnover"])[0])
    assert sold_on == 4  # sessions DELIST-4 .. DELIST-5+10: the fifth is E's last close
    assert info["session_weights"][sold_on, 4] == 0.0
    assert info["session_costs"][sold_on] == pytest.approx(info["session_turnover"][sold_on] * 25e-4)
    growth = np.prod(1.0 + info["session_gross_returns"]) * np.prod(1.0 - info["session_costs"])
    assert info["net_return"] == pytest.approx((1.0 - info["cost"]) * growth - 1.0)
    # The daily series of a whole episode compounds to the environment's wealth, exits included.
    episode = PortfolioEnv(p, config)
    result = run_policy(episode, lambda obs: logits)
    assert np.prod(1.0 + result.returns) == pytest.approx(episode.wealth, rel=1e-12)
    assert result.weights[DELIST - 1, 4] > 0 and result.weights[DELIST, 4] == 0 and result.costs[DELIST] > 0


def test_fixed_width_observation_masks_unavailable_names_and_empty_slots() -> None:
    p = panel()
    env = PortfolioEnv(p, EnvConfig(window=1, cost_bps=0.0, slippage_bps=0.0, max_assets=8, slot_feature="vol_63d"))
    assert env.observation_space.shape == (slot_observation_size(1, 8, 2),) and env.action_space.shape == (9,)
    obs, _ = env.reset(options={"start": 20})  # D not listed yet: A, B, C, E fill four slots
    feats, mask, weights = obs[:16].reshape(8, 2), obs[16:24], obs[24:32]
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0, 0, 0])
    assert (feats[4:] == 0).all() and (weights == 0).all() and obs[-1] == 1.0
    np.testing.assert_array_equal(env._slots, [1, 2, 0, 4])  # by vol_63d ascending: B, C, A, E
    _, _, _, _, info = env.step(np.full(9, 10.0))  # equal logits everywhere, empty slots included
    assert info["weights"][3] == 0.0 and info["weights"].sum() == pytest.approx(4 / 5)  # 4 names + cash
    obs, _ = env.reset(options={"start": 80})  # D listed, E delisted
    np.testing.assert_array_equal(env._slots, [1, 2, 0, 3])
    assert obs[16:24].sum() == 4


def test_assign_slots_keeps_held_names_first_when_members_outnumber_slots() -> None:
    key = np.array([5.0, 1.0, 2.0, 3.0, np.nan, 0.5])
    eligible = np.array([True, True, True, True, True, False])
    held = np.array([True, False, False, False, True, False])
    # Two slots for five eligible names: both held names (A, then the unknown key last), nothing else.
    np.testing.assert_array_equal(assign_slots(key, eligible, held, 2), [0, 4])
    np.testing.assert_array_equal(assign_slots(key, eligible, held, 3), [1, 0, 4])
    np.testing.assert_array_equal(assign_slots(key, eligible, np.zeros(6, bool), 10), [1, 2, 3, 0, 4])


def test_optimisers_run_on_the_names_available_at_each_rebalance() -> None:
    p = panel()
    for strategy in (EqualWeight(), MinimumVariance(lookback=20)):
        early = strategy.target(p.slice(0, 30), np.zeros(5))  # D not listed
        late = strategy.target(p.slice(0, 100), np.zeros(5))  # D listed, E gone
        assert early[3] == 0.0 and early.sum() == pytest.approx(1.0) and (early[[0, 1, 2, 4]] > 0).all()
        assert late[4] == 0.0 and late.sum() == pytest.approx(1.0) and late[3] > 0


def test_one_fixed_width_policy_serves_different_memberships() -> None:
    policy = random_policy(8, 2)
    config = EnvConfig(window=1, max_assets=8, slot_feature="vol_63d", max_weight=0.5)
    small = panel()
    wide_close = pd.concat([closes(), closes().add_suffix("2")], axis=1)
    members = pd.DataFrame(True, index=DAYS, columns=wide_close.columns)
    wide_feats = pd.concat([features(), features(6).assign(ticker=lambda f: f["ticker"] + "2")])
    wide = panel_from_frames(wide_close, wide_feats, FEATURES, benchmark_close=None, label="SYNTHETIC", members=members)
    for p in (small, wide):
        result = backtest(
            PolicyStrategy("rl", policy, config, tuple(FEATURES)),
            p,
            BacktestConfig(rebalance_every=5, refit_every=1000, min_history=5),
            start=5,
            end=T - 1,
        )
        held = (result.weights > 0).sum(axis=1)
        assert held.max() <= 8 and result.weights.sum(axis=1).max() <= 1 + 1e-9
        assert result.weights[: T - 6 : 5].max() <= 0.5 + 1e-9  # the cap holds at each trade (drift may pass it)
        assert p.available is not None and p.priced is not None
        rows = result.weights[::5][:-1]
        bought = rows > 0
        assert not (bought & ~p.available[5 : T - 1 : 5][: len(rows)] & p.priced[5 : T - 1 : 5][: len(rows)]).any()
    # Served: any set of at most 8 names, in any order; more are refused naming the limit.
    rows_a = pd.DataFrame({"ticker": ["X", "Y", "Z"], "ret_21d": [0.1, -0.1, 0.0], "vol_63d": [0.2, 0.1, 0.3]})
    rows_b = pd.DataFrame({"ticker": [f"N{i}" for i in range(8)], "ret_21d": np.linspace(-0.1, 0.1, 8)})
    kwargs = {"features": FEATURES, "policy": policy, "max_assets": 8, "slot_feature": "vol_63d"}
    for request in (rows_a, rows_b):
        out = allocate_slots(request, max_weight=0.5, turnover_cap=None, allow_cash=True, **kwargs)  # type: ignore[arg-type]
        assert list(out["ticker"]) == list(request["ticker"]) and out["weight"].sum() <= 1.0 + 1e-12
        assert (out["weight"] >= 0).all() and out["weight"].max() <= 0.5 + 1e-12
    # The same names in another order get the same weights (slots follow vol_63d, not the row order).
    flipped = allocate_slots(rows_a.iloc[::-1], max_weight=0.5, turnover_cap=None, allow_cash=True, **kwargs)  # type: ignore[arg-type]
    straight = allocate_slots(rows_a, max_weight=0.5, turnover_cap=None, allow_cash=True, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_allclose(
        flipped.set_index("ticker")["weight"], straight.set_index("ticker")["weight"].loc[["Z", "Y", "X"]]
    )
    with pytest.raises(ValueError, match=r"at most 8 tickers per request .* got 9"):
        allocate_slots(
            pd.DataFrame({"ticker": [f"N{i}" for i in range(9)]}),
            max_weight=0.5,
            turnover_cap=None,
            allow_cash=True,
            **kwargs,  # type: ignore[arg-type]
        )


def test_the_policy_strategy_matches_the_environment_in_fixed_width() -> None:
    """Same decisions in training (environment, lagged features) and backtest (policy strategy)."""
    p = panel().slice(LISTS, DELIST)  # everyone listed, nobody exits: the masks agree at t - 1 and t
    policy = random_policy(8, 2, seed=4)
    config = EnvConfig(
        window=1, cost_bps=10.0, slippage_bps=5.0, rebalance_every=3, max_assets=8, slot_feature="vol_63d"
    )
    start = 5
    in_env = run_policy(
        PortfolioEnv(p.with_feature_lag(1).slice(start, p.n_sessions), config), lambda o: policy_action(policy, o)
    )
    strategy = PolicyStrategy("rl", policy, config, tuple(FEATURES))
    cfg = BacktestConfig(rebalance_every=3, cost_bps=10.0, slippage_bps=5.0, refit_every=1000, min_history=start)
    in_backtest = backtest(strategy, p, cfg, start=start)
    np.testing.assert_allclose(in_backtest.weights, in_env.weights, atol=1e-12)
    np.testing.assert_allclose(in_backtest.returns, in_env.returns, atol=1e-12)
    assert (in_env.weights > 0).sum(axis=1).max() == 5  # the five names fill five of the eight slots


@pytest.mark.slow
def test_a_fixed_width_allocator_round_trips_through_the_registry(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    policy = random_policy(8, 2, seed=9)
    config = {
        "tickers": NAMES,
        "features": FEATURES,
        "max_weight": 0.5,
        "turnover_cap": None,
        "allow_cash": True,
        "max_assets": 8,
        "slot_feature": "vol_63d",
    }
    record = RunRecord(name="allocator", params={}, metrics={}, tags={"code_version": "t"}, card="# card")
    version = registry.log_allocator(record, policy.save(tmp_path / "policy.npz"), config)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/allocator/{version}")
    rows = pd.DataFrame({"ticker": ["NEW1", "B", "NEW2"], "ret_21d": [0.1, 0.0, -0.1], "vol_63d": [0.2, 0.1, 0.3]})
    rows["current_weight"] = [0.2, 0.0, 0.1]
    served = model.predict(rows)
    direct = allocate_slots(
        rows,
        features=FEATURES,
        policy=policy,
        max_assets=8,
        slot_feature="vol_63d",
        max_weight=0.5,
        turnover_cap=None,
        allow_cash=True,
    )
    np.testing.assert_allclose(served["weight"].to_numpy(), direct["weight"].to_numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="at most 8 tickers"):
        model.predict(pd.DataFrame({"ticker": [f"N{i}" for i in range(9)]}))


def test_keeping_part_of_a_name_that_left_is_not_refused_and_the_trade_sells_it() -> None:
    """A turnover-capped strategy may keep part of a held name that left; buying more of it is refused."""
    close = closes()
    members = pd.DataFrame(True, index=DAYS, columns=NAMES)
    members.iloc[45:, 0] = False  # A leaves the universe at 45, between trades, and keeps trading
    p = panel_from_frames(close, features(), FEATURES, benchmark_close=None, label="SYNTHETIC", members=members)
    config = BacktestConfig(rebalance_every=10, cost_bps=0.0, slippage_bps=0.0, refit_every=1000, min_history=10)
    result = backtest(Hold(), p, config, start=10, end=T - 1)
    assert result.weights[49 - 10, 0] > 0.2  # held, not refused, until the next trade
    assert result.weights[50 - 10 :, 0].sum() == 0.0  # which sells it (session 50)

    class BuyMore(Hold):
        def target(self, history: MarketPanel, current: np.ndarray) -> np.ndarray:
            out = super().target(history, current)
            if history.n_sessions >= 50 and current[0] > 0:
                out = out.copy()
                out[0] = current[0] + 0.01
                out[1:] *= (1.0 - out[0]) / max(out[1:].sum(), 1e-12)
            return out

    with pytest.raises(TrainingError, match=r"'A', which was not available"):
        backtest(BuyMore(), p, config, start=10, end=T - 1)
