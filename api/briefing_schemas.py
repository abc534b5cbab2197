"""Response body of ``GET /v1/briefing`` (the stored facts' models come from :mod:`feature_repo.briefing`)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from api.market_schemas import RegimeStatePublic
from feature_repo.briefing import BriefingFacts

SectionName = Literal["signals", "regime", "drift", "decay", "sentiment", "anomalies"]


class BriefingSectionPublic(BaseModel):
    name: SectionName
    title: str
    sentences: list[str] = Field(description="Written from templates; every number is one of `facts` or `regime`.")


class BriefingRegimePublic(BaseModel):
    benchmark: str = Field(description="Symbol of the benchmark the regime is read from.")
    state: RegimeStatePublic = Field(description="The regime on the session (as GET /v1/regime reports it).")


class BriefingPublic(BaseModel):
    date: dt.date | None = Field(description="The date asked for (null: the last session).")
    session: dt.date = Field(description="The session described: the last one on or before `date`.")
    first_session: dt.date = Field(description="The first session with a briefing: the earliest `date`.")
    last_session: dt.date = Field(description="The last session with a briefing: the latest `date`.")
    sections: list[BriefingSectionPublic]
    markdown: str = Field(description="The same sentences as Markdown.")
    facts: BriefingFacts = Field(description="The stored facts the sentences state.")
    regime: BriefingRegimePublic | None = Field(description="The regime on the session; null when unavailable.")
    request_id: str
