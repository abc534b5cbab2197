"""The turnover-aware top-k book: buffer, replacements, minimum hold, ADV cap, universe, costs by liquidity.

Every price, volume and score here is SYNTHETIC (hand-made or seeded random walks), built to check
the rules and the accounting; no performance figure is reported on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.evaluation.book import (
    BookRules,
    Schedule,
    book_backtest,
    cap_weights,
    equal_weight_book,
    long_short_book,
    select_holdings,
)
from training.evaluation.liquidity import (
    Liquidity,
    TradeCosts,
    adv_terciles,
    liquidity_panels,
    traded_value_panel,
)
from training.evaluation.topk import topk_backtest

SESSIONS = pd.bdate_range("2024-01-01", periods=12)
EVERY_2 = Schedule(rebalance_every=2, start=SESSIONS[0], end=SESSIONS[-1])
TWO = Schedule(rebalance_every=2, end=SESSIONS[4])  # rebalances on sessions 0 and 2 only
ONE = Schedule(rebalance_every=2, end=SESSIONS[2])  # a single rebalance, on session 0


def flat_close(tickers: str = "ABCDEF", n: int = 12) -> pd.DataFrame:
    """SYNTHETIC closes that never move: only costs move the equity."""
    return pd.DataFrame(100.0, index=SESSIONS[:n], columns=list(tickers))


def scores_from(table: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """Long SYNTHETIC scores from {session position: {ticker: score}}."""
    rows = [{"date": SESSIONS[p], "ticker": t, "score": s} for p, day in table.items() for t, s in day.items()]
    return pd.DataFrame(rows)


def held_names(score_rows: list[dict[str, float]], rules: BookRules, tickers: str = "ABCDEF") -> list[set[str]]:
    """Run the selection on consecutive rebalances of hand-made scores; the names held after each."""
    score = np.array([[row.get(t, np.nan) for t in tickers] for row in score_rows], dtype=np.float64)
    held = select_holdings(score, np.isfinite(score), rules)
    return [{tickers[i] for i in np.flatnonzero(row)} for row in held]


def test_the_buffer_keeps_a_held_name_ranked_within_k_plus_buffer() -> None:
    first = {"A": 6, "B": 5, "C": 4, "D": 3, "E": 2, "F": 1}
    b_third = {"C": 6, "A": 5, "B": 4, "D": 3, "E": 2, "F": 1}  # B falls to rank 3 = k + 1
    b_fourth = {"C": 6, "D": 5.5, "A": 5, "B": 4, "E": 2, "F": 1}  # B falls to rank 4 = k + 2
    assert held_names([first, b_third], BookRules(k=2, buffer=1))[1] == {"A", "B"}
    assert held_names([first, b_third], BookRules(k=2, buffer=0))[1] == {"A", "C"}
    assert held_names([first, b_fourth], BookRules(k=2, buffer=1))[1] == {"A", "C"}
    assert held_names([first, b_fourth], BookRules(k=2, buffer=2))[1] == {"A", "B"}


def test_at_most_max_replace_names_are_swapped_worst_ranked_first() -> None:
    first = {"A": 6, "B": 5, "C": 4, "D": 3, "E": 2, "F": 1}
    flipped = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6}  # A is now the worst
    assert held_names([first, flipped], BookRules(k=3, max_replace=1))[1] == {"B", "C", "F"}
    assert held_names([first, flipped], BookRules(k=3, max_replace=2))[1] == {"C", "F", "E"}
    assert held_names([first, flipped], BookRules(k=3))[1] == {"D", "E", "F"}
    assert held_names([first, flipped], BookRules(k=3, max_replace=0))[1] == {"A", "B", "C"}


def test_the_minimum_hold_keeps_a_new_name_until_it_has_been_held_long_enough() -> None:
    first = {"A": 6, "B": 5, "C": 4, "D": 3, "E": 2, "F": 1}
    worst_a = {"A": 0, "B": 5, "C": 4, "D": 3, "E": 2, "F": 1}
    held = held_names([first, worst_a, worst_a, worst_a], BookRules(k=2, min_hold=3))
    assert [("A" in h) for h in held] == [True, True, True, False]
    assert held[3] == {"B", "C"}
    assert "A" not in held_names([first, worst_a], BookRules(k=2, min_hold=1))[1]


def test_a_held_name_that_leaves_the_universe_is_sold_even_against_the_limits() -> None:
    first = {"A": 6, "B": 5, "C": 4, "D": 3}
    a_gone = {"B": 5, "C": 4, "D": 3}  # A has no score: no longer eligible
    held = held_names([first, a_gone], BookRules(k=2, buffer=5, max_replace=0, min_hold=10), "ABCD")
    assert held[1] == {"B", "C"}


def test_non_members_are_never_bought_and_a_member_that_leaves_is_sold() -> None:
    close = flat_close()
    scores = scores_from({p: {"A": 9, "B": 8, "C": 1, "D": 2, "E": 3, "F": 4} for p in range(12)})
    members = pd.DataFrame(True, index=close.index, columns=close.columns)
    members["A"] = False  # never a member, though it scores best
    members.loc[SESSIONS[4] :, "B"] = False  # leaves the universe on session 4
    result = book_backtest(
        scores, close, rules=BookRules(k=2, buffer=3), costs=TradeCosts.flat(0.0), schedule=EVERY_2, members=members
    )
    weights = result.weights.reindex(columns=list("ABCDEF"), fill_value=0.0)
    assert (weights["A"] == 0).all()
    assert weights["B"].iloc[:2].tolist() == [0.5, 0.5] and (weights["B"].iloc[2:] == 0).all()
    assert (weights.sum(axis=1) == 1.0).all()


def test_a_delisted_holding_exits_at_its_last_close() -> None:
    close = flat_close("ABC")
    close.loc[SESSIONS[3] :, "A"] = np.nan  # A's last bar is session 2, up 10%
    close.loc[SESSIONS[2], "A"] = 110.0
    scores = scores_from({0: {"A": 3, "B": 2, "C": 1}, 2: {"B": 2, "C": 1}})
    result = book_backtest(scores, close, rules=BookRules(k=1, buffer=2), costs=TradeCosts.flat(0.0), schedule=TWO)
    assert result.weights.loc[SESSIONS[1], "A"] == 1.0
    assert result.weights.loc[SESSIONS[3]].to_dict() == {"A": 0.0, "B": 1.0}  # A sold though within the buffer
    assert result.returns.loc[SESSIONS[2]] == pytest.approx(0.1)
    assert result.returns.loc[SESSIONS[3]] == 0.0  # it left at its last close, 110
    assert result.gross_returns.add(1).prod() == pytest.approx(1.1)


def test_fewer_eligible_names_than_k_is_an_error_naming_the_date_and_the_count() -> None:
    close = flat_close("ABC")
    scores = scores_from({0: {"A": 3, "B": 2, "C": 1}, 2: {"A": 3, "B": 2}})
    with pytest.raises(TrainingError, match=r"2024-01-03 has 2 eligible name\(s\).*fewer than k=3"):
        book_backtest(scores, close, rules=BookRules(k=3), costs=TradeCosts.flat(0.0), schedule=TWO)


def test_cap_weights_clip_and_hand_the_excess_to_the_names_with_room() -> None:
    np.testing.assert_allclose(cap_weights(np.array([0.5, 0.5]), np.array([0.2, 1.0])), [0.2, 0.8])
    np.testing.assert_allclose(cap_weights(np.array([0.5, 0.5]), np.array([0.2, 0.3])), [0.2, 0.3])
    capped = cap_weights(np.full(4, 0.25), np.array([0.1, 0.2, 1.0, 1.0]))
    np.testing.assert_allclose(capped, [0.1, 0.2, 0.35, 0.35])


def liquid(close: pd.DataFrame, adv: list[float], sigma: float = 0.0) -> Liquidity:
    """SYNTHETIC liquidity: a constant ADV per name and one volatility everywhere."""
    return Liquidity(adv=np.tile(np.asarray(adv, np.float64), (len(close), 1)), sigma=np.full(close.shape, sigma))


def test_the_adv_cap_binds_on_a_large_book() -> None:
    close = flat_close("ABC")
    scores = scores_from({0: {"A": 3, "B": 2, "C": 1}})
    liquidity = liquid(close, [1e6, 1e8, 1e8])
    rules = BookRules(k=2, adv_cap=0.1, book_aud=1e6)  # A's cap: 0.1 x 1e6 / 1e6 = 0.1 of the book
    result = book_backtest(scores, close, rules=rules, costs=TradeCosts.flat(0.0), schedule=ONE, liquidity=liquidity)
    assert result.weights.iloc[0].to_dict() == pytest.approx({"A": 0.1, "B": 0.9})
    small = BookRules(k=2, adv_cap=0.1, book_aud=1e5)  # the cap is 1.0 of the book: it does not bind
    result = book_backtest(scores, close, rules=small, costs=TradeCosts.flat(0.0), schedule=ONE, liquidity=liquidity)
    assert result.weights.iloc[0].to_dict() == pytest.approx({"A": 0.5, "B": 0.5})


def test_costs_by_liquidity_tercile_are_charged_exactly_on_every_trade() -> None:
    close = flat_close()
    adv = [6e6, 5e6, 4e6, 3e6, 2e6, 1e6]  # terciles: A, B liquid; C, D middle; E, F least liquid
    costs = TradeCosts(brokerage=0.0008, half_spread=(0.0005, 0.0012, 0.0030))
    scores = scores_from({0: {"A": 6, "C": 5, "E": 4, "B": 1, "D": 1, "F": 1}, 2: {"B": 6, "C": 5, "E": 4}})
    result = book_backtest(scores, close, rules=BookRules(k=3), costs=costs, schedule=TWO, liquidity=liquid(close, adv))
    first_buy = (3 * 0.0008 + 0.0005 + 0.0012 + 0.0030) / 3  # A, C, E bought, 1/3 each
    swap = 2 * (0.0008 + 0.0005) / 3  # A sold and B bought, both liquid
    assert result.costs.iloc[0] == pytest.approx(first_buy, abs=1e-15)
    assert result.costs.iloc[1] == pytest.approx(swap, abs=1e-15)
    assert result.returns.loc[SESSIONS[1]] == pytest.approx(-first_buy, abs=1e-15)
    assert result.returns.loc[SESSIONS[3]] == pytest.approx(-swap, abs=1e-15)
    assert result.metrics()["total_cost"] == pytest.approx(first_buy + swap)
    assert result.metrics()["one_way_turnover"] == pytest.approx((1.0 + 2 / 3) / 2 / 2)


def test_square_root_impact_grows_with_participation() -> None:
    costs = TradeCosts(brokerage=0.0008, half_spread=(0.0005, 0.0012, 0.003), impact_coefficient=1.0)
    rates = costs.rates(np.array([1e6, 4e6, 1e6]), np.array([4e6, 4e6, np.nan]), np.full(3, 0.02), np.array([0, 1, 2]))
    np.testing.assert_allclose(rates, [0.0013 + 0.02 * 0.5, 0.002 + 0.02 * 1.0, 0.0038 + 0.02 * 1.0])


def test_adv_terciles_cut_on_the_eligible_names() -> None:
    adv = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 100.0, np.nan])
    eligible = np.array([True] * 6 + [False, False])
    assert adv_terciles(adv, eligible).tolist() == [0, 0, 1, 1, 2, 2, 0, 2]


def walk(n_sessions: int, n_names: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC seeded random-walk closes."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0003, 0.02, size=(n_sessions, n_names))
    index = pd.bdate_range("2020-01-01", periods=n_sessions)
    return pd.DataFrame(
        100 * np.exp(np.cumsum(steps, axis=0)), index=index, columns=[f"T{i:03d}" for i in range(n_names)]
    )


def random_scores(close: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    wide = pd.DataFrame(rng.normal(size=close.shape), index=close.index, columns=close.columns)
    long = wide.stack().rename("score").reset_index()
    return long.rename(columns={"level_0": "date", "level_1": "ticker"})


def test_default_rules_with_flat_costs_reproduce_the_plain_top_k_book() -> None:
    close = walk(120, 40, seed=1)
    scores = random_scores(close, seed=2)
    plain = topk_backtest(scores, close, k=8, rebalance_every=5, cost_per_side=0.0025)
    book = book_backtest(
        scores, close, rules=BookRules(k=8), costs=TradeCosts.flat(0.0025), schedule=Schedule(rebalance_every=5)
    )
    pd.testing.assert_series_equal(book.returns, plain.returns)
    pd.testing.assert_series_equal(book.turnover, plain.turnover)


def test_buffer_and_replacement_limits_cut_turnover_on_noisy_scores() -> None:
    close = walk(260, 60, seed=3)
    scores = random_scores(close, seed=4)
    schedule = Schedule(rebalance_every=21)
    plain = book_backtest(scores, close, rules=BookRules(k=10), costs=TradeCosts.flat(0.001), schedule=schedule)
    calm = book_backtest(
        scores, close, rules=BookRules(k=10, buffer=10, max_replace=2), costs=TradeCosts.flat(0.001), schedule=schedule
    )
    held = calm.weights.reindex(columns=close.columns, fill_value=0.0).to_numpy() > 0
    bought = (held[1:] & ~held[:-1]).sum(axis=1)
    assert bought.max() <= 2 and bought.sum() > 0
    assert (held.sum(axis=1) == 10).all()
    assert calm.turnover.iloc[1:].mean() < plain.turnover.iloc[1:].mean() / 2


def test_equal_weight_and_long_short_books_use_the_same_universe() -> None:
    close = walk(60, 12, seed=5)
    members = pd.DataFrame(True, index=close.index, columns=close.columns)
    members.iloc[:, :4] = False
    schedule = Schedule(rebalance_every=21)
    ew = equal_weight_book(close, costs=TradeCosts.flat(0.001), schedule=schedule, members=members)
    assert set(ew.weights.columns) == set(close.columns[4:])
    np.testing.assert_allclose(ew.weights.to_numpy(), 1 / 8)
    scores = random_scores(close, seed=6)
    ls = long_short_book(scores, close, quantile=0.25, costs=TradeCosts.flat(0.001), schedule=schedule, members=members)
    assert set(ls.weights.columns) <= set(close.columns[4:])
    np.testing.assert_allclose(ls.weights.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(ls.weights.abs().sum(axis=1), 2.0)


def test_liquidity_panels_are_point_in_time() -> None:
    close = walk(80, 5, seed=7)
    rng = np.random.default_rng(8)
    value = pd.DataFrame(rng.uniform(1e5, 1e6, close.shape), index=close.index, columns=close.columns)
    base = liquidity_panels(close, value, sessions=20)
    scrambled_close, scrambled_value = close.copy(), value.copy()
    scrambled_close.iloc[50:] = scrambled_close.iloc[50:].to_numpy()[::-1]
    scrambled_value.iloc[50:] = rng.uniform(1e5, 1e6, (30, 5))
    after = liquidity_panels(scrambled_close, scrambled_value, sessions=20)
    np.testing.assert_array_equal(base.adv[:50], after.adv[:50])
    np.testing.assert_array_equal(base.sigma[:50], after.sigma[:50])
    assert base.adv[49, 0] == pytest.approx(value.iloc[30:50, 0].mean())


def test_liquidity_is_required_for_costs_by_tercile_and_the_cap() -> None:
    close = flat_close("ABC")
    scores = scores_from({0: {"A": 3, "B": 2, "C": 1}})
    with pytest.raises(TrainingError, match="need ADV"):
        book_backtest(scores, close, rules=BookRules(k=1), costs=TradeCosts(0.001, (0.0, 0.0, 0.001)), schedule=EVERY_2)
    with pytest.raises(TrainingError, match="buffer"):
        BookRules(k=2, buffer=-1)
    with pytest.raises(TrainingError, match="widen"):
        TradeCosts(0.001, (0.003, 0.001, 0.002))


def test_adv_from_prices_without_volume_is_refused_by_name() -> None:
    prices = pd.DataFrame({"date": SESSIONS[:2], "ticker": "A", "close": [1.0, 1.1], "volume": [np.nan, np.nan]})
    with pytest.raises(TrainingError, match="the prices hold none"):
        traded_value_panel(prices)
    prices["volume"] = [100.0, 200.0]
    assert traded_value_panel(prices)["A"].tolist() == pytest.approx([100.0, 220.0])
