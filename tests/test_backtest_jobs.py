"""Backtest jobs at the gateway: admission, bounds, limits, cancel, the dispatcher and restarts (controlled clock).

The executor is a fake here (tests/backtest_fixtures.py) except for the local executor's restart
check, which looks up a real (dead) pid; tests/test_backtest_jobs_ray.py runs a real job on a local
Ray, tests/test_backtest_jobs_ray_cluster.py on a real Ray head through its Job Submission API. The
Ray executor's tests here answer with a scripted dashboard what a live one cannot be made to say on
cue (503 while the head starts, FAILED with the entry point's message, an id Ray does not know).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.backtest_executors import LocalExecutor, RayJobsExecutor
from api.backtest_schemas import BacktestRequest
from api.client import GatewayClientError, PortfolioOSClient
from api.db import audit_log
from tests.backtest_fixtures import FakeClock, FakeExecutor, body, gateway, key, publish, settings
from tests.gateway_fixtures.fixtures import assert_error_body


def _wire(client: TestClient, executor: object, clock: FakeClock) -> None:
    """Swap the app's executor and clock for the test's own."""
    jobs = client.app.state.services.backtests  # type: ignore[attr-defined]
    jobs.executor = executor
    jobs.store.clock = clock


@contextmanager
def _jobs_gateway(
    tmp_path: Path, executor: object, clock: FakeClock | None = None, **overrides: Any
) -> Iterator[TestClient]:
    """A gateway (``settings`` with ``overrides``) with the data catalogue published and the test's
    executor and clock wired in."""
    with gateway(settings(tmp_path, **overrides)) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        _wire(client, executor, clock or FakeClock())
        yield client


def _submit(client: TestClient, headers: dict[str, str], **overrides: object) -> str:
    response = client.post("/v1/backtests", json=body(**overrides), headers=headers)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/backtests/{response.json()['id']}"
    return str(response.json()["id"])


def _state(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, object]:
    response = client.get(f"/v1/backtests/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_job_is_queued_then_started_then_failed_when_its_process_ends_without_a_result(tmp_path: Path) -> None:
    clock, executor = FakeClock(), FakeExecutor()
    with _jobs_gateway(tmp_path, executor, clock, max_running=1) as client:
        h = key(client)
        first = _submit(client, h)
        clock.advance(1)  # queued jobs start oldest first
        second = _submit(client, h)
        job = _state(client, h, first)
        assert job["state"] == "queued" and job["progress"] == 0.0 and job["result"] is None
        assert job["created_at"].startswith("2026-01-05T09:00")  # type: ignore[union-attr]
        jobs = client.app.state.services.backtests  # type: ignore[attr-defined]
        jobs.tick()
        assert _state(client, h, first)["state"] == "running"
        assert _state(client, h, second)["state"] == "queued"  # max_running=1
        assert list(executor.running) == [f"fake:{first}"]
        executor.running[f"fake:{first}"] = False  # the process died without writing a result
        clock.advance(5)
        jobs.tick()
        failed = _state(client, h, first)
        assert failed["state"] == "failed" and "the fake process ended" in str(failed["error"])
        assert _state(client, h, second)["state"] == "running"  # the freed slot goes to the next
        metrics = client.get("/metrics").text
        assert re.search(r'portfolio_os_gateway_backtest_jobs\{state="failed"\} 1\.0', metrics)
        assert re.search(r'portfolio_os_gateway_backtest_jobs\{state="running"\} 1\.0', metrics)
        assert 'portfolio_os_gateway_backtest_submissions_total{outcome="accepted"} 2.0' in metrics


def test_queued_jobs_survive_a_restart_and_a_gone_process_fails_with_its_reason(tmp_path: Path) -> None:
    config = settings(tmp_path, max_running=1)
    with gateway(config) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        clock = FakeClock()
        _wire(client, FakeExecutor(), clock)
        h = key(client)
        running = _submit(client, h)
        clock.advance(1)
        queued = _submit(client, h)
        client.app.state.services.backtests.tick()  # type: ignore[attr-defined]
    # A local process that has since exited: its pid is no longer this job's.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with gateway(config) as client:
        jobs = client.app.state.services.backtests  # type: ignore[attr-defined]
        store = jobs.store
        store.started(running, f"local:{dead.pid}:{running}")  # as the local executor recorded it
        restarted = FakeExecutor()
        local = LocalExecutor(sys.executable, str(tmp_path), "sqlite://", num_cpus=1, log_dir=tmp_path)

        class AfterRestart:
            """Local references are checked as after a real restart; new jobs go to the fake."""

            def submit(self, job_id: str) -> str:
                return restarted.submit(job_id)

            def alive(self, ref: str):  # type: ignore[no-untyped-def]
                return local.alive(ref) if ref.startswith("local:") else restarted.alive(ref)

            def stop(self, ref: str) -> None:
                restarted.stop(ref)

        jobs.executor = AfterRestart()
        jobs.tick()
        gone = _state(client, h, running)
        assert gone["state"] == "failed" and "its process is gone" in str(gone["error"])
        assert _state(client, h, queued)["state"] == "running" and f"fake:{queued}" in restarted.running


def test_the_date_range_and_universe_are_checked_against_the_published_data(tmp_path: Path) -> None:
    with gateway(settings(tmp_path)) as client:
        h = key(client)
        unpublished = client.post("/v1/backtests", json=body(), headers=h)
        assert "catalogue" in assert_error_body(unpublished, 503, "backtest_data_unavailable")["message"]
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        early = assert_error_body(client.post("/v1/backtests", json=body(start="2021-06-01"), headers=h), 422)
        assert "2021-06-01" in early["message"] and "first session 2022-01-03" in early["message"]
        late = assert_error_body(client.post("/v1/backtests", json=body(end="2024-02-01"), headers=h), 422)
        assert "last session 2023-12-29" in late["message"] and "upper bound" in late["message"]
        unknown = assert_error_body(
            client.post("/v1/backtests", json=body(universe=["AAA", "ZZZ", "YYY"]), headers=h), 422
        )
        assert "universe" in unknown["message"] and "YYY, ZZZ" in unknown["message"]
        backwards = assert_error_body(client.post("/v1/backtests", json=body(end="2023-01-03"), headers=h), 422)
        assert "must be after start" in backwards["message"]
        too_many = assert_error_body(client.post("/v1/backtests", json=body(params={"k": 9}), headers=h), 422)
        assert "params.k=9" in too_many["message"]
        costs = body(costs={"half_spread_bps": [20, 10, 5]})
        assert (
            "half_spread_bps" in assert_error_body(client.post("/v1/backtests", json=costs, headers=h), 422)["message"]
        )
        unknown_field = assert_error_body(client.post("/v1/backtests", json=body(leverage=2), headers=h), 422)
        assert "leverage" in unknown_field["message"]


def test_the_tenant_limit_answers_429_with_retry_after_and_a_cancel_frees_a_slot(tmp_path: Path) -> None:
    with _jobs_gateway(tmp_path, FakeExecutor(), max_jobs_per_tenant=2, retry_after_s=17) as client:
        h, other = key(client), key(client, tenant="globex")
        first = _submit(client, h)
        _submit(client, h)
        limited = client.post("/v1/backtests", json=body(), headers=h)
        assert "limit" in assert_error_body(limited, 429, "backtest_limit")["message"]
        assert limited.headers["Retry-After"] == "17"
        _submit(client, other)  # another tenant's limit is its own
        cancelled = client.delete(f"/v1/backtests/{first}", headers=h)
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["error"] == "cancelled by the client"
        _submit(client, h)
        again = client.delete(f"/v1/backtests/{first}", headers=h)
        assert "already ended (cancelled)" in assert_error_body(again, 409, "conflict")["message"]


def test_unknown_ids_other_tenants_scopes_and_early_reports(tmp_path: Path) -> None:
    with gateway(settings(tmp_path)) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        h = key(client)
        job = _submit(client, h)
        assert_error_body(client.get(f"/v1/backtests/{'0' * 32}", headers=h), 404, "not_found")
        assert_error_body(client.get(f"/v1/backtests/{job}", headers=key(client, tenant="globex")), 404)
        assert_error_body(client.delete(f"/v1/backtests/{'f' * 32}", headers=h), 404)
        assert_error_body(client.get("/v1/backtests/not-an-id", headers=h), 422)
        report = client.get(f"/v1/backtests/{job}/report", headers=h)
        assert "it is queued" in assert_error_body(report, 409, "conflict")["message"]
        reader = key(client, scopes=("backtests:read",))
        assert_error_body(client.post("/v1/backtests", json=body(), headers=reader), 403, "forbidden")
        assert client.get(f"/v1/backtests/{job}", headers=reader).status_code == 200  # the same tenant reads it
        options = client.options(f"/v1/backtests/{job}", headers=h)
        assert options.status_code == 405 and options.headers["Allow"] == "DELETE, GET"
        assert _state(client, h, job)["created_at"].endswith(("Z", "+00:00"))  # type: ignore[union-attr]
        data = client.get("/v1/backtest-data", headers=h).json()
        assert data["first_session"] == "2022-01-03" and data["tickers"][0] == "AAA"


def test_a_cancel_of_a_running_job_stops_its_process(tmp_path: Path) -> None:
    executor = FakeExecutor()
    with _jobs_gateway(tmp_path, executor) as client:
        h = key(client)
        job = _submit(client, h)
        client.app.state.services.backtests.tick()  # type: ignore[attr-defined]
        assert client.delete(f"/v1/backtests/{job}", headers=h).json()["state"] == "cancelled"
        assert executor.stopped == [f"fake:{job}"]
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:  # the app has closed: its audit writer has committed every row
        rows = conn.execute(select(audit_log.c.route, audit_log.c.answer).where(audit_log.c.tenant == "acme")).all()
    assert [(route, answer["state"]) for route, answer in rows] == [
        ("/v1/backtests", "queued"),
        ("/v1/backtests", "cancelled"),
    ]


def test_a_refused_submission_goes_back_to_the_queue_with_the_reason(tmp_path: Path) -> None:
    executor = FakeExecutor(refuse="Ray dashboard unreachable")
    with _jobs_gateway(tmp_path, executor) as client:
        h = key(client)
        job = _submit(client, h)
        client.app.state.services.backtests.tick()  # type: ignore[attr-defined]
        waiting = _state(client, h, job)
        assert waiting["state"] == "queued" and waiting["message"] == "waiting: Ray dashboard unreachable"
        executor.refuse = None
        client.app.state.services.backtests.tick()  # type: ignore[attr-defined]
        assert _state(client, h, job)["state"] == "running"


def test_the_ray_executor_speaks_the_job_submission_api() -> None:
    seen: list[tuple[str, str, bytes]] = []
    statuses = {"backtest-j1": "RUNNING", "backtest-j2": "FAILED"}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        if request.method == "POST" and request.url.path == "/api/jobs/":
            return httpx.Response(200, json={"submission_id": "backtest-j1", "job_id": "raysubmit_1"})
        if request.method == "GET":
            sid = request.url.path.rsplit("/", 1)[-1]
            if sid not in statuses:
                return httpx.Response(404, text="not found")
            return httpx.Response(200, json={"status": statuses[sid], "message": "entrypoint exited 2"})
        return httpx.Response(200, json={"stopped": True})

    ray = RayJobsExecutor(
        "http://ray-head:8265", "python", timeout_s=1, num_cpus=1, transport=httpx.MockTransport(answer)
    )
    assert ray.submit("j1") == "backtest-j1"
    method, path, content = seen[0]
    assert (method, path) == ("POST", "/api/jobs/")
    sent = json.loads(content)
    assert sent["entrypoint"] == "python -m training.backtest_job run --job-id j1"
    assert sent["submission_id"] == "backtest-j1" and sent["entrypoint_num_cpus"] == 1
    assert ray.alive("backtest-j1").alive
    dead = ray.alive("backtest-j2")
    assert not dead.alive and "FAILED" in dead.detail and "exited 2" in dead.detail
    assert not ray.alive("backtest-j3").alive
    ray.stop("backtest-j1")
    assert seen[-1][:2] == ("POST", "/api/jobs/backtest-j1/stop")


def test_the_ray_executor_needs_an_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ray_address"):
        settings(tmp_path, executor="ray")


def test_the_typed_client_submits_reads_and_cancels_once_per_idempotency_key(tmp_path: Path) -> None:
    with gateway(settings(tmp_path)) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        token = key(client)["Authorization"].removeprefix("Bearer ")

        def relay(request: httpx.Request) -> httpx.Response:  # the typed client's calls, answered by the app
            answer = client.request(request.method, request.url.path, headers=request.headers, content=request.content)
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

        typed = PortfolioOSClient(
            "http://testserver", token, transport=httpx.MockTransport(relay), sleep=lambda _s: None
        )
        request = BacktestRequest.model_validate(body())
        job = typed.submit_backtest(request, idempotency_key="order-1")
        again = typed.submit_backtest(request, idempotency_key="order-1")  # a retry: the stored answer
        assert again.id == job.id and job.state == "queued"
        assert typed.backtest(job.id).spec.universe == list(body()["universe"])
        assert typed.backtest_data().last_session.isoformat() == "2023-12-29"
        with pytest.raises(GatewayClientError) as early:
            typed.backtest_report(job.id)
        assert early.value.status == 409
        assert typed.cancel_backtest(job.id).state == "cancelled"


def test_a_local_job_still_running_after_a_restart_is_found_again(tmp_path: Path) -> None:
    job_id = "a" * 32
    # A stand-in process whose command line names the job module and the job, as the real one does.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(120)", "training.backtest_job", job_id]
    )
    try:
        _wait_until_exec(stand_in.pid, job_id)
        after_restart = LocalExecutor(sys.executable, str(tmp_path), "sqlite://", num_cpus=1, log_dir=tmp_path)
        found = after_restart.alive(f"local:{stand_in.pid}:{job_id}")
        assert found.alive and "found again" in found.detail
        assert not after_restart.alive(f"local:{stand_in.pid}:{'b' * 32}").alive  # the pid runs another job
    finally:
        stand_in.kill()
        stand_in.wait()


def _wait_until_exec(pid: int, marker: str) -> None:
    """Until the forked child has exec'd (its command line names ``marker``): on a loaded machine the
    fork can show the parent's command line for a while. A precondition, not a timing assertion."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    for _ in range(6000):  # at most about 60 s
        if marker.encode() in cmdline.read_bytes():
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never showed {marker!r} in its command line")


def test_on_ray_the_gateway_publishes_the_data_catalogue_as_a_ray_job_and_refreshes_it(tmp_path: Path) -> None:
    posted: list[dict[str, object]] = []
    up = {"ray": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if not up["ray"]:
            return httpx.Response(503, text="the head is starting")
        posted.append(json.loads(request.content))
        return httpx.Response(200, json={"submission_id": posted[-1]["submission_id"]})

    clock = FakeClock()
    ray = RayJobsExecutor(
        "http://ray-head:8265", "python", timeout_s=1, num_cpus=1, transport=httpx.MockTransport(answer)
    )
    with gateway(settings(tmp_path)) as client:
        _wire(client, ray, clock)
        jobs = client.app.state.services.backtests  # type: ignore[attr-defined]
        jobs.tick()  # Ray not up yet: asked again on the next pass
        assert posted == []
        up["ray"] = True
        jobs.tick()
        (catalogue,) = posted
        assert catalogue["entrypoint"] == "python -m training.backtest_job catalogue"
        assert str(catalogue["submission_id"]).startswith("backtest-catalogue-")
        clock.advance(3600)
        jobs.tick()
        assert len(posted) == 1  # not before the refresh interval
        clock.advance(5 * 3600)
        jobs.tick()
        assert len(posted) == 2 and posted[1]["entrypoint"] == catalogue["entrypoint"]


def test_the_allocator_strategy_is_queued_like_any_other(tmp_path: Path) -> None:
    with gateway(settings(tmp_path)) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        h = key(client)
        job = _submit(client, h, strategy="allocator", params={})
        assert _state(client, h, job)["spec"]["strategy"] == "allocator"  # type: ignore[index]
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "allocator" in schema["BacktestRequest"]["properties"]["strategy"]["enum"]
