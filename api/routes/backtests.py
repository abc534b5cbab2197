"""Backtest jobs: ``POST /v1/backtests`` (202), ``GET``/``DELETE /v1/backtests/{id}``, ``GET .../report``, data range.

Submissions and cancels are audited; the job itself runs on Ray (api/backtest_executors.py) and
writes its progress and result into the same database the gateway answers from.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.audit import canonical_hash
from api.backtest_allocator import check_allocator, registered_champion
from api.backtest_dispatch import BacktestDispatcher
from api.backtest_schemas import BacktestDataPublic, BacktestJobPublic, BacktestRequest, job_public, utc
from api.backtests import JobConflictError, accepts_gzip, report_body
from api.deps import BacktestsReader, BacktestsWriter, InferenceClientDep, ServicesDep
from api.handlers import ERROR_RESPONSES
from api.idempotency_http import IDEMPOTENCY_RESPONSES, BacktestsIdempotency
from api.schemas import ErrorPublic
from api.tenants import Principal
from feature_repo.backtests import SUCCEEDED

router = APIRouter(prefix="/v1", tags=["backtests"])
Responses = dict[int | str, dict[str, Any]]
ROUTE: Final = "/v1/backtests"
JobId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="The job id returned by POST /v1/backtests.")]
_NOT_FOUND: Final[Responses] = {
    404: {"model": ErrorPublic, "description": "Not found: no backtest job with that id for this key"}
}
_CONFLICT: Final[Responses] = {
    409: {"model": ErrorPublic, "description": "Conflict: the job's state refuses this (see message)"}
}
_NO_DATA: Final[Responses] = {
    503: {
        "model": ErrorPublic,
        "description": "Unavailable: the database is down, or no backtest data has been published yet",
    }
}
_LIMITED: Final[Responses] = {
    429: {
        "model": ErrorPublic,
        "description": "Rate limited: the key's quota is spent, or the tenant already has its limit of queued and "
        "running backtest jobs; retry after Retry-After seconds",
    }
}
_SUBMIT_RESPONSES: Final[Responses] = {
    **ERROR_RESPONSES,
    409: IDEMPOTENCY_RESPONSES[409],
    **_LIMITED,
    **_NO_DATA,
    422: {
        "model": ErrorPublic,
        "description": "Validation error: the body does not match the schema, the date range lies outside the "
        "published data (the bound is named), the universe names tickers the data lack, or (strategy allocator, "
        "when the gateway has an MLflow server to ask) no allocator champion is registered or it does not cover "
        "the universe",
    },
}
_REPORT_OK: Final[Responses] = {
    200: {
        "content": {"text/html": {"schema": {"type": "string"}}},
        "description": "The tear sheet; sent gzip-encoded when the request's Accept-Encoding takes gzip.",
        "headers": {
            "Content-Encoding": {
                "description": "gzip when the request accepts it (the HTML is the same once decoded)",
                "schema": {"type": "string", "enum": ["gzip"]},
            }
        },
    }
}


def _json_errors(responses: Responses) -> Responses:
    """Error answers declared as JSON on a route whose own media type is HTML (FastAPI would say text/html)."""
    ref = {"$ref": "#/components/schemas/ErrorPublic"}
    return {
        status: {"description": spec["description"], "content": {"application/json": {"schema": ref}}}
        for status, spec in responses.items()
    }


def _jobs(services: ServicesDep) -> BacktestDispatcher:
    jobs: BacktestDispatcher = services.backtests
    return jobs


async def _audit(services: ServicesDep, principal: Principal, request: Request, body: Any, answer: Any) -> None:
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=request.state.request_id,
        request=body,
        feature_snapshot_hash=canonical_hash(answer.get("spec", {})),
        model_versions={},
        answer=answer,
    )


@router.post("/backtests", status_code=202, response_model=BacktestJobPublic, responses=_SUBMIT_RESPONSES)
async def submit_backtest(
    request: Request,
    response: Response,
    body: BacktestRequest,
    *,
    services: ServicesDep,
    client: InferenceClientDep,
    principal: BacktestsWriter,
    _idempotency: BacktestsIdempotency,
) -> BacktestJobPublic:
    """Queue a backtest job; it runs on Ray and its state is at the returned id."""
    jobs = _jobs(services)
    mlflow_url = services.settings.mlflow_url
    try:
        if body.strategy == "allocator" and mlflow_url:  # refused now when the registry can tell
            check_allocator(body, await registered_champion(client, mlflow_url), mlflow_url)
        row = await run_in_threadpool(jobs.store.submit, principal.tenant, body)
    except Exception as e:
        services.metrics.backtest_submissions.labels(outcome=getattr(e, "code", "error")).inc()
        raise
    services.metrics.backtest_submissions.labels(outcome="accepted").inc()
    answer = job_public(row, request.state.request_id)
    response.headers["Location"] = f"{ROUTE}/{answer.id}"
    await _audit(services, principal, request, body.model_dump(mode="json"), answer.model_dump(mode="json"))
    return answer


@router.get("/backtest-data", response_model=BacktestDataPublic, responses={**ERROR_RESPONSES, **_NO_DATA})
async def backtest_data(request: Request, services: ServicesDep, _principal: BacktestsReader) -> BacktestDataPublic:
    """The sessions and tickers a backtest may cover (published by the training side)."""
    catalogue = await run_in_threadpool(_jobs(services).store.catalogue)
    return BacktestDataPublic(
        first_session=catalogue.first_session,
        last_session=catalogue.last_session,
        tickers=sorted(catalogue.tickers),
        label=catalogue.label,
        updated_at=utc(catalogue.updated_at) or catalogue.updated_at,
        request_id=request.state.request_id,
    )


@router.get("/backtests/{job_id}", response_model=BacktestJobPublic, responses={**ERROR_RESPONSES, **_NOT_FOUND})
async def get_backtest(
    request: Request, job_id: JobId, services: ServicesDep, principal: BacktestsReader
) -> BacktestJobPublic:
    """A job's state, progress and, once it succeeded, its results."""
    row = await run_in_threadpool(_jobs(services).store.get, principal.tenant, job_id)
    return job_public(row, request.state.request_id)


@router.get(
    "/backtests/{job_id}/report",
    response_class=HTMLResponse,
    responses={**_REPORT_OK, **_json_errors({**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT})},
)
async def backtest_report(
    request: Request, job_id: JobId, services: ServicesDep, principal: BacktestsReader
) -> HTMLResponse:
    """The job's HTML tear sheet (409 until it has succeeded); gzip-encoded for clients that accept it."""
    row = await run_in_threadpool(_jobs(services).store.get, principal.tenant, job_id, with_report=True)
    if row.state != SUCCEEDED or not row.report:
        raise JobConflictError(f"backtest job {job_id} has no report: it is {row.state}")
    gzip_ok = accepts_gzip(request.headers.get("accept-encoding"))
    body, headers = await run_in_threadpool(report_body, row.report, gzip_ok)
    return HTMLResponse(body, headers=headers)


@router.delete(
    "/backtests/{job_id}", response_model=BacktestJobPublic, responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT}
)
async def cancel_backtest(
    request: Request, job_id: JobId, services: ServicesDep, principal: BacktestsWriter
) -> BacktestJobPublic:
    """Cancel a queued or running job (409 once it has ended)."""
    jobs = _jobs(services)
    row, ref = await run_in_threadpool(jobs.store.cancel, principal.tenant, job_id)
    await run_in_threadpool(jobs.stop, ref)
    answer = job_public(row, request.state.request_id)
    await _audit(services, principal, request, {"cancel": job_id}, answer.model_dump(mode="json"))
    return answer
