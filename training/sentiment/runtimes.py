"""Faster CPU runtimes for a :class:`TextClassifier`: dynamic int8 quantisation and ONNX Runtime.

Each returns a logits function for :func:`~training.sentiment.text_classifier.batched_probabilities`,
so every runtime scores the same length-sorted, dynamically padded batches as eager PyTorch. Whether
one is worth using is measured, not assumed: ``bench/sentiment.py`` reports sentences/s and the
validation accuracy of each, and the largest probability difference from eager PyTorch.

The registered model's ``onnx-int8`` runtime follows one rule (:func:`export_for_runtime`): static int8
calibrated on real text first, ONNX Runtime's dynamic int8 when static is refused, each kept only when
its macro-F1 on the check set stays within the tolerance of fp32 ONNX's; fp32 ONNX when both are refused.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.sentiment.metrics import classification_report
from training.sentiment.text_classifier import (
    ONNX_FILE,
    ONNX_INT8_DYNAMIC_FILE,
    ONNX_INT8_FILE,
    LogitsFn,
    TextClassifier,
    batched_probabilities,
    onnx_session_logits,
    pad_batch,
)

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


def calibration_batches(
    classifier: TextClassifier, texts: Sequence[str], *, batch_size: int = 32
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input_ids, attention_mask) batches of ``texts`` in their own order: the activation ranges seen.

    Every batch is padded to the longest calibration text, so all share one shape: the percentile
    calibrator stacks the activations of every batch into one histogram per tensor.
    """
    ids, pad = classifier.encode(texts), classifier.tokenizer.pad_token_id or 0
    width = max((len(x) for x in ids), default=0)
    return [pad_batch(ids[start : start + batch_size], pad, width) for start in range(0, len(ids), batch_size)]


# Activation ranges of static int8: this share of each tensor's calibration values (see quantise_onnx_static).
CALIBRATION_PERCENTILE = 99.99

# Encoder layer of an exported node name, e.g. "/inner/bert/encoder/layer.5/output/dense/MatMul".
_LAYER = re.compile(r"/layer\.(\d+)/")


def matmuls_kept_in_fp32(names: Sequence[str]) -> list[str]:
    """The ``MatMul`` nodes static int8 leaves in fp32: attention scores and the top encoder layer.

    * ``attention/self/MatMul*`` multiply two activations (Q by K, the attention weights by V): there
      is no weight to quantise per channel, and both sides' ranges vary by sentence.
    * The top layer is the one the fine-tune trains (at a high learning rate, from cached lower
      states): its activations move away from the pre-trained ranges the lower layers keep.

    Measured on the corpus model (2026-12-07): agreement with fp32 on 1,500 training texts 0.922
    with every MatMul quantised, 0.935 with these kept; 190 against fp32's 126 sentences/s at batch
    32 on the 2-core machine at load 2-3 (far from the 500/s goal).

    Keeping more does not rescue a model with more fine-tuned layers. On the model with its top
    three layers trained (``freeze_layers: 3``; real-text macro-F1 0.7996 fp32, 0.7720 int8), the
    int8 answers' agreement with fp32 on the corpus training rows carved out for early stopping
    (never trained on) was 0.941 with this rule, 0.938 with every weight product quantised and only
    0.961 with all three trained layers kept (macro-F1 there still -0.008, with half the products
    in fp32). The loss is spread over every layer, the frozen pre-trained ones included: quantising
    one layer alone costs 1.3-2.9% agreement (layers 0-3). Neither SmoothQuant (alpha 0.5: 0.926,
    0.7: 0.943), min/max ranges (0.926) nor calibrating on length-sorted batches padded as scoring
    pads them (0.932) did better; so the rule stays, and the acceptance check refuses such a model.
    """
    layers = [int(m.group(1)) for n in names if (m := _LAYER.search(n))]
    top = f"/layer.{max(layers)}/" if layers else None
    return [n for n in names if "attention/self/MatMul" in n or (top is not None and top in n)]


def quantise_onnx_static(source: Path, target: Path, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> Path:
    """ONNX Runtime's static int8 quantisation of the ``MatMul`` nodes, activation ranges from ``batches``.

    Only weight matrix products below the top layer are quantised (weights int8 per channel,
    activations uint8 with ranges fixed by calibration; :func:`matmuls_kept_in_fp32` says which stay
    fp32 and why). Activation ranges are the 0.01-99.99 percentiles, not the extremes: with min/max
    the verdict turned on which 512 sentences calibrated (corpus model, 2026-12-07: macro-F1 -0.004
    for one seeded draw, -0.015 for another); with percentiles agreement with fp32 on 1,500 training
    texts rose from 0.926-0.929 to 0.939 for both draws. The products hold most of the work, while
    softmax, layer norm and GELU lose accuracy in int8 for little speed. Whether the result is
    accepted is decided on real text by the caller (macro-F1 within a tolerance of fp32), not here.

    Raises:
        ValueError: no calibration batch.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not batches:
        raise ValueError("static quantisation needs at least one calibration batch")

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[tuple[np.ndarray, np.ndarray]] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"input_ids": batch[0], "attention_mask": batch[1]}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(source),
            str(target),
            _Reader(),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=matmuls_kept_in_fp32(
                [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "MatMul"]
            ),
            per_channel=True,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return target


def onnx_logits(path: Path, *, threads: int | None = None) -> LogitsFn:
    """An ONNX Runtime session (CPU) over an exported model, as a logits function."""
    return onnx_session_logits(path, threads=threads)


Quantiser = Callable[[Path, Path], Path]  # (fp32 ONNX file, target file) -> the target, written


@dataclass(frozen=True)
class Int8Candidate:
    """One int8 variant of the fp32 export: its name, its file in the model folder, and how to write it."""

    quantisation: Literal["static", "dynamic"]
    file: str
    quantise: Quantiser


def int8_candidates(classifier: TextClassifier, calibration_texts: Sequence[str]) -> tuple[Int8Candidate, ...]:
    """The variants in the order they are tried: static int8 calibrated on ``calibration_texts``, then dynamic.

    Static comes first because, where it holds accuracy, its activation ranges are fixed ahead of time;
    dynamic int8 measures each batch's ranges as it runs, which is why it held macro-F1 on the corpus
    model where static did not (README, bench/sentiment.py), and on this 2-core machine it was the faster
    of the two there (540 against 375 sentences/s at batch 32).
    """
    batches = calibration_batches(classifier, calibration_texts)
    return (
        Int8Candidate("static", ONNX_INT8_FILE, lambda source, target: quantise_onnx_static(source, target, batches)),
        Int8Candidate("dynamic", ONNX_INT8_DYNAMIC_FILE, quantise_onnx),
    )


def within_tolerance(int8_macro_f1: float, fp32_macro_f1: float, tolerance: float) -> bool:
    """The acceptance rule: int8 loses at most ``tolerance`` macro-F1 against fp32 on the same check set."""
    return int8_macro_f1 >= fp32_macro_f1 - tolerance


@dataclass(frozen=True)
class Int8Trial:
    """One int8 variant judged on the check set: its macro-F1 and agreement with fp32, and the verdict.

    ``agreement`` is the share of check texts whose predicted class int8 and fp32 agree on: a
    macro-F1 within the tolerance over answers that differ a lot is luck of the draw, and a refusal
    says how far off int8 was.
    """

    quantisation: str
    file: str
    macro_f1: float
    agreement: float
    accepted: bool


@dataclass(frozen=True)
class RuntimeDecision:
    """Which ONNX file the registered model serves, and the figures that decided it.

    ``trials`` are the int8 variants in the order tried; the first accepted one is kept and no later one
    is tried; with none accepted the model serves fp32 ONNX (``model.onnx``).
    """

    fp32_macro_f1: float
    check_set: str
    tolerance: float
    trials: tuple[Int8Trial, ...]

    @property
    def kept(self) -> Int8Trial | None:
        return next((t for t in self.trials if t.accepted), None)

    @property
    def runtime(self) -> Literal["onnx-int8", "onnx"]:
        return "onnx" if self.kept is None else "onnx-int8"

    @property
    def served_file(self) -> str:
        return ONNX_FILE if self.kept is None else self.kept.file

    def model_config(self) -> dict[str, str]:
        """The registered model's ``runtime`` (and ``quantisation`` when int8 is kept)."""
        kept = self.kept
        return {"runtime": "onnx"} if kept is None else {"runtime": "onnx-int8", "quantisation": kept.quantisation}

    def describe(self) -> str:
        """One line per trial, then what is served."""
        lines = [
            f"{t.quantisation} int8 {'kept' if t.accepted else 'REFUSED'}: macro-F1 {t.macro_f1:.4f} vs fp32 "
            f"{self.fp32_macro_f1:.4f} on {self.check_set} (same class as fp32 for {t.agreement:.1%} of its texts)"
            for t in self.trials
        ]
        kept = self.kept
        served = "fp32 ONNX" if kept is None else f"{kept.quantisation} int8 ONNX"
        return "; ".join(lines) + f" -> serves {served} ({self.served_file})"

    def params(self) -> dict[str, str]:
        """Run params and version tags: what is served, and on which check set it was decided."""
        kept = self.kept
        return {
            "runtime_served": self.runtime,
            "int8_quantisation": "none" if kept is None else kept.quantisation,
            "onnx_file": self.served_file,
            "int8_check_set": self.check_set,
            "int8_tolerance": f"{self.tolerance:g}",
        }

    def metrics(self) -> dict[str, float]:
        """fp32's macro-F1 on the check set, and each tried variant's macro-F1 and agreement with fp32."""
        figures = {"int8_check_fp32_macro_f1": self.fp32_macro_f1}
        for t in self.trials:
            figures |= {f"int8_{t.quantisation}_macro_f1": t.macro_f1, f"int8_{t.quantisation}_agreement": t.agreement}
        return figures

    def markdown(self) -> str:
        """The model card's runtime section."""
        rows = "\n".join(
            f"| {t.quantisation} int8 | {t.macro_f1:.4f} | {t.macro_f1 - self.fp32_macro_f1:+.4f} | "
            f"{t.agreement:.1%} | {'kept' if t.accepted else 'refused'} |"
            for t in self.trials
        )
        return (
            f"## Runtime: {self.runtime} ({self.served_file})\n\n"
            f"int8 is kept only if its macro-F1 on {self.check_set} is within {self.tolerance:g} of fp32 ONNX's "
            "(static int8 tried first, then dynamic int8; fp32 when both are refused).\n\n"
            "| runtime | macro-F1 | vs fp32 | same class as fp32 | verdict |\n| --- | --- | --- | --- | --- |\n"
            f"| fp32 ONNX | {self.fp32_macro_f1:.4f} | - | 100% | {'served' if self.kept is None else 'beside'} |\n"
            f"{rows}\n"
        )


def export_for_runtime(
    classifier: TextClassifier,
    folder: Path,
    *,
    calibration_texts: Sequence[str],
    check: tuple[str, Sequence[str], np.ndarray],
    tolerance: float,
    candidates: Sequence[Int8Candidate] | None = None,
) -> RuntimeDecision:
    """Write ``model.onnx`` into ``folder``, then the first int8 variant that holds macro-F1 on ``check``.

    ``check`` is (name, texts, class indices). Each of ``candidates`` (default :func:`int8_candidates`:
    static, then dynamic) is written and judged in turn: kept when its macro-F1 on ``check`` is within
    ``tolerance`` of the fp32 export's, deleted otherwise; none is tried after the first kept.
    """
    fp32 = export_onnx(classifier, folder / ONNX_FILE)
    name, texts, truth = check
    ids, pad = classifier.encode(texts), classifier.tokenizer.pad_token_id or 0

    def answers(path: Path) -> np.ndarray:
        predicted: np.ndarray = batched_probabilities(ids, pad, onnx_session_logits(path), 32).argmax(axis=1)
        return predicted

    reference = answers(fp32)
    fp32_f1 = classification_report(truth, reference).macro_f1
    trials: list[Int8Trial] = []
    for candidate in candidates if candidates is not None else int8_candidates(classifier, calibration_texts):
        path = candidate.quantise(fp32, folder / candidate.file)
        predicted = answers(path)
        f1 = classification_report(truth, predicted).macro_f1
        accepted = within_tolerance(f1, fp32_f1, tolerance)
        trials.append(
            Int8Trial(candidate.quantisation, candidate.file, f1, float((predicted == reference).mean()), accepted)
        )
        if accepted:
            break
        path.unlink()
    return RuntimeDecision(fp32_f1, name, tolerance, tuple(trials))
