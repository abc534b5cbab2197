"""The gateway over v2 gRPC (``PORTFOLIO_OS_MODEL_TRANSPORT=grpc``): the answers REST gives, and its failures.

Real model server processes on 127.0.0.1 serve REST and gRPC side by side: the contract
stand-ins of tests/gateway_fixtures (tests/gateway_fixtures/grpc_stand_in.py, which count their
calls per transport) for signals and sentiment, and a real ``python -m serving.allocator`` over a
hand-made allocator version (tests/test_serving_allocator.py) trained on all but the last ticker
of the gateway tests' feature repo. Each test compares a gateway on gRPC with one on REST over the
same servers, or kills a server under the gRPC gateway.
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from feature_repo.contract import ALLOCATOR, ENSEMBLE, SENTIMENT_TEXT
from tests.clocks import Clock
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    SharedEnv,
    auth,
    make_gateway,
    new_key,
    shared_env,
    technical_breaker_closes,
    technical_breaker_opens,
)
from tests.gateway_fixtures.grpc_stand_in import StandInServer
from tests.servers import free_port
from tests.serving_fixtures import Registry, ServerProcess, model_server
from tests.test_serving_allocator import register_allocator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("module_mlflow_uris")]
SIGNAL_SERVERS = {"technical": ["technical"], "others": ["fundamental", "sentiment_signal", ENSEMBLE, SENTIMENT_TEXT]}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StandInServer]]:
    logs = tmp_path_factory.mktemp("stand-in-logs")
    servers = {group: StandInServer(models, "7", logs) for group, models in SIGNAL_SERVERS.items()}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def trained(shared_env: SharedEnv) -> list[str]:
    return shared_env.tickers[:-1]


@pytest.fixture(scope="module")
def allocator(tmp_path_factory: pytest.TempPathFactory, trained: list[str]) -> Iterator[tuple[ServerProcess, str]]:
    registry = Registry.create(tmp_path_factory.mktemp("grpc-allocator") / "registry", tmp_path_factory.getbasetemp())
    assert register_allocator(registry, trained, seed=5) == "1"
    grpc_port = free_port()
    logs = tmp_path_factory.mktemp("allocator-logs")
    with model_server(ALLOCATOR, registry.uri, logs, "--reload_seconds", "0", "--grpc_port", str(grpc_port)) as server:
        yield server, f"127.0.0.1:{grpc_port}"


def _servers(
    stand_ins: dict[str, StandInServer], allocator: tuple[ServerProcess, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(model_urls, model_grpc_urls) of every model served here."""
    urls, addresses = {}, {}
    for group, models in SIGNAL_SERVERS.items():
        for model in models:
            urls[model], addresses[model] = stand_ins[group].url, stand_ins[group].grpc_address
    urls[ALLOCATOR], addresses[ALLOCATOR] = allocator[0].url, allocator[1]
    return urls, addresses


@pytest.fixture
def gateways(
    make_gateway: Callable[..., TestClient],
    stand_ins: dict[str, StandInServer],
    allocator: tuple[ServerProcess, str],
) -> Callable[..., dict[str, tuple[TestClient, dict[str, str]]]]:
    """Factory: a gateway per transport over the same servers, each with a key's headers."""

    def build(**overrides: Any) -> dict[str, tuple[TestClient, dict[str, str]]]:
        urls, addresses = _servers(stand_ins, allocator)
        built = {}
        for transport in ("rest", "grpc"):
            client = make_gateway(model_urls=urls, model_grpc_urls=addresses, model_transport=transport, **overrides)
            built[transport] = (client, auth(new_key(client)))
        return built

    return build


def _without_request_id(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = dict(response.json())
    body.pop("request_id")
    return body


def _calls_by_transport(stand_ins: dict[str, StandInServer]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {"rest": {}, "grpc": {}}
    for server in stand_ins.values():
        for (model, transport), value in server.calls().items():
            totals[transport][model] = value
    return totals


def test_signals_over_grpc_are_the_rest_answer(gateways, stand_ins, shared_env) -> None:
    built = gateways(score_cache_seconds=0)
    params = {"tickers": ",".join(reversed(shared_env.tickers))}
    before = _calls_by_transport(stand_ins)
    by_grpc = _without_request_id(built["grpc"][0].get("/v1/signals", params=params, headers=built["grpc"][1]))
    after_grpc = _calls_by_transport(stand_ins)
    by_rest = _without_request_id(built["rest"][0].get("/v1/signals", params=params, headers=built["rest"][1]))
    after_rest = _calls_by_transport(stand_ins)
    assert by_grpc == by_rest
    assert by_grpc["degraded"] is False and by_grpc["model_versions"] == {
        "technical": "7", "fundamental": "7", "sentiment_signal": "7", ENSEMBLE: "7"
    }  # fmt: skip
    assert [s["ticker"] for s in by_grpc["signals"]] == list(reversed(shared_env.tickers))
    # The gRPC gateway called each model once over gRPC and never over REST; the REST one the other way.
    for model in ("technical", "fundamental", "sentiment_signal", ENSEMBLE):
        assert after_grpc["grpc"][model] == before["grpc"].get(model, 0) + 1
        assert after_grpc["rest"].get(model, 0) == before["rest"].get(model, 0)
        assert after_rest["rest"][model] == after_grpc["rest"].get(model, 0) + 1
        assert after_rest["grpc"][model] == after_grpc["grpc"][model]


def test_sentiment_over_grpc_is_the_rest_answer(gateways, stand_ins) -> None:
    built = gateways()
    texts = {"texts": ["Record profit and strong growth.", "Lawsuit and weak demand: a loss.", "Flat quarter."]}
    before = _calls_by_transport(stand_ins)["grpc"].get(SENTIMENT_TEXT, 0)
    answers = [_without_request_id(c.post("/v1/sentiment", json=texts, headers=h)) for c, h in built.values()]
    assert _calls_by_transport(stand_ins)["grpc"][SENTIMENT_TEXT] == before + 1
    assert answers[0] == answers[1]
    assert [r["label"] for r in answers[0]["results"]] == ["positive", "negative", "neutral"]


def test_allocations_over_grpc_are_the_rest_answer(gateways, trained) -> None:
    built = gateways()
    body = {"universe": trained[:4], "capital": 1_000_000, "current_weights": {trained[0]: 0.3}}
    by_grpc, by_rest = (_without_request_id(c.post("/v1/allocations", json=body, headers=h)) for c, h in built.values())
    assert by_grpc == by_rest
    assert (
        by_grpc["method"] == ALLOCATOR
        and by_grpc["degraded"] is False
        and by_grpc["model_versions"] == {ALLOCATOR: "1"}
    )


def test_a_refusal_over_grpc_keeps_its_code_and_the_circuit_closed(gateways, shared_env, trained) -> None:
    built = gateways(circuit_failure_threshold=2)
    client, headers = built["grpc"]
    outside = shared_env.tickers[-1]
    body = {"universe": [*trained[:2], outside], "capital": 1_000}
    for _ in range(3):  # more than the circuit threshold: a refused request must not open it
        response = client.post("/v1/allocations", json=body, headers=headers)
        assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["degraded"] is True and answer["method"] != ALLOCATOR
    first = answer["reasons"][0]
    assert first["model"] == ALLOCATOR and first["code"] == "outside_universe" and outside in first["message"]
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_fallbacks_total{model="allocator",reason="outside_universe"} 3.0' in metrics
    assert 'portfolio_os_gateway_circuit_state{model="allocator"} 0.0' in metrics
    rest_client, rest_headers = built["rest"]
    by_rest = rest_client.post("/v1/allocations", json=body, headers=rest_headers).json()
    assert by_rest["reasons"][0]["code"] == "outside_universe"


def test_a_slow_server_over_grpc_times_out_into_a_degraded_answer(
    make_gateway, stand_ins, allocator, shared_env, tmp_path
) -> None:
    slow = StandInServer(["fundamental"], "7", tmp_path, delay_s=1.0).start()
    try:
        slow.wait_ready()
        urls, addresses = _servers(stand_ins, allocator)
        client = make_gateway(
            model_urls={**urls, "fundamental": slow.url},
            model_grpc_urls={**addresses, "fundamental": slow.grpc_address},
            model_transport="grpc",
            model_timeout_s=0.2,
        )
        body = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(new_key(client)))
    finally:
        slow.stop()
    assert body.status_code == 200, body.text
    answer = body.json()
    assert answer["degraded"] is True and answer["signals"][0]["components"]["fundamental"] is None
    assert [r["code"] for r in answer["reasons"] if r["model"] == "fundamental"] == ["timeout"]
    assert answer["model_versions"]["technical"] == "7"


def test_a_killed_server_over_grpc_degrades_then_recovers_through_half_open(gateways, stand_ins, shared_env) -> None:
    client, headers = gateways(circuit_failure_threshold=2, circuit_reset_s=1.0, score_cache_seconds=0)["grpc"]
    clock = Clock()
    client.app.state.services.breakers["technical"].clock = clock  # the cool-down elapses when the test says
    params = {"tickers": ",".join(shared_env.tickers)}
    healthy = client.get("/v1/signals", params=params, headers=headers).json()
    assert healthy["degraded"] is False and healthy["model_versions"]["technical"] == "7"

    technical = stand_ins["technical"]
    technical.kill()
    try:
        technical_breaker_opens(client, params, headers)
    finally:
        technical.start().wait_ready()
    clock.now += 1.0  # past the cool-down: the next call is the half-open probe, on a new connection
    technical_breaker_closes(client, params, headers)
