"""The allocation panel keeps names that enter and leave; nothing is bought while a name is unavailable.

Every price here is SYNTHETIC, generated in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.test_universe import SIGNALS, _store_with, rule, synthetic_prices
from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.data import load_allocation_data
from training.allocation.env import EnvConfig, PortfolioEnv
from training.allocation.optimisers import TopkDropout, classic_strategies
from training.allocation.panel import MarketPanel, panel_from_frames
from training.errors import TrainingError
from training.signals.config import SignalRunConfig

T = 400
DAYS = pd.bdate_range("2019-01-01", periods=T)
TICKERS = ["A", "B", "C", "D", "E", "F"]
HALT = 265  # A has no close on this session, a rebalance day of the backtests below


def closes_and_members() -> tuple[pd.DataFrame, pd.DataFrame]:
    """SYNTHETIC: D lists at 150, E's last bar is 299, F is a member 200..299 only, A halts at 265."""
    rng = np.random.default_rng(7)
    close = pd.DataFrame(
        20.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, (T, len(TICKERS))), axis=0)), index=DAYS, columns=TICKERS
    )
    close.iloc[:150, 3] = np.nan
    close.iloc[300:, 4] = np.nan
    close.iloc[HALT, 0] = np.nan
    members = pd.DataFrame(True, index=DAYS, columns=TICKERS)
    members.iloc[:150, 3] = False
    members.iloc[300:, 4] = False
    members.iloc[:200, 5] = False
    members.iloc[300:, 5] = False
    return close, members


def scores() -> pd.DataFrame:
    """A fixed score per ticker: F best, then D, E, C, B, A."""
    rank = {"A": 0.0, "B": 1.0, "C": 2.0, "D": 4.0, "E": 3.0, "F": 5.0}
    return pd.DataFrame(
        {"date": np.repeat(DAYS, len(TICKERS)), "ticker": TICKERS * T, "score": [rank[t] for t in TICKERS] * T}
    )


def panel() -> MarketPanel:
    close, members = closes_and_members()
    return panel_from_frames(close, scores(), ["score"], benchmark_close=None, label="SYNTHETIC", members=members)


def test_the_panel_keeps_every_member_with_an_availability_mask() -> None:
    close, members = closes_and_members()
    p = panel()
    assert p.tickers == tuple(TICKERS)
    assert p.available is not None and p.priced is not None and p.exits is not None
    np.testing.assert_array_equal(p.priced, close.notna().to_numpy())
    # E's last bar (299) is its delisting: an exit there, so it may not be bought on that close.
    assert np.argwhere(p.exits).tolist() == [[299, 4]]
    expected = members.to_numpy() & close.notna().to_numpy()
    expected[299, 4] = False
    np.testing.assert_array_equal(p.available, expected)
    assert np.isfinite(p.returns).all()
    assert (p.returns[:151, 3] == 0).all()  # D before and on its first bar: no return
    assert (p.returns[300:, 4] == 0).all()  # E after its last bar
    assert p.returns[HALT, 0] == 0
    # The return after the halt spans it: last close before the halt to the close after.
    assert p.returns[HALT + 1, 0] == pytest.approx(close.iloc[HALT + 1, 0] / close.iloc[HALT - 1, 0] - 1.0)
    assert p.returns[250, 5] == pytest.approx(close.iloc[250, 5] / close.iloc[249, 5] - 1.0)
    assert p.slice(100, 200).available is not None and p.slice(100, 200).available.shape == (100, 6)
    assert p.with_feature_lag(1).available is p.available
    # Without a membership mask a gap is still refused, as for a fixed universe.
    with pytest.raises(TrainingError, match="closes missing"):
        panel_from_frames(close, None, [], benchmark_close=None, label="SYNTHETIC")


def _trade_rows(result_weights: np.ndarray, start: int, last: int, every: int) -> list[tuple[int, np.ndarray]]:
    return [(t, result_weights[t - start]) for t in range(start, last) if (t - start) % every == 0]


@pytest.mark.parametrize("strategy_index", range(6))
def test_no_strategy_buys_an_unavailable_name(strategy_index: int) -> None:
    p = panel()
    strategies = [*classic_strategies(max_weight=None, lookback=40), TopkDropout(k=2, n_drop=2)]
    strategy = strategies[strategy_index]
    config = BacktestConfig(rebalance_every=5, cost_bps=0.0, slippage_bps=0.0, refit_every=100, min_history=60)
    result = backtest(strategy, p, config, start=140, end=T - 1)
    assert p.available is not None
    assert p.priced is not None
    for t, row in _trade_rows(result.weights, 140, T - 1, 5):
        # Unavailable names hold nothing, except a held name without a close (a halt): it cannot trade.
        assert (row[~p.available[t] & p.priced[t]] == 0).all(), (strategy.name, t)
        assert row.sum() <= 1.0 + 1e-9
    held = result.weights.sum(axis=0)
    # Names that enter are held once available (F only while a member, D after it lists).
    if strategy.name in ("equal_weight", "topk_dropout"):
        assert held[5] > 0 and held[3] > 0
    # A halted name is neither bought nor sold on its trade session: it keeps its drifted weight.
    if strategy.name == "equal_weight":
        i = HALT - 140
        drifted = result.weights[i - 1, 0] / (1.0 + result.gross_returns[i])
        assert result.weights[i, 0] == pytest.approx(drifted) and result.weights[i, 0] > 0.1
        assert result.cash[i] < 0.01  # the rest stays invested


def test_the_backtester_refuses_a_strategy_that_ignores_the_mask() -> None:
    class EveryName:
        name = "every_name"

        def fit(self, history: MarketPanel) -> None:
            pass

        def target(self, history: MarketPanel, current: np.ndarray) -> np.ndarray:
            return np.full(history.n_assets, 1.0 / history.n_assets)

    config = BacktestConfig(rebalance_every=5, refit_every=100, min_history=60)
    with pytest.raises(TrainingError, match=r"'D', which was not available .* 2019-05-"):
        backtest(EveryName(), panel(), config, start=100, end=T - 1)


def test_topk_sells_a_held_name_once_it_is_unavailable() -> None:
    p = panel()
    current = np.zeros(6)
    current[[4, 5]] = 0.5  # E and F, both gone after session 299
    target = TopkDropout(k=2, n_drop=0).target(p.slice(0, 320), current)
    assert target[4] == 0 and target[5] == 0
    assert target[3] == 0.5 and target.sum() == pytest.approx(1.0)  # D, the best name still available


def test_the_environment_gives_no_weight_to_an_unavailable_name() -> None:
    p = panel()
    env = PortfolioEnv(p, EnvConfig(window=1, cost_bps=0.0, slippage_bps=0.0))
    env.reset(options={"start": 100})  # D is not listed yet
    logits = np.zeros(7, dtype=np.float32)
    logits[3] = 10.0
    _, _, _, _, info = env.step(logits)
    assert info["weights"][3] == 0.0
    assert info["weights"].sum() == pytest.approx(4 / 5)  # A, B, C, E and cash share the softmax (F is out)
    env.reset(options={"start": 250})
    _, _, _, _, info = env.step(logits)
    assert info["weights"][3] > 0.99


# --- the allocation stage's loader ------------------------------------------------------------------


class _FeaturesOfZero:
    """Stands in for the Feast repo: every allocator feature is 0 for every entity row."""

    asked = 0

    def historical(self, service: str, entity: pd.DataFrame) -> pd.DataFrame:
        from feature_repo.schema import ALLOCATOR_FEATURES

        self.asked = len(entity)
        return entity.assign(**dict.fromkeys(ALLOCATOR_FEATURES, 0.0))


def test_the_allocation_loader_keeps_members_that_enter_and_leave(tmp_path: Path) -> None:
    prices = synthetic_prices(spans={"T7": ("2020-01-01", "2020-08-14"), "T6": ("2020-05-01", "2021-06-30")})
    path = _store_with(tmp_path, prices)
    ruled = SignalRunConfig.model_validate(SIGNALS | {"universe": rule().model_dump()})
    repo: Any = _FeaturesOfZero()
    data = load_allocation_data(ruled, path, repo, tmp_path, label="SYNTHETIC", warmup=2, min_members=3)
    p = data.panel
    assert p.tickers == ("T4", "T5", "T6", "T7") and data.dropped == ()
    assert p.available is not None
    days = pd.DatetimeIndex(p.dates)
    t7, t6, t4 = p.tickers.index("T7"), p.tickers.index("T6"), p.tickers.index("T4")
    assert p.available[days < pd.Timestamp("2020-08-14"), t7].all()
    assert not p.available[days >= pd.Timestamp("2020-08-14"), t7].any()
    assert p.exits is not None and p.exits[days == pd.Timestamp("2020-08-14"), t7].all()  # its delisting
    assert not p.available[days < pd.Timestamp("2020-07-01"), t6].any()  # 40 bars first
    assert p.available[days >= pd.Timestamp("2020-09-01"), t4].all()
    # Features are asked for members (and the session before a name joins) only.
    assert repo.asked < p.n_sessions * p.n_assets
    member = p.available[:, t4]  # T4 always has a close: available = member (April-June, then September on)
    wanted = member | np.r_[member[1:], False]
    assert not member.all() and (~np.isnan(p.features[:, t4, 0]) == wanted).all()
    # The same data with 'all' keeps names without a full history too, each a member while priced.
    everyone = SignalRunConfig.model_validate(SIGNALS | {"universe": "all"})
    fixed = load_allocation_data(everyone, path, repo, tmp_path, label="SYNTHETIC", warmup=2)
    assert fixed.dropped == () and {"T6", "T7"} <= set(fixed.panel.tickers)
    q = fixed.panel
    assert q.available is not None and q.priced is not None and q.exits is not None
    t6, t7 = q.tickers.index("T6"), q.tickers.index("T7")
    assert not q.priced[:, t6].all() and q.exits[:, t7].sum() == 1  # T6 lists late, T7 delists in the window
    np.testing.assert_array_equal(q.available, q.priced & ~q.exits)
    with pytest.raises(TrainingError, match=r"3 member\(s\) on reconstitution date .* fewer than the 4 the allocation"):
        load_allocation_data(ruled, path, repo, tmp_path, label="SYNTHETIC", warmup=2, min_members=4)


def test_one_partial_data_day_does_not_disqualify_names_from_an_estimate() -> None:
    close, members = closes_and_members()
    close.iloc[240, 1:] = np.nan  # a partial day: only A has a close (the ASX files hold such a day)
    p = panel_from_frames(close, None, [], benchmark_close=None, label="SYNTHETIC", members=members)
    inverse_vol = classic_strategies(max_weight=None, lookback=40)[1]
    weights = inverse_vol.target(p.slice(0, 260), np.zeros(6))
    assert (weights[[0, 1, 2, 3, 4, 5]] > 0).all() and weights.sum() == pytest.approx(1.0)
    inverse_vol.min_coverage = 1.0  # every session of the window: the partial day leaves A alone
    assert inverse_vol.target(p.slice(0, 260), np.zeros(6))[0] == pytest.approx(1.0)
