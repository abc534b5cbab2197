"""``POST /v1/portfolios/forecast``: percentile bands of a portfolio's return, drawdown and volatility; audited."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import partial
from typing import Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import ForecastsReader, InferenceClientDep, ServicesDep
from api.forecast import ASSUMPTIONS, check_horizons, check_weight_sum, portfolio_history, simulate
from api.handlers import TICKER_ERROR_RESPONSES
from api.inference import InferenceClient
from api.market_schemas import ForecastPublic, ForecastRequest, HistoryPublic, PortfolioWeightPublic
from api.routes.allocations import decide_allocation
from api.schemas import AllocationRequest, DegradedReason
from api.services import Services
from api.snapshot_dep import SnapshotDep, Snapshots
from api.tickers import check_tickers

router = APIRouter(prefix="/v1", tags=["analytics"])
ROUTE: Final = "/v1/portfolios/forecast"
GIVEN: Final = "weights"


@dataclass(frozen=True)
class Portfolio:
    """The weights to forecast and where they came from."""

    weights: dict[str, float]
    method: str
    model_versions: dict[str, str]
    degraded: bool
    reasons: list[DegradedReason]


def _given(body: ForecastRequest, max_tickers: int) -> Portfolio:
    check_tickers(list(body.weights), max_tickers)  # the declared maxProperties
    merged: dict[str, float] = {}
    for ticker, weight in body.weights.items():  # keys differing only in letter case are one name
        merged[ticker.upper()] = merged.get(ticker.upper(), 0.0) + weight
    check_weight_sum(merged)
    return Portfolio(merged, GIVEN, {}, False, [])


async def _allocated(
    services: Services, snapshots: Snapshots, client: InferenceClient, body: ForecastRequest
) -> Portfolio:
    request = AllocationRequest(
        universe=body.universe, capital=1.0, constraints=body.constraints, risk_tolerance=body.risk_tolerance
    )
    inputs, _, decision = await decide_allocation(services, snapshots, client, request)
    weights = dict(zip(inputs.universe, decision.weights, strict=True))
    reasons = [*decision.reasons, *inputs.notes]
    return Portfolio(weights, decision.method, decision.model_versions, decision.degraded, reasons)


def _cash(portfolio: Portfolio) -> float:
    """The allocator's cash (float dust below 1e-12 is none); given weights hold none."""
    if portfolio.method == GIVEN:
        return 0.0
    cash = 1.0 - math.fsum(portfolio.weights.values())
    return cash if cash > 1e-12 else 0.0


@router.post("/portfolios/forecast", response_model=ForecastPublic, responses=TICKER_ERROR_RESPONSES)
async def forecast_portfolio(
    *,
    request: Request,
    body: ForecastRequest,
    services: ServicesDep,
    snapshots: SnapshotDep,
    client: InferenceClientDep,
    principal: ForecastsReader,
) -> ForecastPublic:
    """Percentile bands of cumulative return, drawdown and volatility at each horizon, by block bootstrap."""
    if body.weights is not None:
        portfolio = _given(body, services.settings.max_tickers)
    else:
        portfolio = await _allocated(services, snapshots, client, body)
    tickers = list(portfolio.weights)
    windows = await snapshots.return_windows(tickers)
    history = portfolio_history(windows, portfolio.weights)
    horizons = check_horizons(history, body.horizons)
    run = partial(simulate, n_paths=body.n_paths, block=body.block, seed=body.seed, loss_threshold=body.loss_threshold)
    bands = await run_in_threadpool(run, history.returns, horizons)
    answer = ForecastPublic(
        weights=[PortfolioWeightPublic(ticker=t, weight=w) for t, w in portfolio.weights.items()],
        cash=_cash(portfolio),
        method=portfolio.method,
        model_versions=portfolio.model_versions,
        degraded=portfolio.degraded,
        reasons=portfolio.reasons,
        horizons=bands,
        loss_threshold=body.loss_threshold,
        n_paths=body.n_paths,
        block=body.block,
        seed=body.seed,
        history=HistoryPublic(first=history.first, last=history.last, sessions=int(history.returns.size)),
        assumptions=ASSUMPTIONS,
        as_of=max(w.event_time for w in windows.values()),
        request_id=request.state.request_id,
    )
    digest = hashlib.sha256("".join(f"{t}\t{windows[t].digest}\n" for t in tickers).encode()).hexdigest()
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=answer.request_id,
        request=body.model_dump(mode="json", exclude_none=True),
        feature_snapshot_hash=digest,
        model_versions=answer.model_versions,
        answer=answer.model_dump(mode="json"),
    )
    return answer
