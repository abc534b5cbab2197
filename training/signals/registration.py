"""What the registry's gate needs for the signal models and the ensemble: records, cards, champion scores.

Each model is registered with everything serving relies on (the ``feature_service``/``horizon``/
``objective``/``snapshot_hash``/``code_version`` tags of ``docs/serving-contract.md``, the
``data_end`` tag the post-promotion guard reads) and gated on its test rank IC against the current
champion's on the same test rows (:func:`training.registry.gate.register_and_gate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.contract import ENSEMBLE, TAG_FEATURE_SERVICE
from feature_repo.tables import DATE, TICKER
from training.evaluation.liquidity import describe_costs
from training.registry.gate import Challenger
from training.registry.model_registry import ModelRegistry, RunRecord
from training.signals.card import CardFacts, render
from training.signals.config import SignalRunConfig
from training.signals.evaluate import evaluate_scores
from training.signals.fit import EnsembleResult, TrainedModel
from training.signals.guard import TAG_DATA_END
from training.signals.inputs import SignalInputs

BASELINES: Final = ("momentum_12_1", "reversal_1m", "equal_weight")


@dataclass(frozen=True)
class SignalRun:
    """What every record of one train run shares."""

    config: SignalRunConfig
    inputs: SignalInputs
    code: str
    data_kind: str
    table: pd.DataFrame  # the test-segment evaluation table: models, ensemble, baselines


def model_challenger(run: SignalRun, m: TrainedModel) -> Challenger:
    """One signal model for the gate: its booster, card and tags, judged on test rank IC."""
    rows = {s: int(getattr(m.masks, s).sum()) for s in ("train", "valid", "test")}
    params = m.model.params.model_dump()  # the tuned parameters, with the final model's seed count
    facts = _facts(
        run,
        m.name,
        feature_service=m.spec.feature_service,
        features=m.frame.feature_names,
        rows=rows,
        snapshot_hash=m.frame.snapshot_hash,
        params=params,
        cv_rank_ic=m.tuning.fold_rank_ics,
    )
    tags = {
        TAG_FEATURE_SERVICE: m.spec.feature_service,
        "horizon": str(run.config.horizon),
        # binary scores are P(excess > 0) and their raw sum log-odds; regression and lambdarank
        # scores only order names: a reader of the score (the explanations route) must know which.
        "objective": m.model.params.objective,
        "snapshot_hash": m.frame.snapshot_hash,
        "code_version": run.code,
        # The last date the version was judged on: the post-promotion guard watches what comes after.
        TAG_DATA_END: str(run.inputs.test_window[1].date()),
    }
    record = RunRecord(
        name=m.name,
        params={**params, "num_trees": m.model.num_trees, "features": m.frame.feature_names},
        metrics={
            **_test_metrics(m.metrics.to_dict(), m.backtest.metrics()),
            "cv_rank_ic_mean": m.tuning.rank_ic_mean,
            "cv_rank_ic_std": m.tuning.rank_ic_std,
        },
        tags=tags,
        card=render(facts),
        tables={"evaluation": run.table, "tuning_trials": m.tuning.trials},
    )

    def log(registry: ModelRegistry, record: RunRecord) -> str:
        return registry.log_signal_model(record, m.model.booster, m.frame.feature_names, m.tuning.fold_rank_ics)

    def score_champion(registry: ModelRegistry, version: str) -> float | None:
        return _champion_rank_ic(registry, version, run.inputs, m)

    return Challenger(record, log, m.metrics.rank_ic_mean, score_champion)


def ensemble_challenger(run: SignalRun, models: list[TrainedModel], blended: EnsembleResult) -> Challenger:
    """The ensemble for the gate: its weights (the blending code travels with them), judged on test rank IC."""
    names = [m.name for m in models]
    facts = _facts(
        run,
        ENSEMBLE,
        feature_service=None,
        features=names,
        rows={"test": len(blended.scores)},
        snapshot_hash=",".join(m.frame.snapshot_hash[:12] for m in models),
        params={
            "weights": blended.final_weights,
            "affine": {n: list(v) for n, v in blended.affine.items()},
            "ic_window": run.config.evaluation.ensemble_ic_window,
        },
        cv_rank_ic=[],
        limits=(
            "Weights come from trailing rank IC of the components' out-of-sample scores.",
            "Components are mapped onto one scale by (shift, scale) fitted on their valid-segment scores.",
        ),
    )
    record = RunRecord(
        name=ENSEMBLE,
        params={"components": names, "final_weights": blended.final_weights},
        metrics=_test_metrics(blended.metrics.to_dict(), blended.backtest.metrics()),
        tags={"components": ",".join(names), "horizon": str(run.config.horizon), "code_version": run.code},
        card=render(facts),
        tables={"evaluation": run.table, "weights_by_date": blended.weights_by_date},
    )

    def log(registry: ModelRegistry, record: RunRecord) -> str:
        return registry.log_ensemble(record, blended.final_weights, blended.affine)

    def score_champion(registry: ModelRegistry, version: str) -> float | None:
        return _ensemble_champion_rank_ic(registry, version, run.inputs, blended)

    return Challenger(record, log, blended.metrics.rank_ic_mean, score_champion)


def _test_metrics(signal: dict[str, float], book: dict[str, float]) -> dict[str, float]:
    return {
        **{f"test_{k}": float(v) for k, v in signal.items()},
        **{f"test_topk_{k}": float(v) for k, v in book.items()},
    }


def _facts(run: SignalRun, name: str, **extra: object) -> CardFacts:
    cfg = run.config
    segments = {"train": cfg.segments.train, "valid": cfg.segments.valid, "test": cfg.segments.test}
    base = {
        "model": name,
        "horizon": cfg.horizon,
        "segments": segments,
        "code_version": run.code,
        "table": run.table.loc[[name, *BASELINES]],
        "baselines": BASELINES,
        "costs": describe_costs(cfg.costs, cfg.evaluation.book.book_aud),
        "data_kind": run.data_kind,
    }
    return CardFacts(**{**base, **extra})  # type: ignore[arg-type]


def _champion_rank_ic(registry: ModelRegistry, version: str, inputs: SignalInputs, m: TrainedModel) -> float | None:
    """The champion's rank IC on this run's test rows, or None when it reads features this frame lacks."""
    booster, features = registry.load_booster(m.name, version)
    if any(f not in m.frame.X.columns for f in features):
        return None
    X = m.frame.X.loc[m.masks.test, features]
    scores = pd.DataFrame(
        {DATE: m.frame.dates[m.masks.test].to_numpy(), TICKER: m.frame.tickers[m.masks.test].to_numpy()}
    )
    scores["score"] = np.asarray(booster.predict(X), dtype=np.float64)
    return float(evaluate_scores(scores, inputs).rank_ic_mean)


def _ensemble_champion_rank_ic(
    registry: ModelRegistry, version: str, inputs: SignalInputs, blended: EnsembleResult
) -> float | None:
    """The champion ensemble's rank IC when it blends this run's component scores on the test rows."""
    model, names = registry.load_pyfunc(ENSEMBLE, version)
    known = [c for c in blended.components.columns if c in names]
    if not known:
        return None
    out = model.predict(blended.components[known])
    scores = blended.components[[DATE, TICKER]].assign(score=np.asarray(out["score"], dtype=np.float64))
    return float(evaluate_scores(scores, inputs).rank_ic_mean)
