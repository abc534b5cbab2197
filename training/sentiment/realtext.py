"""Validation figures of the text model beside the lexicon, on the carved split and on real text, as reports.

Two validation sets can appear in one run: the split carved from the training rows (it also picks
the epoch and fits the temperature, so its figures are in-sample for both) and the real corpus's own
validation rows (never used for any choice: the honest figure). Each gets accuracy, macro-F1,
per-class F1 and the confusion matrix for the model and the Loughran-McDonald lexicon, and the
model's expected calibration error before and after temperature scaling. Reports are written as
JSON (for tools) and Markdown (for people) under the run's ``reports`` folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from feature_repo.contract import SENTIMENT_TEXT
from training.sentiment.calibration import expected_calibration_error
from training.sentiment.card import comparison_rows
from training.sentiment.metrics import ClassificationReport, classification_report, render_confusion
from training.sentiment.text_classifier import softmax


@dataclass(frozen=True)
class Validation:
    """One validation set's figures: the model (calibrated), the lexicon, and ECE before/after scaling."""

    name: str
    description: str
    model: ClassificationReport
    lexicon: ClassificationReport
    ece_before: float
    ece_after: float


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at temperature ``temperature`` from probabilities at temperature 1 (log p = logits - c)."""
    return softmax(np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature)


def validate(
    name: str,
    description: str,
    *,
    truth: np.ndarray,
    raw_probabilities: np.ndarray,
    lexicon_predicted: np.ndarray,
    temperature: float,
) -> Validation:
    """Figures from the model's uncalibrated probabilities, the fitted temperature and the lexicon's labels."""
    scaled = rescale(raw_probabilities, temperature)
    return Validation(
        name=name,
        description=description,
        model=classification_report(truth, scaled.argmax(axis=1)),
        lexicon=classification_report(truth, lexicon_predicted),
        ece_before=expected_calibration_error(raw_probabilities, truth),
        ece_after=expected_calibration_error(scaled, truth),
    )


def _report_json(report: ClassificationReport) -> dict[str, Any]:
    return {
        "n": report.n,
        "accuracy": round(report.accuracy, 4),
        "macro_f1": round(report.macro_f1, 4),
        "f1": {k: round(v, 4) for k, v in report.f1.items()},
        "confusion": report.confusion.tolist(),
    }


def as_json(validation: Validation) -> dict[str, Any]:
    """The figures as plain JSON values (rounded to 4 places)."""
    return {
        "data": validation.description,
        "model": _report_json(validation.model),
        "lexicon": _report_json(validation.lexicon),
        "ece_before_temperature": round(validation.ece_before, 4),
        "ece_after_temperature": round(validation.ece_after, 4),
    }


def as_markdown(validation: Validation) -> str:
    """A section: the comparison table, ECE, and both confusion matrices."""
    table = "\n".join(comparison_rows({SENTIMENT_TEXT: validation.model, "loughran_mcdonald": validation.lexicon}))
    return (
        f"## {validation.name}: {validation.description}\n\n```\n{table}\n```\n"
        f"ECE (15 bins): {validation.ece_before:.4f} before temperature scaling, {validation.ece_after:.4f} after.\n\n"
        f"Confusion, sentiment_text:\n```\n{render_confusion(validation.model)}\n```\n"
        f"Confusion, Loughran-McDonald lexicon:\n```\n{render_confusion(validation.lexicon)}\n```\n"
    )


def write_reports(
    folder: Path, validations: list[Validation], facts: Mapping[str, Any], *, now: datetime | None = None
) -> tuple[Path, Path]:
    """``sentiment-<stamp>.json`` and ``.md`` in ``folder``: the run's facts and every validation set."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    document = {"facts": dict(facts), "validation": {v.name: as_json(v) for v in validations}}
    json_path = folder / f"sentiment-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    lines = "\n".join(f"- {k}: {v}" for k, v in facts.items())
    sections = "\n".join(as_markdown(v) for v in validations)
    md_path = folder / f"sentiment-{stamp}.md"
    md_path.write_text(f"# Sentiment: validation\n\n{lines}\n\n{sections}")
    return json_path, md_path
