"""Stage ``train``: tune, fit and evaluate the signal models and the ensemble; register; gate; report.

The registry is checked before any training (an unreachable registry fails in seconds, not after
the search). Each model is registered as ``challenger`` with its model card, then promoted to
``champion`` only when it beats the current champion's rank IC on this run's test segment by the
configured margin (the first version is promoted so the stack can serve; its card says whether it
beat the baselines). The evaluation table is printed and written to ``<data>/reports/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from feature_repo.store import FeatureRepo
from feature_repo.tables import DATE, TICKER
from training.allocation.data import scores_path
from training.cards import data_label
from training.context import RunContext
from training.evaluation.metrics import SignalMetrics
from training.evaluation.report import DEFINITIONS, evaluation_table, format_table
from training.evaluation.topk import BacktestResult
from training.ray_runtime import ray_session
from training.registry.model_registry import ModelRegistry, PromotionDecision, RunRecord, code_version
from training.signals.card import CardFacts, render
from training.signals.config import SignalRunConfig
from training.signals.evaluate import baselines, evaluate_scores
from training.signals.fit import EnsembleResult, TrainedModel, ensemble, train_model
from training.signals.guard import TAG_DATA_END
from training.signals.horizons import learning_markdown, learning_report
from training.signals.inputs import SignalInputs, load_inputs
from training.stages.common import open_registry, quiet_libraries
from training.stages.portfolio_report import report_portfolios

BASELINES = ("momentum_12_1", "reversal_1m", "equal_weight")


@dataclass(frozen=True)
class _Run:
    config: SignalRunConfig
    registry: ModelRegistry
    inputs: SignalInputs
    code: str
    data_kind: str


def run(ctx: RunContext) -> dict[str, object]:
    """Train every enabled model, the ensemble, register them and print the evaluation table."""
    quiet_libraries()
    config = ctx.config.signals
    if config is None:
        print(f"  skipped: the run config '{ctx.config.name}' has no 'signals' section", file=ctx.out)
        return {"skipped": "no signals section"}
    registry = open_registry(ctx)
    inputs = load_inputs(
        config, ctx.offline_store_path, FeatureRepo.open(ctx.settings), exchange=ctx.config.calendar.exchange
    )
    if inputs.universe is not None:
        print(f"  {inputs.universe.summary()}", file=ctx.out, flush=True)
    run_ = _Run(config, registry, inputs, code_version(), ctx.config.data.kind)
    with ray_session() as session:
        print(f"  ray: {session.address}, {session.cpus} CPU(s)", file=ctx.out, flush=True)
        models = []
        for name, spec in config.enabled_models.items():
            trained = train_model(name, spec, inputs, ctx.data_dir / "ray_results", progress=ctx.progress)
            _print_tuning(ctx, trained)
            models.append(trained)
    blended = ensemble(models, inputs)
    _save_scores(ctx, models, blended, inputs)
    rows: dict[str, tuple[SignalMetrics | None, BacktestResult]] = {m.name: (m.metrics, m.backtest) for m in models}
    rows["ensemble"] = (blended.metrics, blended.backtest)
    rows.update(baselines(inputs))
    table = evaluation_table(rows)
    decisions = [_register_model(run_, m, table) for m in models]
    decisions.append(_register_ensemble(run_, models, blended, table))
    _report(ctx, table, decisions, data_label(run_.data_kind), models)
    scored = {**{m.name: m.scores for m in models}, "ensemble": blended.scores}
    report_portfolios(ctx, scored, inputs, data_label(run_.data_kind))
    return {
        "models": len(models) + 1,
        "promoted": sum(d.promoted for d in decisions),
        "test_rank_ic": round(float(table["rank_ic_mean"].to_numpy()[list(table.index).index("ensemble")]), 4),
    }


def _save_scores(ctx: RunContext, models: list[TrainedModel], blended: EnsembleResult, inputs: SignalInputs) -> None:
    """Keep the out-of-sample scores: for the allocation stage's top-k strategy and monitoring's alpha decay.

    * ``oos_scores.parquet``: the ensemble's test scores (``date, ticker, score, segment``);
    * ``predictions.parquet``: every model's valid and test scores, long (``date, ticker, model,
      score``), the predictions log ``python -m monitoring decay`` reads by default;
    * ``outcomes.parquet``: the realised outcomes with the session each became known.
    """
    folder = scores_path(ctx.data_dir).parent
    folder.mkdir(parents=True, exist_ok=True)
    h = inputs.config.horizon
    predictions = pd.concat(
        [m.scores[[DATE, TICKER, "score"]].assign(model=m.name) for m in models]
        + [blended.scores[[DATE, TICKER, "score"]].assign(model="ensemble")],
        ignore_index=True,
    )[[DATE, TICKER, "model", "score"]]
    outcomes = inputs.outcomes[[DATE, TICKER, "known_at", f"fwd_excess_{h}d"]]
    for frame, path in (
        (blended.scores[[DATE, TICKER, "score", "segment"]], scores_path(ctx.data_dir)),
        (predictions, folder / "predictions.parquet"),
        (outcomes, folder / "outcomes.parquet"),
    ):
        partial = path.with_suffix(".partial")
        frame.to_parquet(partial, index=False)
        partial.replace(path)


def _print_tuning(ctx: RunContext, m: TrainedModel) -> None:
    t = m.tuning
    print(
        f"  {m.name}: {len(t.trials)} trials in {t.seconds:.0f} s ({t.trials_per_minute:.1f}/min on {t.cpus} CPU), "
        f"{t.stopped_early} stopped early by ASHA; best out-of-fold rank IC {t.rank_ic_mean:+.4f} "
        f"± {t.rank_ic_std:.4f} across {len(t.fold_rank_ics)} folds; final model {m.model.num_trees} trees",
        file=ctx.out,
        flush=True,
    )
    if t.by_objective:  # issue 18: the objectives compared on the same folds, whichever won
        compared = ", ".join(f"{k} {v:+.4f}" for k, v in sorted(t.by_objective.items()))
        chosen = m.model.params
        print(f"    objective {chosen.objective} ({compared}); {chosen.n_seeds} seed(s)", file=ctx.out, flush=True)
    for h in m.horizons:
        print(
            f"    horizon {h.horizon:>3}: out-of-fold rank IC {h.rank_ic_mean:+.4f} (NW t {h.rank_ic_t_nw:.2f})",
            file=ctx.out,
            flush=True,
        )


def _facts(run_: _Run, name: str, table: pd.DataFrame, **extra: object) -> CardFacts:
    cfg = run_.config
    segments = {"train": cfg.segments.train, "valid": cfg.segments.valid, "test": cfg.segments.test}
    base = {
        "model": name,
        "horizon": cfg.horizon,
        "segments": segments,
        "code_version": run_.code,
        "table": table.loc[[name, *BASELINES]],
        "baselines": BASELINES,
        "costs_bps_per_side": cfg.costs.bps_per_side + cfg.costs.slippage_bps,
        "data_kind": run_.data_kind,
    }
    return CardFacts(**{**base, **extra})  # type: ignore[arg-type]


def _register_model(run_: _Run, m: TrainedModel, table: pd.DataFrame) -> PromotionDecision:
    rows = {s: int(getattr(m.masks, s).sum()) for s in ("train", "valid", "test")}
    params = m.model.params.model_dump()  # the tuned parameters, with the final model's seed count
    facts = _facts(
        run_,
        m.name,
        table,
        feature_service=m.spec.feature_service,
        features=m.frame.feature_names,
        rows=rows,
        snapshot_hash=m.frame.snapshot_hash,
        params=params,
        cv_rank_ic=m.tuning.fold_rank_ics,
    )
    tags = {
        "feature_service": m.spec.feature_service,
        "horizon": str(run_.config.horizon),
        # binary scores are P(excess > 0) and their raw sum log-odds; regression and lambdarank
        # scores only order names: a reader of the score (the explanations route) must know which.
        "objective": m.model.params.objective,
        "snapshot_hash": m.frame.snapshot_hash,
        "code_version": run_.code,
        # The last date the version was judged on: the post-promotion guard watches what comes after.
        TAG_DATA_END: str(run_.inputs.test_window[1].date()),
    }
    record = RunRecord(
        name=m.name,
        params={**params, "num_trees": m.model.num_trees, "features": m.frame.feature_names},
        metrics={
            **{f"test_{k}": float(v) for k, v in m.metrics.to_dict().items()},
            **{f"test_topk_{k}": float(v) for k, v in m.backtest.metrics().items()},
            "cv_rank_ic_mean": m.tuning.rank_ic_mean,
            "cv_rank_ic_std": m.tuning.rank_ic_std,
        },
        tags=tags,
        card=render(facts),
        tables={"evaluation": table, "tuning_trials": m.tuning.trials},
    )
    version = run_.registry.log_signal_model(record, m.model.booster, m.frame.feature_names, m.tuning.fold_rank_ics)
    champion = _champion_score(run_, m)
    return run_.registry.promote_if_better(m.name, version, m.metrics.rank_ic_mean, champion)


def _champion_score(run_: _Run, m: TrainedModel) -> float | None:
    """The current champion's rank IC on this run's test rows, or None when it cannot be scored."""
    version = run_.registry.champion_version(m.name)
    if version is None:
        return None
    booster, features = run_.registry.load_booster(m.name, version)
    if any(f not in m.frame.X.columns for f in features):
        return None
    X = m.frame.X.loc[m.masks.test, features]
    scores = pd.DataFrame(
        {DATE: m.frame.dates[m.masks.test].to_numpy(), TICKER: m.frame.tickers[m.masks.test].to_numpy()}
    )
    scores["score"] = np.asarray(booster.predict(X), dtype=np.float64)
    return float(evaluate_scores(scores, run_.inputs).rank_ic_mean)


def _register_ensemble(
    run_: _Run, models: list[TrainedModel], blended: EnsembleResult, table: pd.DataFrame
) -> PromotionDecision:
    names = [m.name for m in models]
    facts = _facts(
        run_,
        "ensemble",
        table,
        feature_service=None,
        features=names,
        rows={"test": len(blended.scores)},
        snapshot_hash=",".join(m.frame.snapshot_hash[:12] for m in models),
        params={"weights": blended.final_weights, "ic_window": run_.config.evaluation.ensemble_ic_window},
        cv_rank_ic=[],
        limits=("Weights come from trailing rank IC of the components' out-of-sample scores.",),
    )
    record = RunRecord(
        name="ensemble",
        params={"components": names, "final_weights": blended.final_weights},
        metrics={
            **{f"test_{k}": float(v) for k, v in blended.metrics.to_dict().items()},
            **{f"test_topk_{k}": float(v) for k, v in blended.backtest.metrics().items()},
        },
        tags={"components": ",".join(names), "horizon": str(run_.config.horizon), "code_version": run_.code},
        card=render(facts),
        tables={"evaluation": table, "weights_by_date": blended.weights_by_date},
    )
    champion = _ensemble_champion_score(run_, blended)
    version = run_.registry.log_ensemble(record, blended.final_weights)
    return run_.registry.promote_if_better("ensemble", version, blended.metrics.rank_ic_mean, champion)


def _ensemble_champion_score(run_: _Run, blended: EnsembleResult) -> float | None:
    """The champion ensemble's rank IC when it blends this run's component scores on the test rows."""
    version = run_.registry.champion_version("ensemble")
    if version is None:
        return None
    model, inputs = run_.registry.load_pyfunc("ensemble", version)
    known = [c for c in blended.components.columns if c in inputs]
    if not known:
        return None
    out = model.predict(blended.components[known])
    scores = blended.components[[DATE, TICKER]].assign(score=np.asarray(out["score"], dtype=np.float64))
    return float(evaluate_scores(scores, run_.inputs).rank_ic_mean)


def _report(
    ctx: RunContext, table: pd.DataFrame, decisions: list[PromotionDecision], data: str, models: list[TrainedModel]
) -> None:
    text = format_table(table)
    print(f"\n  Test segment, untouched by tuning; {data}:\n", file=ctx.out)
    print("\n".join("  " + line for line in text.splitlines()), file=ctx.out)
    for d in decisions:
        verdict = "champion" if d.promoted else "challenger only"
        print(f"  {d.model} v{d.version}: {verdict} ({d.reason})", file=ctx.out)
    reports = ctx.data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    learning = learning_report(models)
    (reports / f"learning-{stamp}.json").write_text(json.dumps(learning, indent=2), encoding="utf-8")
    (reports / f"signals-{stamp}.md").write_text(
        f"# Signal models, test segment\n\n{data}\n\n```\n{text}\n```\n\n```\n{DEFINITIONS}```\n"
        + learning_markdown(learning),
        encoding="utf-8",
    )
    table.to_csv(reports / f"signals-{stamp}.csv")
    print(f"  definitions and table: {reports / f'signals-{stamp}.md'}", file=ctx.out, flush=True)
