"""The backtest job itself (in-process, no Ray): strategies, costs, the Optuna study's resume, stops and failures.

Data: a small SYNTHETIC offline store (tests/backtest_fixtures.py); every result says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update

from feature_repo.backtests import REPORT_GZIP_PREFIX, backtest_catalogue, backtest_jobs, decode_report
from tests.backtest_fixtures import FakeClock, job_row, queue_job, sqlite_engine, synthetic_store
from tests.gateway_fixtures.databases import fresh_postgres_database
from training.backtest_job import JobRecord, JobStopped, execute, publish_catalogue
from training.ingest.synthetic import generate_universe
from training.store import OfflineStore


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    data_dir = tmp_path_factory.mktemp("backtest-data")
    return data_dir, synthetic_store(data_dir)


def _spec(tickers: list[str], **overrides: Any) -> dict[str, Any]:
    values = {"strategy": "topk", "universe": tickers, "start": "2022-09-01", "end": "2023-05-31", "params": {"k": 3}}
    return {**values, **overrides}


def _run(tmp_path: Path, data_dir: Path, job_id: str, spec: dict[str, Any]) -> tuple[str, Any]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = sqlite_engine(tmp_path / "gateway.db")
    queue_job(engine, job_id, spec)
    state = execute(job_id, url, str(data_dir), clock=FakeClock())
    return state, job_row(engine, job_id)


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("topk", {"k": 3, "buffer": 1}),
        ("topk_dropout", {"k": 3, "n_drop": 1}),
        ("min_variance", {"lookback": 60}),
        ("hrp", {"lookback": 60}),
        ("equal_weight", {}),
    ],
)
def test_every_strategy_runs_to_a_labelled_result_and_a_tear_sheet(
    tmp_path: Path, store: tuple[Path, list[str]], strategy: str, params: dict[str, Any]
) -> None:
    data_dir, tickers = store
    state, row = _run(tmp_path, data_dir, "job1", _spec(tickers, strategy=strategy, params=params))
    assert state == "succeeded", row.error
    assert row.state == "succeeded" and row.progress == 1.0 and row.finished_at is not None
    result = row.result
    assert result["label"].startswith("SYNTHETIC data") and result["strategy"] == strategy
    assert result["first_session"] >= "2022-09-01" and result["last_session"] <= "2023-05-31"
    metrics = result["metrics"]
    assert metrics["n_rebalances"] >= 2 and metrics["total_cost"] > 0  # costs are charged
    assert metrics["gross_ann_return"] > metrics["ann_return"]
    assert result["equity"][-1]["date"] == result["last_session"]
    assert row.report.startswith(REPORT_GZIP_PREFIX)  # stored compressed
    report = decode_report(row.report)
    assert report.lstrip().lower().startswith("<!doctype html") and "equal_weight_book" in report


def test_zero_costs_leave_net_equal_to_gross(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    free = {"brokerage_bps": 0, "half_spread_bps": [0, 0, 0], "impact_coefficient": 0}
    state, row = _run(tmp_path, data_dir, "free", _spec(tickers, costs=free))
    assert state == "succeeded", row.error
    metrics = row.result["metrics"]
    assert metrics["total_cost"] == 0 and metrics["ann_return"] == pytest.approx(metrics["gross_ann_return"])


def test_a_search_is_stored_and_resumed_by_its_study_name(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    search = {"trials": 3, "study": "momentum-k", "seed": 7}
    state, first = _run(tmp_path, data_dir, "s1", _spec(tickers, search=search))
    assert state == "succeeded", first.error
    assert first.result["search"]["trials"] == 3 and first.result["search"]["resumed_from"] == 0
    holdout = first.result["search"]["holdout_start"]
    assert first.result["first_session"] > holdout  # reported figures come after the search window
    state, second = _run(tmp_path, data_dir, "s2", _spec(tickers, search={**search, "trials": 5}))
    assert state == "succeeded", second.error
    assert second.result["search"]["resumed_from"] == 3 and second.result["search"]["trials"] == 5
    assert second.result["search"]["study"] == "backtest:acme:momentum-k"
    state, other = _run(tmp_path, data_dir, "s3", _spec(tickers, end="2023-04-28", search=search))
    assert state == "failed" and "made for another backtest" in other.error  # another window


def test_a_study_made_for_another_strategy_is_refused(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    search = {"trials": 1, "study": "shared"}
    assert _run(tmp_path, data_dir, "a", _spec(tickers, strategy="equal_weight", search=search))[0] == "succeeded"
    state, row = _run(tmp_path, data_dir, "b", _spec(tickers, search=search))
    assert state == "failed" and "made for strategy 'equal_weight'" in row.error


def test_a_job_that_cannot_run_fails_with_the_reason(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    state, row = _run(tmp_path, data_dir, "m", _spec(tickers, signal="model"))
    assert state == "failed" and row.state == "failed" and "out-of-sample scores" in row.error


def test_a_cancelled_job_stops_without_overwriting_its_state(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    engine = sqlite_engine(tmp_path / "gateway.db")
    queue_job(engine, "c1", _spec(tickers), state="cancelled")
    assert execute("c1", f"sqlite:///{tmp_path / 'gateway.db'}", str(data_dir)) == "stopped"
    assert job_row(engine, "c1").state == "cancelled"
    queue_job(engine, "c2", _spec(tickers))
    record = JobRecord(engine, "c2", FakeClock())
    record.progress(0.5, "half way")
    with engine.begin() as conn:  # the client cancels while it runs
        conn.execute(update(backtest_jobs).where(backtest_jobs.c.id == "c2").values(state="cancelled"))
    with pytest.raises(JobStopped):
        record.progress(0.6, "on")
    assert not record.succeed({"x": 1}, "<html></html>")
    row = job_row(engine, "c2")
    assert row.state == "cancelled" and row.progress == 0.5 and row.result is None


def test_the_catalogue_publishes_the_store_range_and_tickers(tmp_path: Path, store: tuple[Path, list[str]]) -> None:
    data_dir, tickers = store
    engine = sqlite_engine(tmp_path / "gateway.db")
    publish_catalogue(engine, data_dir, FakeClock())
    with engine.connect() as conn:
        row = conn.execute(select(backtest_catalogue)).one()
    assert row.tickers == tickers and row.label.startswith("SYNTHETIC data")
    assert str(row.first_session) == "2022-01-03" and row.last_session > row.first_session


def test_close_only_prices_pay_flat_costs_and_say_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "close-only"
    data_dir.mkdir()
    universe = generate_universe(n_tickers=6, n_months=16, seed=5)
    prices = universe.prices.assign(volume=float("nan"))  # as the bundled close-only sample
    with OfflineStore(data_dir / "offline.duckdb") as offline:
        offline.upsert("prices", prices)
    tickers = sorted(prices["ticker"].unique())
    state, row = _run(tmp_path, data_dir, "flat", _spec(tickers, params={"k": 2}))
    assert state == "succeeded", row.error
    assert row.result["cost_model"].startswith("flat 25 bps per side")  # 5 brokerage + 20 widest half-spread
    assert row.result["metrics"]["total_cost"] > 0


def test_on_postgresql_the_job_writes_its_row_and_resumes_its_study(
    store: tuple[Path, list[str]], database_url: str
) -> None:
    """The chart's gateway database: the job's row and the Optuna study both live in a real PostgreSQL."""
    data_dir, tickers = store
    with fresh_postgres_database(database_url) as url:
        engine = create_engine(url)
        search = {"trials": 2, "study": "pg", "seed": 3}
        queue_job(engine, "p1", _spec(tickers, strategy="equal_weight", search=search))
        assert execute("p1", url, str(data_dir), clock=FakeClock()) == "succeeded", job_row(engine, "p1").error
        queue_job(engine, "p2", _spec(tickers, strategy="equal_weight", search={**search, "trials": 3}))
        assert execute("p2", url, str(data_dir), clock=FakeClock()) == "succeeded", job_row(engine, "p2").error
        second = job_row(engine, "p2").result["search"]
        assert second["resumed_from"] == 2 and second["trials"] == 3 and second["study"] == "backtest:acme:pg"
        engine.dispose()
