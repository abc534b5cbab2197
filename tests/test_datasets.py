"""Training frames from a real Feast repo (DuckDB offline store, SQLite registry) over real prices.

Features come from the real technical transform over the bundled S&P 500 sample; labels from
forward_outcomes over the same prices. Outcomes start a quarter before the features, so the
earliest samples have no feature row at t and must be dropped, never filled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.definitions import ALLOCATOR_FEATURES, ALLOCATOR_SERVICE, MODEL_SERVICES
from feature_repo.files import write_feature_file
from feature_repo.schema import TECHNICAL_FEATURES, names
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from feature_repo.transforms.outcomes import forward_outcomes
from feature_repo.transforms.technical import technical_features
from tests.conftest import benchmark_series
from training.errors import TrainingError
from training.signals.datasets import TrainingFrame, build_training_frame, snapshot_hash

TICKERS = ["AAPL", "JPM", "KO", "MSFT", "XOM"]
FEATURES_FROM = "2019-01-01"
OUTCOMES_FROM = "2018-10-01"
LAST = "2022-12-28"
END = pd.Timestamp("2022-06-30")
SERVICE = "technical_model_v1"


def prices_between(sp500, first: str, last: str) -> pd.DataFrame:
    p = sp500.prices
    return p[p["ticker"].isin(TICKERS) & (p["date"] >= first) & (p["date"] <= last)].reset_index(drop=True)


@pytest.fixture(scope="module")
def world(sp500, tmp_path_factory: pytest.TempPathFactory):
    """An applied repo with the technical view, its source rows, the prices and their outcomes."""
    data_dir: Path = tmp_path_factory.mktemp("datasets")
    bench = benchmark_series(sp500.benchmark)
    features = technical_features(prices_between(sp500, FEATURES_FROM, LAST), bench)
    write_feature_file(data_dir, "technical_features", features)
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    repo.apply()
    prices = prices_between(sp500, OUTCOMES_FROM, LAST)
    outcomes = forward_outcomes(prices, bench)
    return repo, features, prices, outcomes


@pytest.fixture(scope="module")
def frame(world) -> TrainingFrame:
    repo, _, _, outcomes = world
    return build_training_frame(repo, SERVICE, outcomes, end=END)


def keys(tf: TrainingFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([tf.tickers, tf.dates], names=["ticker", "date"])


def test_columns_follow_the_service_order(world, frame: TrainingFrame) -> None:
    repo, _, _, outcomes = world
    assert list(frame.X.columns) == frame.feature_names == names(TECHNICAL_FEATURES)
    assert frame.service == SERVICE
    alloc = build_training_frame(repo, ALLOCATOR_SERVICE, outcomes, start="2021-01-01", end="2021-03-31")
    assert list(alloc.X.columns) == alloc.feature_names == list(ALLOCATOR_FEATURES)
    assert (alloc.dates >= pd.Timestamp("2021-01-01")).all()


def test_values_equal_the_feature_file_rows_at_t(world, frame: TrainingFrame) -> None:
    _, features, _, _ = world
    expected = features.set_index(["ticker", "date"]).reindex(keys(frame))[frame.feature_names]
    assert not expected.isna().all(axis=1).any(), "every kept sample has a feature row at t"
    np.testing.assert_array_equal(frame.X.to_numpy(), expected.to_numpy(dtype="float64"))
    assert frame.X.dtypes.eq("float64").all()


def test_labels_equal_forward_outcomes(world, frame: TrainingFrame) -> None:
    _, _, _, outcomes = world
    expected = outcomes.set_index(["ticker", "date"]).reindex(keys(frame))
    np.testing.assert_array_equal(frame.y.to_numpy(), expected["label_21d"].to_numpy())
    np.testing.assert_array_equal(frame.target.to_numpy(), expected["fwd_excess_21d"].to_numpy())
    np.testing.assert_array_equal(frame.label_end.to_numpy(), expected["known_at"].to_numpy())
    assert frame.y.dtype == "int64"
    assert set(frame.y.unique()) == {0, 1}
    assert (frame.label_end > frame.dates).all()


def test_window_sorting_and_dropped_rows(world, frame: TrainingFrame) -> None:
    _, features, _, outcomes = world
    assert outcomes["date"].max() > END
    assert frame.dates.max() == outcomes.loc[outcomes["date"] <= END, "date"].max()
    order = pd.DataFrame({"date": frame.dates, "ticker": frame.tickers})
    pd.testing.assert_frame_equal(order, order.sort_values(["date", "ticker"]).reset_index(drop=True))
    assert not keys(frame).duplicated().any()
    # Outcomes before the first feature row have nothing to join at t: dropped, and counted.
    before_features = int((outcomes["date"] < features["date"].min()).sum())
    assert frame.dates.min() >= features["date"].min()
    assert frame.dropped >= before_features > 0
    window = int((outcomes["date"] <= END).sum())
    assert len(frame) + frame.dropped == window


def test_snapshot_hash_is_deterministic_and_ignores_input_order(world, frame: TrainingFrame) -> None:
    repo, _, _, outcomes = world
    shuffled = outcomes.sample(frac=1.0, random_state=7).reset_index(drop=True)
    again = build_training_frame(repo, SERVICE, shuffled, end=END)
    assert again.snapshot_hash == frame.snapshot_hash
    pd.testing.assert_frame_equal(again.X, frame.X)
    assert len(frame.snapshot_hash) == 64


def test_snapshot_hash_changes_when_one_price_changes(sp500, world, frame: TrainingFrame) -> None:
    repo, _, prices, _ = world
    bumped = prices.copy()
    row = bumped.index[(bumped["ticker"] == "KO") & (bumped["date"] == "2021-03-15")]
    assert len(row) == 1
    bumped.loc[row, "adj_close"] *= 1.01
    changed = build_training_frame(repo, SERVICE, forward_outcomes(bumped, benchmark_series(sp500.benchmark)), end=END)
    assert changed.snapshot_hash != frame.snapshot_hash


def test_snapshot_hash_covers_feature_values(frame: TrainingFrame) -> None:
    parts = {
        "tickers": frame.tickers,
        "dates": frame.dates,
        "y": frame.y,
        "target": frame.target,
        "label_end": frame.label_end,
    }
    assert snapshot_hash(features=frame.X, **parts) == frame.snapshot_hash
    nudged = frame.X.copy()
    nudged.iloc[len(nudged) // 2, 3] += 1e-12
    assert snapshot_hash(features=nudged, **parts) != frame.snapshot_hash


def test_unknown_service_lists_the_known_ones(world) -> None:
    repo, _, _, outcomes = world
    with pytest.raises(TrainingError, match="unknown feature service 'nope_v9'") as info:
        build_training_frame(repo, "nope_v9", outcomes)
    for known in [*MODEL_SERVICES, ALLOCATOR_SERVICE]:
        assert known in str(info.value)


def test_empty_window_and_missing_horizon_are_refused(world) -> None:
    repo, _, _, outcomes = world
    with pytest.raises(TrainingError, match="empty window"):
        build_training_frame(repo, SERVICE, outcomes, start="2030-01-01")
    with pytest.raises(TrainingError, match="empty window"):
        build_training_frame(repo, SERVICE, outcomes, start="2021-01-01", end="2020-01-01")
    with pytest.raises(TrainingError, match=r"fwd_excess_5d.*label_5d"):
        build_training_frame(repo, SERVICE, outcomes, horizon=5)
