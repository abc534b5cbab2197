"""``GET /v1/briefing``: the day's briefing as JSON and Markdown, from stored facts and templates; audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api import briefing_text
from api.briefing_schemas import BriefingPublic, BriefingRegimePublic, BriefingSectionPublic
from api.deps import BriefingReader, ServicesDep
from api.errors import FeatureStoreUnavailableError, InvalidRequestError
from api.handlers import ERROR_RESPONSES
from api.market_data import MarketDataUnavailableError
from api.market_schemas import RegimeStatePublic
from api.regime import regime_on
from api.services import Services

router = APIRouter(prefix="/v1", tags=["analytics"])
ROUTE: Final = "/v1/briefing"


@router.get("/briefing", response_model=BriefingPublic, responses=ERROR_RESPONSES)
async def get_briefing(
    request: Request,
    services: ServicesDep,
    principal: BriefingReader,
    day: Annotated[
        dt.date | None,
        Query(
            alias="date",
            description="The day (YYYY-MM-DD; default: the last session). A day that is not a session gets the "
            "last session before it (at most 4 days earlier); a day before the first or after the last briefing "
            "session, or without stored facts, is refused with a 422 that names the bound or the nearest sessions.",
        ),
    ] = None,
) -> BriefingPublic:
    """The day's briefing: signal changes, regime, drift, alpha decay, sentiment spikes, data anomalies."""
    store = services.briefing
    index, session = await run_in_threadpool(store.session_for, day)
    stored = await run_in_threadpool(store.facts, session)
    benchmark, state, reason = await _regime(services, session)
    parts = briefing_text.sections(stored.facts, benchmark, state, reason)
    answer = BriefingPublic(
        date=day,
        session=session,
        first_session=index.first,
        last_session=index.last,
        sections=[
            BriefingSectionPublic(name=p.name, title=p.title, sentences=p.sentences)  # type: ignore[arg-type]
            for p in parts
        ],
        markdown=briefing_text.markdown(day, session, parts),
        facts=stored.facts,
        regime=BriefingRegimePublic(benchmark=benchmark, state=state) if benchmark and state else None,
        request_id=request.state.request_id,
    )
    await services.audit.record(
        tenant=principal.tenant,
        route=ROUTE,
        request_id=answer.request_id,
        request={"date": day.isoformat() if day else None},
        feature_snapshot_hash=stored.digest,
        model_versions={},
        # The facts are the stored file (digested above); the audit keeps what was said.
        answer={"session": session.isoformat(), "sections": [s.model_dump() for s in answer.sections]},
    )
    return answer


async def _regime(services: Services, session: dt.date) -> tuple[str | None, RegimeStatePublic | None, str]:
    """The regime on ``session`` from the regime route's :func:`api.regime.regime_on`, or why there is none."""
    try:
        benchmark, state = await regime_on(services, session)
    except (InvalidRequestError, MarketDataUnavailableError, FeatureStoreUnavailableError) as e:
        return None, None, e.message.rstrip(".")
    return benchmark, state, ""
