"""``python -m monitoring briefing-facts``: write the stored facts of each session's briefing.

Sources (each optional; a missing one leaves its section empty):

* ``signals/predictions.parquet`` (the train stage's scores; the ensemble's give the signal changes)
  and ``signals/outcomes.parquet`` (alpha decay, outcomes known by the session);
* ``features/sentiment_features.parquet`` (daily sentiment per ticker);
* ``reports/sentinel/anomalies.parquet`` and ``features/data_quality.parquet`` (the sentinel);
* ``reports/drift/<run>/<view>.summary.json`` (every drift run).

The sessions are those with ensemble scores or sentinel rows; by default the newest
``--sessions`` of them. Facts already written for other sessions are kept; the index lists all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from feature_repo.briefing import BriefingFacts, BriefingIndex, facts_file, index_file
from feature_repo.contract import ENSEMBLE
from feature_repo.data_quality import DATA_QUALITY_VIEW
from feature_repo.definitions import EVENT_TIMESTAMP, feature_file
from feature_repo.tables import DATE, TICKER
from monitoring import reports
from monitoring.briefing.facts import anomaly_facts, decay_facts, drift_facts, sentiment_facts, signal_facts
from monitoring.errors import MonitoringError
from monitoring.sentinel.job import anomalies_file

PREDICTIONS = "signals/predictions.parquet"
OUTCOMES = "signals/outcomes.parquet"
SENTIMENT = "features/sentiment_features.parquet"


@dataclass
class Sources:
    """The stored sources, read once, dates as naive midnight timestamps."""

    predictions: pd.DataFrame
    outcomes: pd.DataFrame
    sentiment: pd.DataFrame
    anomalies: pd.DataFrame
    scored_per_session: dict[date, int]
    drift_summaries: list[dict[str, Any]] = field(default_factory=list)


def _dates(values: pd.Series) -> pd.Series:
    ts = pd.to_datetime(values)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.dt.normalize()


def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    return pd.read_parquet(path, columns=columns) if path.exists() else None


def load_sources(data_dir: Path) -> Sources:
    """Read every source that exists under ``data_dir``."""
    predictions = _read(data_dir / PREDICTIONS)
    predictions = (
        predictions.assign(**{DATE: _dates(predictions[DATE])})
        if predictions is not None
        else pd.DataFrame({DATE: pd.Series(dtype="datetime64[ns]"), TICKER: [], "model": [], "score": []})
    )
    outcomes = _read(data_dir / OUTCOMES)
    if outcomes is not None:
        outcomes = outcomes.assign(**{DATE: _dates(outcomes[DATE]), "known_at": _dates(outcomes["known_at"])})
    sentiment = _read(data_dir / SENTIMENT, [TICKER, EVENT_TIMESTAMP, "sent_score_1d"])
    sentiment = (
        sentiment.assign(**{DATE: _dates(sentiment[EVENT_TIMESTAMP])})
        if sentiment is not None
        else pd.DataFrame({TICKER: [], DATE: pd.Series(dtype="datetime64[ns]"), "sent_score_1d": []})
    )
    anomalies = _read(anomalies_file(data_dir / "reports"))
    anomalies = anomalies.assign(**{DATE: _dates(anomalies[DATE])}) if anomalies is not None else pd.DataFrame()
    view = _read(Path(feature_file(str(data_dir), DATA_QUALITY_VIEW)), [TICKER, EVENT_TIMESTAMP])
    scored: dict[date, int] = {}
    if view is not None:
        counts = _dates(view[EVENT_TIMESTAMP]).value_counts()
        scored = {pd.Timestamp(str(ts)).date(): int(n) for ts, n in counts.items()}
    drift = [reports.read_json(p) for p in sorted((data_dir / "reports" / reports.DRIFT).glob("*/*.summary.json"))]
    return Sources(
        predictions, outcomes if outcomes is not None else pd.DataFrame(), sentiment, anomalies, scored, drift
    )


def sessions(sources: Sources) -> list[pd.Timestamp]:
    """Sessions a briefing can describe: those with ensemble scores or sentinel rows, oldest first."""
    scored = set(sources.predictions.loc[sources.predictions["model"] == ENSEMBLE, DATE].unique())
    scored |= {pd.Timestamp(d) for d in sources.scored_per_session}
    return sorted(pd.Timestamp(s) for s in scored)


def build_facts(
    sources: Sources, session: pd.Timestamp, *, window: int, tstat_min: float, generated_at: datetime
) -> BriefingFacts:
    """Every section's facts for ``session`` (point-in-time: see :mod:`monitoring.briefing.facts`)."""
    empty = sources.anomalies.empty
    decay = (
        []
        if sources.outcomes.empty
        else decay_facts(sources.predictions, sources.outcomes, session, window=window, tstat_min=tstat_min)
    )
    return BriefingFacts(
        session=session.date(),
        generated_at=generated_at,
        sources={
            "signals": PREDICTIONS,
            "decay": f"{PREDICTIONS} + {OUTCOMES}",
            "sentiment": SENTIMENT,
            "anomalies": "reports/sentinel/anomalies.parquet",
            "drift": "reports/drift/*/<view>.summary.json",
        },
        signals=signal_facts(sources.predictions, session),
        sentiment=sentiment_facts(sources.sentiment, session) if not sources.sentiment.empty else None,
        anomalies=None if empty and not sources.scored_per_session else _anomalies(sources, session),
        drift=drift_facts(sources.drift_summaries, session),
        decay=decay,
    )


def _anomalies(sources: Sources, session: pd.Timestamp) -> Any:
    return anomaly_facts(sources.anomalies, sources.scored_per_session, session)


def write_facts(data_dir: Path, facts: list[BriefingFacts]) -> Path:
    """Write each session's file, then the index of every session with a file (last: readers check it)."""
    for fact in facts:
        path = facts_file(data_dir, fact.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(fact.model_dump_json(indent=2) + "\n")
        partial.replace(path)
    written = sorted(date.fromisoformat(p.stem) for p in facts_file(data_dir, date(2000, 1, 1)).parent.glob("*.json"))
    if not written:
        raise MonitoringError("no briefing facts were written")
    index = BriefingIndex(first=written[0], last=written[-1], sessions=written)
    return reports.write_json(index_file(data_dir), json.loads(index.model_dump_json()))


def run(
    data_dir: Path,
    *,
    last: int | None = 5,
    start: date | None = None,
    end: date | None = None,
    window: int = 63,
    tstat_min: float = 2.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[BriefingFacts]:
    """Build and write the facts of the chosen sessions (``start``..``end``, then the newest ``last``)."""
    sources = load_sources(data_dir)
    chosen = [s for s in sessions(sources) if (start is None or s.date() >= start) and (end is None or s.date() <= end)]
    if last is not None:
        chosen = chosen[-last:]
    if not chosen:
        raise MonitoringError(f"no session with ensemble scores or sentinel rows under {data_dir} in the window")
    now = clock()
    facts = [build_facts(sources, s, window=window, tstat_min=tstat_min, generated_at=now) for s in chosen]
    write_facts(data_dir, facts)
    return facts
