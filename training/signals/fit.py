"""Signal models end to end: Ray Tune search, final fit, out-of-sample scores, the ensemble.

Per model: its Feast feature service's frame over the three segments; walk-forward folds inside
the train segment for the search; a final fit on the train segment with early stopping on the
valid segment; scores on valid (out of sample, used for the ensemble's trailing weights) and on
test (used once, for the evaluation and the promotion gate). Registration is
:mod:`training.signals.registration`'s job; this module never talks to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import label_column
from training.errors import TrainingError
from training.evaluation.metrics import SignalMetrics
from training.evaluation.topk import BacktestResult
from training.models.ensemble import blend_point_in_time, fit_common_scale, trailing_weights
from training.models.signal import SignalModel
from training.signals.config import ModelSpec
from training.signals.datasets import TrainingFrame, build_training_frame
from training.signals.evaluate import backtest_scores, evaluate_scores
from training.signals.horizons import HorizonResult, horizon_report
from training.signals.inputs import KEYS, SignalInputs
from training.signals.tuning import TuningResult, run_search, tuning_data
from training.validation import SegmentMasks, segment_masks, walk_forward_folds


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """One trained signal model with its out-of-sample scores and test evaluation."""

    name: str
    spec: ModelSpec
    frame: TrainingFrame
    masks: SegmentMasks
    tuning: TuningResult
    model: SignalModel
    scores: pd.DataFrame  # date, ticker, score, segment ("valid" | "test")
    metrics: SignalMetrics
    backtest: BacktestResult
    horizons: list[HorizonResult] = field(default_factory=list)


def train_model(name: str, spec: ModelSpec, inputs: SignalInputs, storage: Path, progress: bool) -> TrainedModel:
    """Tune, fit and evaluate one model (see the module docstring)."""
    cfg = inputs.config
    frame = model_frame(inputs, spec)
    masks = segment_masks(
        frame.dates, frame.label_end, cfg.segments, embargo_sessions=cfg.walk_forward.embargo_sessions
    )
    train = frame.subset(masks.train)
    folds = walk_forward_folds(train.dates, train.label_end, cfg.walk_forward)
    learning = cfg.learning
    data = tuning_data(
        train.X, train.y, train.target, train.dates, folds, label=train.label, grades=learning.relevance_grades
    )
    tuning = run_search(
        data, cfg.tuning, name=name, storage_dir=storage, progress=progress, objective=learning.objective
    )
    valid = frame.subset(masks.valid)
    # The searched round count is the one the folds chose; early stopping on the valid log-loss
    # would pick the base rate (one tree) because the signal is weak. Valid stays out of sample.
    params = tuning.best_params.model_copy(update={"n_seeds": learning.seeds})
    model = SignalModel(params).fit(train.X, data.labels_for(params.objective), dates=train.dates)
    horizons = horizon_report(frame, inputs.report_outcomes, tuning.best_params, cfg) if inputs.report_outcomes else []
    scores = pd.concat([_scored(model, valid, "valid"), _scored(model, frame.subset(masks.test), "test")])
    test = scores[scores["segment"] == "test"]
    return TrainedModel(
        name=name,
        spec=spec,
        frame=frame,
        masks=masks,
        tuning=tuning,
        model=model,
        scores=scores,
        metrics=evaluate_scores(test, inputs),
        backtest=backtest_scores(test, inputs),
        horizons=horizons,
    )


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    """The ensemble's point-in-time test scores, its weights through time and its final weights."""

    scores: pd.DataFrame
    components: pd.DataFrame  # test rows: date, ticker and one score column per component
    weights_by_date: pd.DataFrame
    final_weights: dict[str, float]
    affine: dict[str, tuple[float, float]]  # per component (shift, scale) onto the common scale
    metrics: SignalMetrics
    backtest: BacktestResult


def ensemble(models: list[TrainedModel], inputs: SignalInputs) -> EnsembleResult:
    """Blend the components with weights from their trailing rank IC (valid + test scores)."""
    h = inputs.config.horizon
    wide = _component_scores(models)
    joined = wide.merge(inputs.outcomes[[*KEYS, "known_at", f"fwd_excess_{h}d"]], on=KEYS, how="inner")
    names = [m.name for m in models]
    weights = trailing_weights(
        joined[names],
        joined[f"fwd_excess_{h}d"],
        joined[DATE],
        joined["known_at"],
        window=inputs.config.evaluation.ensemble_ic_window,
    )
    # The common scale comes from the valid segment's out-of-sample scores only: it precedes every
    # test row it is applied to, and rank IC (so the weights) is unchanged by it.
    affine = fit_common_scale(joined.loc[joined["segment"] == "valid", names])
    blended = blend_point_in_time(joined[names], joined[DATE], weights, affine)
    scores = pd.concat([joined[[*KEYS, "segment"]], blended], axis=1)
    test = scores[scores["segment"] == "test"]
    last = weights.iloc[-1]
    return EnsembleResult(
        scores=test,
        components=joined.loc[joined["segment"] == "test", [*KEYS, *names]],
        weights_by_date=weights,
        final_weights={n: float(last[n]) for n in names},
        affine=affine,
        metrics=evaluate_scores(test, inputs),
        backtest=backtest_scores(test, inputs),
    )


def _component_scores(models: list[TrainedModel]) -> pd.DataFrame:
    wide: pd.DataFrame | None = None
    for m in models:
        part = m.scores.rename(columns={"score": m.name})
        wide = part if wide is None else wide.merge(part, on=[*KEYS, "segment"], how="outer")
    if wide is None:
        raise TrainingError("the ensemble needs at least one trained model")
    return wide.sort_values(KEYS, ignore_index=True)


def model_frame(inputs: SignalInputs, spec: ModelSpec) -> TrainingFrame:
    """The model's training frame over the three segments (its service, or its subset of features)."""
    cfg = inputs.config
    frame = build_training_frame(
        inputs.repo,
        spec.feature_service,
        inputs.outcomes,
        start=cfg.segments.train[0],
        end=cfg.segments.test[1],
        horizon=cfg.horizon,
        label_column=label_column(cfg.learning.label, cfg.horizon),
    )
    if spec.features is not None:
        X = frame.X[list(spec.features)]
        frame = replace(frame, X=X, feature_names=list(X.columns))
    return frame


def _scored(model: SignalModel, rows: TrainingFrame, segment: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            DATE: rows.dates.to_numpy(),
            TICKER: rows.tickers.to_numpy(),
            "score": model.predict(rows.X),
            "segment": segment,
        }
    )
