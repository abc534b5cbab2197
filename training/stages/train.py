"""Stage ``train``: tune, fit and evaluate the signal models and the ensemble; register; gate; report.

The registry is checked before any training (an unreachable registry fails in seconds, not after
the search). Each model is registered as ``challenger`` with its model card, then promoted to
``champion`` only when it beats the current champion's rank IC on this run's test segment by the
configured margin (:mod:`training.signals.registration`, :func:`training.registry.gate.register_and_gate`;
the first version is promoted so the stack can serve; its card says whether it beat the baselines).
The evaluation table is printed and written to ``<data>/reports/`` (:mod:`training.signals.report`).
"""

from __future__ import annotations

from feature_repo.contract import ENSEMBLE
from feature_repo.store import FeatureRepo
from training.cards import data_label
from training.context import RunContext
from training.evaluation.liquidity import describe_costs
from training.evaluation.metrics import SignalMetrics
from training.evaluation.report import evaluation_table
from training.evaluation.topk import BacktestResult
from training.ray_runtime import ray_session
from training.registry.gate import register_and_gate
from training.registry.model_registry import code_version
from training.signals.evaluate import baselines
from training.signals.fit import ensemble, train_model
from training.signals.inputs import load_inputs
from training.signals.portfolio_report import report_portfolios
from training.signals.registration import SignalRun, ensemble_challenger, model_challenger
from training.signals.report import print_tuning, report_evaluation, save_scores
from training.stages.common import open_registry, quiet_libraries


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
    with ray_session() as session:
        print(f"  ray: {session.address}, {session.cpus} CPU(s)", file=ctx.out, flush=True)
        models = []
        for name, spec in config.enabled_models.items():
            trained = train_model(name, spec, inputs, ctx.data_dir / "ray_results", progress=ctx.progress)
            print_tuning(ctx.out, trained)
            models.append(trained)
    blended = ensemble(models, inputs)
    save_scores(ctx, models, blended, inputs)
    rows: dict[str, tuple[SignalMetrics | None, BacktestResult]] = {m.name: (m.metrics, m.backtest) for m in models}
    rows[ENSEMBLE] = (blended.metrics, blended.backtest)
    rows.update(baselines(inputs))
    table = evaluation_table(rows)
    signal_run = SignalRun(config, inputs, code_version(), ctx.config.data.kind, table)
    challengers = [*(model_challenger(signal_run, m) for m in models), ensemble_challenger(signal_run, models, blended)]
    decisions = [register_and_gate(registry, c) for c in challengers]
    label = data_label(ctx.config.data.kind)
    costs = describe_costs(config.costs, config.evaluation.book.book_aud)
    report_evaluation(ctx, table, decisions, label, models, costs=costs)
    report_portfolios(ctx, {**{m.name: m.scores for m in models}, ENSEMBLE: blended.scores}, inputs, label)
    return {
        "models": len(models) + 1,
        "promoted": sum(d.promoted for d in decisions),
        "test_rank_ic": round(float(table["rank_ic_mean"].to_numpy()[list(table.index).index(ENSEMBLE)]), 4),
    }
