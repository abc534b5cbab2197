"""Benchmark: the text model's fine-tune wall time, scoring speed per runtime, and quality vs the lexicon.

What is measured, on the project's labelled set (sentences written for Portfolio OS; split by family,
seed 0; the figures are validation figures on held-out families, not on real news):

* **fine-tune**: wall time of the configured fine-tune (all-MiniLM-L6-v2, CPU, all cores);
* **quality**: accuracy and macro-F1 of the fine-tuned model and of the Loughran-McDonald lexicon;
* **scoring speed** at batch 32 (sentences/s, median of ``--rounds`` passes over the scoring set,
  every runtime timed once per round in a rotating order, so drifts in CPU speed hit all alike) for
  eager PyTorch, dynamically quantised PyTorch (int8), ONNX Runtime and quantised ONNX Runtime, each
  with length-sorted dynamic padding; the **baseline** is eager PyTorch the naive way (texts in
  their own order, every batch padded to ``max_length``), and each runtime's ratio to it is reported,
  with its accuracy, macro-F1 and largest probability difference from eager PyTorch (equal accuracy
  is part of the claim); eager PyTorch at batch 1 is reported too (the cost of not batching).

``--model-dir`` scores a saved model (``TextClassifier.save``, or the ``model`` folder of a registered
version) instead of fine-tuning one; ``--max-length`` is the tokens kept per text (a registered
model's ``model_config`` names the one it serves with). ``--corpus FILE --valid-rows A B`` measures on a real labelled
corpus's validation rows instead of the project's set (static int8 is then calibrated on
``--calibration`` of the corpus's other rows, real text). ``int8_rule`` applies the registered model's
``onnx-int8`` rule to the scored set: static int8 first, dynamic int8 ONNX when static is refused, each
kept only with macro-F1 within ``--tolerance`` (0.005) of fp32 ONNX; it names the variant kept.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from training.sentiment.corpus import load_held_out, load_project_corpus
from training.sentiment.finetune import FineTuneConfig, fine_tune
from training.sentiment.lexicon import LoughranMcDonald
from training.sentiment.metrics import classification_report, label_indices
from training.sentiment.runtimes import (
    calibration_batches,
    export_onnx,
    onnx_logits,
    quantise_onnx,
    quantise_onnx_static,
    quantised_torch_logits,
    within_tolerance,
)
from training.sentiment.split import split_by_family
from training.sentiment.text_classifier import (
    DEFAULT_MAX_LENGTH,
    ONNX_INT8_DYNAMIC_FILE,
    ONNX_INT8_FILE,
    TextClassifier,
    batched_probabilities,
    pad_batch,
    softmax,
)

NAME: Final = "sentiment"
BASELINE: Final = "baseline"
BATCH: Final = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune epochs (default 3, as the demo)")
    parser.add_argument("--model-dir", type=Path, default=None, help="score this saved model; skip the fine-tune")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per runtime (default 3)")
    parser.add_argument("--repeat", type=int, default=4, help="scoring set = validation sentences x this")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--corpus", type=Path, default=None, help="a real 'sentence,label' CSV to measure on")
    parser.add_argument("--valid-rows", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"))
    parser.add_argument("--calibration", type=int, default=512, help="corpus training rows calibrating static int8")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N validation sentences")
    parser.add_argument("--tolerance", type=float, default=0.005, help="macro-F1 an int8 runtime may lose (0.005)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help=f"tokens kept per text (default {DEFAULT_MAX_LENGTH}; a registered model's model_config names its own)",
    )
    args = parser.parse_args(argv)
    if (args.corpus is None) != (args.valid_rows is None):
        parser.error("--corpus and --valid-rows go together")
    return args


def naive_probabilities(classifier: TextClassifier, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """The baseline: input order, every batch padded to max_length (what a plain tokenizer call does)."""
    ids = classifier.encode(texts)
    out = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        input_ids, mask = pad_batch([*batch, [0] * classifier.max_length], classifier.tokenizer.pad_token_id or 0)
        out.append(softmax(classifier.torch_logits(input_ids[:-1], mask[:-1])))
    return np.vstack(out)


def _interleaved_rates(
    scorers: dict[str, Callable[[], np.ndarray]], n: int, rounds: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Median rate per scorer; each round times every scorer once, the order rotating every round.

    This CPU's speed drifts for tens of seconds at a time: timing one scorer's rounds back to back
    would hand that drift to whichever ran in a slow stretch.
    """
    names = list(scorers)
    results = {name: scorers[name]() for name in names}  # warm-up, and the answers to check
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            scorers[name]()
            times[name].append(time.perf_counter() - started)
    return {name: (n / statistics.median(times[name]), results[name]) for name in names}


def _median_rate(score: Callable[[], np.ndarray], n: int, rounds: int) -> tuple[float, np.ndarray]:
    score()  # warm-up: first-call allocations and kernel selection are not steady state
    times, result = [], np.zeros(0)
    for _ in range(rounds):
        started = time.perf_counter()
        result = score()
        times.append(time.perf_counter() - started)
    return n / statistics.median(times), result


@dataclass(frozen=True)
class _Texts:
    """What the run scores: the validation sentences and labels, static int8's calibration sentences."""

    valid: list[str]
    truth: np.ndarray
    calibration: list[str]
    data: str
    train: pd.DataFrame  # the project set's training families (what a fine-tune here trains on)


def _texts(args: argparse.Namespace) -> _Texts:
    corpus = load_project_corpus()
    split = split_by_family(corpus.frame, valid_fraction=0.2, seed=0)
    valid_frame, calibration, data = (
        split.valid,
        split.train["sentence"],
        f"the project's labelled set ({corpus.description})",
    )
    if args.corpus is not None:
        held = load_held_out(args.corpus, train_rows=None, valid_rows=tuple(args.valid_rows))
        valid_frame, calibration, data = held.valid.frame, held.train.frame["sentence"], held.valid.description
    valid_frame = valid_frame.iloc[: args.limit] if args.limit else valid_frame
    return _Texts(
        valid=valid_frame["sentence"].tolist(),
        truth=label_indices(valid_frame["label"].tolist()),
        calibration=calibration.sample(min(args.calibration, len(calibration)), random_state=0).tolist(),
        data=data,
        train=split.train,
    )


def _classifier(args: argparse.Namespace, train: pd.DataFrame) -> tuple[TextClassifier, float | None]:
    """The saved model of ``--model-dir``, else one fine-tuned here (with its fine-tune seconds)."""
    if args.model_dir is not None:
        return TextClassifier.load(args.model_dir, max_length=args.max_length), None
    common.log(f"fine-tune, {args.epochs} epoch(s) on {len(train):,} sentences")
    classifier = TextClassifier.from_base(max_length=args.max_length)
    result = fine_tune(
        classifier,
        train["sentence"].tolist(),
        label_indices(train["label"].tolist()),
        FineTuneConfig(epochs=args.epochs),
        progress=False,  # stderr stays readable in a log; the stage shows the bar
    )
    return classifier, result.seconds


@dataclass(frozen=True)
class _Scoring:
    rows: dict[str, dict[str, Any]]  # per runtime: rate, speed-up, agreement, quality
    naive_rate: float
    single_rate: float
    reference: np.ndarray  # eager PyTorch's probabilities (the baseline's answers)


def _score_runtimes(classifier: TextClassifier, texts: _Texts, args: argparse.Namespace) -> _Scoring:
    """Every runtime against the eager baseline, in interleaved rounds, plus eager PyTorch at batch 1."""
    valid = texts.valid
    repeated = valid * args.repeat
    ids, pad = classifier.encode(repeated), classifier.tokenizer.pad_token_id or 0
    runtimes: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"torch": classifier.torch_logits}
    with tempfile.TemporaryDirectory() as folder:
        runtimes["torch_int8"] = quantised_torch_logits(classifier)
        onnx_path = export_onnx(classifier, Path(folder) / "model.onnx")
        runtimes["onnxruntime"] = onnx_logits(onnx_path)
        dynamic = quantise_onnx(onnx_path, Path(folder) / ONNX_INT8_DYNAMIC_FILE)
        runtimes["onnxruntime_int8"] = onnx_logits(dynamic)
        static = quantise_onnx_static(
            onnx_path, Path(folder) / ONNX_INT8_FILE, calibration_batches(classifier, texts.calibration)
        )
        runtimes["onnxruntime_static_int8"] = onnx_logits(static)
        common.log(
            f"baseline (eager PyTorch, input order, padded to max_length) and {len(runtimes)} runtimes, "
            f"{args.rounds} interleaved rounds"
        )
        scorers: dict[str, Callable[[], np.ndarray]] = {
            BASELINE: lambda: naive_probabilities(classifier, repeated, BATCH)
        }
        for name, logits in runtimes.items():
            scorers[name] = functools.partial(batched_probabilities, ids, pad, logits, BATCH)
        measured = _interleaved_rates(scorers, len(repeated), args.rounds)
        naive_rate, reference = measured.pop(BASELINE)
        onnx_fp32 = measured["onnxruntime"][1][: len(valid)].argmax(axis=1)
        rows = {
            name: _row(rate, naive_rate, probs, reference=reference, truth=texts.truth, onnx_fp32=onnx_fp32)
            for name, (rate, probs) in measured.items()
        }
        common.log("eager PyTorch at batch 1")
        single_rate, _ = _median_rate(
            lambda: batched_probabilities(ids[: len(valid)], pad, classifier.torch_logits, 1), len(valid), 1
        )
    return _Scoring(rows=rows, naive_rate=naive_rate, single_rate=single_rate, reference=reference)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    texts = _texts(args)
    valid = texts.valid
    common.log("lexicon")
    lexicon = LoughranMcDonald()
    lexicon_rate, lexicon_pred = _median_rate(lambda: lexicon.predict(valid), len(valid), args.rounds)
    classifier, fine_tune_s = _classifier(args, texts.train)
    scoring = _score_runtimes(classifier, texts, args)
    model_report = classification_report(texts.truth, scoring.reference[: len(valid)].argmax(axis=1))
    lexicon_report = classification_report(texts.truth, lexicon_pred)
    doc = {
        "benchmark": NAME,
        "description": "text model: fine-tune wall time, sentences/s per runtime at batch 32, quality vs lexicon",
        "data": f"{texts.data}: {len(valid)} validation sentences"
        + ("" if args.corpus else " (held-out families; NOT real news)"),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fine_tune": {
            "seconds": round(fine_tune_s, 1) if fine_tune_s is not None else None,
            "epochs": None if args.model_dir else args.epochs,
            "train_sentences": len(texts.train),
        },
        "quality": {
            "model": {"accuracy": model_report.accuracy, "macro_f1": model_report.macro_f1, "f1": model_report.f1},
            "lexicon": {
                "accuracy": lexicon_report.accuracy,
                "macro_f1": lexicon_report.macro_f1,
                "f1": lexicon_report.f1,
            },
            "macro_f1_gain_over_lexicon": model_report.macro_f1 - lexicon_report.macro_f1,
        },
        "scoring": {
            "batch_size": BATCH,
            "sentences": len(valid) * args.repeat,
            "baseline_torch_padded_to_max_length_per_s": round(scoring.naive_rate, 1),
            "torch_batch_1_per_s": round(scoring.single_rate, 1),
            "lexicon_per_s": round(lexicon_rate, 1),
            "runtimes": scoring.rows,
            "int8_rule": int8_rule(scoring.rows, args.tolerance),
        },
        "total_seconds": round(time.perf_counter() - started, 1),
        **common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)


def int8_rule(rows: dict[str, dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The registered model's ``onnx-int8`` rule on this run's set: each int8 variant's verdict, and the one kept.

    Both variants are scored here (the registration stops at the first accepted); ``kept`` is what it keeps.
    """
    fp32 = rows["onnxruntime"]
    verdicts: dict[str, Any] = {"tolerance": tolerance}
    for name, row in (("static", rows["onnxruntime_static_int8"]), ("dynamic", rows["onnxruntime_int8"])):
        verdicts[name] = {
            "macro_f1_change": round(row["macro_f1"] - fp32["macro_f1"], 4),
            "accepted": within_tolerance(row["macro_f1"], fp32["macro_f1"], tolerance),
            "same_class_as_onnx_fp32": row["argmax_agreement_vs_onnx_fp32"],
            "speedup_over_onnx_fp32": common.ratio(row["sentences_per_s"], fp32["sentences_per_s"]),
        }
    verdicts["kept"] = next((name for name in ("static", "dynamic") if verdicts[name]["accepted"]), "fp32")
    return verdicts


def _row(
    rate: float,
    naive_rate: float,
    probs: np.ndarray,
    *,
    reference: np.ndarray,
    truth: np.ndarray,
    onnx_fp32: np.ndarray,
) -> dict[str, Any]:
    """One runtime's rate and answers; quality and agreement with fp32 ONNX on the validation texts, once each."""
    answers = probs[: len(truth)].argmax(axis=1)
    report = classification_report(truth, answers)
    return {
        "sentences_per_s": round(rate, 1),
        "speedup_over_baseline": common.ratio(rate, naive_rate),
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "max_abs_probability_difference_vs_torch": float(np.abs(probs - reference).max()),
        "argmax_agreement_vs_torch": float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        "argmax_agreement_vs_onnx_fp32": float((answers == onnx_fp32).mean()),
    }


if __name__ == "__main__":
    main()
