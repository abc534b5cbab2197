"""One session's briefing facts from the stored sources, each section point-in-time.

Every function takes the whole stored source and a session, and uses only rows known on that
session: scores and sentiment of the session and before, sentinel rows of the session, drift runs
whose window ended by then, outcomes known by then (the decay rule's own cut-off).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_repo.briefing import (
    AnomalyFact,
    AnomalyFacts,
    AnomalyReason,
    DecayFact,
    DriftFact,
    SentimentFacts,
    SentimentSpike,
    SignalChange,
    SignalFacts,
)
from feature_repo.contract import ENSEMBLE
from feature_repo.data_quality import DEVIATION_PREFIX, STATISTIC_NAMES, reasons
from feature_repo.tables import DATE, TICKER
from monitoring.decay import model_decay
from monitoring.errors import MonitoringError

TOP: Final = 5
TOP_ANOMALIES: Final = 10
SPIKE_Z: Final = 2.0
SPIKE_MIN_HISTORY: Final = 20
SPIKE_LOOKBACK: Final = 252


def signal_facts(predictions: pd.DataFrame, session: pd.Timestamp, model: str = ENSEMBLE) -> SignalFacts | None:
    """The largest changes of ``model``'s score from the previous scored session to ``session``."""
    scores = predictions.loc[predictions["model"] == model, [DATE, TICKER, "score"]]
    today = scores.loc[scores[DATE] == session].set_index(TICKER)["score"].dropna()
    if today.empty:
        return None
    earlier = scores.loc[scores[DATE] < session, DATE]
    previous_session = earlier.max() if not earlier.empty else None
    changes: list[SignalChange] = []
    if previous_session is not None:
        before = scores.loc[scores[DATE] == previous_session].set_index(TICKER)["score"].dropna()
        both = today.index.intersection(before.index)
        delta = (today[both] - before[both]).sort_index()
        order = delta.abs().sort_values(ascending=False, kind="stable").index[:TOP]
        changes = [
            SignalChange(ticker=t, score=today[t], previous_score=before[t], change=today[t] - before[t]) for t in order
        ]
    return SignalFacts(
        model=model,
        previous_session=previous_session.date() if previous_session is not None else None,
        tickers=len(today),
        largest_changes=changes,
    )


def sentiment_facts(sentiment: pd.DataFrame, session: pd.Timestamp) -> SentimentFacts | None:
    """Tickers whose daily sentiment on ``session`` is far from their own earlier daily scores.

    A ticker's history is its last ``SPIKE_LOOKBACK`` earlier days with documents; it needs
    ``SPIKE_MIN_HISTORY`` of them and a non-zero spread.
    """
    rows = sentiment.loc[(sentiment[DATE] <= session) & sentiment["sent_score_1d"].notna(), [TICKER, DATE]]
    if rows.empty:
        return None
    rows = sentiment.loc[rows.index].sort_values([TICKER, DATE], kind="stable")
    on_day = rows.loc[rows[DATE] == session, [TICKER, "sent_score_1d"]].set_index(TICKER)["sent_score_1d"]
    spikes = []
    earlier = rows.loc[rows[DATE] < session]
    for ticker, score in on_day.items():
        history = earlier.loc[earlier[TICKER] == ticker, "sent_score_1d"].to_numpy(np.float64)[-SPIKE_LOOKBACK:]
        if len(history) < SPIKE_MIN_HISTORY:
            continue
        mean, std = float(history.mean()), float(history.std(ddof=1))
        if not std > 0:
            continue
        z = (float(score) - mean) / std
        if abs(z) >= SPIKE_Z:
            spikes.append(
                SentimentSpike(
                    ticker=str(ticker), score=float(score), mean=mean, std=std, z=z, history_days=len(history)
                )
            )
    spikes.sort(key=lambda s: (-abs(s.z), s.ticker))
    return SentimentFacts(
        tickers_with_documents=len(on_day),
        z_threshold=SPIKE_Z,
        min_history_days=SPIKE_MIN_HISTORY,
        spikes_total=len(spikes),
        spikes=spikes[:TOP],
    )


def anomaly_facts(
    anomalies: pd.DataFrame, scored_per_session: Mapping[date, int], session: pd.Timestamp
) -> AnomalyFacts | None:
    """The sentinel's anomalies on ``session`` (None when it did not score that session)."""
    scored = scored_per_session.get(session.date())
    if not scored:
        return None
    if anomalies.empty:  # the sentinel scored the session and flagged nothing, ever
        return AnomalyFacts(tickers_scored=int(scored), count=0, top=[])
    today = anomalies.loc[anomalies[DATE] == session].sort_values(
        ["anomaly_score", TICKER], ascending=[False, True], kind="stable"
    )
    top = []
    for _, row in today.head(TOP_ANOMALIES).iterrows():
        found = reasons({s: row[f"{DEVIATION_PREFIX}{s}"] for s in STATISTIC_NAMES})
        top.append(
            AnomalyFact(
                ticker=row[TICKER],
                ticker_class=row["ticker_class"],
                anomaly_score=float(row["anomaly_score"]),
                reasons=[AnomalyReason(statistic=r.statistic, deviation=r.deviation) for r in found],
            )
        )
    return AnomalyFacts(tickers_scored=int(scored), count=len(today), top=top)


def drift_facts(summaries: Iterable[Mapping[str, Any]], session: pd.Timestamp) -> list[DriftFact]:
    """Per view, the newest drift run whose current window ended on or before ``session``."""
    newest: dict[str, Mapping[str, Any]] = {}
    for summary in summaries:
        end = date.fromisoformat(summary["current"]["end"])
        if end > session.date():
            continue
        known = newest.get(summary["view"])
        if known is None or (end, summary["run_at"]) > (date.fromisoformat(known["current"]["end"]), known["run_at"]):
            newest[summary["view"]] = summary
    return [
        DriftFact(
            view=view,
            current_start=date.fromisoformat(s["current"]["start"]),
            current_end=date.fromisoformat(s["current"]["end"]),
            share=float(s["share"]),
            detected=bool(s["detected"]),
            drifted_features=sum(1 for f in s["features"] if f["detected"]),
            tested_features=len(s["features"]),
        )
        for view, s in sorted(newest.items())
    ]


def decay_facts(
    predictions: pd.DataFrame, outcomes: pd.DataFrame, session: pd.Timestamp, *, window: int, tstat_min: float
) -> list[DecayFact]:
    """Per model, the rolling rank IC from outcomes known by ``session`` (models without enough left out)."""
    targets = [str(c) for c in outcomes.columns if str(c).startswith("fwd_excess_")]
    if not targets:
        return []
    horizon = int(targets[0].removeprefix("fwd_excess_").removesuffix("d"))
    facts = []
    for model in sorted(predictions["model"].unique()):
        try:
            result = model_decay(
                predictions, outcomes, model, as_of=session.date(), window=window, horizon=horizon, tstat_min=tstat_min
            )
        except MonitoringError:
            continue  # not enough known outcomes yet by this session
        if math.isnan(result.rank_ic_tstat) or math.isnan(result.rolling_rank_ic):
            continue
        facts.append(
            DecayFact(
                model=model,
                n_dates=result.n_dates,
                rolling_rank_ic=result.rolling_rank_ic,
                rank_ic_tstat=result.rank_ic_tstat,
                decayed=result.decayed,
            )
        )
    return facts
