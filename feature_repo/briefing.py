"""The daily briefing's stored facts: their shape and where they live (written by monitoring, read by the gateway).

``python -m monitoring briefing-facts`` computes, for each session, the facts a briefing states
(signal changes, drift, alpha decay, sentiment spikes, data anomalies), point-in-time: from what
was known on that session only. It writes one JSON file per session plus an index of the sessions
covered under ``<data>/reports/briefing/``. The gateway's ``GET /v1/briefing`` reads a file, adds
the regime of the day (the market view) and writes sentences from templates: every number in
them is one of these facts. The models are defined here once, on the ground floor both import.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

from pydantic import BaseModel, Field

BRIEFING_DIR: Final = "reports/briefing"
FACTS_DIR: Final = "facts"
INDEX_FILE: Final = "index.json"


def briefing_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / BRIEFING_DIR


def facts_file(data_dir: Path | str, session: dt.date) -> Path:
    return briefing_dir(data_dir) / FACTS_DIR / f"{session.isoformat()}.json"


def index_file(data_dir: Path | str) -> Path:
    return briefing_dir(data_dir) / INDEX_FILE


class SignalChange(BaseModel):
    ticker: str
    score: float = Field(description="The model's score on the session.")
    previous_score: float = Field(description="Its score on the previous scored session.")
    change: float = Field(description="score - previous_score.")


class SignalFacts(BaseModel):
    model: str = Field(description="The model whose scores are compared (the ensemble).")
    previous_session: dt.date | None = Field(description="The scored session before this one.")
    tickers: int = Field(description="Tickers scored on the session.")
    largest_changes: list[SignalChange] = Field(description="The largest absolute changes, largest first.")


class SentimentSpike(BaseModel):
    ticker: str
    score: float = Field(description="The session's mean document score (sent_score_1d).")
    mean: float = Field(description="Mean of the ticker's earlier daily scores (its own history).")
    std: float = Field(description="Their standard deviation.")
    z: float = Field(description="(score - mean) / std.")
    history_days: int = Field(description="Earlier days with documents the mean and std use.")


class SentimentFacts(BaseModel):
    tickers_with_documents: int = Field(description="Tickers with documents on the session.")
    z_threshold: float = Field(description="A spike has |z| at least this.")
    min_history_days: int = Field(description="Earlier days with documents a ticker needs for a spike.")
    spikes_total: int = Field(description="Tickers at or above the threshold (the spikes listed are the largest).")
    spikes: list[SentimentSpike] = Field(description="The largest |z| at or above the threshold, largest first.")


class AnomalyReason(BaseModel):
    statistic: str
    deviation: float = Field(description="Standardised deviation from the sentinel's reference window.")


class AnomalyFact(BaseModel):
    ticker: str
    ticker_class: str
    anomaly_score: float
    reasons: list[AnomalyReason]


class AnomalyFacts(BaseModel):
    tickers_scored: int = Field(description="Tickers the sentinel scored on the session.")
    count: int = Field(description="Tickers it flagged.")
    top: list[AnomalyFact] = Field(description="The flagged tickers with the highest scores, highest first.")


class DriftFact(BaseModel):
    view: str
    current_start: dt.date
    current_end: dt.date = Field(description="The newest drift run's window ending on or before the session.")
    share: float = Field(description="Share of tested features that drifted.")
    detected: bool
    drifted_features: int
    tested_features: int


class DecayFact(BaseModel):
    model: str
    n_dates: int = Field(description="Dates with known outcomes in the rolling window.")
    rolling_rank_ic: float
    rank_ic_tstat: float
    decayed: bool


class BriefingFacts(BaseModel):
    """Everything one session's briefing states, apart from the regime (read online at request time)."""

    session: dt.date
    generated_at: dt.datetime
    sources: dict[str, str] = Field(description="Section -> the stored file its facts come from.")
    signals: SignalFacts | None = Field(description="None: no scores on the session.")
    sentiment: SentimentFacts | None = Field(description="None: no sentiment features.")
    anomalies: AnomalyFacts | None = Field(description="None: the sentinel did not score the session.")
    drift: list[DriftFact] = Field(description="Per view, the newest drift run by the session.")
    decay: list[DecayFact] = Field(description="Per model, the rolling rank IC as of the session.")


class BriefingIndex(BaseModel):
    """The sessions with facts: the bounds a request's date must fall within."""

    first: dt.date
    last: dt.date
    sessions: list[dt.date]
