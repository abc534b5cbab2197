"""The allocator server: a real ``python -m serving.allocator`` on a real MLflow registry (SQLite).

The registered model is the training package's own allocator pyfunc, logged exactly as training
logs it (``ModelRegistry.log_allocator``) with hand-made policy layers: seeded random numbers, no
quality claimed. Expected weights come from that same pyfunc, loaded back from the registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest

from feature_repo.contract import ALLOCATOR_SERVICE, ErrorCode
from feature_repo.schema import ALLOCATOR_FEATURES
from serving.allocator_model import checked_tickers
from serving.errors import BadRequest, SignatureMismatch
from serving.loaders import load_allocator
from serving.registry import Registry as ServingRegistry
from serving.tensors import columns_from_v1, columns_from_v2
from tests.allocation_fixtures import mlp_policy
from tests.serving_fixtures import (
    Registry,
    ServerProcess,
    infer_binary_bytes,
    metric_samples,
    model_server,
    outputs_by_name,
    run_to_exit,
)
from training.allocation.observation import slot_observation_size
from training.allocation.policy import PolicyParams
from training.audit import AuditLog
from training.registry.config import RegistryConfig
from training.registry.model_registry import EXPERIMENT, ModelRegistry, RunRecord

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")

UNIVERSE = ["AAA", "BBB", "CCC", "DDD", "EEE"]
FEATURES = list(ALLOCATOR_FEATURES)
NAME = "allocator"


# --- factories (also used by tests/test_gateway_allocator.py) --------------------------------------


def random_policy(n_tickers: int, n_features: int, seed: int, *, slots: bool = False) -> PolicyParams:
    """Hand-made MLP layers shaped for ``n_tickers`` x ``n_features`` observations (seeded, no training).

    With ``slots``: a fixed-width policy of ``n_tickers`` slots (features, mask and weight per slot).
    """
    n_obs = slot_observation_size(1, n_tickers, n_features) if slots else n_tickers * n_features + n_tickers + 1
    return mlp_policy(n_obs, n_tickers + 1, seed)


def register_allocator(
    registry: Registry,
    tickers: Sequence[str],
    *,
    features: Sequence[str] = FEATURES,
    feature_service: str = ALLOCATOR_SERVICE,
    alias: str = "champion",
    max_weight: float = 0.4,
    seed: int = 0,
    max_assets: int | None = None,
) -> str:
    """Log and register an allocator version as training does (``log_allocator``); alias it; return the version.

    With ``max_assets``: a fixed-width policy of that many slots, ordered by ``vol_63d``.
    """
    if registry.client.get_experiment_by_name(EXPERIMENT) is None:
        # Artifacts beside the throwaway registry, never ./mlruns in the working directory.
        registry.client.create_experiment(EXPERIMENT, artifact_location=(registry.folder / "artifacts").as_uri())
    training_registry = ModelRegistry(registry.uri, RegistryConfig(), AuditLog(registry.folder / "audit.jsonl"))
    width = len(tickers) if max_assets is None else max_assets
    policy = random_policy(width, len(features), seed, slots=max_assets is not None)
    policy_file = policy.save(registry.folder / f"policy-{seed}.npz")
    config: dict[str, Any] = {
        "tickers": list(tickers),
        "features": list(features),
        "max_weight": max_weight,
        "turnover_cap": None,
        "allow_cash": True,
    }
    if max_assets is not None:
        config |= {"max_assets": max_assets, "slot_feature": "vol_63d"}
    record = RunRecord(
        name=NAME,
        params={"algorithm": "hand-made"},
        metrics={},
        tags={"feature_service": feature_service, "code_version": "test"},
        card="# test allocator (hand-made policy, SYNTHETIC)",
    )
    version = training_registry.log_allocator(record, policy_file, config)
    registry.client.set_registered_model_alias(NAME, alias, version)
    return version


def pyfunc_weights(uri: str, version: str, rows: pd.DataFrame) -> np.ndarray:
    """What the registered pyfunc itself answers for ``rows`` (loaded back from the registry)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    return np.asarray(model.predict(rows)["weight"], dtype=np.float64)


def allocator_request(rows: pd.DataFrame) -> dict[str, Any]:
    """``ticker`` as BYTES, every other column FP64 (NaN as null)."""
    inputs: list[dict[str, Any]] = []
    if "ticker" in rows.columns:
        tickers = [str(t) for t in rows["ticker"]]
        inputs.append({"name": "ticker", "datatype": "BYTES", "shape": [len(rows)], "data": tickers})
    for column in rows.columns.drop("ticker", errors="ignore"):
        data = [None if math.isnan(v) else float(v) for v in rows[column]]
        inputs.append({"name": str(column), "datatype": "FP64", "shape": [len(rows)], "data": data})
    return {"inputs": inputs}


def synthetic_rows(tickers: Sequence[str], seed: int, *, book: bool = True) -> pd.DataFrame:
    """SYNTHETIC feature rows (seeded, a few missing) and, optionally, a long-only book summing below 1."""
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=0.2, size=(len(tickers), len(FEATURES)))
    values[rng.random(values.shape) < 0.15] = np.nan
    rows = pd.DataFrame(values, columns=FEATURES).assign(ticker=list(tickers))[["ticker", *FEATURES]]
    if book:
        held = rng.dirichlet(np.ones(len(tickers) + 1))[: len(tickers)]
        rows["current_weight"] = held
    return rows


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry.in_temp(tmp_path_factory, "allocator")
    assert register_allocator(registry, UNIVERSE, seed=1) == "1"
    return registry


@pytest.fixture(scope="module")
def allocator_server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with model_server(NAME, registry.uri, tmp_path_factory.mktemp("logs"), "--reload_seconds", "0") as server:
        yield server


def post(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body, timeout=10.0)


# --- in-process: decoding and loader checks (fast) -----------------------------------------------


def test_bytes_tensors_decode_from_json_strings_and_binary_bytes() -> None:
    text = InferInput("ticker", [2], "BYTES", ["AAA", "BBB"])
    binary = InferInput("ticker", [2, 1], "BYTES")
    binary.set_data_from_numpy(np.array([[b"CCC"], ["DDD"]], dtype=object), binary_data=True)
    weight = InferInput("current_weight", [2], "FP64", [0.1, None])
    for tensor, expected in ((text, ["AAA", "BBB"]), (binary, ["CCC", "DDD"])):
        columns = columns_from_v2(InferRequest("m", [tensor, weight]), frozenset({"ticker"}))
        assert columns["ticker"].tolist() == expected and all(type(t) is str for t in columns["ticker"])
        np.testing.assert_array_equal(columns["current_weight"], [0.1, np.nan])
    with pytest.raises(BadRequest, match="element 1 is NoneType, not a string"):
        columns_from_v2(InferRequest("m", [InferInput("ticker", [2], "BYTES", ["AAA", None])]), frozenset({"ticker"}))
    with pytest.raises(BadRequest, match="'ticker' has datatype FP64; expected BYTES"):
        columns_from_v2(InferRequest("m", [InferInput("ticker", [1], "FP64", [1.0])]), frozenset({"ticker"}))
    # A model without text inputs still refuses BYTES, as before.
    with pytest.raises(BadRequest, match="has datatype BYTES; expected FP64"):
        columns_from_v2(InferRequest("m", [text]))
    v1 = columns_from_v1({"instances": [{"ticker": "AAA", "ret_21d": None}]}, frozenset({"ticker"}))
    assert v1["ticker"].tolist() == ["AAA"] and np.isnan(v1["ret_21d"][0])


def test_load_checks_signature_universe_and_tag(registry: Registry) -> None:
    serving_registry = ServingRegistry(registry.uri)
    loaded = load_allocator(serving_registry, serving_registry.resolve(NAME, "champion"))
    try:
        assert loaded.tickers == frozenset(UNIVERSE)
        assert loaded.feature_service == ALLOCATOR_SERVICE and loaded.version == "1"
    finally:
        loaded.close()
    register_allocator(registry, UNIVERSE, features=["ret_21d", "vol_21d"], alias="narrow", seed=2)
    with pytest.raises(SignatureMismatch, match="missing from the model: ret_63d, vol_63d"):
        load_allocator(serving_registry, serving_registry.resolve(NAME, "narrow"))
    register_allocator(registry, UNIVERSE, feature_service="technical_model_v1", alias="tagged", seed=3)
    with pytest.raises(SignatureMismatch, match="tagged feature_service='technical_model_v1'"):
        load_allocator(serving_registry, serving_registry.resolve(NAME, "tagged"))


def test_a_fixed_width_allocator_serves_any_names_up_to_its_width(registry: Registry) -> None:
    register_allocator(registry, UNIVERSE, alias="wide", seed=4, max_assets=4)
    serving_registry = ServingRegistry(registry.uri)
    loaded = load_allocator(serving_registry, serving_registry.resolve(NAME, "wide"))
    try:
        assert loaded.max_assets == 4
        # Names never seen in training are served (the policy has slots, not a universe).
        unseen = ["NEW1", "NEW2", "AAA"]
        assert checked_tickers(loaded, {"ticker": np.array(unseen, dtype=object)}) == unseen
        weights = loaded.model.predict(synthetic_rows(unseen, seed=5))["weight"].to_numpy()
        assert weights.shape == (3,) and (weights >= 0).all() and weights.sum() <= 1 + 1e-12
        other = loaded.model.predict(synthetic_rows(["ZZZ", "YYY"], seed=6))["weight"].to_numpy()
        assert other.shape == (2,) and other.sum() <= 1 + 1e-12
        with pytest.raises(BadRequest, match=r"at most 4 tickers per request .*got 5"):
            checked_tickers(loaded, {"ticker": np.array([*unseen, "X", "Y"], dtype=object)})
    finally:
        loaded.close()


# --- one shared server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_weights_equal_the_pyfunc_on_the_same_rows(registry: Registry, allocator_server: ServerProcess) -> None:
    rows = synthetic_rows(UNIVERSE, seed=7)
    response = post(allocator_server, allocator_request(rows))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == NAME and body["model_version"] == "1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [("weight", "FP64", [len(UNIVERSE)])]
    weights = outputs_by_name(body)["weight"]
    np.testing.assert_allclose(weights, pyfunc_weights(registry.uri, "1", rows), rtol=0, atol=1e-12)
    assert (weights >= 0).all() and weights.max() <= 0.4 + 1e-12 and weights.sum() <= 1 + 1e-12
    # The book held changes the decision (the policy sees it), so it really reached the model.
    empty_book = post(allocator_server, allocator_request(rows.drop(columns=["current_weight"])))
    assert not np.allclose(outputs_by_name(empty_book.json())["weight"], weights)


@pytest.mark.slow
def test_a_subset_in_any_order_with_a_missing_feature(registry: Registry, allocator_server: ServerProcess) -> None:
    rows = synthetic_rows(["DDD", "AAA", "CCC"], seed=8).drop(columns=["beta_252d"])
    response = post(allocator_server, allocator_request(rows))
    assert response.status_code == 200, response.text
    weights = outputs_by_name(response.json())["weight"]
    # The pyfunc sees the absent feature as missing (NaN) for every row, in the request's order.
    np.testing.assert_allclose(weights, pyfunc_weights(registry.uri, "1", rows), rtol=0, atol=1e-12)
    full = post(allocator_server, allocator_request(synthetic_rows(UNIVERSE, seed=8)))
    assert len(outputs_by_name(full.json())["weight"]) == len(UNIVERSE)


@pytest.mark.slow
def test_binary_bytes_tensor_over_rest(registry: Registry, allocator_server: ServerProcess) -> None:
    """The v2 binary extension: tickers as length-prefixed bytes after the JSON header."""
    tickers = UNIVERSE[1:3]
    response = infer_binary_bytes(allocator_server, NAME, "ticker", tickers)
    assert response.status_code == 200, response.text
    expected = pyfunc_weights(registry.uri, "1", pd.DataFrame({"ticker": tickers}))
    np.testing.assert_allclose(outputs_by_name(response.json())["weight"], expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_v1_instances(registry: Registry, allocator_server: ServerProcess) -> None:
    rows = synthetic_rows(UNIVERSE[:2], seed=9)
    instances = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows.to_dict("records")
    ]
    response = httpx.post(f"{allocator_server.url}/v1/models/{NAME}:predict", json={"instances": instances}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    np.testing.assert_allclose(response.json()["predictions"], pyfunc_weights(registry.uri, "1", rows), atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.assign(ticker=["AAA", "ZZZ", "YYY"]),
            "outside the allocator's trained universe of 5 tickers: ZZZ, YYY",
        ),
        (lambda r: r.assign(ticker=["AAA", "AAA", "BBB"]), "tickers appear more than once: AAA"),
        (lambda r: r.assign(current_weight=[0.5, -0.1, 0.0]), "current_weight must be in [0, 1]"),
        (lambda r: r.assign(current_weight=[0.5, 0.4, 0.3]), "current_weight sums to 1.2"),
        (lambda r: r.assign(pe_ratio=1.0), "unknown inputs 'pe_ratio'"),
        (lambda r: r.drop(columns=["ticker"]), "missing input 'ticker'"),
    ],
    ids=["outside-universe", "repeated", "negative-weight", "book-above-1", "unknown-input", "no-ticker"],
)
def test_bad_requests_are_400_with_a_clear_message(allocator_server: ServerProcess, change: Any, message: str) -> None:
    response = post(allocator_server, allocator_request(change(synthetic_rows(UNIVERSE[:3], seed=10))))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    # Only the refusal the gateway acts on carries a code; it reads the code, never the wording.
    assert response.json().get("code") == (ErrorCode.OUTSIDE_UNIVERSE if message.startswith("outside") else None)


@pytest.mark.slow
def test_malformed_tensors_are_400_never_500(allocator_server: ServerProcess) -> None:
    rows = synthetic_rows(UNIVERSE[:2], seed=11)
    body = allocator_request(rows)
    body["inputs"][0] = {"name": "ticker", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}
    assert "expected BYTES" in post(allocator_server, body).json()["error"]
    body = allocator_request(rows)
    body["inputs"][0]["data"] = ["AAA", None]
    assert post(allocator_server, body).status_code == 400
    body = allocator_request(rows)
    body["inputs"][1] = {**body["inputs"][1], "shape": [1], "data": [0.1]}
    response = post(allocator_server, body)
    assert response.status_code == 400 and "differ in length" in response.json()["error"]


@pytest.mark.slow
def test_ready_metrics_and_loopback(allocator_server: ServerProcess) -> None:
    assert httpx.get(f"{allocator_server.url}/v2/models/{NAME}/ready", timeout=5).json() == {
        "name": NAME,
        "ready": True,
    }
    assert post(allocator_server, allocator_request(synthetic_rows(UNIVERSE, seed=12))).status_code == 200
    samples = metric_samples(allocator_server)
    assert samples[("portfolio_os_model_ready", frozenset({("model", NAME)}))] == 1.0
    info = frozenset({("model", NAME), ("version", "1"), ("feature_service", ALLOCATOR_SERVICE)})
    assert samples[("portfolio_os_model_info", info)] == 1.0
    assert samples[("portfolio_os_model_predictions_total", frozenset({("model", NAME), ("version", "1")}))] >= 5
    duration = ("portfolio_os_model_predict_duration_seconds_count", frozenset({("model", NAME), ("version", "1")}))
    assert samples[duration] >= 1
    process = psutil.Process(allocator_server.proc.pid)
    connections = getattr(process, "net_connections", process.connections)("inet")  # renamed in psutil 6
    listening = [c.laddr for c in connections if c.status == psutil.CONN_LISTEN]
    assert {(a.ip, a.port) for a in listening} == {("127.0.0.1", allocator_server.port)}


# --- refusal -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_wrong_signature_never_becomes_ready(tmp_path: Path) -> None:
    registry = Registry.create(tmp_path / "registry", tmp_path.parent)
    register_allocator(registry, UNIVERSE, features=[*FEATURES[:-1], "rsi_14"], seed=4)
    result = run_to_exit(NAME, registry.uri, tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "beta_252d" in lines[0] and "rsi_14" in lines[0]
    assert "Traceback" not in result.stderr
