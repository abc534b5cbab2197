"""``GET /v1/explanations/{ticker}``: SHAP contributions of the technical model and a narrative."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import ExplanationsReader, InferenceClientDep
from api.errors import ModelCallError, ModelNotDeployedError, NoModelAvailableError
from api.handlers import TICKER_ERROR_RESPONSES
from api.inference import fp64_inputs
from api.narrative import narrative
from api.schemas import ContributionPublic, ExplanationPublic
from api.snapshot_dep import SnapshotDep
from api.tickers import TICKER_PATTERN
from feature_repo.contract import (
    BIAS_OUTPUT,
    EXPLAIN_SUFFIX,
    LOGISTIC_LINK_OUTPUT,
    SCORE_OUTPUT,
    SIGNAL_FEATURE_SERVICES,
    TECHNICAL,
    service_views,
)

router = APIRouter(prefix="/v1", tags=["explanations"])
SERVER = TECHNICAL
EXPLAINER = f"{TECHNICAL}{EXPLAIN_SUFFIX}"
SERVICE = SIGNAL_FEATURE_SERVICES[TECHNICAL]


@router.get("/explanations/{ticker}", response_model=ExplanationPublic, responses=TICKER_ERROR_RESPONSES)
async def get_explanation(
    request: Request,
    snapshots: SnapshotDep,
    client: InferenceClientDep,
    _principal: ExplanationsReader,
    ticker: Annotated[str, Path(pattern=TICKER_PATTERN, description="One ticker, e.g. AAPL.")],
    top: Annotated[int, Query(ge=1, le=20, description="How many contributions to return.")] = 5,
) -> ExplanationPublic:
    """Top feature contributions of the technical model for one ticker."""
    ticker = ticker.upper()
    if not client.deployed(SERVER):
        raise ModelNotDeployedError("the technical model (and its explainer) is not deployed")
    snapshot = await snapshots.features([ticker], service_views(SERVICE))
    columns = snapshot.service_columns(SERVICE)
    try:
        result = await client.infer(EXPLAINER, fp64_inputs(columns), server=SERVER)
        contributions = {f: result.floats(f, 1)[0] for f in columns}
        bias = result.floats(BIAS_OUTPUT, 1)[0]
        served = result.floats(SCORE_OUTPUT, 1)[0] if SCORE_OUTPUT in result.outputs else None
        link = result.floats(LOGISTIC_LINK_OUTPUT, 1)[0] if LOGISTIC_LINK_OUTPUT in result.outputs else None
    except ModelCallError as e:
        raise NoModelAvailableError(f"the technical explainer is unavailable: {e}") from e
    if bias is None:
        raise NoModelAvailableError("the technical explainer returned no bias term")
    known = {f: c for f, c in contributions.items() if c is not None}
    raw = bias + sum(known.values())
    # An explainer without the link flag predates it and served binary models only.
    logistic = link is None or link >= 0.5
    units = "log-odds" if logistic else "score"
    score = served if served is not None else (_logistic(raw) if logistic else raw)
    ordered = sorted(known.items(), key=lambda fc: (-abs(fc[1]), fc[0]))
    return ExplanationPublic(
        ticker=ticker,
        score=score,
        units=units,
        raw_score=raw,
        log_odds=raw if logistic else None,
        bias=bias,
        contributions=[ContributionPublic(feature=f, value=columns[f][0], contribution=c) for f, c in ordered[:top]],
        narrative=narrative(ticker, score, [(f, c) for f, c in ordered[:3] if c != 0.0], units),
        model_version=result.version,
        as_of=snapshot.as_of(),
        request_id=request.state.request_id,
    )


def _logistic(raw: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(raw, 50.0), -50.0)))
