"""``POST /v1/allocations``: weights from the allocator model or the fallback, amounts, volatility; audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, Request

from api.allocation_inputs import AllocationInputs, allocation_inputs
from api.allocator import OUTSIDE_UNIVERSE, ModelAllocation, model_allocation
from api.deps import AllocationsWriter, InferenceClientDep, ServicesDep
from api.errors import ModelCallError
from api.fallback import allocate, portfolio_volatility
from api.features import FeatureSnapshot
from api.handlers import TICKER_ERROR_RESPONSES
from api.idempotency_http import IDEMPOTENCY_RESPONSES, AllocationsIdempotency
from api.inference import InferenceClient
from api.metrics import GatewayMetrics
from api.schemas import AllocationPublic, AllocationRequest, DegradedReason, WeightPublic
from api.services import Services
from api.snapshot_dep import SnapshotDep, Snapshots
from api.tickers import check_tickers
from feature_repo.contract import ALLOCATOR, ALLOCATOR_SERVICE, service_views

router = APIRouter(prefix="/v1", tags=["allocations"])
ROUTE: Final = "/v1/allocations"
VIEWS: Final = service_views(ALLOCATOR_SERVICE)
METHOD: Final = "allocator"
SHOWN: Final = 10  # tickers named in a reason; the count says how many more
# Why the allocator model did not answer, in words (keyed by the reason code).
FALLBACK_TEXT: Final[dict[str, str]] = {
    "not_deployed": "is not deployed",
    OUTSIDE_UNIVERSE: "was not trained on every ticker of the universe",
    "circuit_open": "was not called: its circuit is open after repeated failures",
    "timeout": "timed out",
    "connection_error": "is unreachable",
    "bad_response": "answered with a malformed response",
}


@dataclass(frozen=True)
class Decision:
    """The weights to answer with, who produced them, and why."""

    weights: list[float]
    method: str
    model_versions: dict[str, str]
    reasons: list[DegradedReason]
    degraded: bool


def _long_only(body: AllocationRequest, who: str) -> list[DegradedReason]:
    if body.constraints.long_only:
        return []
    message = f"the {who} is long-only; long_only=false ignored"
    return [DegradedReason(model=ALLOCATOR, code="long_only", message=message)]


def _from_model(body: AllocationRequest, allocation: ModelAllocation) -> Decision:
    reasons = []
    if allocation.capped:
        named = ", ".join(allocation.capped[:SHOWN])
        more = f" (+{len(allocation.capped) - SHOWN} more)" if len(allocation.capped) > SHOWN else ""
        reasons.append(
            DegradedReason(
                model=ALLOCATOR,
                code="max_weight_cap",
                message=f"max_weight {body.constraints.max_weight:g} bound for {named}{more}: "
                f"the excess over it ({allocation.excess:.4%} of capital) is held in cash",
            )
        )
    return Decision(
        weights=allocation.weights,
        method=METHOD,
        model_versions={ALLOCATOR: allocation.version},
        reasons=[*reasons, *_long_only(body, "allocator")],
        degraded=False,
    )


def _fallback(body: AllocationRequest, vols: list[float | None], error: ModelCallError) -> Decision:
    result = allocate(vols, body.constraints.max_weight, body.risk_tolerance)
    if error.reason.startswith("http_"):
        what = f"answered HTTP {error.reason.removeprefix('http_')}"
    else:
        what = FALLBACK_TEXT.get(error.reason, f"failed ({error.reason})")
    said = f" ({error.detail})" if error.reason == OUTSIDE_UNIVERSE and error.detail else ""
    reasons = [
        DegradedReason(
            model=ALLOCATOR,
            code=error.reason,
            message=f"the RL allocator {what}{said}; used the gateway's {result.method} fallback",
        )
    ]
    notes = [*result.notes]
    if body.current_weights:
        notes.append("the fallback ignores current_weights (no turnover control)")
    reasons += [DegradedReason(model=ALLOCATOR, code="fallback_note", message=n) for n in notes]
    return Decision(
        weights=result.weights,
        method=result.method,
        model_versions={},
        reasons=[*reasons, *_long_only(body, "fallback")],
        degraded=True,
    )


async def _decide(
    client: InferenceClient,
    body: AllocationRequest,
    inputs: AllocationInputs,
    snapshot: FeatureSnapshot,
    metrics: GatewayMetrics,
) -> Decision:
    """The allocator model's capped weights, or the fallback's when it cannot answer (counted)."""
    try:
        allocation = await model_allocation(client, snapshot, inputs.book, body.constraints.max_weight)
    except ModelCallError as e:
        metrics.fallbacks.labels(model=ALLOCATOR, reason=e.reason).inc()
        metrics.degraded.labels(route=ROUTE).inc()
        return _fallback(body, snapshot.values["vol_63d"], e)
    return _from_model(body, allocation)


async def decide_allocation(
    services: Services, snapshots: Snapshots, client: InferenceClient, body: AllocationRequest
) -> tuple[AllocationInputs, FeatureSnapshot, Decision]:
    """The universe, the features read and the weights for ``body`` (also what a forecast of a universe holds)."""
    check_tickers(body.universe, services.settings.max_tickers)  # the declared maxItems, before duplicates merge
    inputs = allocation_inputs(body)
    # The scored universe's rows when fresh (the rows the signals were scored from), else the store's.
    snapshot = await snapshots.scored_features(inputs.universe, VIEWS)
    decision = await _decide(client, body, inputs, snapshot, services.metrics)
    return inputs, snapshot, decision


@router.post(
    "/allocations", response_model=AllocationPublic, responses={**TICKER_ERROR_RESPONSES, **IDEMPOTENCY_RESPONSES}
)
async def create_allocation(
    *,
    request: Request,
    body: AllocationRequest,
    services: ServicesDep,
    snapshots: SnapshotDep,
    client: InferenceClientDep,
    principal: AllocationsWriter,
    _idempotency: AllocationsIdempotency,
) -> AllocationPublic:
    """Portfolio weights for a universe from the allocator model, or the gateway's fallback."""
    settings = services.settings
    inputs, snapshot, decision = await decide_allocation(services, snapshots, client, body)
    vols = snapshot.values["vol_63d"]
    rho = settings.assumed_correlation
    answer = AllocationPublic(
        allocations=[
            WeightPublic(ticker=t, weight=w, amount=w * body.capital, volatility=v)
            for t, w, v in zip(inputs.universe, decision.weights, vols, strict=True)
        ],
        cash=max(0.0, (1.0 - sum(decision.weights)) * body.capital),
        expected_volatility=portfolio_volatility(decision.weights, vols, rho),
        volatility_assumption=(
            f"annualised vol_63d per asset from the online store; constant pairwise correlation {rho:.2f}; "
            "cash has zero volatility"
        ),
        method=decision.method,
        model_versions=decision.model_versions,
        as_of=snapshot.as_of(),
        degraded=decision.degraded,
        reasons=[*decision.reasons, *inputs.notes],
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
