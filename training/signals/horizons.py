"""Out-of-fold rank IC of one model at several label horizons, side by side (issue 18).

The registered model trains at the configured horizon; this report asks what the same features
and tuned parameters would earn at 5, 21 or 63 sessions. For each horizon the samples are the
feature rows of the train segment joined to that horizon's outcomes (the universe's members only),
the walk-forward folds are laid out again (purging and the segment cut depend on ``known_at``,
which depends on the horizon), and every fold's test dates are scored out of fold. The per-date
rank ICs of all folds are pooled: their mean and their Newey–West t with ``h - 1`` lags (the
targets of consecutive dates overlap by ``h - 1`` sessions). Train segment only: valid and test
are never read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from feature_repo.significance import newey_west_tstat
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import KNOWN_AT, label_column
from training.ic import rank_ic_by_date
from training.models.signal import SignalModel, SignalModelParams
from training.signals.config import SignalRunConfig
from training.signals.datasets import TrainingFrame
from training.signals.tuning import TuningData, TuningResult, fold_scores, tuning_data
from training.validation import segment_masks, walk_forward_folds


@dataclass(frozen=True)
class HorizonResult:
    """One horizon's pooled out-of-fold rank IC on the train segment's walk-forward folds."""

    horizon: int
    rank_ic_mean: float
    rank_ic_t_nw: float
    dates: int
    fold_rank_ics: list[float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class LearnedModel(Protocol):
    """What the report reads of a trained model (:class:`training.signals.fit.TrainedModel`)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> SignalModel: ...
    @property
    def tuning(self) -> TuningResult: ...
    @property
    def horizons(self) -> list[HorizonResult]: ...


def horizon_report(
    frame: TrainingFrame,
    outcomes_by_horizon: dict[int, pd.DataFrame],
    params: SignalModelParams,
    config: SignalRunConfig,
) -> list[HorizonResult]:
    """The out-of-fold rank IC of ``params`` at every horizon of ``outcomes_by_horizon``, ascending.

    Args:
        frame: the model's training frame (its features; its own labels are not used).
        outcomes_by_horizon: per horizon, the members' outcomes with the cross-sectional labels.
        params: the tuned parameters (one seed: the report compares horizons, not seeds).
        config: the run's segments, walk-forward layout and learning settings.
    """
    single = params.model_copy(update={"n_seeds": 1})
    return [_one_horizon(frame, outcomes_by_horizon[h], h, single, config) for h in sorted(outcomes_by_horizon)]


def _one_horizon(
    frame: TrainingFrame, outcomes: pd.DataFrame, h: int, params: SignalModelParams, config: SignalRunConfig
) -> HorizonResult:
    data = _train_rows(frame, outcomes, h, config)
    per_date: list[pd.Series] = []
    folds: list[float] = []
    for fold in data.folds:
        test = fold.test_index
        ics = rank_ic_by_date(
            fold_scores(params, data, fold), data.target.iloc[test].to_numpy(), data.dates.iloc[test].to_numpy()
        )
        per_date.append(ics)
        folds.append(float(ics.mean()) if len(ics) else float("nan"))
    pooled = pd.concat(per_date).sort_index() if per_date else pd.Series(dtype=float)
    return HorizonResult(
        horizon=h,
        rank_ic_mean=float(pooled.mean()) if len(pooled) else float("nan"),
        rank_ic_t_nw=newey_west_tstat(pooled.to_numpy(), h - 1),
        dates=len(pooled),
        fold_rank_ics=folds,
    )


def _train_rows(frame: TrainingFrame, outcomes: pd.DataFrame, h: int, config: SignalRunConfig) -> TuningData:
    """The frame's features joined to the ``h``-session outcomes, cut to the train segment, with folds."""
    label = label_column(config.learning.label, h)
    columns = [DATE, TICKER, KNOWN_AT, f"fwd_excess_{h}d", f"label_{h}d", label]
    labels = outcomes[list(dict.fromkeys(columns))].copy()
    for column in (DATE, KNOWN_AT):
        stamps = pd.to_datetime(labels[column])
        labels[column] = (stamps.dt.tz_convert(None) if stamps.dt.tz is not None else stamps).astype("datetime64[ns]")
    keys = pd.DataFrame({DATE: frame.dates.to_numpy(), TICKER: frame.tickers.to_numpy(), "row": np.arange(len(frame))})
    joined = keys.merge(labels, on=[DATE, TICKER], how="inner", validate="one_to_one")
    joined = joined.sort_values([DATE, TICKER], kind="stable", ignore_index=True)
    masks = segment_masks(
        joined[DATE], joined[KNOWN_AT], config.segments, embargo_sessions=config.walk_forward.embargo_sessions
    )
    train = joined[masks.train].reset_index(drop=True)
    folds = walk_forward_folds(train[DATE], train[KNOWN_AT], config.walk_forward)
    return tuning_data(
        frame.X.iloc[train["row"].to_numpy()].reset_index(drop=True),
        train[f"label_{h}d"].astype("int64"),
        train[f"fwd_excess_{h}d"].astype("float64"),
        train[DATE],
        folds,
        label=train[label].astype("float64"),
        grades=config.learning.relevance_grades,
    )


def learning_report(models: Sequence[LearnedModel]) -> dict[str, object]:
    """Per model: the objective, label and seed count kept, the objectives' out-of-fold rank IC on
    the same folds, and the out-of-fold rank IC per horizon (the JSON beside the signal report)."""
    report: dict[str, object] = {}
    for m in models:
        params = m.model.params
        report[m.name] = {
            "objective": params.objective,
            "seeds": params.n_seeds,
            "cv_rank_ic_mean": m.tuning.rank_ic_mean,
            "cv_rank_ic_by_objective": dict(sorted(m.tuning.by_objective.items())),
            "horizons": [h.to_dict() for h in m.horizons],
        }
    return report


def learning_markdown(report: Mapping[str, object]) -> str:
    """The report's section of the signal report: out-of-fold figures, train segment only."""
    lines = ["", "## What the models learn (out of fold, walk-forward folds of the train segment)", ""]
    for name, entry in report.items():
        if not isinstance(entry, Mapping):
            continue
        compared = ", ".join(f"{k} {v:+.4f}" for k, v in entry["cv_rank_ic_by_objective"].items()) or "not searched"
        lines.append(f"- {name}: objective {entry['objective']} ({compared}), {entry['seeds']} seed(s)")
        for h in entry["horizons"]:
            lines.append(
                f"  - {h['horizon']} sessions: rank IC {h['rank_ic_mean']:+.4f}, NW t {h['rank_ic_t_nw']:.2f}, "
                f"{h['dates']} dates"
            )
    return "\n".join(lines) + "\n"
