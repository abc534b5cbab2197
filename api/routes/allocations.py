"""``POST /v1/allocations``: weights, amounts and expected volatility; audited."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import AllocationsWriter, ServicesDep
from api.fallback import allocate, portfolio_volatility
from api.handlers import ERROR_RESPONSES
from api.schemas import AllocationPublic, AllocationRequest, DegradedReason, WeightPublic
from api.tickers import check_tickers

router = APIRouter(prefix="/v1", tags=["allocations"])
ROUTE = "/v1/allocations"


def _reasons(method: str, notes: list[str], long_only: bool, allocator_configured: bool) -> list[DegradedReason]:
    why = (
        "its v2 contract is not final, so the gateway does not call it yet" if allocator_configured else "not deployed"
    )
    reasons = [
        DegradedReason(
            model="allocator",
            code="not_deployed",
            message=f"the RL allocator is {why}; used the gateway's {method} fallback",
        )
    ]
    reasons += [DegradedReason(model="allocator", code="fallback_note", message=n) for n in notes]
    if not long_only:
        reasons.append(
            DegradedReason(
                model="allocator", code="long_only", message="the fallback is long-only; long_only=false ignored"
            )
        )
    return reasons


@router.post("/allocations", response_model=AllocationPublic, responses=ERROR_RESPONSES)
async def create_allocation(
    request: Request, body: AllocationRequest, services: ServicesDep, principal: AllocationsWriter
) -> AllocationPublic:
    """Portfolio weights for a universe (fallback allocator until the RL allocator is deployed)."""
    settings = services.settings
    check_tickers(body.universe, settings.max_tickers)
    snapshot = await run_in_threadpool(services.features.read, body.universe, ("technical_features",))
    vols = snapshot.values["vol_63d"]
    result = allocate(vols, body.constraints.max_weight, body.risk_tolerance)
    rho = settings.assumed_correlation
    services.metrics.fallbacks.labels(model="allocator", reason="not_deployed").inc()
    services.metrics.degraded.labels(route=ROUTE).inc()
    invested = sum(result.weights)
    answer = AllocationPublic(
        allocations=[
            WeightPublic(ticker=t, weight=w, amount=w * body.capital, volatility=v)
            for t, w, v in zip(body.universe, result.weights, vols, strict=True)
        ],
        cash=max(0.0, (1.0 - invested) * body.capital),
        expected_volatility=portfolio_volatility(result.weights, vols, rho),
        volatility_assumption=(
            f"annualised vol_63d per asset from the online store; constant pairwise correlation {rho:.2f}; "
            "cash has zero volatility"
        ),
        method=result.method,
        model_versions={},
        as_of=snapshot.as_of("technical_features"),
        degraded=True,
        reasons=_reasons(result.method, result.notes, body.constraints.long_only, "allocator" in settings.model_urls),
        request_id=request.state.request_id,
    )
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=answer.request_id,
        request=body.model_dump(mode="json"),
        feature_snapshot_hash=snapshot.digest(),
        model_versions=answer.model_versions,
        answer=answer.model_dump(mode="json"),
    )
    return answer
