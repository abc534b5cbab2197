"""What the ``train`` stage prints and writes: tuning lines, the evaluation table, decisions, score files.

Reports go to ``<data>/reports/`` (``signals-<stamp>.md`` with the definitions, ``.csv``, and
``learning-<stamp>.json``); the out-of-sample scores go to ``<data>/signals/`` for the allocation
stage and monitoring (:func:`save_scores`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TextIO

import pandas as pd

from feature_repo.contract import ENSEMBLE
from feature_repo.tables import DATE, TICKER
from training.allocation.data import scores_path
from training.context import RunContext
from training.evaluation.report import DEFINITIONS, format_table
from training.registry.model_registry import PromotionDecision
from training.signals.fit import EnsembleResult, TrainedModel
from training.signals.horizons import learning_markdown, learning_report
from training.signals.inputs import SignalInputs


def print_tuning(out: TextIO, m: TrainedModel) -> None:
    """The search's figures for one model: trials, speed, ASHA stops, out-of-fold rank IC, objectives, horizons."""
    t = m.tuning
    print(
        f"  {m.name}: {len(t.trials)} trials in {t.seconds:.0f} s ({t.trials_per_minute:.1f}/min on {t.cpus} CPU), "
        f"{t.stopped_early} stopped early by ASHA; best out-of-fold rank IC {t.rank_ic_mean:+.4f} "
        f"± {t.rank_ic_std:.4f} across {len(t.fold_rank_ics)} folds; final model {m.model.num_trees} trees",
        file=out,
        flush=True,
    )
    if t.by_objective:  # issue 18: the objectives compared on the same folds, whichever won
        compared = ", ".join(f"{k} {v:+.4f}" for k, v in sorted(t.by_objective.items()))
        chosen = m.model.params
        print(f"    objective {chosen.objective} ({compared}); {chosen.n_seeds} seed(s)", file=out, flush=True)
    for h in m.horizons:
        print(
            f"    horizon {h.horizon:>3}: out-of-fold rank IC {h.rank_ic_mean:+.4f} (NW t {h.rank_ic_t_nw:.2f})",
            file=out,
            flush=True,
        )


def save_scores(ctx: RunContext, models: list[TrainedModel], blended: EnsembleResult, inputs: SignalInputs) -> None:
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
        + [blended.scores[[DATE, TICKER, "score"]].assign(model=ENSEMBLE)],
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


def report_evaluation(
    ctx: RunContext,
    table: pd.DataFrame,
    decisions: list[PromotionDecision],
    data: str,
    models: list[TrainedModel],
    *,
    costs: str,
) -> None:
    """Print the test-segment table and the gate's decisions; write the table, definitions and learning report.

    ``costs`` names the cost model the table's books paid (:func:`~training.evaluation.liquidity.describe_costs`).
    """
    text = format_table(table)
    costs = f"Costs {costs}."
    print(f"\n  Test segment, untouched by tuning; {data}:\n  {costs}\n", file=ctx.out)
    print("\n".join("  " + line for line in text.splitlines()), file=ctx.out)
    for d in decisions:
        print(f"  {d.describe()}", file=ctx.out)
    reports = ctx.data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    learning = learning_report(models)
    (reports / f"learning-{stamp}.json").write_text(json.dumps(learning, indent=2), encoding="utf-8")
    (reports / f"signals-{stamp}.md").write_text(
        f"# Signal models, test segment\n\n{data}\n\n{costs}\n\n```\n{text}\n```\n\n```\n{DEFINITIONS}```\n"
        + learning_markdown(learning),
        encoding="utf-8",
    )
    table.to_csv(reports / f"signals-{stamp}.csv")
    print(f"  definitions and table: {reports / f'signals-{stamp}.md'}", file=ctx.out, flush=True)
