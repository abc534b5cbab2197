"""The ensemble server: a real ``python -m serving.ensemble`` on a real MLflow registry (SQLite).

The registered ensemble is the test pyfunc in tests/assets/ensemble_model.py (models-from-code),
a weighted mean of the component scores present in each row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from feature_repo.contract import ENSEMBLE, ENSEMBLE_OUTPUTS
from serving.errors import ModelLoadError, SignatureMismatch
from serving.loaders import load_ensemble
from serving.registry import Registry as ServingRegistry
from serving.tensors import pyfunc_outputs
from tests.serving_fixtures import (
    ENSEMBLE_WEIGHTS,
    Registry,
    ServerProcess,
    infer,
    metric_samples,
    model_server,
    outputs_by_name,
)

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry.in_temp(tmp_path_factory, "ensemble")
    assert registry.register_ensemble(ENSEMBLE_WEIGHTS) == "1"
    return registry


@pytest.fixture(scope="module")
def ensemble_server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with model_server("ensemble", registry.uri, tmp_path_factory.mktemp("logs"), "--reload_seconds", "0") as server:
        yield server


def test_load_checks_the_inputs_are_signal_model_names(registry: Registry) -> None:
    serving_registry = ServingRegistry(registry.uri)
    loaded = load_ensemble(serving_registry, serving_registry.resolve("ensemble", "champion"))
    try:
        assert loaded.inputs == tuple(ENSEMBLE_WEIGHTS)
        frame = pd.DataFrame({"technical": [0.8], "fundamental": [np.nan], "sentiment_signal": [0.3]})
        result: Any = loaded.model.predict(frame)  # the asset returns a dict of arrays
        np.testing.assert_allclose(result["score"], [(0.5 * 0.8 + 0.2 * 0.3) / 0.7])
        np.testing.assert_allclose(result["coverage"], [0.7])
    finally:
        loaded.close()
    registry.register_ensemble({"technical": 0.5, "momentum": 0.5}, alias="odd")
    with pytest.raises(SignatureMismatch, match="momentum"):
        load_ensemble(serving_registry, serving_registry.resolve("ensemble", "odd"))


@pytest.mark.slow
def test_any_subset_of_components_renormalises_weights(ensemble_server: ServerProcess) -> None:
    assert httpx.get(f"{ensemble_server.url}/v2/models/ensemble/ready", timeout=5).json()["ready"] is True
    frame = pd.DataFrame({"technical": [0.6, 0.2, np.nan], "fundamental": [0.4, np.nan, np.nan]})
    response = infer(ensemble_server, "ensemble", frame)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    outputs = outputs_by_name(response.json())
    assert list(outputs) == ["score", "coverage"]
    # Row 0: technical + fundamental; row 1: technical only; row 2: nothing present.
    np.testing.assert_allclose(outputs["score"], [(0.5 * 0.6 + 0.3 * 0.4) / 0.8, 0.2, np.nan], atol=1e-12)
    np.testing.assert_allclose(outputs["coverage"], [0.8, 0.5, 0.0], atol=1e-12)


@pytest.mark.slow
def test_all_components_give_full_coverage(ensemble_server: ServerProcess) -> None:
    frame = pd.DataFrame({"sentiment_signal": [0.1, 0.9], "technical": [0.7, 0.3], "fundamental": [0.5, 0.5]})
    outputs = outputs_by_name(infer(ensemble_server, "ensemble", frame).json())
    expected = 0.5 * frame["technical"] + 0.3 * frame["fundamental"] + 0.2 * frame["sentiment_signal"]
    np.testing.assert_allclose(outputs["score"], expected, atol=1e-12)
    np.testing.assert_allclose(outputs["coverage"], [1.0, 1.0], atol=1e-12)


@pytest.mark.slow
def test_unknown_component_or_no_input_is_a_400(ensemble_server: ServerProcess) -> None:
    response = infer(ensemble_server, "ensemble", pd.DataFrame({"technical": [0.5], "momentum": [0.1]}))
    assert response.status_code == 400
    assert "unknown inputs 'momentum'" in response.text
    empty = httpx.post(f"{ensemble_server.url}/v2/models/ensemble/infer", json={"inputs": []}, timeout=5)
    assert empty.status_code == 400
    samples = metric_samples(ensemble_server)
    info = frozenset({("model", "ensemble"), ("version", "1"), ("feature_service", "none")})
    assert samples[("portfolio_os_model_info", info)] == 1.0


def test_a_pyfunc_answer_outside_its_contract_is_a_server_error_naming_what_it_returned() -> None:
    answer = pd.DataFrame({"score": [0.1, 0.2], "coverage": [1, 0.5], "extra": ["x", "y"]})
    outputs = pyfunc_outputs(answer, ENSEMBLE_OUTPUTS, 2, ENSEMBLE, "3")
    assert list(outputs) == list(ENSEMBLE_OUTPUTS)
    assert outputs["coverage"].dtype == np.float64 and outputs["coverage"].tolist() == [1.0, 0.5]
    with pytest.raises(ModelLoadError, match=r"ensemble version 3 returned columns \['score'\] x 2 rows; expected"):
        pyfunc_outputs(answer[["score"]], ENSEMBLE_OUTPUTS, 2, ENSEMBLE, "3")
    with pytest.raises(ModelLoadError, match=r"x 2 rows; expected \['score', 'coverage'\] x 3$"):
        pyfunc_outputs(answer, ENSEMBLE_OUTPUTS, 3, ENSEMBLE, "3")
