"""The technical server and feature service versions: v2 served when asked, an unknown one refused.

Real ``python -m serving.technical`` processes on a real MLflow registry (SQLite); the booster is
a tiny LightGBM trained here on SYNTHETIC features (tests/serving_fixtures.py).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from feature_repo.contract import SIGNAL_FEATURE_SERVICES, service_features, signal_services
from serving.settings import parse_options
from tests.serving_fixtures import (
    Registry,
    infer,
    model_server,
    outputs_by_name,
    run_to_exit,
    synthetic_frame,
    train_booster,
)

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")

V2 = list(service_features("technical_model_v2"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry.in_temp(tmp_path_factory, "alpha")


@pytest.fixture(scope="module")
def v2_booster(registry: Registry):
    booster = train_booster(V2, seed=5)
    assert registry.register_signal("technical", booster, feature_service="technical_model_v2") == "1"
    return booster


def test_the_technical_model_knows_v1_and_v2_and_defaults_to_v1() -> None:
    assert signal_services("technical") == ("technical_model_v1", "technical_model_v2")
    assert SIGNAL_FEATURE_SERVICES["technical"] == "technical_model_v1"
    assert signal_services("fundamental") == ("fundamental_model_v1",)
    assert parse_options("technical", []).feature_service is None
    assert parse_options("technical", ["--feature_service", "technical_model_v2"]).feature_service == (
        "technical_model_v2"
    )
    assert service_features("technical_model_v2")[: len(service_features("technical_model_v1"))] == (
        service_features("technical_model_v1")
    )


@pytest.mark.slow
def test_an_unknown_feature_service_version_never_becomes_ready(registry: Registry, v2_booster, tmp_path: Path) -> None:
    result = run_to_exit("technical", registry.uri, tmp_path, "--feature_service", "technical_model_v9")
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "technical_model_v9" in result.stderr
    assert "technical_model_v1, technical_model_v2" in result.stderr
    assert "Traceback" not in result.stderr
    # Another model's service is no version of the technical one either.
    other = run_to_exit("technical", registry.uri, tmp_path, "--feature_service", "fundamental_model_v1")
    assert other.returncode == 1 and "fundamental_model_v1" in other.stderr


@pytest.mark.slow
def test_a_v2_champion_is_refused_by_a_v1_server(registry: Registry, v2_booster, tmp_path: Path) -> None:
    result = run_to_exit("technical", registry.uri, tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "technical_model_v1" in result.stderr
    assert "kmid" in result.stderr  # the first feature v1 lacks is named


@pytest.mark.slow
def test_a_v2_server_scores_its_v2_champion(registry: Registry, v2_booster, tmp_path: Path) -> None:
    with model_server(
        "technical", registry.uri, tmp_path, "--feature_service", "technical_model_v2", "--reload_seconds", "0"
    ) as server:
        ready = httpx.get(f"{server.url}/v2/models/technical/ready", timeout=5).json()
        assert ready == {"name": "technical", "ready": True}
        frame = synthetic_frame(V2, rows=20, seed=3)
        response = infer(server, "technical", frame)
        assert response.status_code == 200, response.text
        scores = outputs_by_name(response.json())["score"]
        np.testing.assert_allclose(scores.ravel(), v2_booster.predict(frame[V2]), rtol=1e-9)
