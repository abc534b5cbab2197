"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.db import ping
from api.deps import ServicesDep
from api.errors import FeatureStoreUnavailableError, GatewayError
from api.handlers import COMMON_RESPONSES, error_responses
from api.schemas import HealthPublic

router = APIRouter(tags=["health"])


class NotReadyError(GatewayError):
    """A dependency the gateway cannot answer without is down."""

    status_code = 503
    code = "not_ready"


@router.get("/healthz", response_model=HealthPublic, responses=COMMON_RESPONSES)
async def healthz() -> HealthPublic:
    """Liveness: the process answers."""
    return HealthPublic(status="ok")


@router.get("/readyz", response_model=HealthPublic, responses={**COMMON_RESPONSES, **error_responses(503)})
async def readyz(services: ServicesDep) -> HealthPublic:
    """Readiness: the online store is readable and the DB reachable (model servers are optional)."""
    failures = []
    try:
        await run_in_threadpool(services.features.check)
    except FeatureStoreUnavailableError as e:
        failures.append(f"feature_store: {e.message}")
    try:
        await run_in_threadpool(ping, services.engine)
    except SQLAlchemyError as e:
        failures.append(f"database: {type(e).__name__}")
    if failures:
        raise NotReadyError("not ready: " + "; ".join(failures))
    return HealthPublic(status="ok", checks={"feature_store": "ok", "database": "ok"})


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
