"""The main job: one pipeline of named stages, each runnable alone.

    ingest -> health -> sentiment -> features -> apply -> materialize -> online -> train -> allocate -> guard

Each stage reads what it needs
from the offline store or the Feast repo under the data folder, so ``portfolio-os features`` can
run after an ``ingest`` made earlier, in another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from training.context import RunContext
from training.stages import allocate, feast_ops, guard, health, ingest, sentiment, train
from training.stages import features as features_stage


@dataclass
class StageReport:
    """A stage's outcome: its name, wall time and the figures worth a line in the summary."""

    name: str
    seconds: float
    summary: dict[str, object] = field(default_factory=dict)


StageFn = Callable[[RunContext], dict[str, object]]

STAGES: Final[dict[str, StageFn]] = {
    "ingest": ingest.run,
    "health": health.run,
    "sentiment": sentiment.run,
    "features": features_stage.run,
    "apply": feast_ops.apply,
    "materialize": feast_ops.materialize,
    "online": feast_ops.online,
    "train": train.run,
    "allocate": allocate.run,
    "guard": guard.run,
}

STAGE_HELP: Final[dict[str, str]] = {
    "ingest": "load the configured source into the offline store (idempotent upserts)",
    "health": "data health checks on stored prices; non-zero exit past a threshold",
    "sentiment": "fine-tune the text model, validate it against the LM lexicon, register; score stored documents",
    "features": "compute technical, fundamental and sentiment features; write the Feast source files",
    "apply": "register the entity, feature views and feature services in the Feast registry",
    "materialize": "load the newest features into the online store (full or incremental)",
    "online": "print an online feature read for the configured tickers",
    "train": "tune (Ray), fit and evaluate the signal models and the ensemble; register and gate in MLflow",
    "allocate": "train the RL allocator (Ray), backtest it and the classic optimisers; tear sheet; register and gate",
    "guard": "roll back a new signal-model champion that trails the one it replaced on outcomes known since",
}


def run_pipeline(ctx: RunContext, stages: list[str] | None = None) -> list[StageReport]:
    """Run ``stages`` (default: all, in order) and print a summary table at the end."""
    names = stages or list(STAGES)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    reports: list[StageReport] = []
    for index, name in enumerate(names, start=1):
        print(f"\n[{index}/{len(names)}] {name}: {STAGE_HELP[name]}", file=ctx.out, flush=True)
        started = time.perf_counter()
        summary = STAGES[name](ctx)
        reports.append(StageReport(name, time.perf_counter() - started, summary))
    print_summary(reports, ctx.out)
    return reports


def print_summary(reports: list[StageReport], out: TextIO) -> None:
    """A fixed-width table: stage, seconds, and the stage's key figures."""
    print("\nSummary", file=out)
    print(f"{'stage':<12} {'seconds':>8}  result", file=out)
    for r in reports:
        figures = ", ".join(f"{k}={v}" for k, v in r.summary.items())
        print(f"{r.name:<12} {r.seconds:>8.2f}  {figures}", file=out)
    print(f"{'total':<12} {sum(r.seconds for r in reports):>8.2f}", file=out, flush=True)
