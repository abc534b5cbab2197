"""Capacity: the book size where costs eat half the gross excess return.

Every price, volume and score here is SYNTHETIC (seeded random walks with a planted signal), built
to check the definition; no performance figure is reported on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.evaluation.book import BookRules, Schedule, book_backtest, equal_weight_book
from training.evaluation.capacity import capacity
from training.evaluation.liquidity import Liquidity, TradeCosts
from training.evaluation.topk import BacktestResult

SIZES = tuple(float(x) for x in np.geomspace(1e4, 1e10, 13))


def planted() -> tuple[pd.DataFrame, pd.DataFrame, Liquidity]:
    """SYNTHETIC closes whose next 5-session return the score partly foresees, and a liquidity grid."""
    rng = np.random.default_rng(11)
    n, m = 300, 40
    steps = rng.normal(0.0, 0.02, size=(n, m))
    index = pd.bdate_range("2021-01-01", periods=n)
    close = pd.DataFrame(100 * np.exp(np.cumsum(steps, axis=0)), index=index, columns=[f"T{i:02d}" for i in range(m)])
    future = close.shift(-5) / close - 1.0
    wide = future + rng.normal(0.0, 0.05, size=(n, m))
    scores = wide.stack().rename("score").reset_index().rename(columns={"level_0": "date", "level_1": "ticker"})
    adv = np.tile(np.geomspace(1e5, 1e8, m), (n, 1))
    return close, scores, Liquidity(adv=adv, sigma=np.full((n, m), 0.02))


def runner(impact: float, cap: float | None = None) -> tuple[Callable[[float], BacktestResult], pd.Series]:
    close, scores, liquidity = planted()
    costs = TradeCosts(brokerage=0.0008, half_spread=(0.0005, 0.001, 0.002), impact_coefficient=impact)
    schedule = Schedule(rebalance_every=5, end=close.index[-10])  # the last 5 sessions have no score

    def run(book_aud: float) -> BacktestResult:
        rules = BookRules(k=8, adv_cap=cap, book_aud=book_aud)
        return book_backtest(scores, close, rules=rules, costs=costs, schedule=schedule, liquidity=liquidity)

    reference = equal_weight_book(close, costs=TradeCosts.flat(0.0), schedule=schedule).gross_returns
    return run, reference


def test_net_excess_falls_with_size_and_capacity_falls_with_impact() -> None:
    run, reference = runner(impact=1.0)
    found = capacity(run, reference, sizes=SIZES)
    assert found.bound == "exact"
    assert found.gross_excess > 0
    net = found.curve["net_excess"].to_numpy()
    assert (np.diff(net) <= 1e-12).all()  # impact only grows with size; no cap here
    assert net[0] > found.gross_excess / 2 >= net[-1]
    run_heavy, _ = runner(impact=4.0)
    heavier = capacity(run_heavy, reference, sizes=SIZES)
    assert heavier.book_aud < found.book_aud
    # At the capacity, the interpolated net excess is half the edge (within the grid's interpolation).
    i = int(np.searchsorted(found.curve["book_aud"], found.book_aud))
    assert SIZES[i - 1] < found.book_aud <= SIZES[i]


def test_the_adv_cap_lowers_capacity_by_diluting_the_book() -> None:
    run, reference = runner(impact=0.0, cap=0.05)
    found = capacity(run, reference, sizes=SIZES)
    assert found.bound == "exact"  # without impact, only the cap's dilution (to cash) eats the edge
    assert found.curve["gross_excess"].iloc[-1] < found.gross_excess


def test_no_edge_and_bad_grids() -> None:
    run, _ = runner(impact=1.0)
    better = pd.Series(1.0, index=run(1e4).returns.index)  # a reference no book can beat
    assert capacity(run, better, sizes=SIZES[:2]).bound == "no_edge"
    assert math.isnan(capacity(run, better, sizes=SIZES[:2]).book_aud)
    with pytest.raises(TrainingError, match="ascending"):
        capacity(run, better, sizes=(1e6, 1e5))
