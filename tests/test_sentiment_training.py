"""The stronger fine-tune: cached frozen layers, early stopping on a carved split, calibrated serving, static int8.

The int8 runtime rule (static, then dynamic, then fp32) is tested in test_sentiment_runtime_choice.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.sentiment_fixtures import CLEAR, CLEAR_LABELS, separable_set
from training.sentiment import LABELS
from training.sentiment.finetune import FineTuneConfig, fine_tune
from training.sentiment.prefix_cache import cached_logits, encode_prefix
from training.sentiment.realtext import rescale
from training.sentiment.text_classifier import TextClassifier, softmax

MAX_LENGTH = 48
HELD = ["Quorra slumped to a heavy loss and warned that weak demand would cut earnings.", *CLEAR[1:]]


@pytest.fixture(scope="module")
def base() -> TextClassifier:
    import torch

    torch.manual_seed(0)
    return TextClassifier.from_base(max_length=MAX_LENGTH)


def fresh(base: TextClassifier) -> TextClassifier:
    return TextClassifier(copy.deepcopy(base.model), base.tokenizer, max_length=base.max_length)


def torch_logits(classifier: TextClassifier, texts: list[str]) -> np.ndarray:
    log_p: np.ndarray = np.log(classifier.predict_proba(texts))  # log-softmax: logits up to a per-row constant
    return log_p


def test_cached_frozen_states_give_the_models_own_answers(base: TextClassifier) -> None:
    texts = [*CLEAR, "Profit rose.", "Acme Ltd (ASX:ACM) will hold its AGM in May; no other business is expected."]
    ids = base.encode(texts)
    for frozen in (1, 4):
        logits = cached_logits(base.model, encode_prefix(base.model, ids, 0, frozen), frozen)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(log_p, torch_logits(base, texts), atol=1e-5, err_msg=f"frozen={frozen}")


def test_early_stopping_keeps_the_best_epoch_and_its_carved_split_logits(base: TextClassifier) -> None:
    texts, labels = separable_set()
    valid = (HELD, CLEAR_LABELS)
    classifier = fresh(base)
    config = FineTuneConfig(epochs=8, batch_size=8, learning_rate=5e-4, freeze_layers=4, patience=1, schedule="cosine")
    result = fine_tune(classifier, texts, labels, config, valid=valid, progress=False)
    # The carved split is fitted quickly and can only tie after that: one epoch without a gain ends the run.
    assert result.stopped_early and len(result.epoch_metric) == result.best_epoch + 1 < 8
    assert result.epoch_metric[result.best_epoch - 1] == max(result.epoch_metric) == 1.0
    assert result.valid_logits is not None and result.valid_logits.shape == (3, 3)
    # The kept weights are the best epoch's: the model now answers what the stored logits say.
    np.testing.assert_allclose(classifier.predict_proba(HELD), softmax(result.valid_logits), atol=1e-4)
    np.testing.assert_array_equal(classifier.predict_proba(CLEAR).argmax(axis=1), CLEAR_LABELS)


def test_caching_the_frozen_layers_trains_as_the_full_forward_does(base: TextClassifier) -> None:
    texts, labels = separable_set(("Acme", "Borealis", "Cobalt"))
    answers = []
    for cache in (True, False):
        classifier = fresh(base)
        # Dropout off, so the two paths see identical activations (cached states are computed in eval mode).
        classifier.model.config.hidden_dropout_prob = 0.0
        for module in classifier.model.modules():
            if module.__class__.__name__ == "Dropout":
                module.p = 0.0
        config = FineTuneConfig(epochs=1, batch_size=3, learning_rate=1e-3, freeze_layers=3, cache_frozen=cache)
        fine_tune(classifier, texts, labels, config, progress=False)
        answers.append(classifier.predict_proba(list(CLEAR)))
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-4)


@pytest.fixture
def registry(tmp_path: Path):  # type: ignore[no-untyped-def]
    from training.audit import AuditLog
    from training.registry.config import RegistryConfig
    from training.registry.model_registry import ModelRegistry

    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", RegistryConfig(), AuditLog(tmp_path / "a.jsonl"))


def test_the_registered_model_serves_calibrated_probabilities(base: TextClassifier, tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    from training.registry.model_registry import RunRecord

    base.save(tmp_path / "weights")
    record = RunRecord("sentiment_text", {}, {}, {"code_version": "t"}, "# card")
    config = {
        "labels": list(LABELS),
        "max_length": MAX_LENGTH,
        "batch_size": 4,
        "runtime": "torch",
        "temperature": 0.25,
    }
    version = registry.log_sentiment_text(record, tmp_path / "weights", config)
    model, _ = registry.load_pyfunc("sentiment_text", version)
    out = model.predict(pd.DataFrame({"text": list(CLEAR)})).to_numpy()
    raw = base.predict_proba(list(CLEAR))
    np.testing.assert_allclose(out, rescale(raw, 0.25), atol=1e-5)
    assert out.max(axis=1).min() > raw.max(axis=1).min()  # a temperature below 1 sharpens
    with pytest.raises(ValueError, match=r"runtime 'onnx-int8' needs model\.int8\.onnx"):
        import mlflow

        mlflow.pyfunc.load_model(f"models:/sentiment_text/{version}", model_config={"runtime": "onnx-int8"})


def test_static_int8_keeps_attention_scores_and_the_top_layer_in_fp32() -> None:
    from training.sentiment.runtimes import matmuls_kept_in_fp32

    names = [
        f"/inner/bert/encoder/layer.{i}/{part}"
        for i in range(3)
        for part in (
            "attention/self/query/MatMul",
            "attention/self/MatMul",
            "attention/self/MatMul_1",
            "output/dense/MatMul",
        )
    ]
    assert matmuls_kept_in_fp32(names) == [
        "/inner/bert/encoder/layer.0/attention/self/MatMul",
        "/inner/bert/encoder/layer.0/attention/self/MatMul_1",
        "/inner/bert/encoder/layer.1/attention/self/MatMul",
        "/inner/bert/encoder/layer.1/attention/self/MatMul_1",
        "/inner/bert/encoder/layer.2/attention/self/query/MatMul",
        "/inner/bert/encoder/layer.2/attention/self/MatMul",
        "/inner/bert/encoder/layer.2/attention/self/MatMul_1",
        "/inner/bert/encoder/layer.2/output/dense/MatMul",
    ]
    assert matmuls_kept_in_fp32(["/classifier/MatMul"]) == []  # no encoder layer named: nothing kept


def test_calibration_batches_share_one_width_and_mask_only_real_tokens(base: TextClassifier) -> None:
    from training.sentiment.runtimes import calibration_batches

    texts = ["Profit rose.", "The company withdrew its full-year guidance after the storm.", "Shares fell."]
    batches = calibration_batches(base, texts, batch_size=2)
    lengths = [len(x) for x in base.encode(texts)]
    assert [ids.shape for ids, _ in batches] == [(2, max(lengths)), (1, max(lengths))]
    masks = np.vstack([mask for _, mask in batches])
    assert masks.sum(axis=1).tolist() == lengths
