"""Faster CPU runtimes for a :class:`TextClassifier`: dynamic int8 quantisation and ONNX Runtime.

Each returns a logits function for :func:`~training.sentiment.text_classifier.batched_probabilities`,
so every runtime scores the same length-sorted, dynamically padded batches as eager PyTorch. Whether
one is worth using is measured, not assumed: ``bench/sentiment.py`` reports sentences/s and the
validation accuracy of each, and the largest probability difference from eager PyTorch.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from training.sentiment.text_classifier import LogitsFn, TextClassifier, onnx_session_logits

ONNX_OPSET = 17


def quantised_torch_logits(classifier: TextClassifier) -> LogitsFn:
    """Eager PyTorch with every ``Linear`` layer's weights in int8 (activations quantised per batch)."""
    import torch

    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao, which is not installed here.
        warnings.simplefilter("ignore")
        model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(classifier.model), {torch.nn.Linear}, dtype=torch.qint8
        )
    quantised = TextClassifier(model, classifier.tokenizer, max_length=classifier.max_length)
    return quantised.torch_logits


def export_onnx(classifier: TextClassifier, path: Path) -> Path:
    """Write the classifier as ONNX (inputs ``input_ids``, ``attention_mask``; output ``logits``)."""
    import torch

    model = copy.deepcopy(classifier.model).eval()
    # The eager attention traces into plain ops; the fused kernels' dispatch does not.
    model.set_attn_implementation("eager")

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    example = torch.ones((2, 8), dtype=torch.int64)
    dynamic = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model),
            (example, example),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes=dynamic | {"logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


def quantise_onnx(source: Path, target: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of an exported model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def onnx_logits(path: Path, *, threads: int | None = None) -> LogitsFn:
    """An ONNX Runtime session (CPU) over an exported model, as a logits function."""
    return onnx_session_logits(path, threads=threads)
