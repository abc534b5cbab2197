"""The text sentiment server: a real ``python -m serving.sentiment_text`` on a real MLflow registry (SQLite).

The registered model is the training package's own text pyfunc, logged exactly as training logs it
(``ModelRegistry.log_sentiment_text``), around the real all-MiniLM-L6-v2 encoder with a new,
untrained three-class head (``TextClassifier.from_base()``): no quality is claimed, its probabilities
only have to be well formed and the same as the classifier's own. Versions the server must refuse
are logged with a tiny placeholder folder instead of the weights: they are refused before loading.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import psutil
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from api.settings import GatewaySettings
from serving.champion import Champion
from serving.errors import ModelLoadError, SignatureMismatch
from serving.loaders import LoadedSentimentText, load_sentiment_text
from serving.registry import Registry as ServingRegistry
from serving.registry import VersionRef
from serving.sentiment_text_model import SentimentTextModel
from tests.gateway_fixtures.fixtures import PEPPER, assert_error_body, auth, gateway, new_key
from tests.serving_fixtures import (
    Registry,
    ServerProcess,
    infer_binary_bytes,
    metric_samples,
    model_server,
    outputs_by_name,
    run_to_exit,
    wait_for,
)
from training.audit import AuditLog
from training.registry.config import RegistryConfig
from training.registry.model_registry import (
    EXPERIMENT,
    SENTIMENT_TEXT_CODE,
    SENTIMENT_TEXT_CODE_PATHS,
    SENTIMENT_TEXT_REQUIREMENTS,
    ModelRegistry,
    RunRecord,
)
from training.sentiment.text_classifier import LABELS, TextClassifier

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")

NAME = "sentiment_text"
CONFIG = {"labels": list(LABELS), "max_length": 128, "batch_size": 32, "runtime": "torch"}
TAGS = {"task": NAME, "code_version": "test"}
# Loading torch, transformers and the weights takes a while on two busy cores.
START_TIMEOUT = 180.0
TEXTS = [
    "Quarterly profit beat estimates and the company raised its full-year guidance for the third time, "
    "citing strong demand in every region and record margins in its services business.",
    "Shares fell.",
    "The board kept the dividend unchanged.",
    "Loan losses doubled",
]


# --- factories -----------------------------------------------------------------------------------


def _training_registry(registry: Registry) -> ModelRegistry:
    if registry.client.get_experiment_by_name(EXPERIMENT) is None:
        # Artifacts beside the throwaway registry, never ./mlruns in the working directory.
        registry.client.create_experiment(EXPERIMENT, artifact_location=(registry.folder / "artifacts").as_uri())
    return ModelRegistry(registry.uri, RegistryConfig(), AuditLog(registry.folder / "audit.jsonl"))


def register_text_model(registry: Registry, folder: Path, alias: str, tags: dict[str, str] = TAGS) -> str:
    """Log and register ``folder`` as training does (``log_sentiment_text``); alias it; return the version."""
    record = RunRecord(name=NAME, params={}, metrics={}, tags=tags, card="# test text model (untrained head)")
    version = _training_registry(registry).log_sentiment_text(record, folder, CONFIG)
    registry.client.set_registered_model_alias(NAME, alias, version)
    return version


def register_with_signature(registry: Registry, folder: Path, alias: str, signature: ModelSignature) -> str:
    """The same pyfunc logged with another signature (what a wrong training change would register)."""
    _training_registry(registry)
    with mlflow.start_run(experiment_id=registry.client.get_experiment_by_name(EXPERIMENT).experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SENTIMENT_TEXT_CODE),
            model_config=CONFIG,
            artifacts={"model": str(folder)},
            code_paths=[str(p) for p in SENTIMENT_TEXT_CODE_PATHS],
            signature=signature,
            pip_requirements=SENTIMENT_TEXT_REQUIREMENTS,
            registered_model_name=NAME,
        )
    version = str(info.registered_model_version)
    for key, value in TAGS.items():
        registry.client.set_model_version_tag(NAME, version, key, value)
    registry.client.set_registered_model_alias(NAME, alias, version)
    return version


def text_request(texts: list[Any], datatype: str = "BYTES", name: str = "text") -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": [len(texts)], "data": texts}]}


def post(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body, timeout=60.0)


def probabilities(body: dict[str, Any]) -> np.ndarray:
    """The answer as an ``[n, 3]`` matrix in label order."""
    outputs = outputs_by_name(body)
    return np.column_stack([outputs[label] for label in LABELS])


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextClassifier, Path]:
    """The real encoder with an untrained head, saved once for every version of this module."""
    model = TextClassifier.from_base()
    folder = tmp_path_factory.mktemp("text-model") / "model"
    model.save(folder)
    return model, folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, classifier: tuple[TextClassifier, Path]) -> Registry:
    """v1 champion and v2 (same weights) for reloads; then versions the server must refuse, by alias."""
    registry = Registry.in_temp(tmp_path_factory, "sentiment")
    _, folder = classifier
    assert register_text_model(registry, folder, "champion") == "1"
    assert register_text_model(registry, folder, "second") == "2"
    placeholder = registry.folder / "placeholder"
    placeholder.mkdir()
    (placeholder / "config.json").write_text("{}")
    register_text_model(registry, placeholder, "wrong-task", tags={**TAGS, "task": "sentiment_signal"})
    register_text_model(registry, placeholder, "no-weights")
    labels = Schema([ColSpec("double", label) for label in LABELS])
    sentence = ModelSignature(inputs=Schema([ColSpec("string", "sentence")]), outputs=labels)
    register_with_signature(registry, placeholder, "wrong-input", sentence)
    numeric = ModelSignature(inputs=Schema([ColSpec("double", "text")]), outputs=labels)
    register_with_signature(registry, placeholder, "numeric-text", numeric)
    two = ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=Schema([ColSpec("double", "bullish")]))
    register_with_signature(registry, placeholder, "wrong-outputs", two)
    return registry


@pytest.fixture(scope="module")
def text_server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("logs")
    with model_server(NAME, registry.uri, logs, "--reload_seconds", "0", timeout=START_TIMEOUT) as server:
        yield server


# --- in-process: loader checks and the model off the event loop ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("alias", "error", "message"),
    [
        ("wrong-task", SignatureMismatch, "tagged task='sentiment_signal'; this server serves 'sentiment_text'"),
        ("wrong-input", SignatureMismatch, "missing from the model: text; not in the feature service: sentence"),
        ("numeric-text", SignatureMismatch, "text (DataType.double, expected DataType.string)"),
        ("wrong-outputs", SignatureMismatch, "declares outputs ['bullish']; expected exactly"),
        ("no-weights", ModelLoadError, "cannot load the pyfunc model"),
    ],
)
def test_the_loader_refuses_versions_outside_the_contract(
    registry: Registry, alias: str, error: type[Exception], message: str
) -> None:
    serving_registry = ServingRegistry(registry.uri)
    with pytest.raises(error) as raised:
        load_sentiment_text(serving_registry, serving_registry.resolve(NAME, alias))
    assert message in str(raised.value)


@pytest.mark.slow
def test_scoring_runs_off_the_event_loop(registry: Registry) -> None:
    """While the pyfunc scores in the model's thread, the event loop still runs (readiness answers)."""
    entered, release, threads = threading.Event(), threading.Event(), []

    class HeldPyfunc:
        """The real pyfunc, held at the start of each predict until the test releases it."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, frame: Any) -> Any:
            threads.append(threading.get_ident())
            entered.set()
            release.wait(timeout=60)
            return self.inner.predict(frame)

    def loader(ref: VersionRef) -> LoadedSentimentText:
        loaded = load_sentiment_text(serving_registry, ref)
        return replace(loaded, model=HeldPyfunc(loaded.model))

    serving_registry = ServingRegistry(registry.uri)
    champion = Champion(NAME, NAME, "champion", serving_registry, loader)
    champion.load_initial()
    model = SentimentTextModel(NAME, champion)
    model.load()

    async def scenario() -> tuple[InferResponse, bool, bool]:
        request = InferRequest(NAME, [InferInput("text", [2], "BYTES", TEXTS[:2])])
        task = asyncio.create_task(model.predict(request))
        await asyncio.to_thread(entered.wait, 60)
        pending, ready = not task.done(), await model.healthy()
        release.set()
        return await task, pending, ready

    try:
        response, pending, ready = asyncio.run(scenario())
    finally:
        release.set()
        model.stop()
        champion.stop()
    assert pending and ready and threads and threads[0] != threading.get_ident()
    assert [o.name for o in response.outputs] == list(LABELS) and response.model_version == "1"


# --- one shared server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_probabilities_equal_the_classifier_and_keep_row_order(
    classifier: tuple[TextClassifier, Path], text_server: ServerProcess
) -> None:
    response = post(text_server, text_request(TEXTS))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == NAME and body["model_version"] == "1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [
        (label, "FP64", [len(TEXTS)]) for label in LABELS
    ]
    served = probabilities(body)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert ((served > 0) & (served < 1)).all()
    model, _ = classifier
    np.testing.assert_allclose(served, model.predict_proba(TEXTS), rtol=0, atol=1e-5)
    # Texts of very different lengths are batched by length; each answer stays on its own row.
    alone = np.vstack([probabilities(post(text_server, text_request([t])).json()) for t in TEXTS])
    np.testing.assert_allclose(served, alone, rtol=0, atol=1e-5)
    assert np.abs(np.diff(alone, axis=0)).max() > 1e-4  # the rows differ, so the order check can fail
    reversed_ = probabilities(post(text_server, text_request(TEXTS[::-1])).json())
    np.testing.assert_allclose(reversed_, served[::-1], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_binary_bytes_tensor_and_v1_instances(text_server: ServerProcess) -> None:
    """The v2 binary extension (length-prefixed UTF-8 bytes) and v1 strings or objects give the same answer."""
    texts = ["Les résultats dépassent les attentes — 📈", TEXTS[1]]
    expected = probabilities(post(text_server, text_request(texts)).json())
    response = infer_binary_bytes(text_server, NAME, "text", texts, timeout=60)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(probabilities(response.json()), expected, rtol=0, atol=1e-9)
    for instances in (texts, [{"text": t} for t in texts]):
        v1 = httpx.post(f"{text_server.url}/v1/models/{NAME}:predict", json={"instances": instances}, timeout=60)
        assert v1.status_code == 200, v1.text
        assert v1.json()["model_version"] == "1"
        rows = np.array([[p[label] for label in LABELS] for p in v1.json()["predictions"]])
        np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_the_gateway_limits_are_accepted(text_server: ServerProcess) -> None:
    """64 texts, one of exactly 2,000 characters, are one valid request."""
    texts = [f"Headline number {i}." for i in range(63)] + [("Revenue rose. " * 200)[:2000]]
    response = post(text_server, text_request(texts))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(probabilities(response.json()).sum(axis=1), 1.0, rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "missing inputs 'text'"),
        (
            {"inputs": [*text_request(["ok"])["inputs"], *text_request(["x"], name="extra")["inputs"]]},
            "unknown inputs ['extra']",
        ),
        (text_request(["ok"], name="sentence"), "unknown inputs ['sentence']"),
        (text_request([1.5], datatype="FP64"), "has datatype FP64; expected BYTES"),
        (text_request(["ok", None]), "element 1 is NoneType, not a string"),
        (text_request(["ok", 7]), "element 1 is int, not a string"),
        (text_request(["ok", ""]), "empty or blank at position(s) 1"),
        (text_request(["   \n", "ok"]), "empty or blank at position(s) 0"),
        (text_request([]), "holds no texts"),
        (text_request([f"text {i}" for i in range(65)]), "65 texts in one request; at most 64"),
        (text_request(["ok", "x" * 2001]), "longer than 2000 characters at position(s) 1"),
        (
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 2], "data": ["a", "b", "c", "d"]}]},
            "has shape [2, 2]; expected [n]",
        ),
    ],
    ids=[
        "no-input",
        "extra-input",
        "wrong-name",
        "fp64",
        "null",
        "number",
        "empty",
        "blank",
        "no-texts",
        "too-many",
        "too-long",
        "2d",
    ],
)
def test_bad_requests_are_400_with_a_reason(text_server: ServerProcess, body: dict[str, Any], message: str) -> None:
    response = post(text_server, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.slow
def test_bad_v1_payloads_are_400(text_server: ServerProcess) -> None:
    url = f"{text_server.url}/v1/models/{NAME}:predict"
    for payload, message in [
        ({"instances": []}, "a v1 payload is"),
        ({"instances": ["ok", {"text": "mixed"}]}, "a v1 payload is"),
        ({"instances": [{"text": "ok", "extra": 1.0}]}, "unknown inputs 'extra'"),
        ({"instances": ["  "]}, "empty or blank"),
    ]:
        response = httpx.post(url, json=payload, timeout=60)
        assert response.status_code == 400, (payload, response.text)
        assert message in response.json()["error"]


@pytest.mark.slow
def test_ready_metrics_and_loopback(text_server: ServerProcess) -> None:
    ready = httpx.get(f"{text_server.url}/v2/models/{NAME}/ready", timeout=5)
    assert ready.json() == {"name": NAME, "ready": True}
    assert post(text_server, text_request(TEXTS)).status_code == 200
    samples = metric_samples(text_server)
    assert samples[("portfolio_os_model_ready", frozenset({("model", NAME)}))] == 1.0
    info = frozenset({("model", NAME), ("version", "1"), ("feature_service", "none")})
    assert samples[("portfolio_os_model_info", info)] == 1.0
    scored = frozenset({("model", NAME), ("version", "1")})
    assert samples[("portfolio_os_model_predictions_total", scored)] >= len(TEXTS)
    assert samples[("portfolio_os_model_predict_duration_seconds_count", scored)] >= 1
    process = psutil.Process(text_server.proc.pid)
    connections = getattr(process, "net_connections", process.connections)("inet")  # renamed in psutil 6
    listening = [c.laddr for c in connections if c.status == psutil.CONN_LISTEN]
    assert {(a.ip, a.port) for a in listening} == {("127.0.0.1", text_server.port)}


# --- refusal, reloads, the registry going away ---------------------------------------------------


@pytest.mark.slow
def test_a_wrong_signature_never_becomes_ready(registry: Registry, tmp_path: Path) -> None:
    result = run_to_exit(NAME, registry.uri, tmp_path, "--alias", "wrong-input", timeout=START_TIMEOUT)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "sentence" in lines[0] and "text" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_reloads_follow_the_alias_and_outlive_the_registry(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused version keeps the old one serving; a good one is swapped in; a lost registry changes nothing."""
    copy = Registry(tmp_path / "registry")  # its own database, so the alias can move and the file can go
    copy.folder.mkdir()
    shutil.copy(registry.folder / "mlflow.db", copy.folder / "mlflow.db")
    copy.client.set_registered_model_alias(NAME, "live", "1")
    monkeypatch.setenv("PORTFOLIO_OS_SENTIMENT_MAX_TEXTS", "3")
    args = ("--alias", "live", "--reload_seconds", "0.2")
    with model_server(NAME, copy.uri, tmp_path, *args, timeout=START_TIMEOUT) as server:
        refused = post(server, text_request(TEXTS))
        assert refused.status_code == 400 and "4 texts in one request; at most 3" in refused.json()["error"]

        def count(name: str, **labels: str) -> float:
            return metric_samples(server).get((name, frozenset({("model", NAME), *labels.items()})), 0.0)

        wrong_task = registry.client.get_model_version_by_alias(NAME, "wrong-task").version
        copy.client.set_registered_model_alias(NAME, "live", wrong_task)
        wait_for(lambda: count("portfolio_os_model_reloads_total", outcome="failed") >= 1, 60, "a refused reload")
        assert post(server, text_request(TEXTS[:2])).json()["model_version"] == "1"
        copy.client.set_registered_model_alias(NAME, "live", "2")
        wait_for(lambda: post(server, text_request(TEXTS[:2])).json()["model_version"] == "2", 120, "version 2")
        assert count("portfolio_os_model_reloads_total", outcome="success") == 1
        (copy.folder / "mlflow.db").unlink()
        wait_for(lambda: count("portfolio_os_model_registry_errors_total") >= 1, 60, "a registry error")
        answer = post(server, text_request(TEXTS[:2]))
        assert answer.status_code == 200 and answer.json()["model_version"] == "2"
        assert httpx.get(f"{server.url}/v2/models/{NAME}/ready", timeout=5).json()["ready"] is True


# --- the gateway in front of the real server -----------------------------------------------------


@pytest.mark.slow
def test_gateway_sentiment_end_to_end_then_server_killed(registry: Registry, tmp_path: Path) -> None:
    with model_server(NAME, registry.uri, tmp_path, "--reload_seconds", "0", timeout=START_TIMEOUT) as server:
        settings = GatewaySettings(
            data_dir=str(tmp_path / "data"),
            database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
            model_urls={NAME: server.url},
            api_key_pepper=PEPPER,
            model_timeout_s=5.0,
        )
        with gateway(settings) as client:
            key = new_key(client)
            response = client.post("/v1/sentiment", json={"texts": TEXTS}, headers=auth(key))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_version"] == "1" and len(body["results"]) == len(TEXTS)
            rows = np.array([[r[label] for label in LABELS] for r in body["results"]])
            np.testing.assert_allclose(rows, probabilities(post(server, text_request(TEXTS)).json()), atol=1e-12)
            assert [r["label"] for r in body["results"]] == [LABELS[i] for i in rows.argmax(axis=1)]
            np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=0, atol=1e-9)

            blank = client.post("/v1/sentiment", json={"texts": ["fine", "   "]}, headers=auth(key))
            error = assert_error_body(blank, 422, "validation_error")
            assert "texts.1" in error["message"]  # the blank text is named by its position

            server.proc.kill()
            server.proc.wait(timeout=30)
            down = client.post("/v1/sentiment", json={"texts": ["After the crash."]}, headers=auth(key))
            error = assert_error_body(down, 503, "model_unavailable")
            assert "sentiment model is unavailable" in error["message"]
