"""What the signal models learn (issue 18 item 1): cross-sectional labels, lambdarank queries,
seed-averaged boosters and the per-horizon out-of-fold report.

All data here are SYNTHETIC (seeded random panels): these tests check behaviour, never quality.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import cross_sectional_labels, forward_outcomes, label_column
from tests.frames import scrambled_after
from training.errors import TrainingError
from training.models.explain import contributions
from training.models.signal import (
    SignalModel,
    SignalModelParams,
    average_boosters,
    query_sizes,
    relevance_grades,
)
from training.signals.config import LearningConfig, SignalRunConfig
from training.signals.datasets import TrainingFrame
from training.signals.horizons import horizon_report, learning_markdown
from training.signals.tuning import AUTO_OBJECTIVES, TuningData, _best_by_objective, search_space, tuning_data
from training.universe import restrict_to_members


def _outcomes(seed: int = 0, days: int = 4, names: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=days)
    tickers = [f"T{i}" for i in range(names)]
    frame = pd.DataFrame([(t, d) for d in dates for t in tickers], columns=[TICKER, DATE])
    frame["fwd_excess_21d"] = rng.normal(0, 0.05, len(frame))
    return frame


# --- cross-sectional labels -------------------------------------------------------------------


def test_rank_label_is_the_centred_rank_within_each_date() -> None:
    out = cross_sectional_labels(_outcomes(), 21)
    for _, day in out.groupby(DATE):
        order = day["fwd_excess_21d"].rank().to_numpy()
        np.testing.assert_allclose(day["xs_rank_21d"], (order - 0.5) / len(day) - 0.5)
        assert day["xs_rank_21d"].mean() == pytest.approx(0.0, abs=1e-12)
        assert day["xs_z_21d"].mean() == pytest.approx(0.0, abs=1e-12)
        assert day["xs_z_21d"].std(ddof=0) == pytest.approx(1.0)


def test_non_members_never_influence_a_members_label() -> None:
    outcomes = _outcomes(names=8)
    dates = sorted(outcomes[DATE].unique())
    # T6 and T7 are never members; T5 leaves after the second date.
    mask = pd.DataFrame(True, index=pd.DatetimeIndex(dates), columns=[f"T{i}" for i in range(8)])
    mask[["T6", "T7"]] = False
    mask.loc[mask.index[2:], "T5"] = False
    labelled = cross_sectional_labels(restrict_to_members(outcomes, mask), 21)
    assert not labelled[TICKER].isin(["T6", "T7"]).any()
    assert not ((labelled[TICKER] == "T5") & (labelled[DATE] >= dates[2])).any()
    # Make the non-members extreme: the members' labels do not move.
    moved = outcomes.copy()
    moved.loc[moved[TICKER].isin(["T6", "T7"]), "fwd_excess_21d"] = [1e3, -1e3] * len(dates)
    relabelled = cross_sectional_labels(restrict_to_members(moved, mask), 21)
    pd.testing.assert_frame_equal(labelled, relabelled)
    # ... whereas labelling before the cut would have let them in.
    assert not np.allclose(
        cross_sectional_labels(outcomes, 21)["xs_z_21d"].to_numpy()[:5],
        cross_sectional_labels(moved, 21)["xs_z_21d"].to_numpy()[:5],
    )


def test_labels_of_a_single_name_date_and_a_missing_return() -> None:
    frame = pd.DataFrame(
        {
            DATE: pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-05", "2021-01-05"]),
            TICKER: ["A", "A", "B", "C"],
            "fwd_excess_21d": [0.3, 0.1, np.nan, 0.1],
        }
    )
    out = cross_sectional_labels(frame, 21)
    assert out["xs_rank_21d"].iloc[0] == 0.0 and out["xs_z_21d"].iloc[0] == 0.0
    assert np.isnan(out["xs_rank_21d"].iloc[2]) and np.isnan(out["xs_z_21d"].iloc[2])
    assert out["xs_z_21d"].iloc[3] == 0.0  # two equal returns: no spread, z = 0
    # The binary label: a lone row is not above its own median; a missing return has no label.
    assert out["label_21d"].iloc[0] == 0.0 and np.isnan(out["label_21d"].iloc[2])
    whole = cross_sectional_labels(frame.dropna(), 21)
    assert whole["label_21d"].dtype == "int64"


def _members(tickers: list[str], sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """A SYNTHETIC membership: S10 and S11 never members, S09 a member for the first half only."""
    mask = pd.DataFrame(True, index=sessions, columns=tickers)
    mask[["S10", "S11"]] = False
    mask.loc[sessions[len(sessions) // 2] :, "S09"] = False
    return mask


def test_the_binary_label_is_against_the_members_median_and_non_members_cannot_move_it() -> None:
    prices, bench = _synthetic_prices(days=120)
    sessions = pd.DatetimeIndex(sorted(prices[DATE].unique()))
    mask = _members(sorted(prices[TICKER].unique()), sessions)
    # Both non-members soar: the median of every ticker's return rises, the members' median does not.
    outsiders = prices[TICKER].isin(["S10", "S11"])
    step = prices.loc[outsiders, DATE].map(dict(zip(sessions, range(len(sessions)), strict=True)))
    moved = prices.assign(adj_close=prices["adj_close"].where(~outsiders, 10.0 * 1.5 ** step.reindex(prices.index)))

    def member_labels(p: pd.DataFrame) -> pd.DataFrame:
        return cross_sectional_labels(restrict_to_members(forward_outcomes(p, bench, horizon=5), mask), 5)

    base, shifted = member_labels(prices), member_labels(moved)
    assert not base[TICKER].isin(["S10", "S11"]).any() and len(base) > 500
    pd.testing.assert_series_equal(base["label_5d"], shifted["label_5d"])
    # The label is "above the median of that date's members", whatever fwd_excess is centred on.
    median = base.groupby(DATE)["fwd_ret_5d"].transform("median")
    np.testing.assert_array_equal(base["label_5d"].to_numpy(), (base["fwd_ret_5d"] > median).astype("int64"))
    assert base.groupby(DATE)["label_5d"].mean().between(0.4, 0.6).all()
    # Labelled against every ticker (forward_outcomes alone), the outsiders would have moved it.
    everyone = restrict_to_members(forward_outcomes(moved, bench, horizon=5), mask)
    assert (everyone["label_5d"].to_numpy() != shifted["label_5d"].to_numpy()).sum() > 50


def test_member_labels_ignore_every_price_after_known_at() -> None:
    prices, bench = _synthetic_prices(days=300)
    sessions = pd.DatetimeIndex(sorted(prices[DATE].unique()))
    mask = _members(sorted(prices[TICKER].unique()), sessions)
    cutoff = sessions[200]

    def member_labels(p: pd.DataFrame, b: pd.Series) -> pd.DataFrame:
        return cross_sectional_labels(restrict_to_members(forward_outcomes(p, b, horizon=21), mask), 21)

    full = member_labels(prices, bench)
    changed = member_labels(scrambled_after(prices, cutoff), bench.where(bench.index <= cutoff, bench * 3))
    truncated = member_labels(prices[prices[DATE] <= cutoff], bench[bench.index <= cutoff])
    known = full[full["known_at"] <= cutoff].reset_index(drop=True)
    assert len(known) > 1000
    pd.testing.assert_frame_equal(known, truncated, check_exact=True)
    pd.testing.assert_frame_equal(known, changed[changed["known_at"] <= cutoff].reset_index(drop=True))
    # The scramble did change the labels that become known after the cutoff, so this could fail.
    late = full["known_at"] > cutoff
    assert (full.loc[late, "label_21d"].to_numpy() != changed.loc[late, "label_21d"].to_numpy()).any()


def test_label_column_names_and_bad_kind() -> None:
    assert label_column("rank", 5) == "xs_rank_5d"
    assert label_column("zscore", 63) == "xs_z_63d"
    assert label_column("raw", 21) == "fwd_excess_21d"
    with pytest.raises(ValueError, match=r"unknown label kind 'ranks'.*rank, zscore, raw"):
        label_column("ranks", 21)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['fwd_excess_5d'\]"):
        cross_sectional_labels(_outcomes(), 5)


# --- lambdarank queries and grades ------------------------------------------------------------


def test_grades_are_within_date_quantiles() -> None:
    dates = np.repeat(pd.bdate_range("2021-01-04", periods=2).to_numpy(), 10)
    label = np.r_[np.arange(10.0), -np.arange(10.0) * 100]  # the second date on another scale
    grades = relevance_grades(label, dates, 5)
    np.testing.assert_array_equal(grades[:10], np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(grades[10:], np.repeat(np.arange(5), 2)[::-1])
    with pytest.raises(TrainingError, match="at least 2"):
        relevance_grades(label, dates, 1)


def test_one_query_per_date_in_date_order() -> None:
    dates = pd.to_datetime(["2021-01-04"] * 3 + ["2021-01-05"] * 5 + ["2021-01-07"] * 2)
    np.testing.assert_array_equal(query_sizes(dates), [3, 5, 2])
    with pytest.raises(TrainingError, match="sorted by date"):
        query_sizes(dates[::-1])


def _panel(seed: int = 1, days: int = 60, names: int = 25) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """A SYNTHETIC panel whose excess return depends on feature ``a`` (and on nothing in ``d``)."""
    rng = np.random.default_rng(seed)
    dates = pd.Series(np.repeat(pd.bdate_range("2021-01-04", periods=days).to_numpy(), names), name=DATE)
    X = pd.DataFrame(rng.normal(size=(len(dates), 4)), columns=list("abcd"))
    excess = pd.Series(0.5 * X["a"] - 0.2 * X["b"] + rng.normal(size=len(dates)), name="target")
    return X, excess, dates


def test_lambdarank_learns_the_within_date_order_and_needs_dates() -> None:
    X, excess, dates = _panel()
    grades = pd.Series(relevance_grades(excess, dates, 5))
    params = SignalModelParams(objective="lambdarank", n_estimators=40)
    model = SignalModel(params).fit(X, grades, dates=dates)
    frame = pd.DataFrame({"d": dates, "s": model.predict(X), "y": excess})
    ic = frame.groupby("d")[["s", "y"]].corr(method="spearman").xs("s", level=1)["y"].mean()
    assert ic > 0.2
    assert model.booster.params["objective"] == "lambdarank"
    with pytest.raises(TrainingError, match="needs each row's date"):
        SignalModel(params).fit(X, grades)
    with pytest.raises(TrainingError, match="sorted by date"):
        SignalModel(params).fit(X.iloc[::-1], grades.iloc[::-1], dates=dates.iloc[::-1])
    with pytest.raises(TrainingError, match="integer grades"):
        SignalModel(params).fit(X, grades + 0.5, dates=dates)
    with pytest.raises(TrainingError, match="no probabilities"):
        model.predict_proba(X)


def test_regression_learns_a_continuous_label() -> None:
    X, excess, dates = _panel()
    label = cross_sectional_labels(pd.DataFrame({DATE: dates, "fwd_excess_21d": excess}), 21)["xs_rank_21d"]
    model = SignalModel(SignalModelParams(objective="regression", n_estimators=40)).fit(X, label)
    assert np.corrcoef(model.predict(X), label)[0, 1] > 0.3
    with pytest.raises(TrainingError, match="missing or infinite"):
        SignalModel(SignalModelParams(objective="regression")).fit(X, label.where(label > 0))


# --- seed averaging -----------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["binary", "regression", "lambdarank"])
def test_seed_average_is_the_mean_of_its_members_and_deterministic(objective: str, tmp_path) -> None:
    X, excess, dates = _panel(seed=2, days=30)
    y = {
        "binary": (excess > excess.median()).astype("int64"),
        "regression": excess,
        "lambdarank": pd.Series(relevance_grades(excess, dates, 5)),
    }[objective]
    params = SignalModelParams(objective=objective, n_estimators=25, seed=11)  # type: ignore[arg-type]
    members = [SignalModel(params.model_copy(update={"seed": 11 + i})).fit(X, y, dates=dates) for i in range(3)]
    averaged = SignalModel(params.model_copy(update={"n_seeds": 3})).fit(X, y, dates=dates)
    again = SignalModel(params.model_copy(update={"n_seeds": 3})).fit(X, y, dates=dates)
    # Members differ (bagging and feature sampling follow the seed) ...
    assert not np.allclose(members[0].score(X), members[1].score(X))
    # ... the average is their mean raw score, its SHAP contributions their mean, and it repeats.
    np.testing.assert_allclose(averaged.score(X), np.mean([m.score(X) for m in members], axis=0), atol=1e-10)
    mean_contrib = np.mean([contributions(m, X).to_numpy() for m in members], axis=0)
    np.testing.assert_allclose(contributions(averaged, X).to_numpy(), mean_contrib, atol=1e-10)
    np.testing.assert_array_equal(averaged.predict(X), again.predict(X))
    assert averaged.booster.num_trees() == sum(m.booster.num_trees() for m in members)
    # Saved and loaded, it is still one plain booster predicting the same.
    loaded = SignalModel.load(averaged.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict(X), averaged.predict(X), atol=1e-12)


def test_average_boosters_refuses_members_of_other_features() -> None:
    X, excess, _ = _panel(days=10)
    one = SignalModel(SignalModelParams(objective="regression", n_estimators=5)).fit(X, excess)
    other = SignalModel(SignalModelParams(objective="regression", n_estimators=5)).fit(
        X.rename(columns={"d": "e"}), excess
    )
    assert average_boosters([one.booster]) is one.booster
    with pytest.raises(TrainingError, match="different features"):
        average_boosters([one.booster, other.booster])
    with pytest.raises(TrainingError, match="at least one"):
        average_boosters([])


# --- tuning: the objective as a searched choice --------------------------------------------------


def test_auto_searches_regression_against_lambdarank() -> None:
    assert "objective" not in search_space("regression")
    assert sorted(search_space("auto")["objective"].categories) == sorted(AUTO_OBJECTIVES)


def test_best_by_objective_counts_only_trials_that_ran_every_fold() -> None:
    trials = pd.DataFrame(
        {
            "objective": ["regression", "lambdarank", "lambdarank", "regression"],
            "rank_ic_mean": [0.04, 0.09, 0.05, 0.30],
            "folds": [5, 1, 5, 2],
        }
    )
    best = _best_by_objective(trials, SignalModelParams(), max_t=5)
    assert best == {"lambdarank": 0.05, "regression": 0.04}


def test_tuning_data_serves_each_objective_its_labels() -> None:
    X, excess, dates = _panel(days=10)
    data = tuning_data(X, (excess > 0).astype("int64"), excess, dates, [], label=excess, grades=4)
    assert data.labels_for("regression") is data.label
    assert set(data.labels_for("lambdarank")) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="no label for the 'regression' objective"):
        TuningData(X, excess, excess, dates, []).labels_for("regression")


# --- horizons side by side ---------------------------------------------------------------------


def _synthetic_prices(days: int = 1000, names: int = 12, seed: int = 5) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    sessions = pd.bdate_range("2015-01-05", periods=days)
    drift = rng.normal(0, 0.0006, names)
    rets = rng.normal(drift, 0.015, (days, names))
    close = 10 * np.exp(np.cumsum(rets, axis=0))
    prices = pd.DataFrame(
        {
            DATE: np.tile(sessions, names),
            TICKER: np.repeat([f"S{i:02d}" for i in range(names)], days),
            "adj_close": close.T.ravel(),
        }
    )
    return prices, pd.Series(close.mean(axis=1), index=sessions)


def test_horizon_report_has_every_horizon_from_the_train_segment_only() -> None:
    prices, bench = _synthetic_prices()
    by_h = {h: cross_sectional_labels(forward_outcomes(prices, bench, horizon=h), h) for h in (5, 21, 63)}
    keys = by_h[5][[DATE, TICKER]].sort_values([DATE, TICKER], ignore_index=True)
    # A SYNTHETIC feature: the past 20-session return of each name (known at t).
    wide = prices.pivot(index=DATE, columns=TICKER, values="adj_close")
    past = (wide / wide.shift(20) - 1).reset_index().melt(id_vars=DATE, var_name=TICKER, value_name="mom").dropna()
    keys = keys.merge(past, on=[DATE, TICKER], how="inner")
    n = len(keys)
    frame = TrainingFrame(
        X=keys[["mom"]].assign(noise=np.random.default_rng(0).normal(size=n)),
        y=pd.Series(np.zeros(n, dtype="int64")),
        target=pd.Series(np.zeros(n)),
        dates=keys[DATE],
        label_end=keys[DATE],
        tickers=keys[TICKER],
        feature_names=["mom", "noise"],
        service="synthetic",
        snapshot_hash="synthetic",
        horizon=21,
        dropped=0,
    )
    config = SignalRunConfig.model_validate(
        {
            "segments": {
                "train": ["2015-01-01", "2017-12-31"],
                "valid": ["2018-01-01", "2018-06-30"],
                "test": ["2018-07-01", "2018-09-30"],
            },
            "walk_forward": {"n_folds": 2, "min_train_sessions": 250, "test_sessions": 126, "embargo_sessions": 5},
            "models": {"technical": {"feature_service": "technical_model_v1"}},
            "learning": {"objective": "regression", "report_horizons": [5, 21, 63]},
        }
    )
    params = SignalModelParams(objective="regression", n_estimators=10, n_seeds=3)
    report = horizon_report(frame, by_h, params, config)
    assert [r.horizon for r in report] == [5, 21, 63]
    for r in report:
        assert len(r.fold_rank_ics) == 2 and np.isfinite(r.rank_ic_mean) and np.isfinite(r.rank_ic_t_nw)
        assert r.dates > 0 and r.to_dict()["horizon"] == r.horizon
    text = learning_markdown(
        {
            "technical": {
                "objective": "regression",
                "seeds": 3,
                "cv_rank_ic_by_objective": {},
                "horizons": [r.to_dict() for r in report],
            }
        }
    )
    for h in (5, 21, 63):
        assert f"- {h} sessions: rank IC" in text


def test_learning_config_refuses_bad_horizons() -> None:
    with pytest.raises(ValueError, match=r"1\.\.252"):
        LearningConfig(report_horizons=(0, 21))
    with pytest.raises(ValueError, match="twice"):
        LearningConfig(report_horizons=(21, 21))
