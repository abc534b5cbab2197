"""The ``allocator`` strategy of a backtest job: the registered champion over demo-sized data, and its refusals.

Data: 20 SYNTHETIC tickers over two years (the demo's 20 names), in an offline store and the
technical feature file the features stage writes, registered in a real Feast repo (SQLite
online store, file offline store). The champion is a hand-made policy (seeded random layers, no
training, no quality claimed) logged and aliased exactly as training registers one
(tests/test_serving_allocator.py ``register_allocator``) in a real MLflow registry on SQLite. The
job runs in process (``training.backtest_job.execute``), as the Ray task does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_repo.backtests import decode_report
from feature_repo.files import write_feature_file
from feature_repo.schema import ALLOCATOR_FEATURES
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from feature_repo.transforms.technical import technical_features
from tests.backtest_fixtures import FakeClock, job_row, queue_job, sqlite_engine
from tests.serving_fixtures import Registry, mlflow_uris_restored
from tests.test_serving_allocator import register_allocator
from training.backtest_allocator import TRACKING_ENV, champion_for, feature_values
from training.backtest_data import load_job_data
from training.backtest_job import execute
from training.errors import TrainingError
from training.ingest.synthetic import generate_universe
from training.store import OfflineStore

START, END = "2023-03-01", "2023-11-30"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], pd.DataFrame]:
    """A data folder as the pipeline leaves it (prices + technical features in Feast); its tickers and features."""
    data_dir = tmp_path_factory.mktemp("allocator-backtest")
    universe = generate_universe(n_tickers=20, n_months=24, seed=3)
    with OfflineStore(data_dir / "offline.duckdb") as store:
        store.upsert("prices", universe.prices)
    technical = technical_features(universe.prices, universe.benchmark.set_index("date")["close"])
    write_feature_file(data_dir, "technical_features", technical)
    FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir))).apply()
    return data_dir, sorted(universe.prices["ticker"].unique()), technical


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """An empty MLflow registry the job finds through ``PORTFOLIO_OS_TRACKING_URI`` (as the chart sets it)."""
    with mlflow_uris_restored():
        created = Registry.create(tmp_path / "registry", tmp_path)
        monkeypatch.setenv(TRACKING_ENV, created.uri)
        yield created


def _spec(tickers: list[str], **overrides: Any) -> dict[str, Any]:
    return {"strategy": "allocator", "universe": tickers, "start": START, "end": END, **overrides}


def _run(tmp_path: Path, data_dir: Path, spec: dict[str, Any]) -> tuple[str, Any]:
    engine = sqlite_engine(tmp_path / "gateway.db")
    queue_job(engine, "alloc", spec)
    state = execute("alloc", f"sqlite:///{tmp_path / 'gateway.db'}", str(data_dir), clock=FakeClock())
    return state, job_row(engine, "alloc")


def test_the_champion_runs_to_a_result_beside_equal_weight(
    tmp_path: Path, demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, _ = demo_data
    assert register_allocator(registry, tickers, seed=2, max_weight=0.2) == "1"
    state, row = _run(tmp_path, data_dir, _spec(tickers[:12]))  # a subset of the trained universe
    assert state == "succeeded", row.error
    result = row.result
    assert result["strategy"] == "allocator" and result["label"].startswith("SYNTHETIC data")
    assert result["model"].startswith("allocator v1 (champion, trained on 20 tickers")
    assert result["first_session"] >= START and result["last_session"] <= END
    metrics, baseline = result["metrics"], result["equal_weight_metrics"]
    assert metrics["n_rebalances"] >= 30 and metrics["total_cost"] > 0  # costs are charged
    assert metrics["gross_ann_return"] > metrics["ann_return"]
    assert metrics["ann_return"] != pytest.approx(baseline["ann_return"])  # not the equal-weight book
    report = decode_report(row.report)  # stored gzip-compressed
    assert report.lstrip().lower().startswith("<!doctype html")
    assert "equal_weight_book" in report and "allocator v1" in report


def test_the_features_are_the_stored_ones_of_each_session(
    demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, technical = demo_data
    register_allocator(registry, tickers, seed=2)
    champion = champion_for(data_dir, tickers)
    data = load_job_data(data_dir, tickers, pd.Timestamp(END).date(), adv_sessions=63)
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    values = feature_values(repo, champion, data.close, pd.Timestamp(START).date(), pd.Timestamp(END).date())
    index = pd.DatetimeIndex(data.close.index)
    inside = np.flatnonzero((index >= pd.Timestamp(START)) & (index <= pd.Timestamp(END)))
    assert np.isnan(values[: inside[0]]).all() and np.isnan(values[inside[-1] + 1 :]).all()
    stored = technical.assign(date=pd.DatetimeIndex(technical["date"])).set_index(["date", "ticker"])
    for t in inside[[0, len(inside) // 2, -1]]:
        for i, ticker in enumerate(data.close.columns):
            expected = stored.loc[(index[t], ticker), list(ALLOCATOR_FEATURES)].to_numpy(np.float64)
            np.testing.assert_array_equal(values[t, i], expected)  # the session's own row, no later one


def test_without_a_champion_the_job_fails_with_the_reason(
    tmp_path: Path, demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, _ = demo_data
    register_allocator(registry, tickers, seed=2, alias="challenger")  # registered, never promoted
    state, row = _run(tmp_path, data_dir, _spec(tickers[:5]))
    assert state == "failed" and row.state == "failed" and row.result is None
    assert "needs a registered allocator model at its champion alias" in row.error
    assert registry.uri in row.error


def test_a_universe_the_champion_does_not_cover_is_refused_by_name(
    tmp_path: Path, demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, _ = demo_data
    register_allocator(registry, tickers[:10], seed=2)
    state, row = _run(tmp_path, data_dir, _spec(tickers[8:14]))
    assert state == "failed", row.result
    assert "trained on 10 tickers that do not cover the universe" in row.error
    assert ", ".join(tickers[10:14]) + " are outside it" in row.error


def test_a_fixed_width_champion_refuses_a_wider_universe(
    demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, _ = demo_data
    register_allocator(registry, tickers[:3], seed=2, max_assets=4)
    champion = champion_for(data_dir, tickers[10:14])  # any names up to its width
    assert champion.width == 4
    with pytest.raises(TrainingError, match="at most 4 names \\(its policy's width\\); the universe has 5"):
        champion_for(data_dir, tickers[10:15])


def test_a_search_tunes_only_the_champions_rebalance_spacing(
    tmp_path: Path, demo_data: tuple[Path, list[str], pd.DataFrame], registry: Registry
) -> None:
    data_dir, tickers, _ = demo_data
    register_allocator(registry, tickers, seed=2)
    state, row = _run(tmp_path, data_dir, _spec(tickers[:6], search={"trials": 2, "seed": 1}))
    assert state == "succeeded", row.error
    search = row.result["search"]
    assert search["trials"] == 2 and set(search["best_params"]) == {"rebalance_every"}
    assert row.result["rebalance_every"] == search["best_params"]["rebalance_every"]
    assert row.result["first_session"] >= search["holdout_start"]  # reported on the held-out sessions
