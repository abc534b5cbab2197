"""Top-k and equal-weight backtests (timing, drift, costs, refusals, speed) and the report table.

Every price and score frame here is SYNTHETIC (hand-made or seeded random walks), built to check
the accounting; no performance figure is reported on them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.evaluation import (
    DEFINITIONS,
    BacktestResult,
    equal_weight_backtest,
    evaluation_table,
    format_table,
    signal_metrics,
    topk_backtest,
)

SESSIONS = pd.bdate_range("2024-01-01", periods=12)


def flat_close(tickers: str = "ABCD", n: int = 12) -> pd.DataFrame:
    """SYNTHETIC closes that never move: every return is zero, so only costs move the equity."""
    return pd.DataFrame(100.0, index=SESSIONS[:n], columns=list(tickers))


def scores_from(table: Mapping[int, Mapping[str, float]], index: pd.Index = SESSIONS) -> pd.DataFrame:
    """Long SYNTHETIC scores from {session position: {ticker: score}}."""
    rows = [{"date": index[pos], "ticker": t, "score": s} for pos, day in table.items() for t, s in day.items()]
    return pd.DataFrame(rows)


def every_session(n: int, pick: dict[str, float]) -> dict[int, dict[str, float]]:
    return {pos: dict(pick) for pos in range(n)}


# ---------------------------------------------------------------- costs


def test_with_no_price_moves_the_equity_falls_by_exactly_the_costs() -> None:
    # Signals at 0, 3, 6, 9 (traded at 1, 4, 7, 10): {A,B} from cash, then {C,D} (a full switch),
    # then {A,C} (half the book changes), then {A,C} again (nothing to trade).
    top = [{"A": 4, "B": 3, "C": 2, "D": 1}, {"A": 1, "B": 2, "C": 3, "D": 4}, {"A": 4, "B": 1, "C": 3, "D": 2}]
    scores = scores_from({0: top[0], 3: top[1], 6: top[2], 9: top[2]})
    result = topk_backtest(scores, flat_close(), k=2, rebalance_every=3, cost_per_side=0.001)

    assert list(result.turnover) == pytest.approx([1.0, 2.0, 1.0, 0.0])
    assert list(result.turnover.index) == list(SESSIONS[[1, 4, 7, 10]])
    assert list(result.signal_dates) == list(SESSIONS[[0, 3, 6, 9]])
    assert (result.gross_returns == 0.0).all()
    expected = np.zeros(11)  # sessions 1..11
    expected[[0, 3, 6, 9]] = [-0.001, -0.002, -0.001, 0.0]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, atol=1e-15)
    assert np.prod(1 + result.returns.to_numpy()) == pytest.approx(0.999 * 0.998 * 0.999)
    summary = result.metrics()
    assert summary["total_cost"] == pytest.approx(0.004)
    assert summary["avg_turnover"] == pytest.approx(1.0)
    assert summary["n_rebalances"] == 4
    assert summary["max_drawdown"] == pytest.approx(0.999 * 0.998 * 0.999 - 1)


def test_cost_is_charged_on_the_trade_close_equity() -> None:
    # SYNTHETIC random walk: net = (1 + gross)(1 - turnover * cost) - 1 on trade days, gross elsewhere.
    rng = np.random.default_rng(1)
    close = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.02, (60, 6)), axis=0)),
        index=pd.bdate_range("2024-01-01", periods=60),
        columns=list("ABCDEF"),
    )
    past = close.pct_change(5).rename_axis(index="date", columns="ticker")
    scores = past.reset_index().melt(id_vars="date", var_name="ticker", value_name="score").dropna()
    result = topk_backtest(scores, close, k=2, rebalance_every=5, cost_per_side=0.002)
    free = topk_backtest(scores, close, k=2, rebalance_every=5, cost_per_side=0.0)

    cost = (result.turnover * 0.002).reindex(result.returns.index, fill_value=0.0)
    np.testing.assert_allclose(result.returns, (1 + result.gross_returns) * (1 - cost) - 1)
    np.testing.assert_allclose(free.returns, free.gross_returns)
    np.testing.assert_allclose(free.gross_returns, result.gross_returns)
    assert (result.returns[result.turnover.index] < result.gross_returns[result.turnover.index]).all()


# ---------------------------------------------------------------- timing and drift


def jump_close() -> pd.DataFrame:
    """SYNTHETIC: A is flat; B rises 10% on session 3 and is flat otherwise."""
    close = flat_close("AB", 8)
    close.iloc[3:, 1] = 110.0
    return close


@pytest.mark.parametrize(
    ("b_from", "lag", "day3"),
    [
        (1, 1, 0.10),  # B tops the signal at 1, bought at the close of 2, earns session 3
        (2, 1, 0.00),  # signal at 2 is traded at the close of 3, after the jump: no look-ahead
        (1, 2, 0.00),  # a two-session lag buys B at the close of 3, too late as well
    ],
)
def test_signals_trade_at_the_lagged_close_and_earn_from_the_next(b_from: int, lag: int, day3: float) -> None:
    scores = scores_from({pos: {"A": 1.0, "B": 2.0 if pos >= b_from else 0.0} for pos in range(8)})
    result = topk_backtest(scores, jump_close(), k=1, rebalance_every=1, cost_per_side=0.0, execution_lag=lag)
    assert result.gross_returns[SESSIONS[3]] == pytest.approx(day3)
    assert result.returns.index[0] == SESSIONS[lag]


def test_weights_drift_with_prices_between_rebalances() -> None:
    close = flat_close("AB", 8)
    close.loc[SESSIONS[2] :, "A"] = 200.0  # A doubles on session 2 ...
    close.loc[SESSIONS[3] :, "A"] = 220.0  # ... and gains 10% on session 3
    scores = scores_from({0: {"A": 1, "B": 2}, 4: {"A": 1, "B": 2}}, close.index)
    result = topk_backtest(scores, close, k=2, rebalance_every=4, cost_per_side=0.01)

    # After the buy at 1 (0.5 / 0.5): session 2 earns 0.5; A is then 2/3 of the book, so session 3
    # earns 2/3 * 10%; at the trade on 5 A is 0.7333 / 1.0667 = 0.6875 and turnover is 2 * 0.1875.
    assert result.gross_returns[SESSIONS[2]] == pytest.approx(0.5)
    assert result.gross_returns[SESSIONS[3]] == pytest.approx(2 / 30)
    assert list(result.turnover) == pytest.approx([1.0, 0.375])
    assert result.returns[SESSIONS[5]] == pytest.approx(-0.375 * 0.01)
    assert list(result.weights.loc[SESSIONS[5]]) == [0.5, 0.5]


def test_a_delisted_holding_is_carried_flat_and_a_delisted_candidate_skipped() -> None:
    close = flat_close("ABC", 10)
    close.loc[SESSIONS[2] :, "A"] = 90.0  # A falls 10% on session 2 ...
    close.loc[SESSIONS[4] :, "A"] = np.nan  # ... and has no bar after session 3
    table = every_session(10, {"A": 3.0, "B": 2.0, "C": 1.0})
    result = topk_backtest(scores_from(table), close, k=1, rebalance_every=4, cost_per_side=0.0, start=SESSIONS[0])

    assert result.gross_returns[SESSIONS[2]] == pytest.approx(-0.1)
    assert (result.gross_returns[SESSIONS[3] :] == 0.0).all()
    # The signal at 4 still ranks A first, but A has no bar on the trade session 5: B is bought.
    assert result.weights.loc[SESSIONS[5]].to_dict() == {"A": 0.0, "B": 1.0}
    assert result.turnover[SESSIONS[5]] == pytest.approx(2.0)


def test_start_and_end_bound_the_schedule_and_the_returns() -> None:
    table = every_session(12, {"A": 2.0, "B": 1.0})
    result = topk_backtest(
        scores_from(table),
        flat_close("AB"),
        k=1,
        rebalance_every=2,
        cost_per_side=0.0,
        start="2024-01-03",
        end="2024-01-12",
    )
    # Sessions 2 (Jan 3) to 9 (Jan 12): signals 2, 4, 6, 8 traded at 3, 5, 7, 9.
    assert list(result.signal_dates) == list(SESSIONS[[2, 4, 6, 8]])
    assert result.returns.index[0] == SESSIONS[3]
    assert result.returns.index[-1] == SESSIONS[9]


# ---------------------------------------------------------------- equal weight


def test_equal_weight_holds_every_listed_ticker() -> None:
    close = flat_close("ABC", 10)
    close.loc[: SESSIONS[3], "C"] = np.nan  # C lists on session 4
    result = equal_weight_backtest(close, rebalance_every=3, cost_per_side=0.001, start=None, end=None)

    # Signals 0, 3, 6 (traded at 1, 4, 7): C has a bar on the signal date only from 6.
    assert list(result.weights.loc[SESSIONS[1]]) == pytest.approx([0.5, 0.5, 0.0])
    assert list(result.weights.loc[SESSIONS[4]]) == pytest.approx([0.5, 0.5, 0.0])
    assert list(result.weights.loc[SESSIONS[7]]) == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert list(result.turnover) == pytest.approx([1.0, 0.0, 2 / 3])
    assert result.metrics()["total_cost"] == pytest.approx((1 + 2 / 3) * 0.001)


# ---------------------------------------------------------------- metrics definitions


def hand_result(returns: list[float], turnover: list[float], cost_per_side: float) -> BacktestResult:
    """A result built from given daily returns, rebalancing on the first len(turnover) days."""
    days = pd.bdate_range("2024-01-01", periods=len(returns))
    trades = days[: len(turnover)]
    series = pd.Series(returns, index=days)
    weights = pd.DataFrame({"A": 1.0}, index=trades)
    return BacktestResult(series, series, pd.Series(turnover, index=trades), weights, trades.to_series(), cost_per_side)


def test_metrics_follow_their_stated_definitions() -> None:
    returns = np.array([-0.1, 0.2, -0.5, 0.1])
    summary = hand_result(list(returns), [1.0, 0.5], cost_per_side=0.002).metrics()
    assert summary["ann_return"] == pytest.approx((0.9 * 1.2 * 0.5 * 1.1) ** (252 / 4) - 1)
    assert summary["ann_vol"] == pytest.approx(np.std(returns, ddof=1) * math.sqrt(252))
    assert summary["sharpe"] == pytest.approx(returns.mean() * 252 / summary["ann_vol"])
    # Equity 0.9, 1.08, 0.54, 0.594: the worst fall is from 1.08 to 0.54.
    assert summary["max_drawdown"] == pytest.approx(-0.5)
    assert summary["avg_turnover"] == pytest.approx(0.75)
    assert summary["total_cost"] == pytest.approx(1.5 * 0.002)
    # A loss on the very first day is a drawdown from the initial capital of 1.0.
    assert hand_result([-0.2, 0.1], [1.0], 0.0).metrics()["max_drawdown"] == pytest.approx(-0.2)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be"),
        ({"k": 5}, r"k=5 exceeds the 4 ticker\(s\) with a score on rebalance date 2024-01-01"),
        ({"rebalance_every": 0}, "rebalance_every"),
        ({"cost_per_side": -0.001}, "cost_per_side"),
        ({"cost_per_side": 10.0}, "cost_per_side"),
        ({"execution_lag": 0}, "execution_lag"),
        ({"start": "2025-01-01"}, "start"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs: dict[str, object], match: str) -> None:
    options: dict[str, object] = {"k": 2, "rebalance_every": 3, "cost_per_side": 0.001} | kwargs
    scores = scores_from(every_session(12, {"A": 1, "B": 2, "C": 3, "D": 4}))
    with pytest.raises(TrainingError, match=match):
        topk_backtest(scores, flat_close(), **options)  # type: ignore[arg-type]


def test_bad_scores_are_refused() -> None:
    scores = scores_from({0: {"A": 1, "B": 2}})
    with pytest.raises(TrainingError, match="ZZZ"):  # a score ticker missing from close is named
        topk_backtest(scores_from({0: {"A": 1, "ZZZ": 2}}), flat_close(), k=1, rebalance_every=1, cost_per_side=0.0)
    with pytest.raises(TrainingError, match="one row per"):
        topk_backtest(pd.concat([scores, scores]), flat_close(), k=1, rebalance_every=1, cost_per_side=0.0)
    with pytest.raises(TrainingError, match="not a session"):
        topk_backtest(
            scores.assign(date=pd.Timestamp("2024-01-06")), flat_close(), k=1, rebalance_every=1, cost_per_side=0.0
        )
    with pytest.raises(TrainingError, match="rebalance_every"):
        equal_weight_backtest(flat_close(), rebalance_every=0, cost_per_side=0.0, start=None, end=None)


# ---------------------------------------------------------------- scale


def test_two_thousand_four_hundred_tickers_by_750_sessions_run_in_seconds() -> None:
    # SYNTHETIC universe at production scale.
    rng = np.random.default_rng(0)
    n_sessions, n_tickers = 750, 2400
    index = pd.bdate_range("2020-01-01", periods=n_sessions)
    tickers = [f"T{i:04d}" for i in range(n_tickers)]
    close = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_sessions, n_tickers)), axis=0)), index=index, columns=tickers
    )
    scores = pd.DataFrame({"date": np.repeat(index, n_tickers), "ticker": np.tile(tickers, n_sessions)})
    scores["score"] = rng.normal(size=len(scores))
    began = time.perf_counter()
    result = topk_backtest(scores, close, k=100, rebalance_every=1, cost_per_side=0.001)
    print(f"\n{n_tickers} tickers x {n_sessions} sessions in {time.perf_counter() - began:.2f}s")  # speed: bench/

    assert len(result.returns) == n_sessions - 1
    assert result.weights.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert (result.weights.gt(0).sum(axis=1) == 100).all()


# ---------------------------------------------------------------- report


def test_evaluation_table_and_its_text_rendering() -> None:
    # SYNTHETIC predictions: five tickers, three dates, scores equal to targets.
    frame = pd.DataFrame({"date": np.repeat(SESSIONS[:3], 5), "ticker": list("ABCDE") * 3})
    frame["score"] = frame["target"] = np.tile([-0.02, -0.01, 0.0, 0.01, 0.03], 3)
    frame["label"] = (frame["target"] > 0).astype(int)
    signal = signal_metrics(frame, horizon=1)
    close = flat_close()
    scores = scores_from(every_session(12, {"A": 1, "B": 2}))
    topk = topk_backtest(scores, close, k=1, rebalance_every=5, cost_per_side=0.001)
    equal = equal_weight_backtest(close, rebalance_every=5, cost_per_side=0.001, start=None, end=None)

    table = evaluation_table({"model": (signal, topk), "equal_weight": (None, equal)})
    assert list(table.index) == ["model", "equal_weight"]
    assert table.loc["model", "ic_mean"] == pytest.approx(1.0)
    assert table.loc["model", "auc"] == pytest.approx(1.0)
    assert table.loc["equal_weight", ["auc", "ic_t_nw", "quintile_spread"]].isna().all()
    assert table.loc["equal_weight", "avg_turnover"] == pytest.approx(equal.metrics()["avg_turnover"])
    assert table.loc["model", "ann_return"] == pytest.approx(topk.metrics()["ann_return"])

    lines = format_table(table).splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert lines[2].startswith("model") and "1.0000" in lines[2] and "%" in lines[2]
    assert lines[3].split()[1] == "-"  # no AUC for equal weight
    assert "Newey-West" in DEFINITIONS and "execution_lag" in DEFINITIONS
