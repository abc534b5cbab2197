"""The walk-forward backtester: timing (one-session lag), costs, re-fit schedule, bad strategies named."""

from __future__ import annotations

import numpy as np
import pytest

from training.allocation.backtest import BacktestConfig, backtest
from training.allocation.env import EnvConfig, PortfolioEnv, run_policy
from training.allocation.panel import MarketPanel, synthetic_panel
from training.allocation.strategy import FloatArray
from training.errors import TrainingError


class Fixed:
    """Always the same target; records what it was shown."""

    def __init__(self, weights: list[float], name: str = "fixed") -> None:
        self.name = name
        self.weights = np.asarray(weights, dtype=np.float64)
        self.fits: list[int] = []
        self.seen_last: list[np.datetime64] = []

    def fit(self, history: MarketPanel) -> None:
        self.fits.append(history.n_sessions)

    def target(self, history: MarketPanel, current: FloatArray) -> FloatArray:
        self.seen_last.append(history.dates[-1])
        return self.weights


def _panel(returns: list[list[float]]) -> MarketPanel:
    r = np.asarray(returns, dtype=np.float64)
    t, n = r.shape
    return MarketPanel(
        dates=np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + t),
        tickers=tuple(f"T{i}" for i in range(n)),
        returns=r,
        features=np.zeros((t, n, 1), dtype=np.float32),
        feature_names=("f",),
        benchmark=None,
        label="SYNTHETIC data: a hand-made test panel",
    )


def test_costs_drift_and_first_buy_by_hand() -> None:
    panel = _panel([[0.0, 0.0], [0.0, 0.0], [0.10, -0.10], [0.0, 0.0], [0.05, 0.05]])
    cfg = BacktestConfig(rebalance_every=2, cost_bps=10, slippage_bps=10, min_history=1)
    result = backtest(Fixed([0.5, 0.5]), panel, cfg, start=1)
    # Day 1: buy the whole book from cash: turnover 1, cost 20 bps, no price move.
    assert result.turnover[0] == pytest.approx(1.0)
    assert result.returns[0] == pytest.approx(-0.002)
    # Day 2: +10% / -10% on half each: gross 0, weights drift to 0.55/0.45, no trade.
    assert result.gross_returns[1] == pytest.approx(0.0)
    np.testing.assert_allclose(result.weights[1], [0.55, 0.45])
    # Day 3: rebalance back to 0.5/0.5: turnover 0.1, cost 0.1 * 20 bps.
    assert result.turnover[2] == pytest.approx(0.1)
    assert result.returns[2] == pytest.approx(-0.1 * 0.002)
    # Day 4: both +5%, no trade.
    assert result.returns[3] == pytest.approx(0.05)
    assert np.prod(1 + result.returns) == pytest.approx(0.998 * (1 - 0.0002) * 1.05)


def test_a_decision_sees_only_sessions_before_its_trade_session() -> None:
    panel = synthetic_panel(40, 3, seed=1)
    strategy = Fixed([0.3, 0.3, 0.3])
    backtest(strategy, panel, BacktestConfig(rebalance_every=5, min_history=10), start=10)
    trade_days = panel.dates[10::5]
    assert [str(d) for d in strategy.seen_last] == [
        str(panel.dates[np.searchsorted(panel.dates, d) - 1]) for d in trade_days
    ]


def test_refits_follow_the_schedule_and_the_fit_window() -> None:
    panel = synthetic_panel(60, 2, seed=2)
    strategy = Fixed([0.5, 0.5])
    backtest(strategy, panel, BacktestConfig(refit_every=20, fit_window=15, min_history=10), start=10)
    assert strategy.fits == [10, 15, 15]  # at sessions 10 (only 10 before), 30, 50
    expanding = Fixed([0.5, 0.5])
    backtest(expanding, panel, BacktestConfig(refit_every=20, min_history=10), start=10)
    assert expanding.fits == [10, 30, 50]


@pytest.mark.parametrize(
    ("weights", "message"),
    [([0.7, 0.7], "summing to 1.4"), ([1.2, -0.2], "short weight -0.2000 on 'T1'"), ([np.nan, 0.5], "non-finite")],
)
def test_bad_weights_are_named_with_strategy_and_date(weights: list[float], message: str) -> None:
    panel = _panel([[0.0, 0.0]] * 5)
    with pytest.raises(TrainingError, match=message) as info:
        backtest(Fixed(weights, name="broken"), panel, BacktestConfig(min_history=1), start=1)
    assert "'broken' on 2020-01-02" in str(info.value)


def test_too_little_history_and_bad_settings_are_refused() -> None:
    panel = _panel([[0.0, 0.0]] * 5)
    with pytest.raises(TrainingError, match="need 252 sessions of history"):
        backtest(Fixed([0.5, 0.5]), panel, BacktestConfig(), start=2)
    with pytest.raises(TrainingError, match="rebalance_every must be at least 1"):
        BacktestConfig(rebalance_every=0)
    with pytest.raises(TrainingError, match="cost_bps"):
        BacktestConfig(cost_bps=-1)


def test_backtester_and_environment_agree_on_the_same_book() -> None:
    """Equal weight traded weekly: the env (RL accounting) and the backtester give the same returns."""
    panel = synthetic_panel(80, 4, seed=5)
    cfg = BacktestConfig(rebalance_every=5, cost_bps=10, slippage_bps=5, min_history=10)
    classic = backtest(Fixed([0.25] * 4), panel, cfg, start=10)
    env = PortfolioEnv(
        panel.slice(10, 80), EnvConfig(window=1, rebalance_every=5, allow_cash=False, cost_bps=10, slippage_bps=5)
    )
    rl = run_policy(env, lambda obs: np.zeros(4))
    np.testing.assert_array_equal(rl.dates, classic.dates)
    np.testing.assert_allclose(rl.returns, classic.returns, atol=1e-12)
    np.testing.assert_allclose(rl.turnover, classic.turnover, atol=1e-12)
