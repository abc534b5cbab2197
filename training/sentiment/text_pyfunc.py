"""The registered text model ``sentiment_text`` (MLflow models-from-code).

Logged with ``python_model=<this file>``, the fine-tuned weights and tokenizer as the artifact folder
``model`` (transformers ``save_pretrained``), ``code_paths`` = ``text_classifier.py`` (the batching
the validation figures were measured with), and ``model_config``: ``labels``, ``max_length``,
``batch_size``, ``temperature`` (temperature scaling fitted at training; 1.0 when absent) and ``runtime``:
``torch`` (eager), ``torch-int8`` (dynamic int8 quantisation at load), ``onnx`` (ONNX Runtime over the
``model.onnx`` exported into the folder at registration) or ``onnx-int8`` (ONNX Runtime over an int8
file chosen at registration, named by ``quantisation``: ``static``, the default, reads
``model.int8.onnx``, static int8 calibrated on real text; ``dynamic`` reads ``model.int8-dynamic.onnx``,
ONNX Runtime's dynamic int8, kept when static int8 lost too much macro-F1; see
``training/sentiment/runtimes.py``). ``onnx_file`` on the loaded model names the file it runs.

Input: a frame with a string column ``text``. Output: columns ``negative``, ``neutral``, ``positive``
(probabilities summing to 1), one row per text, in the input's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

try:  # the project installed: training, tests
    from training.sentiment.text_classifier import (
        LABELS,
        ONNX_FILE,
        ONNX_INT8_DYNAMIC_FILE,
        ONNX_INT8_FILE,
        LogitsFn,
        TextClassifier,
        onnx_session_logits,
    )
except ImportError:  # inside a model server: code_paths put the file on sys.path
    from text_classifier import (  # type: ignore[no-redef]
        LABELS,
        ONNX_FILE,
        ONNX_INT8_DYNAMIC_FILE,
        ONNX_INT8_FILE,
        LogitsFn,
        TextClassifier,
        onnx_session_logits,
    )

RUNTIMES = ("torch", "torch-int8", "onnx", "onnx-int8")
QUANTISATIONS = ("static", "dynamic")
_INT8_FILES = {"static": ONNX_INT8_FILE, "dynamic": ONNX_INT8_DYNAMIC_FILE}


def onnx_file(runtime: str, quantisation: str | None) -> str | None:
    """The ONNX file a runtime reads from the model folder (None: it runs PyTorch).

    Raises:
        ValueError: an unknown quantisation for ``onnx-int8``.
    """
    if runtime == "onnx":
        return ONNX_FILE
    if runtime != "onnx-int8":
        return None
    chosen = quantisation or "static"  # versions registered before dynamic int8 name no quantisation
    if chosen not in _INT8_FILES:
        raise ValueError(f"model_config quantisation {chosen!r} is not one of {QUANTISATIONS}")
    return _INT8_FILES[chosen]


class SentimentTextPyfunc(PythonModel):  # type: ignore[misc]
    """Probabilities of negative, neutral and positive for each text."""

    def load_context(self, context: Any) -> None:
        cfg = context.model_config
        labels = tuple(cfg.get("labels", LABELS))
        if labels != LABELS:
            raise ValueError(f"model_config labels {labels} differ from {LABELS}")
        runtime = str(cfg.get("runtime", "torch"))
        if runtime not in RUNTIMES:
            raise ValueError(f"model_config runtime {runtime!r} is not one of {RUNTIMES}")
        self.batch_size = int(cfg.get("batch_size", 32))
        folder = Path(context.artifacts["model"])
        self.classifier = TextClassifier.load(folder, max_length=int(cfg.get("max_length", 128)))
        self.classifier.temperature = float(cfg.get("temperature", 1.0))
        if self.classifier.temperature <= 0:
            raise ValueError(f"model_config temperature must be positive, got {self.classifier.temperature}")
        self.logits_fn: LogitsFn | None = None
        self.onnx_file = onnx_file(runtime, cfg.get("quantisation"))
        if self.onnx_file is not None:
            if not (folder / self.onnx_file).is_file():
                raise ValueError(
                    f"runtime {runtime!r} needs {self.onnx_file} in the model folder; this version has none"
                )
            self.logits_fn = onnx_session_logits(folder / self.onnx_file)
        if runtime == "torch-int8":
            import torch

            self.classifier.model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                self.classifier.model, {torch.nn.Linear}, dtype=torch.qint8
            )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return score_texts(self.classifier, model_input, self.batch_size, logits_fn=self.logits_fn)


def score_texts(
    classifier: TextClassifier, rows: pd.DataFrame, batch_size: int, *, logits_fn: LogitsFn | None = None
) -> pd.DataFrame:
    """Probabilities per row of ``rows['text']``; a ValueError names a missing column or a non-text value."""
    if "text" not in rows.columns:
        raise ValueError("the sentiment model needs a 'text' column")
    texts = rows["text"].tolist()
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"text at position(s) {bad[:5]} is empty or not a string")
    probabilities = classifier.predict_proba(texts, batch_size=batch_size, logits_fn=logits_fn)
    return pd.DataFrame(probabilities, columns=list(LABELS), index=rows.index)


# Models-from-code: MLflow runs this file when logging and loading, and serves the model set here.
mlflow.models.set_model(SentimentTextPyfunc())
