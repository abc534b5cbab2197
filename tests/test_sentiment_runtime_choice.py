"""The ``onnx-int8`` rule: static int8 first, dynamic int8 when static is refused, fp32 ONNX when both are.

Every verdict comes from the real check (macro-F1 of real ONNX Runtime answers on held-out sentences,
within a tolerance of fp32's), on all-MiniLM-L6-v2 fitted to a tiny separable set on one torch thread.
The registered model, its MLflow record and an in-process model server then show and run the kept file.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from feature_repo.contract import SENTIMENT_TEXT, SENTIMENT_TEXT_TASK, TAG_TASK
from tests.sentiment_fixtures import CLEAR, CLEAR_LABELS, one_torch_thread, separable_set
from training.sentiment import LABELS
from training.sentiment.finetune import FineTuneConfig, fine_tune
from training.sentiment.runtimes import (
    Int8Candidate,
    RuntimeDecision,
    calibration_batches,
    export_for_runtime,
    export_onnx,
    int8_candidates,
    quantise_onnx_static,
)
from training.sentiment.text_classifier import (
    ONNX_FILE,
    ONNX_INT8_DYNAMIC_FILE,
    ONNX_INT8_FILE,
    TextClassifier,
    batched_probabilities,
    onnx_session_logits,
)

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")

MAX_LENGTH = 48
# Held out: an unseen company in the negative template, and the two other clear sentences.
HELD = ["Quorra slumped to a heavy loss and warned that weak demand would cut earnings.", *CLEAR[1:]]
CHECK = ("held", HELD, CLEAR_LABELS)
TOLERANCE = 0.005
BATCH = 2  # the registered model's batch size: three texts make a batch of two and one of one


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class Models:
    untrained: TextClassifier  # the pre-trained encoder with a new, unfitted head
    tuned: TextClassifier  # the same fitted to the separable set: every check sentence right


@pytest.fixture(scope="module")
def models() -> Models:
    untrained = TextClassifier.from_base(max_length=MAX_LENGTH, seed=0)
    tuned = TextClassifier(copy.deepcopy(untrained.model), untrained.tokenizer, max_length=MAX_LENGTH)
    texts, labels = separable_set()
    fine_tune(tuned, texts, labels, FineTuneConfig(epochs=3, batch_size=8, learning_rate=5e-4), progress=False)
    return Models(untrained, tuned)


def onnx_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.onnx")}


def file_probabilities(classifier: TextClassifier, path: Path, texts: list[str], batch_size: int) -> np.ndarray:
    ids = classifier.encode(texts)
    return batched_probabilities(ids, classifier.tokenizer.pad_token_id or 0, onnx_session_logits(path), batch_size)


@pytest.fixture(scope="module")
def dynamic_kept(models: Models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RuntimeDecision]:
    """Static int8 refused, dynamic int8 kept: the model folder (weights too) and the decision.

    Static int8 of this tiny model holds the clear sentences whatever calibrates it (tried: the training
    set, a lone "." or word, one label's sentences, activation ranges clipped at the 51st percentile), so
    the refused static variant is the static int8 of the *untrained* model's export: a real int8 file,
    judged by the same check as the dynamic one, that really fails it.
    """
    folder = tmp_path_factory.mktemp("dynamic-kept")
    texts, _ = separable_set()
    wrong = export_onnx(models.untrained, folder.parent / "untrained.onnx")
    batches = calibration_batches(models.untrained, texts)
    static = Int8Candidate("static", ONNX_INT8_FILE, lambda _fp32, target: quantise_onnx_static(wrong, target, batches))
    _, dynamic = int8_candidates(models.tuned, texts)
    decision = export_for_runtime(
        models.tuned, folder, calibration_texts=texts, check=CHECK, tolerance=TOLERANCE, candidates=(static, dynamic)
    )
    models.tuned.save(folder)
    return folder, decision


def test_the_rule_tries_static_int8_then_dynamic_int8(models: Models) -> None:
    texts, _ = separable_set()
    candidates = int8_candidates(models.tuned, texts)
    assert [(c.quantisation, c.file) for c in candidates] == [
        ("static", "model.int8.onnx"),
        ("dynamic", "model.int8-dynamic.onnx"),
    ]


def test_static_int8_is_kept_when_it_holds_and_dynamic_is_never_tried(models: Models, tmp_path: Path) -> None:
    texts, _ = separable_set()
    decision = export_for_runtime(models.tuned, tmp_path, calibration_texts=texts, check=CHECK, tolerance=TOLERANCE)
    assert [(t.quantisation, t.accepted) for t in decision.trials] == [("static", True)]
    assert decision.fp32_macro_f1 == 1.0 and decision.trials[0].macro_f1 == 1.0 and decision.trials[0].agreement == 1.0
    assert decision.model_config() == {"runtime": "onnx-int8", "quantisation": "static"}
    assert onnx_files(tmp_path) == {ONNX_FILE, ONNX_INT8_FILE}
    assert decision.describe() == (
        "static int8 kept: macro-F1 1.0000 vs fp32 1.0000 on held (same class as fp32 for 100.0% of its texts)"
        " -> serves static int8 ONNX (model.int8.onnx)"
    )


def test_a_refused_static_int8_falls_back_to_dynamic_int8_under_the_same_check(
    dynamic_kept: tuple[Path, RuntimeDecision],
) -> None:
    folder, decision = dynamic_kept
    static, dynamic = decision.trials
    assert not static.accepted and static.macro_f1 < decision.fp32_macro_f1 - TOLERANCE and static.agreement < 1.0
    assert dynamic.accepted and dynamic.macro_f1 == decision.fp32_macro_f1 == 1.0
    assert decision.kept == dynamic and decision.served_file == ONNX_INT8_DYNAMIC_FILE
    assert decision.model_config() == {"runtime": "onnx-int8", "quantisation": "dynamic"}
    assert onnx_files(folder) == {ONNX_FILE, ONNX_INT8_DYNAMIC_FILE}  # the refused static file is gone
    assert decision.describe().startswith("static int8 REFUSED: macro-F1 ")
    assert "; dynamic int8 kept: macro-F1 1.0000 vs fp32 1.0000 on held" in decision.describe()
    assert decision.describe().endswith("-> serves dynamic int8 ONNX (model.int8-dynamic.onnx)")


def test_both_refused_serves_fp32_onnx(models: Models, tmp_path: Path) -> None:
    texts, _ = separable_set()
    # A tolerance no int8 file can meet: it would have to beat fp32 by a whole macro-F1 point.
    decision = export_for_runtime(models.tuned, tmp_path, calibration_texts=texts, check=CHECK, tolerance=-1.0)
    assert [(t.quantisation, t.accepted) for t in decision.trials] == [("static", False), ("dynamic", False)]
    assert [t.macro_f1 for t in decision.trials] == [1.0, 1.0]  # both as good as fp32, and still refused
    assert decision.kept is None and decision.model_config() == {"runtime": "onnx"}
    assert onnx_files(tmp_path) == {ONNX_FILE}
    assert decision.describe().count("REFUSED") == 2 and decision.describe().endswith(
        "-> serves fp32 ONNX (model.onnx)"
    )
    assert decision.metrics() == {
        "int8_check_fp32_macro_f1": 1.0,
        "int8_static_macro_f1": 1.0,
        "int8_static_agreement": 1.0,
        "int8_dynamic_macro_f1": 1.0,
        "int8_dynamic_agreement": 1.0,
    }


def test_the_registered_model_records_the_choice_and_serves_the_kept_file(
    models: Models, dynamic_kept: tuple[Path, RuntimeDecision], tmp_path: Path
) -> None:
    from serving.champion import Champion
    from serving.loaders import load_sentiment_text
    from serving.registry import Registry as ServingRegistry
    from serving.sentiment_text_model import SentimentTextModel
    from training.audit import AuditLog
    from training.registry.config import RegistryConfig
    from training.registry.model_registry import ModelRegistry, RunRecord
    from training.sentiment.registration import with_runtime

    folder, decision = dynamic_kept
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, RegistryConfig(), AuditLog(tmp_path / "audit.jsonl"))
    tags = {TAG_TASK: SENTIMENT_TEXT_TASK, "code_version": "test"}
    record = with_runtime(RunRecord(SENTIMENT_TEXT, {"runtime": "onnx-int8"}, {}, tags, "# card\n"), decision)
    config = {"labels": list(LABELS), "max_length": MAX_LENGTH, "batch_size": BATCH, **decision.model_config()}
    version = registry.log_sentiment_text(record, folder, config)

    # What a user sees in the registry: the version's tags and card, the run's params and metrics.
    seen = registry.client.get_model_version(SENTIMENT_TEXT, version)
    assert seen.tags["runtime_served"] == "onnx-int8" and seen.tags["int8_quantisation"] == "dynamic"
    assert seen.tags["runtime_decision"] == decision.describe()
    card = seen.description or ""
    assert "## Runtime: onnx-int8 (model.int8-dynamic.onnx)" in card
    assert "| static int8 |" in card and "| refused |" in card
    run = registry.client.get_run(str(seen.run_id)).data
    assert run.params["onnx_file"] == ONNX_INT8_DYNAMIC_FILE and run.params["int8_check_set"] == "held"
    assert run.metrics["int8_dynamic_macro_f1"] == 1.0 > run.metrics["int8_static_macro_f1"]

    # The pyfunc runs the dynamic file: its answers are that file's, in the usual columns. Dynamic int8 sets
    # activation scales per batch, so a text's answer moves slightly with its batch: compare equal batches.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{SENTIMENT_TEXT}/{version}")
    assert pyfunc.unwrap_python_model().onnx_file == ONNX_INT8_DYNAMIC_FILE  # type: ignore[no-untyped-call]
    answer = pyfunc.predict(pd.DataFrame({"text": list(CLEAR)}))
    assert list(answer.columns) == list(LABELS)
    expected = file_probabilities(models.tuned, folder / ONNX_INT8_DYNAMIC_FILE, list(CLEAR), BATCH)
    np.testing.assert_allclose(answer.to_numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(answer.to_numpy().argmax(axis=1), CLEAR_LABELS)
    with pytest.raises(ValueError, match="quantisation 'fp8' is not one of"):
        mlflow.pyfunc.load_model(f"models:/{SENTIMENT_TEXT}/{version}", model_config={"quantisation": "fp8"})

    # The model server's loader and model answer the same, in the same shape as any other runtime.
    registry.client.set_registered_model_alias(SENTIMENT_TEXT, "champion", version)
    serving = ServingRegistry(uri)
    loaded = load_sentiment_text(serving, serving.resolve(SENTIMENT_TEXT, "champion"))
    assert loaded.model.unwrap_python_model().onnx_file == ONNX_INT8_DYNAMIC_FILE  # type: ignore[no-untyped-call]
    champion = Champion(
        SENTIMENT_TEXT, SENTIMENT_TEXT, "champion", serving, lambda ref: load_sentiment_text(serving, ref)
    )
    champion.load_initial()
    model = SentimentTextModel(SENTIMENT_TEXT, champion)
    model.load()
    try:
        request = InferRequest(SENTIMENT_TEXT, [InferInput("text", [len(CLEAR)], "BYTES", list(CLEAR))])
        response = asyncio.run(model.predict(request))
    finally:
        model.stop()
        champion.stop()
    assert isinstance(response, InferResponse)
    assert [(o.name, o.shape) for o in response.outputs] == [(label, [len(CLEAR)]) for label in LABELS]
    served = np.column_stack([np.asarray(o.data, dtype=float) for o in response.outputs])
    np.testing.assert_allclose(served, answer.to_numpy(), rtol=0, atol=1e-9)
