"""The chart's way, on a real Ray: a Ray head with its dashboard, and the gateway's ``ray`` executor.

A real ``ray start --head --block`` (the command KubeRay runs in the RayCluster's head pod) serves
Ray's Job Submission API on 127.0.0.1; the gateway's ``ray`` executor (HTTP only, no Ray import)
publishes the data catalogue as a Ray job, submits a backtest through ``POST /v1/backtests`` and
sees it run to ``succeeded``; a second job is cancelled with ``DELETE`` while Ray runs it, and Ray
stops it. As on the cluster, the Ray processes carry the database URL and the data folder in their
own environment, not the gateway.

Every wait is a bounded poll for a precondition (the head up, a job's row or Ray's status reached),
never a sleep standing in for one. The head's processes are stopped by signalling its own
``ray start`` (which tears down what it started), then any of its process tree still left, by pid:
``ray stop`` would kill every Ray on the machine. Small on purpose: 6 SYNTHETIC tickers, equal weight over a few months.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from api.backtest_executors import SUBMISSION_PREFIX, RayJobsExecutor
from feature_repo.telemetry import TELEMETRY_OFF
from tests.backtest_fixtures import gateway, key, settings, synthetic_store
from tests.servers import free_port

pytestmark = pytest.mark.slow
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
RAY_FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
T = TypeVar("T")


def until(what: str, check: Callable[[], T | None], within_s: float) -> T:
    """``check()`` once it answers something truthy; fails naming ``what`` after ``within_s`` (a precondition)."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s:.0f} s")
        time.sleep(0.5)


@dataclass(frozen=True)
class RayHead:
    """A running head: its dashboard URL, GCS port and the ``ray start`` process."""

    dashboard: str
    gcs_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def job(self, submission_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.dashboard}/api/jobs/{submission_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def logs(self, submission_id: str) -> str:
        answer = httpx.get(f"{self.dashboard}/api/jobs/{submission_id}/logs", timeout=10)
        return str(answer.json().get("logs", "")) if answer.status_code == 200 else answer.text

    def tree(self) -> list[psutil.Process]:
        try:
            return [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def _dashboard_up(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"ray start exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(f"{url}/api/jobs/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def ray_head(env: dict[str, str], num_cpus: int) -> Iterator[RayHead]:
    """``ray start --head --block`` on 127.0.0.1, every port chosen free, its session under a fresh temp dir."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's unix socket paths have a limit
    home = temp_dir / "home"
    home.mkdir()
    gcs, dashboard = free_port(), free_port()
    ports = {
        "--port": gcs,
        "--dashboard-port": dashboard,
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    command += ["--dashboard-host", "127.0.0.1", "--include-dashboard", "true", "--num-cpus", str(num_cpus)]
    command += ["--temp-dir", str(temp_dir), "--disable-usage-stats"]
    command += [str(item) for flag, port in ports.items() for item in (flag, port)]
    head_env = {
        **os.environ,
        **TELEMETRY_OFF,
        # Loopback only, no token written into a home folder (training/ray_runtime.py says why).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "HOME": str(home),
        **env,
    }
    log = temp_dir / "ray-start.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=head_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    head = RayHead(url, gcs, process, log)
    try:
        until("the Ray dashboard answers /api/jobs/", lambda: _dashboard_up(url, process, log), 180)
        yield head
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop(head: RayHead) -> None:
    """Stop this head only: SIGTERM to its ``ray start --block`` (it tears down its node), then, by pid,
    whatever of the processes it had started is still there."""
    tree = head.tree()
    head.process.send_signal(signal.SIGTERM)
    try:
        head.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.process.kill()
        head.process.wait()
    _, alive = psutil.wait_procs(tree, timeout=30)
    for process in alive:  # what the head left behind, by pid (never by name: other Rays may run here)
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def _listening(head: RayHead) -> set[tuple[str, str]]:
    found = set()
    for process in head.tree():
        try:
            found |= {
                (process.name(), c.laddr.ip) for c in process.connections("tcp") if c.status == psutil.CONN_LISTEN
            }
        except psutil.NoSuchProcess:
            continue
    return found


def _row(client: Any, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/backtests/{job_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_job_runs_on_a_real_ray_head_through_the_job_submission_api_and_a_cancel_stops_it(tmp_path: Path) -> None:
    tickers = synthetic_store(tmp_path, n_tickers=6, n_months=14)
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    # As the chart's Ray pods: the job finds the gateway's database and the data in its own environment.
    job_env = {"PORTFOLIO_OS_DATABASE_URL": database_url, "PORTFOLIO_OS_DATA_DIR": str(tmp_path)}
    with ray_head(job_env, num_cpus=2) as head:
        listening = _listening(head)
        assert any("gcs_server" in name for name, _ in listening), listening
        assert {ip for _, ip in listening} <= LOOPBACK, listening
        config = settings(tmp_path, executor="ray", ray_address=head.dashboard, python=sys.executable, max_running=2)
        with gateway(config) as client:
            jobs = client.app.state.services.backtests  # type: ignore[attr-defined]
            assert isinstance(jobs.executor, RayJobsExecutor)
            h = key(client)

            # The catalogue: a Ray job the gateway submits at its first pass (asked again while Ray refuses).
            def catalogue() -> bool:
                jobs.tick()
                return client.get("/v1/backtest-data", headers=h).status_code == 200

            until("the catalogue job publishes the data", catalogue, 300)

            spec = {"strategy": "equal_weight", "universe": tickers, "start": "2022-10-03", "end": "2023-01-31"}
            submitted = client.post("/v1/backtests", json=spec, headers=h)
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            submission = f"{SUBMISSION_PREFIX}{job_id}"

            def finished() -> dict[str, Any] | None:
                jobs.tick()  # submits it (again after a refusal), then watches Ray's status
                row = _row(client, h, job_id)
                return row if row["state"] in {"succeeded", "failed", "cancelled"} else None

            job = until(f"job {job_id} ends", finished, 500)
            assert job["state"] == "succeeded", (job, head.logs(submission)[-3000:])
            assert job["progress"] == 1.0 and job["result"]["label"].startswith("SYNTHETIC data")
            assert job["result"]["metrics"]["total_cost"] > 0
            ray_job = until("Ray records the job's end", lambda: _ended(head, submission), 60)
            assert ray_job["status"] == "SUCCEEDED" and ray_job["metadata"] == {"portfolio_os_job": job_id}
            assert ray_job["entrypoint"] == f"{sys.executable} -m training.backtest_job run --job-id {job_id}"
            logs = head.logs(submission)
            # It joined the head's cluster (RAY_ADDRESS, set by Ray for the entry point), no Ray of its own.
            assert f"job {job_id} runs on Ray (127.0.0.1:{head.gcs_port}" in logs, logs[-3000:]
            assert f"job {job_id}: succeeded" in logs
            report = client.get(job["report_url"], headers=h)
            assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
            assert "equal_weight" in report.text

            # A cancel reaches the running Ray job. A holder job takes one of the head's two CPUs, so the
            # next job's entry point runs but its backtest task cannot be scheduled: it is running on Ray,
            # and stays so until stopped, whatever the machine's speed.
            holder = _hold_one_cpu(head)
            try:
                second = client.post("/v1/backtests", json=spec, headers=h)
                assert second.status_code == 202, second.text
                cancel_id = second.json()["id"]
                cancel_submission = f"{SUBMISSION_PREFIX}{cancel_id}"

                def running_on_ray() -> bool:
                    jobs.tick()
                    row = _row(client, h, cancel_id)
                    assert row["state"] in {"queued", "running"}, row
                    return row["state"] == "running" and f"job {cancel_id} runs on Ray" in head.logs(cancel_submission)

                until(f"job {cancel_id} runs on Ray", running_on_ray, 300)
                assert head.job(cancel_submission)["status"] == "RUNNING"
                cancelled = client.delete(f"/v1/backtests/{cancel_id}", headers=h)
                assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
                stopped = until("Ray stops the cancelled job", lambda: _ended(head, cancel_submission), 120)
                assert stopped["status"] == "STOPPED", stopped
                jobs.tick()
                row = _row(client, h, cancel_id)
                assert (
                    row["state"] == "cancelled" and row["error"] == "cancelled by the client" and row["result"] is None
                )
            finally:
                httpx.post(f"{head.dashboard}/api/jobs/{holder}/stop", timeout=10)


def _ended(head: RayHead, submission: str) -> dict[str, Any] | None:
    info = head.job(submission)
    return info if info["status"] in RAY_FINAL else None


def _hold_one_cpu(head: RayHead) -> str:
    """A Ray job that holds one CPU until stopped (its entry point sleeps); returns its submission id."""
    body = {"entrypoint": f"{sys.executable} -c 'import time; time.sleep(3600)'", "entrypoint_num_cpus": 1}
    answer = httpx.post(f"{head.dashboard}/api/jobs/", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    holder = str(answer.json()["submission_id"])
    until("the holder job runs", lambda: head.job(holder)["status"] == "RUNNING", 120)
    return holder
