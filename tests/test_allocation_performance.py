"""Performance metrics, (deflated) Sharpe probabilities, block bootstrap, stress windows and regimes.

Every series here is SYNTHETIC (hand-written or seeded Gaussian), built to check the arithmetic;
no performance figure is derived from them. Expected values are written out from the formulas.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from training.allocation.performance import (
    DEFINITIONS,
    STRESS_WINDOWS,
    block_bootstrap,
    classify_regimes,
    comparison_table,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    format_table,
    max_drawdown,
    performance_metrics,
    probabilistic_sharpe_ratio,
    psr_from_moments,
    regime_table,
    stress_table,
)
from training.allocation.results import StrategyResult
from training.errors import TrainingError

LABEL = "SYNTHETIC data: test series"


def make_result(name: str, returns: np.ndarray, *, start: str = "2020-01-02", turnover=None) -> StrategyResult:
    n = returns.size
    dates = np.busday_offset(np.datetime64(start), np.arange(n), roll="forward")
    traded = np.zeros(n) if turnover is None else np.asarray(turnover, dtype=np.float64)
    return StrategyResult(
        name=name,
        dates=dates,
        returns=returns,
        gross_returns=returns,
        weights=np.full((n, 2), 0.5),
        cash=np.zeros(n),
        turnover=traded,
        costs=np.zeros(n),
        tickers=("A", "B"),
        rebalance_every=1,
        label=LABEL,
    )


# ---------------------------------------------------------------- metrics by hand


def test_metrics_of_a_three_day_series_by_hand() -> None:
    m = performance_metrics(np.array([0.1, -0.05, 0.02]), turnover=[1.0, 0.0, 0.5])
    growth = 1.1 * 0.95 * 1.02  # 1.0659
    assert m["n_days"] == 3
    assert m["ann_return"] == pytest.approx(1.0659**84 - 1.0)  # compound: 252 / 3 = 84
    std = math.sqrt((0.07667**2 + 0.07333**2 + 0.00333**2) / 2)  # deviations from the mean 0.02333
    assert m["ann_vol"] == pytest.approx(std * math.sqrt(252), rel=1e-3)
    assert m["sharpe"] == pytest.approx((0.07 / 3) * 252 / m["ann_vol"])
    downside = math.sqrt(0.05**2 / 3) * math.sqrt(252)  # only -0.05 is below 0, over all 3 days
    assert m["sortino"] == pytest.approx((0.07 / 3) * 252 / downside)
    assert m["max_drawdown"] == pytest.approx(1.045 / 1.1 - 1.0)  # -5%: the peak 1.1, then 1.045
    assert m["calmar"] == pytest.approx((growth**84 - 1.0) / 0.05)
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["ann_turnover"] == pytest.approx(1.5 / (3 / 252))  # 126 one-way per year
    assert math.isnan(m["beta"]) and math.isnan(m["information_ratio"])


def test_beta_alpha_tracking_error_and_information_ratio_by_construction() -> None:
    b = np.random.default_rng(0).normal(0.0005, 0.01, 500)
    r = 2.0 * b + 0.001  # beta 2, a daily alpha of 10 bps
    m = performance_metrics(r, b)
    assert m["beta"] == pytest.approx(2.0)
    assert m["alpha"] == pytest.approx(0.001 * 252)
    assert m["tracking_error"] == pytest.approx(b.std(ddof=1) * math.sqrt(252))  # r - b = b + 0.001
    assert m["information_ratio"] == pytest.approx((b.mean() + 0.001) * 252 / m["tracking_error"])


def test_metrics_read_a_results_own_turnover_and_refuse_bad_input() -> None:
    result = make_result("a", np.full(252, 0.001), turnover=np.r_[1.0, np.zeros(251)])
    m = performance_metrics(result)
    assert m["ann_turnover"] == pytest.approx(1.0)
    assert m["max_drawdown"] == 0.0 and math.isnan(m["calmar"]) and math.isnan(m["sortino"])
    assert m["ann_return"] == pytest.approx(1.001**252 - 1.0)
    with pytest.raises(TrainingError, match=r"non-finite value.*position 1"):
        performance_metrics(np.array([0.01, np.nan]))
    with pytest.raises(TrainingError, match="benchmark has 2 values for 3 sessions"):
        performance_metrics(np.zeros(3), np.zeros(2))


def test_max_drawdown_counts_a_fall_from_the_start() -> None:
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)
    assert max_drawdown([0.1, -0.5, 0.2, 0.5]) == pytest.approx(-0.5)
    assert max_drawdown([0.01, 0.02]) == 0.0


# ---------------------------------------------------------------- PSR and DSR


def test_psr_matches_its_formula_and_the_normal_special_case() -> None:
    r = np.random.default_rng(1).standard_t(5, 1000) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    skew, kurt = stats.skew(r), stats.kurtosis(r, fisher=False)
    z = sr * math.sqrt(999) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(r) == pytest.approx(stats.norm.cdf(z))
    # Normal returns (skew 0, kurtosis 3): Z(SR sqrt(n-1) / sqrt(1 + SR^2 / 2)).
    assert psr_from_moments(0.1, 101, 0.0, 3.0) == pytest.approx(stats.norm.cdf(0.1 * 10 / math.sqrt(1.005)))
    assert psr_from_moments(0.1, 500, -1.0, 6.0, benchmark_sharpe=0.1) == pytest.approx(0.5)


def test_dsr_reproduces_the_bailey_lopez_de_prado_example() -> None:
    # The 2014 paper's example: 100 trials, variance of annual Sharpes 1/2, annual Sharpe 2.5 over
    # 1,250 daily observations, skew -3, kurtosis 10; in daily units SR0 ~ 0.1132 and DSR ~ 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    assert psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=1e-4)


def test_dsr_is_the_psr_for_one_trial_and_falls_with_more_trials_or_spread() -> None:
    r = np.random.default_rng(2).normal(0.0008, 0.01, 756)
    assert deflated_sharpe_ratio(r, 1, 0.01) == pytest.approx(probabilistic_sharpe_ratio(r, 0.0))
    by_trials = [deflated_sharpe_ratio(r, n, 0.002) for n in (1, 2, 10, 100, 1000)]
    assert all(a > b for a, b in itertools.pairwise(by_trials))
    assert deflated_sharpe_ratio(r, 10, 0.004) < deflated_sharpe_ratio(r, 10, 0.001)
    assert expected_max_sharpe(1, 5.0) == 0.0
    with pytest.raises(TrainingError, match="n_trials must be at least 1"):
        expected_max_sharpe(0, 0.1)


# ---------------------------------------------------------------- comparison table


def test_comparison_table_has_a_row_per_strategy_and_deflates_with_the_trials() -> None:
    rng = np.random.default_rng(3)
    results = [make_result(n, rng.normal(mu, 0.01, 500)) for n, mu in (("a", 0.001), ("b", 0.0), ("c", -0.0005))]
    bench = rng.normal(0.0003, 0.01, 500)
    table = comparison_table(results, bench, n_trials=3)
    assert list(table.index) == ["a", "b", "c"] and table.index.name == "strategy"
    for column in ("ann_return", "sharpe", "sortino", "calmar", "win_rate", "beta", "alpha", "psr", "dsr"):
        assert table[column].notna().all(), column
    assert table.loc["a", "sharpe"] == pytest.approx(performance_metrics(results[0], bench)["sharpe"])
    variance = np.var(table["sharpe"].to_numpy() / math.sqrt(252), ddof=1)
    assert table.loc["a", "dsr"] == pytest.approx(deflated_sharpe_ratio(results[0].returns, 3, variance))
    assert (comparison_table(results, bench, n_trials=50)["dsr"] < table["dsr"]).all()
    with pytest.raises(TrainingError, match="n_trials=2 is below the 3 strategies"):
        comparison_table(results, bench, n_trials=2)
    with pytest.raises(TrainingError, match="covers other sessions"):
        comparison_table([results[0], make_result("late", results[1].returns, start="2021-01-04")], n_trials=2)


def test_format_table_shows_percentages_where_they_belong() -> None:
    results = [make_result("a", np.array([0.1, -0.05, 0.02])), make_result("b", np.array([0.0, 0.01, 0.0]))]
    text = format_table(comparison_table(results, n_trials=2))
    header, rule, *rows = text.splitlines()
    assert header.split()[:4] == ["strategy", "n_days", "ann_return", "ann_vol"]
    assert header.split()[-4:] == ["skew", "kurtosis", "psr", "dsr"]
    assert set(rule) <= {"-", " "}
    assert "-5.00%" in rows[0]  # the max drawdown of a
    assert "66.67%" in rows[0]  # its win rate
    assert rows[0].split()[1] == "3"
    assert " - " in rows[1] + " "  # b's undefined Sortino
    assert "compound" in DEFINITIONS


# ---------------------------------------------------------------- block bootstrap


def test_bootstrap_of_a_constant_return_compounds_exactly() -> None:
    boot = block_bootstrap(np.full(100, 0.001), block=10, n_paths=50, horizon=60, seed=1)
    assert boot.terminal_wealth == pytest.approx(np.full(50, 1.001**60))
    assert boot.max_drawdown == pytest.approx(np.zeros(50))
    for path in boot.fan.values():
        assert path == pytest.approx(1.001 ** np.arange(1, 61))


def test_bootstrap_is_seeded_and_its_quantiles_are_ordered() -> None:
    r = np.random.default_rng(4).normal(0.0005, 0.01, 300)
    a = block_bootstrap(r, block=21, n_paths=400, seed=7)
    b = block_bootstrap(r, block=21, n_paths=400, seed=7)
    c = block_bootstrap(r, block=21, n_paths=400, seed=8)
    assert np.array_equal(a.terminal_wealth, b.terminal_wealth)
    assert not np.array_equal(a.terminal_wealth, c.terminal_wealth)
    assert sorted(a.fan) == [0.05, 0.25, 0.5, 0.75, 0.95]
    bands = np.array([a.fan[q] for q in sorted(a.fan)])
    assert bands.shape == (5, 300)
    assert (np.diff(bands, axis=0) >= 0).all()
    assert list(a.summary.columns) == ["p5", "p25", "p50", "p75", "p95"]
    assert (np.diff(a.summary.to_numpy(), axis=1) >= 0).all()
    assert (a.max_drawdown <= 0).all()


def test_bootstrap_paths_are_circular_blocks_of_consecutive_sessions() -> None:
    r = np.linspace(-0.02, 0.03, 20)  # distinct returns, so a product names its window
    boot = block_bootstrap(r, block=10**9, n_paths=200, horizon=5, seed=0)
    windows = [np.prod(1.0 + r[(np.arange(5) + s) % 20]) for s in range(20)]
    assert all(np.isclose(windows, w).any() for w in boot.terminal_wealth)
    with pytest.raises(TrainingError, match="block must be at least 1"):
        block_bootstrap(r, block=0)


# ---------------------------------------------------------------- stress windows


def test_stress_windows_inside_the_data_are_measured_and_others_skipped_on_record() -> None:
    dates = np.busday_offset(np.datetime64("2020-01-02"), np.arange(150), roll="forward")
    n = dates.size
    result = make_result("a", np.full(n, 0.01))
    table = stress_table([result], np.full(n, -0.01), dates)
    covid = table[table["window"] == "COVID crash March 2020"].set_index("strategy")
    days = int(((dates > np.datetime64("2020-02-19")) & (dates <= np.datetime64("2020-03-23"))).sum())
    assert days == 23
    assert covid.loc["a", "days"] == days
    assert covid.loc["a", "cum_return"] == pytest.approx(1.01**days - 1.0)
    assert covid.loc["a", "max_drawdown"] == 0.0
    assert covid.loc["benchmark", "cum_return"] == pytest.approx(0.99**days - 1.0)
    assert covid.loc["benchmark", "max_drawdown"] == pytest.approx(0.99**days - 1.0)
    assert (covid["coverage"] == "full").all()
    skipped = table[table["window"] != "COVID crash March 2020"]
    assert len(skipped) == len(STRESS_WINDOWS) - 1
    assert skipped["coverage"].str.startswith("none: outside the data").all()
    assert skipped["cum_return"].isna().all()


def test_a_partly_covered_stress_window_says_so() -> None:
    result = make_result("a", np.full(40, 0.01), start="2020-03-02")
    row = stress_table([result], windows={"COVID": ("2020-02-19", "2020-03-23")}).iloc[0]
    assert row["coverage"] == "partial: the data hold 2020-03-02..2020-03-23"
    assert row["days"] == 16
    with pytest.raises(TrainingError, match="dates differ"):
        stress_table([result], np.zeros(40), result.dates + 1)


# ---------------------------------------------------------------- regimes


def test_regimes_use_no_data_after_the_session_they_label() -> None:
    rng = np.random.default_rng(5)
    b = rng.normal(0.0003, 0.01, 700)
    b[300:360] = rng.normal(-0.008, 0.025, 60)  # a turbulent fall
    dates = np.busday_offset(np.datetime64("2015-01-02"), np.arange(700), roll="forward")
    labels = classify_regimes(b, dates)
    for t in (125, 200, 330, 400, 650):
        future = b.copy()
        future[t + 1 :] = rng.normal(0.01, 0.05, 700 - t - 1)
        assert np.array_equal(classify_regimes(future, dates)[: t + 1], labels[: t + 1]), t
    assert set(labels) == {"unknown", "bull", "bear", "sideways"}
    assert (labels[:125] == "unknown").all() and labels[125] != "unknown"
    assert (labels[280:300] == "bull").mean() > 0.5
    assert (labels[330:360] == "bear").all()


def test_regimes_follow_the_stated_rule() -> None:
    calm_rise = np.full(300, 0.001) + np.random.default_rng(6).normal(0, 1e-4, 300)
    dates = np.busday_offset(np.datetime64("2015-01-02"), np.arange(300), roll="forward")
    labels = classify_regimes(calm_rise, dates, trend_window=20, vol_window=10)
    assert (labels[:19] == "unknown").all()
    assert set(labels[19:]) <= {"bull", "sideways"} and (labels[19:] == "bull").mean() > 0.4
    with pytest.raises(TrainingError, match="there is none"):
        classify_regimes(None, dates)
    with pytest.raises(TrainingError, match="300 benchmark returns but 299 dates"):
        classify_regimes(calm_rise, dates[1:])


def test_regime_table_splits_the_sessions_by_label() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.01, -0.01])
    regimes = np.array(["bull", "bear", "bull", "unknown", "bull", "bear"])
    table = regime_table([make_result("a", r), make_result("b", -r)], regimes)
    assert list(table["regime"].unique()) == ["bull", "bear", "unknown"]
    bull = table[(table["regime"] == "bull") & (table["strategy"] == "a")].iloc[0]
    assert bull["days"] == 3
    assert bull["ann_return"] == pytest.approx((1.01 * 1.03 * 1.01) ** (252 / 3) - 1.0)
    assert bull["ann_vol"] == pytest.approx(np.std([0.01, 0.03, 0.01], ddof=1) * math.sqrt(252))
    assert table.groupby("strategy")["days"].sum().tolist() == [6, 6]
    with pytest.raises(TrainingError, match="one label per session"):
        regime_table([make_result("a", r)], regimes[:5])
