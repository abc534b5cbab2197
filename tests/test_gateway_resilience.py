"""Model servers killed, slow or absent, and a missing feature store: degraded answers, never a 5xx."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import pytest

from tests.clocks import Clock
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
    technical_breaker_closes,
    technical_breaker_opens,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def shared_technical(shared_env):
    """The session's technical server, restarted after the test whatever happens."""
    server = shared_env.servers["technical"]
    try:
        yield server
    finally:
        if server.proc is None or server.proc.poll() is not None:
            server.start().wait_ready()


def test_killed_model_server_degrades_then_recovers_through_half_open(make_gateway, shared_env, shared_technical):
    own_technical = shared_technical
    # No score cache: the call right after the kill must go to the (dead) server.
    client = make_gateway(circuit_failure_threshold=2, circuit_reset_s=1.0, score_cache_seconds=0)
    clock = Clock()
    client.app.state.services.breakers["technical"].clock = clock  # the cool-down elapses when the test says
    key = auth(new_key(client))
    params = {"tickers": ",".join(shared_env.tickers)}
    healthy = client.get("/v1/signals", params=params, headers=key).json()
    assert healthy["degraded"] is False and healthy["model_versions"]["technical"] == "7"

    own_technical.kill()
    bodies = technical_breaker_opens(client, params, key)
    assert "technical" not in bodies[-1]["model_versions"]

    own_technical.start().wait_ready()
    recovering = client.get("/v1/signals", params=params, headers=key).json()
    assert recovering["reasons"][0]["code"] == "circuit_open"  # the cool-down has not elapsed: still not sent
    clock.now += 1.0  # past the cool-down: the next call is the half-open probe
    technical_breaker_closes(client, params, key)


def test_ensemble_down_falls_back_to_the_equal_weight_mean(make_gateway, shared_env):
    urls = {**shared_env.model_urls(), "ensemble": "http://127.0.0.1:9"}  # nothing listens on port 9
    client = make_gateway(model_urls=urls)
    body = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(new_key(client))).json()
    signal = body["signals"][0]
    components = [v for v in signal["components"].values() if v is not None]
    assert body["degraded"] is True and "ensemble" not in body["model_versions"]
    assert signal["score"] == pytest.approx(sum(components) / len(components))
    assert "equal-weight mean" in body["reasons"][0]["message"]
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_fallbacks_total{model="ensemble",reason="connection_error"} 1.0' in metrics
    assert 'portfolio_os_gateway_degraded_responses_total{route="/v1/signals"} 1.0' in metrics


def test_slow_model_times_out_into_a_degraded_answer(make_gateway, shared_env):
    slow = shared_env.servers["slow"]
    client = make_gateway(model_urls={**shared_env.model_urls(), "fundamental": slow.url}, model_timeout_s=0.2)
    r = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(new_key(client)))
    # The reason is the proof the gateway stopped waiting (the slow server answers after 1 s, and
    # would have answered well): no wall-clock bound, which a busy machine would break.
    assert r.status_code == 200
    assert [(x["model"], x["code"]) for x in r.json()["reasons"]] == [("fundamental", "timeout")]
    assert r.json()["signals"][0]["components"]["fundamental"] is None


def test_no_component_at_all_is_503_with_the_error_body(make_gateway, shared_env):
    client = make_gateway(model_urls={"technical": "http://127.0.0.1:9"})
    key = auth(new_key(client))
    r = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=key)
    assert "no component model could score" in assert_error_body(r, 503, "model_unavailable")["message"]
    assert_error_body(client.get(f"/v1/explanations/{shared_env.tickers[0]}", headers=key), 503, "model_unavailable")
    # Allocations need no model server: the fallback still answers.
    alloc = client.post("/v1/allocations", json={"universe": shared_env.tickers[:2], "capital": 10}, headers=key)
    assert alloc.status_code == 200


def test_unreadable_feature_store_is_503_and_not_ready(make_gateway, tmp_path):
    client = make_gateway(data_dir=str(tmp_path / "empty"))
    r = client.get("/v1/signals", params={"tickers": "AAA"}, headers=auth(new_key(client)))
    assert "online feature store unavailable" in assert_error_body(r, 503, "feature_store_unavailable")["message"]
    ready = client.get("/readyz")
    assert "feature_store" in assert_error_body(ready, 503, "not_ready")["message"]
    assert client.get("/healthz").status_code == 200


def test_ready_when_store_and_db_answer(make_gateway):
    assert make_gateway().get("/readyz").json() == {
        "status": "ok",
        "checks": {"feature_store": "ok", "database": "ok"},
    }
