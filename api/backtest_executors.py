"""Where backtest jobs run, seen from the gateway, which never imports Ray.

* ``local`` (the embedded default): the job's entry point as a detached process on this machine,
  ``python -m training.backtest_job run --job-id ...`` in the training environment; it starts a
  local Ray on 127.0.0.1 and runs the backtest as a Ray task. The process outlives a gateway
  restart (its own session); the gateway finds it again by its pid and the job id in its command line.
* ``ray`` (the chart): Ray's Job Submission REST API on the cluster's dashboard address
  (``POST /api/jobs/``, ``GET /api/jobs/{id}``, ``POST /api/jobs/{id}/stop``); the same entry
  point runs on the KubeRay cluster, which reads the database URL from its own environment.
  The data catalogue is published the same way (``python -m training.backtest_job catalogue``
  submitted as a Ray job), so the cluster needs nothing else to run after ingest.
* ``off``: nothing runs (jobs stay queued): for tests that must not start work, such as fuzzing.

Each executor answers ``submit`` with a reference stored on the job's row, and ``alive`` for it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import httpx

from feature_repo.backtests import JOB_MODULE

log = logging.getLogger(__name__)
RAY_RUNNING: Final = frozenset({"PENDING", "RUNNING"})
SUBMISSION_PREFIX: Final = "backtest-"
CATALOGUE_PREFIX: Final = "backtest-catalogue-"


class ExecutorError(Exception):
    """The executor could not take or stop a job (unreachable, refused); the reason is the message."""


@dataclass(frozen=True)
class Liveness:
    """Whether a submitted job's process still runs, and what the executor said about it."""

    alive: bool
    detail: str


class Executor(Protocol):
    def submit(self, job_id: str) -> str: ...
    def alive(self, ref: str) -> Liveness: ...
    def stop(self, ref: str) -> None: ...


def job_command(python: str, job_id: str) -> list[str]:
    """The job's entry point (the same in both modes)."""
    return [python, "-m", JOB_MODULE, "run", "--job-id", job_id]


class OffExecutor:
    """Never runs anything: jobs stay queued."""

    def submit(self, job_id: str) -> str:
        raise ExecutorError("backtest execution is off on this gateway (backtests.executor=off)")

    def alive(self, ref: str) -> Liveness:
        return Liveness(False, "execution is off")

    def stop(self, ref: str) -> None:
        return None


class LocalExecutor:
    """Detached local processes (module docstring); ``ref`` is ``local:<pid>:<job id>``."""

    def __init__(self, python: str, data_dir: str, database_url: str, *, num_cpus: int, log_dir: Path) -> None:
        self.python, self.data_dir, self.database_url = python, data_dir, database_url
        self.num_cpus, self.log_dir = num_cpus, log_dir
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.catalogue: subprocess.Popen[bytes] | None = None  # the latest catalogue refresh (reaped by poll)

    def submit(self, job_id: str) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [*job_command(self.python, job_id), "--data-dir", self.data_dir, "--database-url", self.database_url]
        command += ["--num-cpus", str(self.num_cpus)]
        try:
            with (self.log_dir / f"{job_id}.log").open("ab") as out:
                # Its own session: a gateway restart (or Ctrl-C in its terminal) does not kill the job.
                child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise ExecutorError(f"could not start {command[0]}: {e}") from e
        self._children[child.pid] = child
        return f"local:{child.pid}:{job_id}"

    def publish_catalogue(self) -> None:
        """Refresh the catalogue of backtest data from the local offline store, in the background.

        The embedded default has the training environment at hand, so the gateway asks it once at
        start (``python -m training.backtest_job catalogue``); a cluster publishes it from its jobs.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", JOB_MODULE, "catalogue", "--data-dir", self.data_dir]
        command += ["--database-url", self.database_url]
        try:
            with (self.log_dir / "catalogue.log").open("ab") as out:
                self.catalogue = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise ExecutorError(f"could not start {command[0]}: {e}") from e

    def alive(self, ref: str) -> Liveness:
        pid, job_id = _local_ref(ref)
        child = self._children.get(pid)
        if child is not None:  # ours: poll() also reaps it
            code = child.poll()
            if code is None:
                return Liveness(True, "running")
            del self._children[pid]
            return Liveness(False, f"its process exited with code {code}")
        # Started before a restart of this gateway: the pid must still run this job's command.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return Liveness(False, "its process is gone (the gateway or the machine restarted)")
        if job_id.encode() in cmdline and JOB_MODULE.encode() in cmdline:
            return Liveness(True, "running (found again after a gateway restart)")
        return Liveness(False, "its process is gone (the gateway or the machine restarted)")

    def stop(self, ref: str) -> None:
        pid, _ = _local_ref(ref)
        if not self.alive(ref).alive:
            return
        try:
            os.killpg(pid, signal.SIGTERM)  # the job and the local Ray it started
        except ProcessLookupError:
            return
        except OSError as e:
            raise ExecutorError(f"could not stop process {pid}: {e}") from e


def _local_ref(ref: str) -> tuple[int, str]:
    kind, pid, job_id = ref.split(":", 2)
    if kind != "local":
        raise ExecutorError(f"not a local job reference: {ref!r}")
    return int(pid), job_id


class RayJobsExecutor:
    """Ray's Job Submission REST API (module docstring); ``ref`` is the submission id."""

    def __init__(
        self,
        address: str,
        python: str,
        *,
        timeout_s: float,
        num_cpus: float,
        env: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.client = httpx.Client(base_url=address.rstrip("/"), timeout=timeout_s, transport=transport)
        self.python, self.num_cpus, self.env = python, num_cpus, env or {}

    def _call(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        try:
            return self.client.request(method, path, json=json)
        except httpx.HTTPError as e:
            raise ExecutorError(f"Ray dashboard {self.client.base_url} unreachable: {type(e).__name__}: {e}") from e

    def submit(self, job_id: str) -> str:
        submission = f"{SUBMISSION_PREFIX}{job_id}"
        body = {
            "entrypoint": " ".join(job_command(self.python, job_id)),
            "submission_id": submission,
            "entrypoint_num_cpus": self.num_cpus,
            "metadata": {"portfolio_os_job": job_id},
            "runtime_env": {"env_vars": self.env} if self.env else None,
        }
        response = self._call("POST", "/api/jobs/", {k: v for k, v in body.items() if v is not None})
        if response.status_code != 200:
            raise ExecutorError(f"Ray refused the job: HTTP {response.status_code} {response.text[:300]}")
        return submission

    def publish_catalogue(self) -> str:
        """Submit ``python -m training.backtest_job catalogue`` to the cluster; returns its submission id.

        Raises:
            ExecutorError: Ray unreachable or refusing (the dispatcher asks again on its next pass).
        """
        submission = f"{CATALOGUE_PREFIX}{uuid.uuid4().hex[:12]}"
        body = {
            "entrypoint": f"{self.python} -m {JOB_MODULE} catalogue",
            "submission_id": submission,
            "entrypoint_num_cpus": self.num_cpus,
            "metadata": {"portfolio_os_job": "catalogue"},
            "runtime_env": {"env_vars": self.env} if self.env else None,
        }
        response = self._call("POST", "/api/jobs/", {k: v for k, v in body.items() if v is not None})
        if response.status_code != 200:
            raise ExecutorError(f"Ray refused the catalogue job: HTTP {response.status_code} {response.text[:300]}")
        return submission

    def alive(self, ref: str) -> Liveness:
        response = self._call("GET", f"/api/jobs/{ref}")
        if response.status_code == 404:
            return Liveness(False, "Ray does not know the job (the cluster was replaced?)")
        if response.status_code != 200:
            raise ExecutorError(f"Ray job status: HTTP {response.status_code}")
        info = response.json()
        status = str(info.get("status", ""))
        if status in RAY_RUNNING:
            return Liveness(True, status.lower())
        return Liveness(False, f"Ray job {status}: {info.get('message') or ''}".strip())

    def stop(self, ref: str) -> None:
        response = self._call("POST", f"/api/jobs/{ref}/stop")
        if response.status_code not in (200, 404):
            raise ExecutorError(f"Ray refused to stop {ref}: HTTP {response.status_code}")

    def close(self) -> None:
        self.client.close()


def make_executor(
    kind: str, *, python: str, data_dir: str, database_url: str, ray_address: str | None, cpus: int, timeout_s: float
) -> Executor:
    """The executor the settings name (``local``, ``ray`` or ``off``)."""
    if kind == "local":
        log_dir = Path(data_dir) / "backtests" / "logs"
        return LocalExecutor(python, data_dir, database_url, num_cpus=cpus, log_dir=log_dir)
    if kind == "ray":
        if not ray_address:
            raise ValueError("the ray executor needs a Ray dashboard address")
        # The job reads the database URL (a secret on a cluster) from the Ray pods' own environment.
        return RayJobsExecutor(ray_address, python, timeout_s=timeout_s, num_cpus=cpus)
    return OffExecutor()
