"""``POST /v1/allocations`` answered by a real allocator server, and its fallbacks.

The gateway reads the ``allocator_v1`` features from the real Feast repo of the gateway tests
(SQLite, SYNTHETIC universe) and calls a real ``python -m serving.allocator`` serving a hand-made
allocator version (tests/test_serving_allocator.py) trained on all but the last ticker of that
universe. Expected weights come from the registered pyfunc itself on the same online rows.
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design; allocator_server
# (tests/test_serving_allocator) serves this module's registry
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db import audit_log
from feature_repo.contract import ALLOCATOR_SERVICE
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    SharedEnv,
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
)
from tests.serving_fixtures import Registry, ServerProcess, model_server
from tests.test_serving_allocator import (  # noqa: F401
    allocator_request,
    allocator_server,
    pyfunc_weights,
    register_allocator,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("module_mlflow_uris")]
ALLOCATOR = "allocator"


@pytest.fixture(scope="module")
def trained(shared_env: SharedEnv) -> list[str]:
    """The allocator's trained universe: every ticker of the feature repo but the last."""
    return shared_env.tickers[:-1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, trained: list[str]) -> Registry:
    registry = Registry.in_temp(tmp_path_factory, "gw-allocator")
    assert register_allocator(registry, trained, seed=5) == "1"
    return registry


def online_rows(env: SharedEnv, tickers: list[str], book: dict[str, float]) -> pd.DataFrame:
    """The ``allocator_v1`` rows the gateway reads for ``tickers``, plus the book, as the pyfunc takes them."""
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(env.data_dir)))
    rows = repo.online(ALLOCATOR_SERVICE, tickers)
    return rows.assign(current_weight=[book.get(t, 0.0) for t in tickers]).reset_index(drop=True)


def allocate(client: TestClient, key: str, universe: list[str], **extra: Any) -> dict[str, Any]:
    body = {"universe": universe, "capital": 1_000_000, **extra}
    response = client.post("/v1/allocations", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_allocation_is_answered_by_the_model_within_max_weight(
    make_gateway, shared_env, registry: Registry, allocator_server: ServerProcess, trained: list[str]
) -> None:
    client = make_gateway(model_urls={**shared_env.model_urls(), ALLOCATOR: allocator_server.url})
    key = new_key(client, tenant="allocating")
    # Before any answer, /v1/models reads the version from the real server's portfolio_os_model_info.
    models = {m["name"]: m for m in client.get("/v1/models", headers=auth(key)).json()["models"]}
    assert models[ALLOCATOR]["ready"] is True and models[ALLOCATOR]["serving_version"] == "1"
    universe = trained[:4]
    book = {universe[0]: 0.3, universe[2]: 0.1}
    expected = pyfunc_weights(registry.uri, "1", online_rows(shared_env, universe, book))
    assert expected.sum() <= 1.0 + 1e-12 and (expected > 0).any()

    free = allocate(client, key, universe, current_weights={t.lower(): w for t, w in book.items()})
    assert free["method"] == "allocator" and free["degraded"] is False and free["reasons"] == []
    assert free["model_versions"] == {ALLOCATOR: "1"}
    weights = np.array([a["weight"] for a in free["allocations"]])
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-12)
    assert free["cash"] == pytest.approx((1 - expected.sum()) * 1_000_000)

    limit = float(expected.max()) * 0.75  # the client's hard limit binds for the largest weight(s)
    capped = allocate(client, key, universe, current_weights=book, constraints={"max_weight": limit})
    weights = np.array([a["weight"] for a in capped["allocations"]])
    np.testing.assert_allclose(weights, np.minimum(expected, limit), rtol=0, atol=1e-12)
    assert weights.max() <= limit + 1e-12 and capped["degraded"] is False
    (reason,) = capped["reasons"]
    assert reason["code"] == "max_weight_cap" and universe[int(expected.argmax())] in reason["message"]
    assert capped["cash"] == pytest.approx((1 - weights.sum()) * 1_000_000)

    assert client.app.state.services.audit.flush()  # rows are written in the background, in batches
    with client.app.state.services.engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.tenant == "allocating")).mappings().all()
    assert [r["model_versions"] for r in rows] == [{ALLOCATOR: "1"}, {ALLOCATOR: "1"}]
    assert rows[1]["answer"] == capped
    metrics = client.get("/metrics").text
    assert 'model_call_duration_seconds_count{model="allocator",outcome="ok",version="1"}' in metrics
    assert 'portfolio_os_gateway_fallbacks_total{model="allocator"' not in metrics


def test_a_ticker_outside_the_trained_universe_falls_back(
    make_gateway, shared_env, allocator_server: ServerProcess, trained: list[str]
) -> None:
    client = make_gateway(
        model_urls={**shared_env.model_urls(), ALLOCATOR: allocator_server.url}, circuit_failure_threshold=2
    )
    key = new_key(client)
    outside = shared_env.tickers[-1]
    universe = [*trained[:2], outside]
    for _ in range(3):  # more than the circuit threshold: a refused request must not open it
        body = allocate(client, key, universe, current_weights={outside: 0.2}, constraints={"long_only": False})
    assert body["degraded"] is True and body["method"] == "inverse_volatility" and body["model_versions"] == {}
    codes = [r["code"] for r in body["reasons"]]
    assert codes[0] == "outside_universe" and codes[-1] == "long_only" and "fallback_note" in codes
    assert outside in body["reasons"][0]["message"] and "fallback" in body["reasons"][0]["message"]
    assert sum(a["weight"] for a in body["allocations"]) == pytest.approx(1.0)
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_fallbacks_total{model="allocator",reason="outside_universe"} 3.0' in metrics
    assert 'portfolio_os_gateway_circuit_state{model="allocator"} 0.0' in metrics
    # The model still answers a universe it knows.
    assert allocate(client, key, trained[:2])["method"] == "allocator"


def test_current_weights_out_of_bounds_are_422(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)
    universe = shared_env.tickers[:2]
    for book, words in [
        ({universe[0]: -0.1}, "greater than or equal to 0"),
        ({universe[0]: 1.5}, "less than or equal to 1"),
        ({"BAD TICKER": 0.1}, "current_weights"),
    ]:
        body = {"universe": universe, "capital": 10, "current_weights": book}
        response = client.post("/v1/allocations", json=body, headers=auth(key))
        assert words in assert_error_body(response, 422, "validation_error")["message"]


def test_a_schema_valid_book_is_answered_with_notes(make_gateway, shared_env) -> None:
    """What JSON Schema cannot declare is adjusted and named, never refused (the contract test fuzzes it)."""
    client = make_gateway()
    key = new_key(client)
    a, b = shared_env.tickers[:2]
    book = {a: 0.7, b.lower(): 0.3, b: 0.3, "NOPE": 0.1}  # sums to 1.4; NOPE is outside the universe
    body = {"universe": [a, b, a.lower()], "capital": 10, "current_weights": book}
    answer = client.post("/v1/allocations", json=body, headers=auth(key)).json()
    assert [x["ticker"] for x in answer["allocations"]] == [a, b]
    notes = {r["code"]: r["message"] for r in answer["reasons"] if r["model"] == "request"}
    assert set(notes) == {"duplicate_tickers", "book_scaled", "book_outside_universe"}
    assert (
        a in notes["duplicate_tickers"] and "1.4" in notes["book_scaled"] and "NOPE" in notes["book_outside_universe"]
    )


def test_a_stopped_allocator_falls_back_and_never_500s(
    make_gateway, shared_env, registry: Registry, trained: list[str], tmp_path: Path
) -> None:
    universe = trained[:3]
    with model_server(ALLOCATOR, registry.uri, tmp_path, "--reload_seconds", "0") as server:
        client = make_gateway(model_urls={**shared_env.model_urls(), ALLOCATOR: server.url}, score_cache_seconds=0)
        key = new_key(client)
        warm = httpx.post(
            f"{server.url}/v2/models/{ALLOCATOR}/infer",
            json=allocator_request(online_rows(shared_env, universe, {})),
            timeout=10,
        )
        assert warm.status_code == 200, warm.text
        assert allocate(client, key, universe)["method"] == "allocator"
        assert server.stop() == 0
    body = allocate(client, key, universe, risk_tolerance="high")
    assert body["degraded"] is True and body["method"] == "equal_weight"
    assert body["reasons"][0]["code"] == "connection_error"
    assert "unreachable" in body["reasons"][0]["message"]
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_fallbacks_total{model="allocator",reason="connection_error"} 1.0' in metrics
    assert 'portfolio_os_gateway_degraded_responses_total{route="/v1/allocations"} 1.0' in metrics
