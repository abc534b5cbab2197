"""Stage ``guard``: roll back a new signal-model champion that trails the one it replaced on live outcomes.

Runs :func:`training.signals.guard.check_model` for every enabled signal model, on the rows whose outcomes
are known and dated after the champion's ``data_end``, read point in time from the model's Feast
feature service as in training. Schedule it after new data lands (a CronJob in the cluster, or
``portfolio-os run --stages ingest,features,apply,materialize,guard`` locally).
"""

from __future__ import annotations

from feature_repo.store import FeatureRepo
from training.context import RunContext
from training.signals.guard import GuardDecision, check_model, live_rows
from training.signals.inputs import load_inputs
from training.stages.common import open_registry, quiet_libraries


def run(ctx: RunContext) -> dict[str, object]:
    """Check each enabled signal model's champion against the one it replaced."""
    config = ctx.config.signals
    if config is None:
        print(f"  skipped: the run config '{ctx.config.name}' has no 'signals' section", file=ctx.out)
        return {"skipped": "no signals section"}
    quiet_libraries()
    registry = open_registry(ctx)
    repo = FeatureRepo.open(ctx.settings)
    # The guard compares rank IC only: no book is traded, so no ADV is computed.
    inputs = load_inputs(
        config, ctx.offline_store_path, repo, exchange=ctx.config.calendar.exchange, with_liquidity=False
    )
    decisions: list[GuardDecision] = []
    for name, spec in config.enabled_models.items():
        decision = check_model(
            registry,
            name,
            live_rows(inputs, spec.feature_service),
            sessions=ctx.config.registry.guard_sessions,
            margin=ctx.config.registry.guard_margin,
        )
        print(f"  {name}: {decision.decision} ({decision.reason})", file=ctx.out, flush=True)
        decisions.append(decision)
    return {
        "checked": len(decisions),
        "rolled_back": sum(d.decision == "rolled_back" for d in decisions),
        "waiting": sum(d.decision == "waiting" for d in decisions),
    }
