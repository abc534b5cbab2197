"""Accuracy, macro-F1 and the confusion matrix of three-class predictions, as one report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.sentiment import LABELS


@dataclass(frozen=True)
class ClassificationReport:
    """Figures on one labelled set. ``confusion[i, j]``: sentences of true label i predicted as j."""

    n: int
    accuracy: float
    macro_f1: float
    f1: dict[str, float]
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: np.ndarray

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Flat names for a tracking run: ``<prefix>_accuracy``, ``<prefix>_macro_f1``, ``<prefix>_f1_<label>``."""
        flat = {f"{prefix}_accuracy": self.accuracy, f"{prefix}_macro_f1": self.macro_f1}
        return flat | {f"{prefix}_f1_{label}": value for label, value in self.f1.items()}


def label_indices(labels: Sequence[str]) -> np.ndarray:
    """Class indices in :data:`LABELS` order; raises ValueError naming an unknown label."""
    position = {label: i for i, label in enumerate(LABELS)}
    unknown = sorted({lbl for lbl in labels if lbl not in position})
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; expected {LABELS}")
    return np.array([position[lbl] for lbl in labels], dtype=np.int64)


def classification_report(true: np.ndarray, predicted: np.ndarray) -> ClassificationReport:
    """The report for class indices ``true`` and ``predicted`` (same length, values 0..2).

    A class never predicted has precision 0 (not NaN), so a model that ignores a class pays for it
    in macro-F1, as it should.
    """
    if true.shape != predicted.shape or true.size == 0:
        raise ValueError("true and predicted must be non-empty and of equal length")
    k = len(LABELS)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    hits = np.diag(confusion).astype(float)
    predicted_n, true_n = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted_n, out=np.zeros(k), where=predicted_n > 0)
    recall = np.divide(hits, true_n, out=np.zeros(k), where=true_n > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    return ClassificationReport(
        n=int(true.size),
        accuracy=float(hits.sum() / true.size),
        macro_f1=float(f1.mean()),
        f1={label: float(v) for label, v in zip(LABELS, f1, strict=True)},
        precision={label: float(v) for label, v in zip(LABELS, precision, strict=True)},
        recall={label: float(v) for label, v in zip(LABELS, recall, strict=True)},
        confusion=confusion,
    )


def render_confusion(report: ClassificationReport) -> str:
    """The confusion matrix as a small fixed-width table (rows: true label, columns: predicted)."""
    width = max(len(label) for label in LABELS) + 2
    lines = ["true \\ predicted".ljust(18) + "".join(label.rjust(width) for label in LABELS)]
    for label, row in zip(LABELS, report.confusion, strict=True):
        lines.append(label.ljust(18) + "".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)
