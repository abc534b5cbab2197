"""The text model: batched scoring, the fine-tune loop, faster runtimes, document scoring, the registered pyfunc.

One all-MiniLM-L6-v2 (from its wheel, nothing downloaded) is loaded per module and copied; the
fine-tunes run on a couple of dozen sentences for a few steps, on one torch thread.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.tables import SCORED_DOCUMENT_COLUMNS
from tests.sentiment_fixtures import CLEAR, CLEAR_LABELS, document_frame, one_torch_thread, separable_set
from training.errors import TrainingError
from training.sentiment import LABELS
from training.sentiment.documents import (
    Scorer,
    active_scores,
    document_texts,
    score_documents,
    unscored,
    write_active_version,
)
from training.sentiment.finetune import FineTuneConfig, FineTuneResult, class_weights, fine_tune
from training.sentiment.text_classifier import TextClassifier, pad_batch
from training.sentiment.text_pyfunc import score_texts

MAX_LENGTH = 48
MIXED = [
    "Profit.",
    CLEAR[2],
    "Sales fell " + "and margins narrowed as costs rose across the group's Australian operations " * 8,
    CLEAR[0],
    "The AGM is on Friday.",
    CLEAR[1],
    "Orbit lifted its guidance.",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def base() -> TextClassifier:
    import torch

    torch.manual_seed(0)  # the new head is drawn from torch's global generator
    return TextClassifier.from_base(max_length=MAX_LENGTH)


def fresh(base: TextClassifier) -> TextClassifier:
    """An independent copy of the untrained classifier (loading the weights again costs seconds)."""
    return TextClassifier(copy.deepcopy(base.model), base.tokenizer, max_length=base.max_length)


@dataclass(frozen=True)
class Tuned:
    classifier: TextClassifier
    untrained_accuracy: float
    result: FineTuneResult
    epoch_calls: int


@pytest.fixture(scope="module")
def tuned(base: TextClassifier) -> Tuned:
    """The separable set fitted for three epochs (nine steps): clear probabilities to compare runtimes on."""
    texts, labels = separable_set()
    classifier = fresh(base)
    untrained = float((classifier.predict_proba(texts).argmax(axis=1) == labels).mean())
    calls: list[bool] = []

    def on_epoch() -> float:
        calls.append(classifier.model.training)
        return float(len(calls))

    config = FineTuneConfig(epochs=3, batch_size=8, learning_rate=5e-4)
    result = fine_tune(classifier, texts, labels, config, on_epoch=on_epoch, progress=False)
    assert calls == [False, False, False]  # evaluated in eval mode, after each epoch
    return Tuned(classifier, untrained, result, len(calls))


def parameters(classifier: TextClassifier, prefix: str) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().copy() for n, p in classifier.model.named_parameters() if n.startswith(prefix)}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --- batched scoring ----------------------------------------------------------------------------


def test_probabilities_come_back_in_the_callers_order_whatever_the_batch_size(tuned: Tuned) -> None:
    classifier = tuned.classifier
    lengths = [len(ids) for ids in classifier.encode(MIXED)]
    assert max(lengths) == MAX_LENGTH and min(lengths) <= 5  # truncated long text beside short ones
    alone = np.vstack([classifier.predict_proba([text]) for text in MIXED])
    assert alone.shape == (len(MIXED), 3)
    np.testing.assert_allclose(alone.sum(axis=1), 1.0, atol=1e-9)
    assert (alone.argmax(axis=1)[[3, 5, 1]] == CLEAR_LABELS).all()  # rows are not interchangeable
    for batch_size in (1, 3, 32):
        batched = classifier.predict_proba(MIXED, batch_size=batch_size)
        np.testing.assert_allclose(batched, alone, atol=1e-5, err_msg=f"batch_size={batch_size}")
    reversed_rows = classifier.predict_proba(MIXED[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_rows, alone[::-1], atol=1e-5)


def test_empty_input_and_a_bad_batch_size(tuned: Tuned) -> None:
    assert tuned.classifier.predict_proba([]).shape == (0, 3)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        tuned.classifier.predict_proba(["Profit rose."], batch_size=0)


def test_pad_batch_pads_on_the_right_with_a_mask() -> None:
    ids, mask = pad_batch([[101, 7, 102], [101, 102], [101, 5, 6, 102]], pad_id=0)
    np.testing.assert_array_equal(ids, [[101, 7, 102, 0], [101, 102, 0, 0], [101, 5, 6, 102]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert ids.dtype == mask.dtype == np.int64


def test_save_and_load_give_identical_probabilities_and_foreign_labels_are_refused(
    tuned: Tuned, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    tuned.classifier.save(folder)
    loaded = TextClassifier.load(folder, max_length=MAX_LENGTH)
    np.testing.assert_allclose(loaded.predict_proba(MIXED), tuned.classifier.predict_proba(MIXED), atol=1e-6)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["id2label"] = {"0": "bearish", "1": "neutral", "2": "bullish"}
    config["label2id"] = {"bearish": 0, "neutral": 1, "bullish": 2}
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"labels are \('bearish', 'neutral', 'bullish'\)"):
        TextClassifier.load(folder)


# --- fine-tuning --------------------------------------------------------------------------------


def test_a_short_fine_tune_fits_a_separable_set(tuned: Tuned) -> None:
    texts, labels = separable_set()
    trained = float((tuned.classifier.predict_proba(texts).argmax(axis=1) == labels).mean())
    assert trained == 1.0 and trained > tuned.untrained_accuracy
    assert tuned.result.steps == 3 * math.ceil(len(texts) / 8)
    assert len(tuned.result.epoch_loss) == 3 and tuned.result.epoch_loss[-1] < tuned.result.epoch_loss[0] / 2
    assert tuned.epoch_calls == 3 and tuned.result.epoch_metric == [1.0, 2.0, 3.0]
    assert not tuned.classifier.model.training  # left in eval mode: dropout off for scoring


def test_seeded_runs_are_identical_and_the_freezing_options_hold(base: TextClassifier) -> None:
    texts, labels = separable_set(("Acme", "Borealis"))
    before_embeddings = parameters(base, "bert.embeddings.")
    before_layers = {i: parameters(base, f"bert.encoder.layer.{i}.") for i in range(6)}

    def run(seed: int = 0, **options: object) -> TextClassifier:
        classifier = fresh(base)
        config = FineTuneConfig(epochs=1, batch_size=3, learning_rate=1e-3, seed=seed, **options)  # type: ignore[arg-type]
        assert fine_tune(classifier, texts, labels, config, progress=False).steps == 2
        return classifier

    first, second = run(), run()
    assert same(parameters(first, ""), parameters(second, ""))
    assert not same(parameters(run(seed=1), "classifier."), parameters(first, "classifier."))
    # Defaults: embeddings and the two lowest layers frozen, the layers above trained.
    assert same(parameters(first, "bert.embeddings."), before_embeddings)
    for i in (0, 1):
        assert same(parameters(first, f"bert.encoder.layer.{i}."), before_layers[i]), i
    assert not same(parameters(first, "bert.encoder.layer.2."), before_layers[2])
    # Everything trainable.
    unfrozen = run(freeze_embeddings=False, freeze_layers=0)
    assert not same(parameters(unfrozen, "bert.embeddings."), before_embeddings)
    for i in (0, 5):
        assert not same(parameters(unfrozen, f"bert.encoder.layer.{i}."), before_layers[i]), i
    # The shared start was copied, never trained or frozen itself.
    assert same(parameters(base, "bert.encoder.layer.5."), before_layers[5])
    assert all(p.requires_grad for p in base.model.parameters())


def test_class_weights_are_inverse_frequency_and_zero_for_an_absent_class() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    weights = class_weights(labels, 3)
    np.testing.assert_allclose(weights, [8 / 12, 8 / 6, 8 / 6])
    assert np.mean(weights[labels]) == pytest.approx(1.0)  # the average sentence keeps weight 1
    from sklearn.utils.class_weight import compute_class_weight

    np.testing.assert_allclose(weights, compute_class_weight("balanced", classes=np.arange(3), y=labels))
    np.testing.assert_allclose(class_weights(np.array([0, 0, 1]), 3), [0.5, 1.0, 0.0])


def test_fine_tune_refuses_bad_settings_and_mismatched_inputs() -> None:
    no_model = TextClassifier(model=None, tokenizer=None)  # refused before the model is touched
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"learning_rate": 0.0}):
        with pytest.raises(TrainingError, match="fine-tuning needs epochs"):
            FineTuneConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="as many labels as texts"):
        fine_tune(no_model, ["a", "b"], np.array([0]), FineTuneConfig(), progress=False)
    with pytest.raises(TrainingError, match="at least one"):
        fine_tune(no_model, [], np.array([], dtype=np.int64), FineTuneConfig(), progress=False)


# --- runtimes -----------------------------------------------------------------------------------


def test_onnx_runtime_matches_eager_pytorch_on_a_padded_batch(tuned: Tuned, tmp_path: Path) -> None:
    from training.sentiment.runtimes import export_onnx, onnx_logits

    classifier = tuned.classifier
    path = export_onnx(classifier, tmp_path / "model.onnx")
    input_ids, mask = pad_batch(classifier.encode(MIXED), classifier.tokenizer.pad_token_id)
    assert (mask == 0).any()  # the batch really holds padding
    logits = onnx_logits(path, threads=1)
    np.testing.assert_allclose(logits(input_ids, mask), classifier.torch_logits(input_ids, mask), atol=1e-4)
    np.testing.assert_allclose(
        classifier.predict_proba(MIXED, batch_size=3, logits_fn=logits), classifier.predict_proba(MIXED), atol=1e-5
    )


def test_int8_runtimes_stay_close_to_eager_and_agree_on_clear_sentences(tuned: Tuned, tmp_path: Path) -> None:
    from training.sentiment.runtimes import export_onnx, onnx_logits, quantise_onnx, quantised_torch_logits

    classifier = tuned.classifier
    texts = [*separable_set()[0], *CLEAR]
    reference = classifier.predict_proba(texts)
    labels = np.concatenate([separable_set()[1], CLEAR_LABELS])
    assert (reference.argmax(axis=1) == labels).all()
    margins = np.sort(reference, axis=1)[:, -1] - np.sort(reference, axis=1)[:, -2]
    assert margins.min() > 0.1  # clear enough that a 0.05 error cannot flip the label
    quantised = quantise_onnx(export_onnx(classifier, tmp_path / "fp32.onnx"), tmp_path / "int8.onnx")
    assert quantised.stat().st_size < (tmp_path / "fp32.onnx").stat().st_size / 2
    for name, logits in (("torch-int8", quantised_torch_logits(classifier)), ("onnx-int8", onnx_logits(quantised))):
        probabilities = classifier.predict_proba(texts, logits_fn=logits)
        assert np.abs(probabilities - reference).max() < 0.05, name
        np.testing.assert_array_equal(probabilities.argmax(axis=1), labels, err_msg=name)
    np.testing.assert_array_equal(classifier.predict_proba(texts), reference)  # quantised a copy, not the model


# --- documents ----------------------------------------------------------------------------------


def test_document_texts_join_title_and_body() -> None:
    documents = document_frame(
        [
            ("a", "AAA", "Profit up", "Strong year."),
            ("b", "AAA", "Trading halt!", "Pending news."),
            ("c", "BBB", None, "Body only."),
            ("d", "BBB", "  Title  only ", None),
            ("e", "CCC", "Results:", "  Many\n\nlines\tof   text "),
        ]
    )
    assert document_texts(documents) == [
        "Profit up. Strong year.",
        "Trading halt! Pending news.",
        "Body only.",
        "Title only",
        "Results: Many lines of text",
    ]


def fake_scorer(calls: list[int]) -> Scorer:
    def scorer(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        raw = np.array([[len(t) % 5 + 1.0, 1.0, len(t) % 3 + 1.0] for t in texts])
        probabilities: np.ndarray = raw / raw.sum(axis=1, keepdims=True)
        return probabilities

    return scorer


def test_score_documents_fills_the_contract_with_score_p_positive_minus_p_negative() -> None:
    documents = document_frame([(f"d{i}", f"T{i % 2}", f"Title {'x' * i}", "Body.") for i in range(5)])
    calls: list[int] = []
    progress: list[int] = []
    scored = score_documents(documents, fake_scorer(calls), "3", chunk=2, on_progress=progress.append)
    assert list(scored.columns) == list(SCORED_DOCUMENT_COLUMNS)
    assert calls == [2, 2, 1] and progress == [2, 4, 5]
    assert scored["doc_id"].tolist() == documents["doc_id"].tolist()
    assert scored["ticker"].tolist() == documents["ticker"].tolist()
    assert (scored["published_at"] == documents["published_at"]).all()
    expected = fake_scorer([])(document_texts(documents))
    np.testing.assert_allclose(scored[["p_negative", "p_neutral", "p_positive"]].to_numpy(), expected)
    np.testing.assert_allclose(scored["score"], expected[:, 2] - expected[:, 0])
    assert (scored["model_version"] == "3").all()
    empty = score_documents(documents.iloc[:0], fake_scorer([]), "3")
    assert empty.empty and list(empty.columns) == list(SCORED_DOCUMENT_COLUMNS)


def test_unscored_skips_only_documents_scored_by_the_same_version() -> None:
    documents = document_frame([(d, "AAA", "T", "B") for d in ("a", "b", "c", "d")])
    scored = pd.DataFrame({"doc_id": ["a", "b", "c", "zz"], "model_version": [1, 2, 1, 1]})
    assert unscored(documents, scored, "1")["doc_id"].tolist() == ["b", "d"]
    assert unscored(documents, scored, "2")["doc_id"].tolist() == ["a", "c", "d"]
    assert unscored(documents, scored.iloc[:0], "1")["doc_id"].tolist() == ["a", "b", "c", "d"]


# --- the registered pyfunc ----------------------------------------------------------------------


def test_features_read_the_active_versions_scores_only(tmp_path: Path) -> None:
    scored = pd.DataFrame({"doc_id": ["a", "b", "a"], "model_version": ["synthetic", "synthetic", "2"]})
    alone, version = active_scores(scored.iloc[:2], tmp_path)
    assert version == "synthetic" and list(alone["doc_id"]) == ["a", "b"]  # one version: no choice to make
    with pytest.raises(TrainingError, match=r"active_version\.json"):
        active_scores(scored, tmp_path)  # two versions and nothing says which is in force
    write_active_version(tmp_path, "2")
    chosen, version = active_scores(scored, tmp_path)
    assert version == "2" and list(chosen["doc_id"]) == ["a"]
    empty, version = active_scores(scored.iloc[:0], tmp_path / "nowhere")
    assert empty.empty and version is None


def test_a_version_registered_with_the_onnx_runtime_answers_as_eager_pytorch(tuned: Tuned, tmp_path: Path) -> None:
    from training.audit import AuditLog
    from training.registry.config import RegistryConfig
    from training.registry.model_registry import ModelRegistry, RunRecord
    from training.sentiment.runtimes import export_onnx
    from training.sentiment.text_classifier import ONNX_FILE

    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", RegistryConfig(), AuditLog(tmp_path / "a.jsonl"))
    tuned.classifier.save(tmp_path / "weights")
    export_onnx(tuned.classifier, tmp_path / "weights" / ONNX_FILE)
    record = RunRecord("sentiment_text", {}, {}, {"code_version": "t"}, "# card")
    config = {"labels": list(LABELS), "max_length": MAX_LENGTH, "batch_size": 4, "runtime": "onnx"}
    version = registry.log_sentiment_text(record, tmp_path / "weights", config)
    model, _ = registry.load_pyfunc("sentiment_text", version)
    assert model.model_config["runtime"] == "onnx"
    out = model.predict(pd.DataFrame({"text": MIXED}))
    np.testing.assert_allclose(out.to_numpy(), tuned.classifier.predict_proba(MIXED), atol=1e-4)


def test_score_texts_names_a_missing_column_or_an_empty_text(tuned: Tuned) -> None:
    rows = pd.DataFrame({"text": list(CLEAR)}, index=[10, 20, 30])
    out = score_texts(tuned.classifier, rows, batch_size=2)
    assert list(out.columns) == list(LABELS) and list(out.index) == [10, 20, 30]
    np.testing.assert_allclose(out.to_numpy(), tuned.classifier.predict_proba(list(CLEAR)), atol=1e-6)
    with pytest.raises(ValueError, match="needs a 'text' column"):
        score_texts(tuned.classifier, pd.DataFrame({"sentence": ["Profit rose."]}), batch_size=2)
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match=r"text at position\(s\) \[1\] is empty or not a string"):
            score_texts(tuned.classifier, pd.DataFrame({"text": ["Profit rose.", bad]}), batch_size=2)


@pytest.mark.slow
def test_the_logged_text_model_loads_and_scores_without_the_project(tuned: Tuned, tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.audit import AuditLog
    from training.registry.config import RegistryConfig
    from training.registry.model_registry import ModelRegistry, RunRecord

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    registry.check_reachable()
    tuned.classifier.save(tmp_path / "weights")
    record = RunRecord("sentiment_text", {"epochs": 3}, {"val_macro_f1": 1.0}, {"code_version": "t"}, "# card")
    model_config = {"labels": list(LABELS), "max_length": MAX_LENGTH, "batch_size": 2, "runtime": "torch"}
    version = registry.log_sentiment_text(record, tmp_path / "weights", model_config)
    assert version == "1"
    expected = tuned.classifier.predict_proba(MIXED)

    model, inputs = registry.load_pyfunc("sentiment_text", version)
    assert inputs == ["text"]
    out = model.predict(pd.DataFrame({"text": MIXED}, index=range(100, 100 + len(MIXED))))
    assert list(out.columns) == list(LABELS) and list(out.index) == list(range(100, 100 + len(MIXED)))
    np.testing.assert_allclose(out.to_numpy(), expected, atol=1e-6)
    with pytest.raises(MlflowException, match=r"missing inputs \['text'\]"):  # the signature, before predict
        model.predict(pd.DataFrame({"sentence": ["Profit rose."]}))
    with pytest.raises(ValueError, match=r"text at position\(s\) \[1\] is empty"):
        model.predict(pd.DataFrame({"text": ["Profit rose.", " "]}))

    uri_v = f"models:/sentiment_text/{version}"
    int8_model = mlflow.pyfunc.load_model(uri_v, model_config={"runtime": "torch-int8"})
    int8 = int8_model.predict(pd.DataFrame({"text": CLEAR}))
    reference = tuned.classifier.predict_proba(list(CLEAR))
    assert np.abs(int8.to_numpy() - reference).max() < 0.05
    np.testing.assert_array_equal(int8.to_numpy().argmax(axis=1), CLEAR_LABELS)
    with pytest.raises(ValueError, match=r"runtime 'onnx' needs model\.onnx"):  # not exported at registration
        mlflow.pyfunc.load_model(uri_v, model_config={"runtime": "onnx"})
    with pytest.raises(ValueError, match="runtime 'jax' is not one of"):
        mlflow.pyfunc.load_model(uri_v, model_config={"runtime": "jax"})

    # A model server without the training package: block every import of it, then load and predict.
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["training"] = None  # any 'import training...' now raises ImportError
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({uri!r}); mlflow.set_registry_uri({uri!r})
        model = mlflow.pyfunc.load_model({uri_v!r})
        print(json.dumps(model.predict(pd.DataFrame({{"text": {MIXED!r}}})).to_numpy().tolist()))
        """
    )
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(json.loads(done.stdout.strip().splitlines()[-1]), expected, atol=1e-5)
