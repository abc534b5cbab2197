"""The allocator's model card: what it was trained on, how it was chosen, how it did, what it cannot do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from training.cards import DATA_LIMITS, data_label

LIMITS = (
    "The policy has a fixed number of slots (max_assets under constraints): it allocates over any set of "
    "at most that many tickers, seen in training or not, and refuses more. When the universe holds more "
    "names than slots, held names take slots first, then the calmest by slot_feature; the rest get nothing.",
    "It reads one session of features (the allocator_v1 service); the features summarise 21-252 sessions.",
    "RL results vary with the seed: the seed is one of the searched dimensions and the card reports the "
    "validation spread across trials.",
    "Under an overlay (constraints: overlay) the policy tilts a base book by a bounded factor per name; "
    "a policy that learnt nothing holds the base. Only the inverse_variance base (from vol_63d) can be "
    "served; a min_variance or hrp base needs a returns window that a request does not carry.",
)


@dataclass(frozen=True)
class AllocatorFacts:
    """Everything the allocator's card states."""

    name: str
    tickers: Sequence[str]
    features: Sequence[str]
    segments: Mapping[str, tuple[object, object]]
    validation_windows: Sequence[str]
    config: Mapping[str, object]
    constraints: Mapping[str, object]
    val_sharpes: Sequence[float]
    trials: pd.DataFrame
    table: pd.DataFrame
    baselines: Sequence[str]
    code_version: str
    data_kind: str


def verdict(table: pd.DataFrame, name: str, baselines: Sequence[str]) -> str:
    """Whether the policy beat every baseline on the test segment's net Sharpe, in words."""
    sharpe = table["sharpe"].astype(float)
    lost = [b for b in baselines if b in sharpe.index and not sharpe[name] > sharpe[b]]
    if lost:
        return f"It did NOT beat every baseline on the test segment's net Sharpe: it lost to {', '.join(lost)}."
    return "It beat every baseline on the test segment's net Sharpe."


def _shown(tickers: Sequence[str], limit: int = 50) -> str:
    """The first ``limit`` names and how many more (an exchange's universe holds thousands)."""
    head = ", ".join(tickers[:limit])
    return head if len(tickers) <= limit else f"{head} (+{len(tickers) - limit} more)"


def render_card(facts: AllocatorFacts) -> str:
    """The card as Markdown (logged as ``model_card.md`` and as the version's description)."""
    seg = "\n".join(f"- {k}: {a} .. {b}" for k, (a, b) in facts.segments.items())
    windows = ", ".join(f"{w} ({s:+.2f})" for w, s in zip(facts.validation_windows, facts.val_sharpes, strict=False))
    limits = "\n".join(f"- {line}" for line in (*LIMITS, *DATA_LIMITS.get(facts.data_kind, ())))
    params = ", ".join(f"{k}={v}" for k, v in facts.config.items())
    trials = ", ".join(f"{v:+.2f}" for v in facts.trials["best_val_sharpe"])
    constraints = ", ".join(f"{k}={v}" for k, v in facts.constraints.items())
    return f"""# Model card: {facts.name}

**Verdict.** {verdict(facts.table, facts.name, facts.baselines)}

## Data
- Source: {data_label(facts.data_kind)}
- Names in the training panel ({len(facts.tickers)}, every one ever a member): {_shown(facts.tickers)}
- Features (allocator_v1, lagged one session: decisions trade at the next close): {", ".join(facts.features)}
{seg}
- Code version: `{facts.code_version}`

## Training and selection
- Chosen trial: {params}
- Constraints and costs: {constraints}
- Selected on walk-forward validation windows inside the valid segment (annualised net Sharpe): {windows}
- Trials: {len(facts.trials)}; best validation Sharpe per trial: {trials}

## Test segment (untouched by tuning; {data_label(facts.data_kind)})
```
{facts.table.to_string(float_format=lambda v: f"{v:.4f}")}
```

## Limits
{limits}
"""
