"""Temperature scaling and the expected calibration error (ECE) of three-class probabilities.

One scalar ``T`` divides the logits before the softmax: the predicted class never changes (accuracy
and F1 are untouched), only how sure the probabilities say the model is. ``T`` is fitted by
minimising the negative log-likelihood on a validation split carved from the training rows, never
on the reported validation set, and travels inside the registered model (``model_config``).
"""

from __future__ import annotations

import numpy as np

from training.errors import TrainingError
from training.sentiment.text_classifier import softmax

_LOG_T_RANGE = (-3.0, 3.0)  # T from 0.05 to 20: far wider than any fine-tuned model needs


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean NLL of ``labels`` under ``softmax(logits / temperature)``."""
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, iterations: int = 60) -> float:
    """The temperature minimising the NLL (golden-section search on log T; the NLL is convex in 1/T).

    Raises:
        TrainingError: no rows, or logits and labels of different lengths.
    """
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise TrainingError("temperature scaling needs one row of logits per label, and at least one row")
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    low, high = _LOG_T_RANGE

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, float(np.exp(log_t)))

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(np.exp((low + high) / 2.0))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between top-class confidence and accuracy, over equal-width bins."""
    if len(probabilities) != len(labels) or not len(labels):
        raise ValueError("ECE needs one probability row per label, and at least one row")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(float(confidence[inside].mean()) - float(correct[inside].mean()))
    return float(gap)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities from logits at ``temperature``."""
    return softmax(logits / temperature)
