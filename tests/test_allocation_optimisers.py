"""Classic optimisers (skfolio) and TopkDropout: valid books, the cap, fallbacks on record, refusals.

Every panel here is SYNTHETIC (seeded Gaussian returns or hand-made scores), built to check the
rules; no performance figure is derived from them.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.allocation.optimisers import (
    EqualWeight,
    HierarchicalRiskParity,
    InverseVolatility,
    MaximumSharpe,
    MinimumVariance,
    TopkDropout,
    classic_strategies,
)
from training.allocation.panel import MarketPanel, synthetic_panel
from training.errors import TrainingError

LABEL = "SYNTHETIC data: test panel"


def make_panel(returns: np.ndarray, scores: np.ndarray | None = None, feature: str = "score") -> MarketPanel:
    """A SYNTHETIC panel from returns ``[T, N]`` and optional scores ``[T, N]`` (one feature)."""
    t, n = returns.shape
    feats = np.zeros((t, n, 1), dtype=np.float32) if scores is None else scores[:, :, None].astype(np.float32)
    dates = np.busday_offset(np.datetime64("2020-01-02"), np.arange(t), roll="forward")
    return MarketPanel(dates, tuple(f"T{i}" for i in range(n)), returns, feats, (feature,), None, LABEL)


def gaussian_returns(t: int, vols: list[float], means: list[float] | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = rng.normal(np.asarray(means or [0.0] * len(vols)), np.asarray(vols), (t, len(vols)))
    r[0] = 0.0
    return r


def assert_valid_book(w: np.ndarray, n: int, cap: float) -> None:
    assert w.shape == (n,)
    assert np.isfinite(w).all()
    assert w.min() >= 0.0
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert w.max() <= cap + 1e-6


# ---------------------------------------------------------------- the classic five


def test_classic_strategies_come_in_a_fixed_order_and_give_valid_capped_books() -> None:
    panel = synthetic_panel(300, 10, 1, seed=3)
    strategies = classic_strategies(max_weight=0.2, lookback=252)
    assert [s.name for s in strategies] == ["equal_weight", "inverse_volatility", "min_variance", "max_sharpe", "hrp"]
    for strategy in strategies:
        strategy.fit(panel)
        w = strategy.target(panel, np.zeros(10))
        assert_valid_book(w, 10, 0.2)
        assert strategy.fallbacks == [], strategy.name
    assert strategies[0].target(panel, np.zeros(10)) == pytest.approx(np.full(10, 0.1))


def test_min_variance_beats_equal_weight_in_sample_and_avoids_the_volatile_asset() -> None:
    returns = gaussian_returns(300, [0.01] * 9 + [0.08], seed=1)
    panel = make_panel(returns)
    window = returns[-252:]
    mv = MinimumVariance(lookback=252).target(panel, np.zeros(10))
    ew = EqualWeight().target(panel, np.zeros(10))
    cov = np.cov(window, rowvar=False)
    assert mv @ cov @ mv < 0.5 * (ew @ cov @ ew)
    assert mv[9] < 0.01
    assert_valid_book(mv, 10, 1.0)


def test_inverse_volatility_is_one_over_the_trailing_window_volatility() -> None:
    returns = gaussian_returns(300, [0.01, 0.02, 0.03, 0.04, 0.05], seed=2)
    panel = make_panel(returns)
    w = InverseVolatility(lookback=100).target(panel, np.zeros(5))
    inverse = 1.0 / returns[-100:].std(axis=0, ddof=1)
    assert w == pytest.approx(inverse / inverse.sum(), rel=1e-9)
    # Only the window counts: rewriting the older sessions changes nothing.
    older = returns.copy()
    older[1:150] *= 5.0
    assert InverseVolatility(lookback=100).target(make_panel(older), np.zeros(5)) == pytest.approx(w, rel=1e-12)


def test_inverse_volatility_is_capped_with_the_excess_spread_pro_rata() -> None:
    returns = gaussian_returns(300, [0.002, 0.02, 0.02, 0.02, 0.02], seed=4)
    w = InverseVolatility(lookback=252, max_weight=0.3).target(make_panel(returns), np.zeros(5))
    assert_valid_book(w, 5, 0.3)
    assert w[0] == pytest.approx(0.3)
    inverse = 1.0 / returns[-252:, 1:].std(axis=0, ddof=1)
    assert w[1:] == pytest.approx(0.7 * inverse / inverse.sum(), rel=1e-9)


def test_hrp_gives_a_valid_book_under_the_cap() -> None:
    panel = synthetic_panel(300, 10, 1, seed=5)
    strategy = HierarchicalRiskParity(lookback=252, max_weight=0.15)
    assert_valid_book(strategy.target(panel, np.zeros(10)), 10, 0.15)
    assert strategy.fallbacks == []


def test_max_sharpe_buys_the_asset_with_the_drift_up_to_the_cap() -> None:
    returns = gaussian_returns(300, [0.01] * 6, means=[0.003, 0.0002, 0.0001, 0.0, 0.0, 0.0], seed=6)
    strategy = MaximumSharpe(lookback=252, max_weight=0.4)
    w = strategy.target(make_panel(returns), np.zeros(6))
    assert_valid_book(w, 6, 0.4)
    assert w[0] == pytest.approx(0.4, abs=1e-6)
    assert strategy.fallbacks == []


def test_max_sharpe_without_a_positive_mean_falls_back_to_equal_weight_on_record() -> None:
    returns = -np.abs(gaussian_returns(300, [0.01] * 4, seed=7))
    panel = make_panel(returns)
    strategy = MaximumSharpe(lookback=252)
    assert strategy.target(panel, np.zeros(4)) == pytest.approx(np.full(4, 0.25))
    assert len(strategy.fallbacks) == 1
    record = strategy.fallbacks[0]
    assert record.startswith(f"{panel.dates[-1]}: max_sharpe")
    assert "positive mean return" in record and "equal weight" in record


def test_a_zero_variance_asset_is_a_recorded_fallback_not_a_crash() -> None:
    returns = gaussian_returns(300, [0.01] * 4, seed=8)
    returns[:, 2] = 0.0  # a halted asset
    panel = make_panel(returns)
    for strategy in (InverseVolatility(lookback=252), HierarchicalRiskParity(lookback=252)):
        assert strategy.target(panel, np.zeros(4)) == pytest.approx(np.full(4, 0.25))
        assert len(strategy.fallbacks) == 1
        assert "variance" in strategy.fallbacks[0]
        assert str(panel.dates[-1]) in strategy.fallbacks[0]


def test_a_history_not_longer_than_the_lookback_is_refused_by_name() -> None:
    panel = synthetic_panel(252, 5, 1, seed=0)
    with pytest.raises(TrainingError, match=r"the min_variance lookback is 252 sessions but the data hold only 252"):
        MinimumVariance(lookback=252).target(panel, np.zeros(5))


def test_bad_universes_and_settings_are_refused() -> None:
    one = make_panel(gaussian_returns(300, [0.01]))
    with pytest.raises(TrainingError, match="min_variance needs at least 2 assets, the universe has 1"):
        MinimumVariance().fit(one)
    assert EqualWeight().target(one, np.zeros(1)) == pytest.approx([1.0])
    ten = synthetic_panel(300, 10, 1)
    with pytest.raises(TrainingError, match=r"infeasible constraints: max_weight 0\.05 x 10 names"):
        HierarchicalRiskParity(max_weight=0.05).fit(ten)
    with pytest.raises(TrainingError, match="lookback must be at least 2"):
        InverseVolatility(lookback=1)
    with pytest.raises(TrainingError, match="max_weight must be in"):
        MinimumVariance(max_weight=1.5)


# ---------------------------------------------------------------- TopkDropout


def scored_panel(scores: list[list[float]]) -> MarketPanel:
    """A SYNTHETIC panel whose last session carries ``scores`` rows (one per session)."""
    grid = np.asarray(scores, dtype=np.float64)
    return make_panel(np.zeros_like(grid), grid)


def held(weights: np.ndarray) -> set[int]:
    return set(np.flatnonzero(weights > 0).tolist())


def test_topk_dropout_fills_from_cash_then_replaces_at_most_n_drop_names() -> None:
    strategy = TopkDropout(k=3, n_drop=1)
    first = strategy.target(scored_panel([[6, 5, 4, 3, 2, 1]]), np.zeros(6))
    assert held(first) == {0, 1, 2}
    assert first[[0, 1, 2]] == pytest.approx([1 / 3] * 3)
    # The ranking flips entirely; only the weakest holding makes way, for the best outsider.
    second = strategy.target(scored_panel([[1, 2, 3, 4, 5, 6]]), first)
    assert held(second) == {1, 2, 5}
    assert np.abs(second - first).sum() == pytest.approx(2 / 3)


def test_topk_dropout_turnover_stays_within_two_n_drop_over_k() -> None:
    rng = np.random.default_rng(0)
    strategy = TopkDropout(k=5, n_drop=2)
    weights = strategy.target(scored_panel([rng.normal(size=20).tolist()]), np.zeros(20))
    for _ in range(30):
        new = strategy.target(scored_panel([rng.normal(size=20).tolist()]), weights)
        assert len(held(new)) == 5
        assert len(held(weights) - held(new)) <= 2
        assert np.abs(new - weights).sum() <= 2 * 2 / 5 + 1e-12
        weights = new


def test_topk_dropout_keeps_holdings_that_nothing_outranks() -> None:
    strategy = TopkDropout(k=2, n_drop=2)
    book = np.array([0.5, 0.5, 0.0, 0.0])
    assert held(strategy.target(scored_panel([[9, 8, 1, 2]]), book)) == {0, 1}
    # A tie keeps the held name.
    assert held(strategy.target(scored_panel([[9, 2, 2, 1]]), book)) == {0, 1}


def test_topk_dropout_never_buys_a_nan_score_and_drops_a_held_nan_first() -> None:
    nan = float("nan")
    strategy = TopkDropout(k=2, n_drop=1)
    assert held(strategy.target(scored_panel([[nan, 5, 4, 3]]), np.zeros(4))) == {1, 2}
    assert held(strategy.target(scored_panel([[1, nan, 4, 3]]), np.array([0.5, 0.5, 0, 0]))) == {0, 2}
    # Fewer scored names than k: the rest stays in cash.
    only_one = strategy.target(scored_panel([[nan, nan, 4, nan]]), np.zeros(4))
    assert held(only_one) == {2} and only_one.sum() == pytest.approx(0.5)


def test_topk_dropout_sheds_the_extras_of_a_book_wider_than_k() -> None:
    strategy = TopkDropout(k=2, n_drop=1)
    partial = np.array([0.3, 0.3, 0.2, 0.2, 0.0])
    assert held(strategy.target(scored_panel([[1, 4, 3, 2, 0]]), partial)) == {1, 2}


def test_topk_dropout_names_the_missing_score_feature_and_what_exists() -> None:
    panel = make_panel(np.zeros((3, 4)), np.ones((3, 4)), feature="momentum")
    strategy = TopkDropout(k=2, n_drop=1, score_feature="ensemble_score")
    with pytest.raises(TrainingError, match=r"'ensemble_score', which the panel lacks; it has \['momentum'\]"):
        strategy.fit(panel)
    with pytest.raises(TrainingError, match="ensemble_score"):
        strategy.target(panel, np.zeros(4))


def test_topk_dropout_refuses_bad_settings() -> None:
    with pytest.raises(TrainingError, match=r"n_drop must be in 0\.\.k=2"):
        TopkDropout(k=2, n_drop=3)
    with pytest.raises(TrainingError, match="k must be at least 1"):
        TopkDropout(k=0, n_drop=0)
    with pytest.raises(TrainingError, match="infeasible constraints"):
        TopkDropout(k=3, n_drop=1, max_weight=0.2)
    with pytest.raises(TrainingError, match="holds k=5 names but the universe has 4"):
        TopkDropout(k=5, n_drop=1).target(scored_panel([[1, 2, 3, 4]]), np.zeros(4))
