"""The portfolio report: models and baselines through the same book, universe and costs.

Every price, volume, score and outcome here is SYNTHETIC (seeded random walks with a planted
signal); no performance figure is reported on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.evaluation.book import BookRules, Schedule
from training.evaluation.config import CostConfig, EvaluationConfig
from training.evaluation.liquidity import TradeCosts, liquidity_panels
from training.evaluation.metrics import per_date_statistics
from training.evaluation.suite import (
    EQUAL_WEIGHT,
    PortfolioData,
    PortfolioSettings,
    baseline_scores,
    liquidity_terciles,
    portfolio_report,
)

N_SESSIONS, N_NAMES, H = 420, 36, 5


@pytest.fixture(scope="module")
def synthetic() -> tuple[PortfolioData, pd.DataFrame]:
    """SYNTHETIC market: closes, volumes, a universe without the first 6 names, outcomes, a planted score."""
    rng = np.random.default_rng(21)
    index = pd.bdate_range("2019-01-01", periods=N_SESSIONS)
    names = [f"N{i:02d}" for i in range(N_NAMES)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (N_SESSIONS, N_NAMES)), 0)), index, names)
    value = pd.DataFrame(np.tile(np.geomspace(1e5, 1e8, N_NAMES), (N_SESSIONS, 1)), index, names)
    members = pd.DataFrame(True, index, names)
    members.iloc[:, :6] = False
    target = close.shift(-H) / close - 1.0
    outcomes = target.stack().rename("target").reset_index().rename(columns={"level_0": "date", "level_1": "ticker"})
    noisy = target + rng.normal(0, 0.05, target.shape)
    scores = noisy.stack().rename("score").reset_index().rename(columns={"level_0": "date", "level_1": "ticker"})
    window = (index[260], index[N_SESSIONS - H - 2])
    scores = scores[scores["date"].between(*window)]
    data = PortfolioData(close, outcomes, H, window, members, liquidity_panels(close, value, sessions=20))
    return data, scores


def settings(data: PortfolioData) -> PortfolioSettings:
    costs = TradeCosts(0.0008, (0.0005, 0.0012, 0.003), 1.0)
    sizes = tuple(float(x) for x in np.geomspace(1e4, 1e9, 6))
    return PortfolioSettings(BookRules(k=6, buffer=3), costs, Schedule(5, *data.window), 0.2, sizes)


def test_models_and_baselines_share_the_universe_construction_and_costs(
    synthetic: tuple[PortfolioData, pd.DataFrame],
) -> None:
    data, scores = synthetic
    report = portfolio_report({"model": scores}, data, settings(data))
    assert list(report.table.index) == ["model", "momentum_12_1", "reversal_1m", EQUAL_WEIGHT]
    outside = set(data.close.columns[:6])
    for name, book in report.books.items():
        held = set(book.weights.columns[(book.weights > 0).any()])
        assert held and not held & outside, name
    table = report.table
    assert table.loc["model", "gross_excess"] > 0  # the planted signal beats equal weight before costs
    assert table.loc["model", "sharpe"] < table.loc["model", "gross_sharpe"]
    assert table.loc["model", "cost_ann"] > 0 and 0 < table.loc["model", "one_way_turnover"] <= 1
    assert table.loc[EQUAL_WEIGHT, ["ls_sharpe", "capacity_aud", "rank_ic_mean"]].isna().all()
    assert table.loc[EQUAL_WEIGHT, "gross_excess"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["model", "decile_spread"] > 0 and table.loc["model", "rank_ic_mean"] > 0
    assert report.capacities["model"].bound in {"exact", "above"}


def test_rank_ic_by_year_and_by_liquidity_tercile(synthetic: tuple[PortfolioData, pd.DataFrame]) -> None:
    data, scores = synthetic
    report = portfolio_report({"model": scores}, data, settings(data), with_capacity=False)
    years = report.rank_ic_by_year[report.rank_ic_by_year["model"] == "model"]
    assert years["year"].tolist() == sorted({d.year for d in pd.to_datetime(scores["date"])})
    assert (years["rank_ic_mean"] > 0).all()
    terciles = report.rank_ic_by_tercile[report.rank_ic_by_tercile["model"] == "model"]
    assert terciles["tercile"].tolist() == ["liquid", "middle", "illiquid"]
    assert (terciles["n_dates"] > 0).all()
    assert report.capacities == {}


def test_liquidity_terciles_split_the_members_in_thirds(synthetic: tuple[PortfolioData, pd.DataFrame]) -> None:
    data, scores = synthetic
    day = scores[scores["date"] == scores["date"].min()]
    members = day[~day["ticker"].isin(data.close.columns[:6])]
    codes = liquidity_terciles(members, data)
    assert np.bincount(codes).tolist() == [10, 10, 10]
    # ADV rises with the name's number here, so the most liquid third is the last ten names.
    assert set(members["ticker"].to_numpy()[codes == 0]) == set(data.close.columns[-10:])
    with pytest.raises(TrainingError, match="need ADV"):
        liquidity_terciles(members, PortfolioData(data.close, data.outcomes, H, data.window))


def test_settings_come_from_the_run_config() -> None:
    evaluation = EvaluationConfig.model_validate(
        {"top_k": 30, "book": {"buffer": 20, "max_replace": 5, "min_hold": 2, "adv_cap": 0.1, "book_aud": 5e6}}
    )
    costs = CostConfig.model_validate({"liquidity": {"brokerage_bps": 8, "half_spread_bps": [5, 12, 30]}})
    window = (pd.Timestamp("2010-01-01"), pd.Timestamp("2011-12-31"))
    got = PortfolioSettings.from_config(evaluation, costs, window)
    assert got.rules == BookRules(30, 20, 5, 2, 0.1, 5e6)
    assert got.costs == TradeCosts(0.0008, (0.0005, 0.0012, 0.003), 1.0)
    flat = PortfolioSettings.from_config(evaluation, CostConfig(bps_per_side=20, slippage_bps=5), window)
    assert flat.costs == TradeCosts.flat(0.0025)
    assert got.schedule == Schedule(21, window[0], window[1], 1)


def test_baseline_rank_ic_is_measured_on_the_members_only(synthetic: tuple[PortfolioData, pd.DataFrame]) -> None:
    data, scores = synthetic
    report = portfolio_report({"model": scores}, data, settings(data), with_capacity=False)
    momentum = baseline_scores(data)["momentum_12_1"]
    inside = momentum[~momentum["ticker"].isin(data.close.columns[:6])]
    joined = inside.merge(data.outcomes, on=["date", "ticker"]).dropna()
    expected = per_date_statistics(joined)["rank_ic"].mean()
    assert report.table.loc["momentum_12_1", "rank_ic_mean"] == pytest.approx(expected)
    everyone = momentum.merge(data.outcomes, on=["date", "ticker"]).dropna()
    assert per_date_statistics(everyone)["rank_ic"].mean() != pytest.approx(expected)
