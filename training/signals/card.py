"""A signal model's card: what a registered version was trained on, how it scored, and what it cannot do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from training.cards import DATA_LIMITS, data_label
from training.evaluation.report import format_table


@dataclass(frozen=True)
class CardFacts:
    """Everything a model card states."""

    model: str
    feature_service: str | None
    features: Sequence[str]
    horizon: int
    segments: Mapping[str, tuple[object, object]]
    rows: Mapping[str, int]
    snapshot_hash: str
    code_version: str
    params: Mapping[str, object]
    cv_rank_ic: Sequence[float]
    table: pd.DataFrame
    baselines: Sequence[str]
    costs: str  # the cost model the table's books paid, in words (describe_costs)
    data_kind: str
    limits: Sequence[str] = field(default_factory=tuple)


def beats_baselines(table: pd.DataFrame, model: str, baselines: Sequence[str]) -> tuple[bool, str]:
    """Whether ``model`` beat every baseline on test rank IC (where defined) and net Sharpe."""
    row = table.loc[model]
    lost = []
    for base in baselines:
        other = table.loc[base]
        if pd.notna(other["rank_ic_mean"]) and not row["rank_ic_mean"] > other["rank_ic_mean"]:
            lost.append(f"{base} on rank IC")
        if not row["sharpe"] > other["sharpe"]:
            lost.append(f"{base} on net Sharpe")
    if lost:
        return False, "It did NOT beat the baselines on the test segment: it lost to " + ", ".join(lost) + "."
    return True, "It beat every baseline on the test segment on rank IC and net Sharpe."


def render(facts: CardFacts) -> str:
    """The card as Markdown (logged as ``model_card.md`` and as the version's description)."""
    _, verdict = beats_baselines(facts.table, facts.model, facts.baselines)
    seg = "\n".join(
        f"- {name}: {a} .. {b} ({facts.rows.get(name, 0):,} rows)" for name, (a, b) in facts.segments.items()
    )
    cv = ", ".join(f"{v:+.4f}" for v in facts.cv_rank_ic) or "n/a"
    params = ", ".join(f"{k}={v}" for k, v in facts.params.items())
    limits = "\n".join(f"- {line}" for line in (*facts.limits, *DATA_LIMITS.get(facts.data_kind, ())))
    return f"""# Model card: {facts.model}

**Verdict.** {verdict}

## Data
- Source: {data_label(facts.data_kind)}
- Label: the {facts.horizon}-session forward return against that date's universe members (binary: above their median).
- Feature service: {facts.feature_service or "none (blends component scores)"}
- Features ({len(facts.features)}): {", ".join(facts.features)}
{seg}
- Data snapshot: `{facts.snapshot_hash}`; code version: `{facts.code_version}`

## Training
- Hyper-parameters: {params}
- Walk-forward tuning folds (purged, embargoed, inside the train segment), rank IC per fold: {cv}

## Test segment (untouched by tuning; {data_label(facts.data_kind)})
Costs {facts.costs}.
```
{format_table(facts.table)}
```

## Limits
{limits}
"""
