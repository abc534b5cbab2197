"""The retraining decision: drift or alpha decay past their thresholds -> retrain, with reasons.

The decision is pure. Acting on it launches the training pipeline as a separate process
(:data:`RETRAIN_COMMAND`, ``python -m training run --stages train``) rather than importing
``training``: the deployables meet only through commands, files and the registry, and in the
cluster the same command runs as a Job. Promotion stays training's gated decision; monitoring
only asks for a new challenger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from monitoring.decay import DecayResult
from monitoring.drift import ViewDrift

RETRAIN_COMMAND: Final[tuple[str, ...]] = ("-m", "training", "run", "--stages", "train")


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain and every reason for it (empty when nothing is past a threshold)."""

    recommended: bool
    reasons: list[str] = field(default_factory=list)


def decide(drift: Sequence[ViewDrift], decay: Sequence[DecayResult]) -> RetrainDecision:
    """Retrain when any view drifted (share >= its drift share) or any model's rolling IC decayed."""
    reasons = [
        f"{d.view}: {d.share:.0%} of tested features drifted ({', '.join(f.feature for f in d.features if f.detected)})"
        for d in drift
        if d.detected
    ]
    for r in decay:
        if r.decayed:
            lost = "lost significance" if r.lost_significance else "never significant in the history"
            reasons.append(
                f"{r.model}: rolling rank IC t-stat {r.rank_ic_tstat:.2f} < {r.tstat_min:g} ({lost}; "
                f"rank IC {r.rolling_rank_ic:+.3f} over {r.window} dates to {r.as_of})"
            )
    return RetrainDecision(recommended=bool(reasons), reasons=reasons)


def launch(
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    timeout: float | None = None,
    *,
    stages: str = "train",
) -> int:
    """Run the documented training command, with ``stages`` for its stage list; returns its exit code."""
    command = [python, *RETRAIN_COMMAND[:-1], stages, *extra_args]
    completed = subprocess.run(command, check=False, timeout=timeout)
    return completed.returncode


def record(
    path: Path,
    decision: RetrainDecision,
    drift: Sequence[ViewDrift],
    decay: Sequence[DecayResult],
    *,
    launched: bool,
    exit_code: int | None,
) -> dict[str, object]:
    """Append one decision to the retraining log (JSON lines), with the figures it was made on.

    What happened next (the challenger, its gated promotion, a later rollback) is in training's
    hash-chained registry audit log; this log says why training was asked to run, or not.
    """
    entry: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(),
        "recommended": decision.recommended,
        "reasons": decision.reasons,
        "drift_share": {d.view: d.share for d in drift},
        "drift_detected": {d.view: d.detected for d in drift},
        "rank_ic_tstat": {r.model: r.rank_ic_tstat for r in decay},
        "rolling_rank_ic": {r.model: r.rolling_rank_ic for r in decay},
        "launched": launched,
        "exit_code": exit_code,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry
