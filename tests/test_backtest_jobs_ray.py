"""End to end: a backtest job submitted to the gateway runs as a real process on a real local Ray.

The gateway's local executor starts ``python -m training.backtest_job run`` (its own session), which
starts Ray on 127.0.0.1 and runs the backtest as a Ray task, writing into the gateway's database.
The test waits for that process to exit (no clock is raced), then lets the dispatcher see it. The
data catalogue is published the embedded default's way: by the gateway, at start, through the same
training environment.
Small on purpose: 6 SYNTHETIC tickers, equal weight over a few months.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.backtest_executors import LocalExecutor
from tests.backtest_fixtures import gateway, key, settings, synthetic_store

pytestmark = pytest.mark.slow


def test_a_job_runs_on_local_ray_from_submit_to_report(tmp_path: Path) -> None:
    tickers = synthetic_store(tmp_path, n_tickers=6, n_months=14)
    with gateway(settings(tmp_path, executor="local", job_cpus=1)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        jobs = services.backtests
        executor = jobs.executor
        assert isinstance(executor, LocalExecutor)
        jobs.tick()  # the embedded default publishes the data catalogue once at start
        assert executor.catalogue is not None and executor.catalogue.wait(timeout=300) == 0
        h = key(client)
        spec = {"strategy": "equal_weight", "universe": tickers, "start": "2022-10-03", "end": "2023-01-31"}
        submitted = client.post("/v1/backtests", json=spec, headers=h)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        jobs.tick()  # starts the job's process
        (child,) = executor._children.values()
        assert child.wait(timeout=500) == 0, (tmp_path / "backtests" / "logs" / f"{job_id}.log").read_text()[-3000:]
        jobs.tick()
        job = client.get(f"/v1/backtests/{job_id}", headers=h).json()
        assert job["state"] == "succeeded", job
        assert job["progress"] == 1.0 and job["result"]["label"].startswith("SYNTHETIC data")
        assert job["result"]["metrics"]["total_cost"] > 0 and job["report_url"] == f"/v1/backtests/{job_id}/report"
        report = client.get(job["report_url"], headers=h)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert "equal_weight" in report.text
        log = (tmp_path / "backtests" / "logs" / f"{job_id}.log").read_text()
        assert f"job {job_id} runs on Ray (local, 1 CPUs)" in log and f"job {job_id}: succeeded" in log
