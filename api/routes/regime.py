"""``GET /v1/regime``: the market regime now, its inputs and its history over a date range; audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request

from api.deps import RegimeReader, ServicesDep
from api.handlers import ERROR_RESPONSES
from api.market_schemas import RegimePublic
from api.regime import regime_answer
from api.snapshot_dep import SnapshotDep

router = APIRouter(prefix="/v1", tags=["analytics"])
ROUTE: Final = "/v1/regime"


@router.get("/regime", response_model=RegimePublic, responses=ERROR_RESPONSES)
async def get_regime(
    *,
    request: Request,
    services: ServicesDep,
    snapshots: SnapshotDep,
    principal: RegimeReader,
    start: Annotated[
        dt.date | None,
        Query(
            alias="from",
            description="First date of the history (default: a year before `to`); not before `first_session` "
            "(a 422 names it).",
        ),
    ] = None,
    end: Annotated[
        dt.date | None,
        Query(
            alias="to", description="Last date of the history (default and bound: the last session; a 422 names it)."
        ),
    ] = None,
) -> RegimePublic:
    """The market regime (trend x volatility of the benchmark) now and over a date range."""
    read = await snapshots.regime()
    answer = regime_answer(read.history, start, end, request.state.request_id)
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=answer.request_id,
        request={"from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
        feature_snapshot_hash=read.digest,
        model_versions={},
        # The history is what the view holds (digested above); the audit keeps the state answered.
        answer={"benchmark": answer.benchmark, "current": answer.current.model_dump(mode="json")},
    )
    return answer
