"""Signal model servers: real ``python -m serving.<name>`` processes on a real MLflow registry (SQLite).

Models are tiny LightGBM boosters trained here on SYNTHETIC data (tests/serving_fixtures.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from feature_repo.contract import service_features
from serving.errors import ModelNotRegistered, RegistryUnavailable, SignatureMismatch
from serving.loaders import load_signal
from serving.registry import Registry as ServingRegistry
from serving.signature import name_differences
from tests.servers import free_port
from tests.serving_fixtures import (
    Registry,
    ServerProcess,
    infer,
    metric_samples,
    model_server,
    outputs_by_name,
    run_to_exit,
    synthetic_frame,
    train_booster,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")

TECHNICAL = list(service_features("technical_model_v1"))
SENTIMENT = list(service_features("sentiment_signal_model_v1"))
FUNDAMENTAL = list(service_features("fundamental_model_v1"))

CONTRACT_METRICS = {
    "portfolio_os_model_ready",
    "portfolio_os_model_info",
    "portfolio_os_model_reloads_total",
    "portfolio_os_model_registry_errors_total",
    "portfolio_os_model_predictions_total",
    "portfolio_os_model_predict_duration_seconds_count",
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry.in_temp(tmp_path_factory, "signal")


@pytest.fixture(scope="module")
def technical_booster(registry: Registry):
    booster = train_booster(TECHNICAL, seed=11)
    assert registry.register_signal("technical", booster, feature_service="technical_model_v1") == "1"
    return booster


@pytest.fixture(scope="module")
def technical_server(
    registry: Registry, technical_booster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with model_server("technical", registry.uri, tmp_path_factory.mktemp("logs"), "--reload_seconds", "0") as server:
        yield server


# --- in-process: signature checks and registry errors (fast) -------------------------------------


def test_name_differences_names_missing_extra_and_reordered() -> None:
    assert name_differences(["a", "b", "c"], ["a", "b", "c"]) == []
    missing_extra = " ".join(name_differences(["a", "b", "c"], ["a", "c", "zz"]))
    assert "missing from the model: b" in missing_extra
    assert "not in the feature service: zz" in missing_extra
    reordered = name_differences(["a", "b", "c"], ["a", "c", "b"])
    assert reordered == ["reordered: position 1 is 'c' in the model, 'b' in the service"]


def test_load_refuses_reordered_signature_and_wrong_tag(registry: Registry) -> None:
    swapped = [SENTIMENT[1], SENTIMENT[0], *SENTIMENT[2:]]
    version = registry.register_signal(
        "sentiment_signal", train_booster(swapped, seed=3), feature_service="sentiment_signal_model_v1", alias="bad"
    )
    serving_registry = ServingRegistry(registry.uri)
    ref = serving_registry.resolve("sentiment_signal", "bad")
    assert ref.version == version
    with pytest.raises(SignatureMismatch, match=f"reordered: position 0 is '{SENTIMENT[1]}'"):
        load_signal(serving_registry, ref, "sentiment_signal_model_v1")
    good = registry.register_signal(
        "sentiment_signal", train_booster(SENTIMENT, seed=3), feature_service="technical_model_v1", alias="tagged"
    )
    tagged = serving_registry.resolve("sentiment_signal", "tagged")
    with pytest.raises(SignatureMismatch, match="tagged feature_service='technical_model_v1'"):
        load_signal(serving_registry, tagged, "sentiment_signal_model_v1")
    assert good != version


def test_registry_errors_are_typed_and_never_create_a_database(tmp_path: Path, registry: Registry) -> None:
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(RegistryUnavailable, match="no MLflow registry"):
        ServingRegistry(f"sqlite:///{missing}").resolve("technical", "champion")
    assert not missing.exists()
    with pytest.raises(ModelNotRegistered):
        ServingRegistry(registry.uri).resolve("no_such_model", "champion")


def test_refused_http_registry_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what the servers set (serving.settings)
    with pytest.raises(RegistryUnavailable, match="Connection refused"):
        ServingRegistry(f"http://127.0.0.1:{free_port()}").resolve("technical", "champion")


# --- one shared server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ready_only_with_a_loaded_model(technical_server: ServerProcess) -> None:
    assert httpx.get(f"{technical_server.url}/v2/health/ready", timeout=5).status_code == 200
    body = httpx.get(f"{technical_server.url}/v2/models/technical/ready", timeout=5).json()
    assert body == {"name": "technical", "ready": True}
    assert httpx.get(f"{technical_server.url}/v2/models/technical-explain/ready", timeout=5).json()["ready"] is True
    samples = metric_samples(technical_server)
    assert samples[("portfolio_os_model_ready", frozenset({("model", "technical")}))] == 1.0
    info = frozenset({("model", "technical"), ("version", "1"), ("feature_service", "technical_model_v1")})
    assert samples[("portfolio_os_model_info", info)] == 1.0


@pytest.mark.slow
def test_scores_equal_booster_predict_in_any_input_order(technical_server: ServerProcess, technical_booster) -> None:
    frame = synthetic_frame(TECHNICAL, rows=50, seed=99, nan_share=0.2)  # nulls in about 1 cell in 5
    expected = technical_booster.predict(frame.to_numpy())
    shuffled = frame[list(np.random.default_rng(5).permutation(TECHNICAL))]
    for sent in (frame, shuffled):
        response = infer(technical_server, "technical", sent)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == "1"
        score = outputs_by_name(body)["score"]
        np.testing.assert_allclose(score, expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_null_is_lightgbm_missing(technical_server: ServerProcess, technical_booster) -> None:
    frame = synthetic_frame(TECHNICAL, rows=3, seed=7, nan_share=0.0)
    frame.iloc[0, :] = np.nan  # every feature missing
    frame.iloc[1, 0] = np.nan  # the feature the label depends on most
    score = outputs_by_name(infer(technical_server, "technical", frame).json())["score"]
    np.testing.assert_allclose(score, technical_booster.predict(frame.to_numpy()), rtol=0, atol=1e-12)
    filled = frame.fillna(0.0)
    assert not np.allclose(score[:2], technical_booster.predict(filled.to_numpy())[:2])  # NaN is not zero


@pytest.mark.slow
def test_missing_or_unknown_input_is_a_400_naming_it(technical_server: ServerProcess) -> None:
    frame = synthetic_frame(TECHNICAL, rows=2, seed=1)
    response = infer(technical_server, "technical", frame.drop(columns=["rsi_14"]))
    assert response.status_code == 400
    assert "missing inputs 'rsi_14'" in response.text
    response = infer(technical_server, "technical", frame.assign(pe_ratio=1.0))
    assert response.status_code == 400
    assert "unknown inputs 'pe_ratio'" in response.text


@pytest.mark.slow
def test_explain_contributions_sum_to_raw_score(technical_server: ServerProcess, technical_booster) -> None:
    frame = synthetic_frame(TECHNICAL, rows=20, seed=4)
    response = infer(technical_server, "technical-explain", frame)
    assert response.status_code == 200, response.text
    outputs = outputs_by_name(response.json())
    assert list(outputs) == [*TECHNICAL, "bias", "score", "logistic_link"]
    total = np.sum([outputs[name] for name in [*TECHNICAL, "bias"]], axis=0)
    np.testing.assert_allclose(total, technical_booster.predict(frame.to_numpy(), raw_score=True), atol=1e-9)
    # The fixture's booster is binary: the explainer's score is the signal model's probability.
    np.testing.assert_array_equal(outputs["logistic_link"], np.ones(20))
    np.testing.assert_allclose(outputs["score"], technical_booster.predict(frame.to_numpy()), atol=1e-12)


@pytest.mark.slow
def test_v1_instances(technical_server: ServerProcess, technical_booster) -> None:
    frame = synthetic_frame(TECHNICAL, rows=4, seed=8)
    instances = [{k: (None if np.isnan(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]
    response = httpx.post(
        f"{technical_server.url}/v1/models/technical:predict", json={"instances": instances}, timeout=10
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        np.array(response.json()["predictions"]), technical_booster.predict(frame.to_numpy()), atol=1e-12
    )


@pytest.mark.slow
def test_metrics_parse_and_carry_the_contract_names(technical_server: ServerProcess) -> None:
    assert infer(technical_server, "technical", synthetic_frame(TECHNICAL, rows=5, seed=2)).status_code == 200
    samples = metric_samples(technical_server)
    assert {name for name, _ in samples} >= CONTRACT_METRICS
    assert samples[("portfolio_os_model_predictions_total", frozenset({("model", "technical"), ("version", "1")}))] >= 5
    failed = frozenset({("model", "technical"), ("outcome", "failed")})
    assert samples[("portfolio_os_model_reloads_total", failed)] == 0.0


@pytest.mark.slow
def test_listens_on_loopback_only(technical_server: ServerProcess) -> None:
    process = psutil.Process(technical_server.proc.pid)
    connections = getattr(process, "net_connections", process.connections)("inet")  # renamed in psutil 6
    listening = [c.laddr for c in connections if c.status == psutil.CONN_LISTEN]
    assert listening, "the server listens on nothing"
    assert {(a.ip, a.port) for a in listening} == {("127.0.0.1", technical_server.port)}


# --- lifecycles: refusal, reload, registry loss, shutdown ----------------------------------------


@pytest.mark.slow
def test_signature_mismatch_never_becomes_ready(registry: Registry, tmp_path: Path) -> None:
    features = [*FUNDAMENTAL[:-1], "pe_ratio"]  # drops days_since_report, adds a feature the service lacks
    registry.register_signal("fundamental", train_booster(features, seed=2), feature_service="fundamental_model_v1")
    result = run_to_exit("fundamental", registry.uri, tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "days_since_report" in result.stderr
    assert "pe_ratio" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unreachable_registry_at_start_is_one_line_and_non_zero(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "mlflow.db"
    result = run_to_exit("technical", f"sqlite:///{missing}", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1
    assert f"no MLflow registry at {missing}" in lines[0]
    assert not missing.parent.exists()  # nothing created in its place


@pytest.mark.slow
def test_alias_move_reload_failed_version_and_registry_loss(tmp_path: Path) -> None:
    registry = Registry.create(tmp_path / "registry", tmp_path.parent)
    first = train_booster(SENTIMENT, seed=21)
    registry.register_signal("sentiment_signal", first, feature_service="sentiment_signal_model_v1")
    frame = synthetic_frame(SENTIMENT, rows=10, seed=22)
    model = "sentiment_signal"
    with model_server(model, registry.uri, tmp_path, "--reload_seconds", "1") as server:

        def served() -> tuple[str, np.ndarray]:
            body = infer(server, model, frame).json()
            return body["model_version"], outputs_by_name(body)["score"]

        def sample(name: str, **labels: str) -> float:
            return metric_samples(server).get((name, frozenset({("model", model), *labels.items()})), 0.0)

        assert served()[0] == "1"
        second = train_booster(SENTIMENT, seed=31, rounds=25)
        registry.register_signal(model, second, feature_service="sentiment_signal_model_v1")
        # 60 s deadlines only stop a hung test: the poll runs every second, later on a busy machine.
        wait_for(lambda: served()[0] == "2", timeout=60, what="version 2 to be served")
        np.testing.assert_allclose(served()[1], second.predict(frame.to_numpy()), atol=1e-12)
        assert sample("portfolio_os_model_reloads_total", outcome="success") == 1.0

        # A champion whose signature disagrees is refused; version 2 keeps serving.
        short = train_booster(SENTIMENT[:-1], seed=41)
        registry.register_signal(model, short, feature_service="sentiment_signal_model_v1")
        wait_for(lambda: sample("portfolio_os_model_reloads_total", outcome="failed") == 1.0, 60, "a failed reload")
        assert served()[0] == "2"
        assert "sent_surprise" in server.logs()

        # The registry's folder disappears: errors are counted, the loaded version keeps serving.
        shutil.move(registry.folder, tmp_path / "registry-gone")
        wait_for(lambda: sample("portfolio_os_model_registry_errors_total") >= 1.0, 60, "a registry error")
        assert served()[0] == "2"
        assert httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=5).status_code == 200

        assert server.stop() == 0  # SIGTERM: graceful shutdown, status 0
    # The server wrote nothing into its working directory (no default ./mlflow.db or ./mlruns).
    assert not {"mlflow.db", "mlruns"} & {p.name for p in tmp_path.iterdir()}
