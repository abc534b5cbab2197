"""One backtest job end to end through the gateway: POST /v1/backtests -> 202 -> ... -> succeeded.

    python -m bench.backtest_job          # the demo data under ./data (run `make demo` or the ingest stage)
    python -m bench.backtest_job --data-dir /tmp/demo --strategy hrp --search-trials 5

The gateway app runs in this process (ASGI, no socket) with the embedded default's executor: the
job is a real ``python -m training.backtest_job run`` process on a local Ray (127.0.0.1). The
figure is the wall time from the submission's answer to the first GET that sees ``succeeded``
(polled every ``--poll`` seconds, so it is late by at most that), with the time to ``running`` and
the job's own phases from its log. Data: whatever the offline store holds (the demo's is REAL
data, the bundled S&P 500 sample); the catalogue is published first.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import create_key
from api.settings import GatewaySettings
from bench import common
from training.backtest_job import publish_catalogue

NAME = "backtest_job"
PEPPER = "bench-pepper-0123456789abcdef"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_job", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PORTFOLIO_OS_DATA_DIR", "data")))
    parser.add_argument("--strategy", default="topk", help="topk, topk_dropout, min_variance, hrp, equal_weight")
    parser.add_argument("--years", type=float, default=3.0, help="backtest window: the data's last N years")
    parser.add_argument("--search-trials", type=int, default=0, help="Optuna trials first (0: no search)")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status reads")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args()


def _wait(client: TestClient, headers: dict[str, str], job_id: str, args: argparse.Namespace) -> dict[str, Any]:
    began, running_at = time.perf_counter(), None
    seen: list[str] = []
    while time.perf_counter() - began < args.timeout:
        job = client.get(f"/v1/backtests/{job_id}", headers=headers).json()
        if job["state"] == "running" and running_at is None:
            running_at = time.perf_counter() - began
        if job["message"] and (not seen or seen[-1] != job["message"]):
            seen.append(job["message"])
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return {"job": job, "done_s": time.perf_counter() - began, "running_s": running_at, "messages": seen}
        time.sleep(args.poll)
    raise SystemExit(f"job {job_id} did not finish within {args.timeout} s")


def _phases(log_text: str, job: dict[str, Any]) -> dict[str, float]:
    """The job's own phases: process start to its Ray session, Ray session to the result written.

    From the job's log line ``runs on Ray`` (local time, which is UTC on the machines measured) and
    the row's ``started_at`` (claimed by the gateway) and ``finished_at`` (written by the job).
    """
    match = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) .*runs on Ray", log_text, re.MULTILINE)
    if not match or not job.get("started_at") or not job.get("finished_at"):
        return {}
    on_ray = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    started = datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    return {
        "started_to_ray_session": (on_ray - started).total_seconds(),
        "ray_session_to_result": (finished - on_ray).total_seconds(),
    }


def main() -> None:
    args = _args()
    data_dir = args.data_dir.resolve()
    if not (data_dir / "offline.duckdb").exists():
        raise SystemExit(f"no offline store under {data_dir}: run `python -m training ingest` (or make demo) first")
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as scratch:
        settings = GatewaySettings(
            data_dir=str(data_dir),
            database_url=f"sqlite:///{Path(scratch) / 'gateway.db'}",
            api_key_pepper=PEPPER,
            scored={"enabled": False},
            gc_freeze=False,
            backtests={"executor": "local", "poll_seconds": args.poll, "max_jobs_per_tenant": 1},
        )
        with common.stdout_to_stderr(), TestClient(create_app(settings)) as client:
            run = _submit_and_wait(client, settings, data_dir, args)
    common.emit(NAME, _document(run, args), args.results_dir)


@dataclass(frozen=True)
class JobRun:
    """One job as the benchmark saw it: what it asked, how fast the gateway answered, what it waited for."""

    catalogue: dict[str, Any]
    spec: dict[str, Any]
    submit_s: float
    waited: dict[str, Any]  # what _wait saw
    log_text: str


def _submit_and_wait(client: TestClient, settings: GatewaySettings, data_dir: Path, args: argparse.Namespace) -> JobRun:
    """Publish the catalogue, submit one job over the data's last ``--years`` and wait for its end."""
    services = client.app.state.services  # type: ignore[attr-defined]
    catalogue = publish_catalogue(services.engine, data_dir)
    key = create_key(services.engine, "bench", ("backtests:write", "backtests:read"), "1000/minute", settings.pepper)
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    end = catalogue["last_session"]
    start = max(catalogue["first_session"], end - timedelta(days=round(365.25 * args.years)))
    spec: dict[str, Any] = {
        "strategy": args.strategy,
        "universe": catalogue["tickers"],
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    if args.search_trials:
        spec["search"] = {"trials": args.search_trials}
    common.log(f"submitting {args.strategy} over {len(catalogue['tickers'])} tickers, {start}..{end}")
    began = time.perf_counter()
    submitted = client.post("/v1/backtests", json=spec, headers=headers)
    submit_s = time.perf_counter() - began
    if submitted.status_code != 202:
        raise SystemExit(f"submission refused: {submitted.status_code} {submitted.text}")
    job_id = submitted.json()["id"]
    waited = _wait(client, headers, job_id, args)
    log = data_dir / "backtests" / "logs" / f"{job_id}.log"
    log_text = log.read_text() if log.exists() else ""
    return JobRun(catalogue, spec, submit_s, waited, log_text)


def _document(run: JobRun, args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's JSON document: the job, its timings and the machine."""
    waited, spec, catalogue = run.waited, run.spec, run.catalogue
    job = waited["job"]
    result = job["result"] or {}
    return {
        "benchmark": NAME,
        "description": "one backtest job through the gateway: submit (202) to succeeded, on a local Ray",
        "data": catalogue["label"],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_5m_15m": list(os.getloadavg()),
        "job": {
            "strategy": args.strategy,
            "tickers": len(catalogue["tickers"]),
            "window": [spec["start"], spec["end"]],
            "search_trials": args.search_trials,
            "state": job["state"],
            "error": job["error"],
            "sessions": result.get("sessions"),
            "rebalances": (result.get("metrics") or {}).get("n_rebalances"),
            "cost_model": result.get("cost_model"),
        },
        "seconds": {
            "submit_answer": common.rounded(run.submit_s),
            "submit_to_running": common.rounded(waited["running_s"] or float("nan")),
            "submit_to_done": common.rounded(waited["done_s"]),
            **{k: common.rounded(v) for k, v in _phases(run.log_text, job).items()},
        },
        "poll_s": args.poll,
        "messages": waited["messages"],
        "environment": common.environment(),
    }


if __name__ == "__main__":
    main()
