"""The post-promotion guard: roll a new champion back when it underperforms the one it replaced, live.

After a promotion, the new champion has been judged on the test segment only. Once outcomes are
known for ``sessions`` dates after the data it was trained and tested on (its ``data_end`` tag),
both it and the champion it replaced (from the audit log's ``promoted`` record) score the same
rows of those first ``sessions`` dates, and their mean rank ICs are compared. If the new champion
trails the old one by more than ``margin``, the alias goes back
(:meth:`training.registry.model_registry.ModelRegistry.rollback`). Every check is appended to the audit log with
both figures, whatever it decides.

Decisions, one per model:

* ``rolled_back``: the new champion trailed by more than the margin over at least ``sessions`` dates;
* ``kept``: it did not;
* ``waiting``: fewer than ``sessions`` dates with known outcomes since its ``data_end``;
* ``not_applicable``: no champion, no earlier champion to compare with, or already rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.tables import DATE
from training.ic import rank_ic_by_date
from training.registry.model_registry import ModelRegistry
from training.signals.datasets import build_training_frame
from training.signals.inputs import SignalInputs

TAG_DATA_END: Final = "data_end"


@dataclass(frozen=True)
class LiveRows:
    """Rows scored by both versions: features (named columns), realised target and dates."""

    X: pd.DataFrame
    target: np.ndarray
    dates: np.ndarray


@dataclass(frozen=True)
class GuardDecision:
    model: str
    decision: str
    reason: str
    champion: str | None = None
    previous: str | None = None
    sessions: int = 0
    champion_rank_ic: float = float("nan")
    previous_rank_ic: float = float("nan")


def live_rows(inputs: SignalInputs, service: str) -> Callable[[pd.Timestamp], LiveRows | None]:
    """The guard's ``rows_after`` for one model: its service's features, point in time, on known outcomes."""
    horizon = inputs.config.horizon

    def rows_after(day: pd.Timestamp) -> LiveRows | None:
        outcomes = inputs.outcomes
        after = pd.DatetimeIndex(outcomes[DATE]) > day
        if not outcomes.loc[after, f"label_{horizon}d"].notna().any():
            return None  # no outcome known after the day yet
        frame = build_training_frame(inputs.repo, service, outcomes, start=day + pd.Timedelta(days=1), horizon=horizon)
        return LiveRows(frame.X, frame.target.to_numpy(), frame.dates.to_numpy())

    return rows_after


def live_rank_ic(registry: ModelRegistry, model: str, version: str, rows: LiveRows) -> pd.Series:
    """Per-date rank IC of ``version``'s scores on ``rows``."""
    booster, features = registry.load_booster(model, version)
    scores = np.asarray(booster.predict(rows.X[features]), dtype=np.float64)
    return rank_ic_by_date(scores, rows.target, rows.dates)


def check_model(
    registry: ModelRegistry,
    model: str,
    rows_after: Callable[[pd.Timestamp], LiveRows | None],
    *,
    sessions: int,
    margin: float,
) -> GuardDecision:
    """Compare ``model``'s champion with the one it replaced on the dates after its ``data_end``.

    Args:
        registry: the MLflow registry and its audit log.
        model: a signal model's registered name.
        rows_after: the labelled rows (outcomes already known) dated after a given day; None when
            there are none yet.
        sessions: dates of known outcomes needed before judging.
        margin: rank IC the new champion may trail the old one by before it is rolled back.
    """
    champion = registry.champion_version(model)
    promoted = registry.audit.last("promoted", model)
    previous = None if promoted is None else promoted.get("previous_champion")
    if champion is None or promoted is None or previous is None:
        return GuardDecision(model, "not_applicable", "no earlier champion to compare with", champion)
    if str(promoted.get("version")) != champion:
        return GuardDecision(
            model, "not_applicable", f"champion v{champion} is not the last promoted version", champion
        )
    tags = registry.client.get_model_version(model, champion).tags
    if TAG_DATA_END not in tags:
        return GuardDecision(model, "not_applicable", f"v{champion} has no {TAG_DATA_END} tag", champion, str(previous))
    data_end = pd.Timestamp(tags[TAG_DATA_END])
    rows = rows_after(data_end)
    if rows is None:
        new = old = pd.Series(dtype=float)
    else:
        new = live_rank_ic(registry, model, champion, rows)
        old = live_rank_ic(registry, model, str(previous), rows)
    # Judged on its first ``sessions`` dates, as the rule says; later dates are for decay monitoring.
    common = new.index.intersection(old.index).sort_values()[:sessions]
    count = len(common)
    if count < sessions:
        why = f"{count} of {sessions} dates with known outcomes since {data_end.date()}"
        decision = GuardDecision(model, "waiting", why, champion, str(previous), count)
    else:
        now, before = float(new[common].mean()), float(old[common].mean())
        figures = f"live rank IC {now:+.4f} vs v{previous}'s {before:+.4f} over {count} dates"
        verdict = "rolled_back" if now < before - margin else "kept"
        if verdict == "rolled_back":
            figures += f": trails by more than {margin:g}"
            registry.rollback(model, figures)
        decision = GuardDecision(model, verdict, figures, champion, str(previous), count, now, before)
    _audit(registry, decision)
    return decision


def _audit(registry: ModelRegistry, decision: GuardDecision) -> None:
    """Every check goes to the audit log with both figures, whatever it decided."""
    registry.audit.append(
        "guard_checked",
        model=decision.model,
        version=decision.champion,
        previous_champion=decision.previous,
        decision=decision.decision,
        reason=decision.reason,
        sessions=decision.sessions,
        champion_live_rank_ic=decision.champion_rank_ic,
        previous_live_rank_ic=decision.previous_rank_ic,
    )
