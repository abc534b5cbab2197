"""``GET /v1/signals``: ensemble scores, components, ranks, degraded reasons; audited."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from api.compose import compose_signals
from api.data_quality import flag_signals
from api.db import RawJSON
from api.deps import ServicesDep, SignalsReader
from api.handlers import TICKER_ERROR_RESPONSES
from api.schemas import SignalsPublic
from api.settings import MAX_TICKERS_CAP
from api.snapshot_dep import SnapshotDep
from api.tickers import parse_tickers, tickers_query_max_length

router = APIRouter(prefix="/v1", tags=["signals"])
ROUTE = "/v1/signals"


@router.get("/signals", response_model=SignalsPublic, responses=TICKER_ERROR_RESPONSES)
async def get_signals(
    *,
    request: Request,
    services: ServicesDep,
    snapshots: SnapshotDep,
    principal: SignalsReader,
    tickers: Annotated[
        str,
        Query(
            min_length=1,
            max_length=tickers_query_max_length(MAX_TICKERS_CAP),
            description="Comma-separated tickers, e.g. AAPL,MSFT.",
        ),
    ],
) -> Response:
    """Ranked ensemble signals for the requested tickers."""
    names = parse_tickers(tickers, services.settings.max_tickers)
    request_id = request.state.request_id
    lookup = services.scored.lookup(names)
    flags = await snapshots.data_quality(names)
    if lookup is not None:  # in a fresh scored snapshot: the same JSON the models would give
        answer = lookup.answer(flags, services.metrics)  # memoised per tickers and flags
        answer.observe(services.metrics)
        body, digest = answer.body(request_id), answer.digest
        model_versions, degraded = lookup.model_versions, lookup.degraded
    else:  # not in one: the models are called for this request
        snapshot = await snapshots.features(names)
        composed = await compose_signals(services.client(), snapshot, services.metrics, services.compositions)
        body = orjson.dumps(flag_signals(composed.public(snapshot.as_of(), request_id), flags))
        digest, model_versions, degraded = snapshot.digest(), composed.model_versions, composed.degraded
    if degraded:
        services.metrics.degraded.labels(route=ROUTE).inc()
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=request_id,
        request={"tickers": names},
        feature_snapshot_hash=digest,
        model_versions=model_versions,
        answer=RawJSON(body),
    )
    # ``SignalsPublic`` was validated and dumped by ``public()``; the body is serialised once, for
    # the client and the audit row alike, skipping FastAPI's second validation pass through
    # ``response_model`` (which still documents the schema).
    return Response(body, media_type="application/json")
