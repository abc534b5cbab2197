"""Happy paths of the gateway against real KServe test model servers and a real Feast repo (SQLite)."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from api.db import audit_log
from api.routes.models import info_version
from tests.gateway_fixtures.fixtures import assert_error_body, auth, make_gateway, new_key, shared_env  # noqa: F401

pytestmark = pytest.mark.slow


def test_signals_rank_every_ticker_with_all_components(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)
    tickers = shared_env.tickers[:4]
    response = client.get("/v1/signals", params={"tickers": ",".join(t.lower() for t in tickers)}, headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is False and body["reasons"] == []
    assert body["model_versions"] == dict.fromkeys(("technical", "fundamental", "sentiment_signal", "ensemble"), "7")
    assert [s["ticker"] for s in body["signals"]] == tickers
    scores = [s["score"] for s in body["signals"]]
    for s in body["signals"]:
        comps = [v for v in s["components"].values() if v is not None]
        assert len(comps) == 3 and s["coverage"] == pytest.approx(1.0)
        # The test ensemble is the mean of the components it got.
        assert s["score"] == pytest.approx(sum(comps) / 3)
        assert s["as_of"].startswith("2023-")
    ranks = [s["rank"] for s in body["signals"]]
    assert sorted(ranks) == [1, 2, 3, 4]
    assert scores[ranks.index(1)] == max(scores)
    assert body["request_id"] == response.headers["x-request-id"]


def test_an_undeployed_component_is_null_without_degrading(make_gateway, shared_env) -> None:
    urls = shared_env.model_urls()
    del urls["sentiment_signal"]
    client = make_gateway(model_urls=urls)
    body = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(new_key(client))).json()
    assert body["signals"][0]["components"]["sentiment_signal"] is None
    assert body["degraded"] is False
    assert [(r["model"], r["code"]) for r in body["reasons"]] == [("sentiment_signal", "not_deployed")]


def test_unknown_tickers_are_404_naming_them(make_gateway, shared_env) -> None:
    client = make_gateway()
    tickers = f"{shared_env.tickers[0]},NOPE1,NOPE2"
    response = client.get("/v1/signals", params={"tickers": tickers}, headers=auth(new_key(client)))
    error = assert_error_body(response, 404, "unknown_tickers")
    assert "NOPE1" in error["message"] and "NOPE2" in error["message"]
    assert shared_env.tickers[0] not in error["message"]


def test_too_many_tickers_is_422_naming_the_limit(make_gateway, shared_env) -> None:
    client = make_gateway(max_tickers=3)
    response = client.get("/v1/signals", params={"tickers": "A,B,C,D"}, headers=auth(new_key(client)))
    error = assert_error_body(response, 422, "validation_error")
    assert "at most 3 tickers" in error["message"]


def test_signals_and_allocations_are_audited(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client, tenant="audited")
    r1 = client.get("/v1/signals", params={"tickers": ",".join(shared_env.tickers[:2])}, headers=auth(key))
    r2 = client.post("/v1/allocations", json={"universe": shared_env.tickers[:3], "capital": 1e6}, headers=auth(key))
    assert r1.status_code == r2.status_code == 200
    assert client.app.state.services.audit.flush()  # rows are written in the background, in batches
    with client.app.state.services.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    assert [r["route"] for r in rows] == ["/v1/signals", "/v1/allocations"]
    assert [r["request_id"] for r in rows] == [r1.headers["x-request-id"], r2.headers["x-request-id"]]
    assert all(r["tenant"] == "audited" and len(r["request_hash"]) == 64 for r in rows)
    assert rows[0]["answer"] == r1.json() and rows[1]["answer"] == r2.json()
    assert rows[0]["model_versions"]["ensemble"] == "7"
    assert len(rows[0]["feature_snapshot_hash"]) == 64


def test_allocation_is_inverse_volatility_capped_and_says_why(make_gateway, shared_env) -> None:
    client = make_gateway()
    universe = shared_env.tickers[:5]
    request = {"universe": universe, "capital": 100_000, "constraints": {"max_weight": 0.25, "long_only": True}}
    response = client.post("/v1/allocations", json=request, headers=auth(new_key(client)))
    assert response.status_code == 200, response.text
    body = response.json()
    weights = [a["weight"] for a in body["allocations"]]
    assert body["method"] == "inverse_volatility" and body["degraded"] is True
    assert any("RL allocator is not deployed" in r["message"] for r in body["reasons"])
    assert sum(weights) == pytest.approx(1.0) and max(weights) <= 0.25 + 1e-12
    assert [a["amount"] for a in body["allocations"]] == pytest.approx([w * 100_000 for w in weights])
    # Below the cap, lower volatility gets the larger weight.
    free = [(a["volatility"], a["weight"]) for a in body["allocations"] if a["weight"] < 0.25 - 1e-9]
    assert [w for _, w in sorted(free)] == sorted((w for _, w in free), reverse=True)
    assert 0 < body["expected_volatility"] < max(a["volatility"] for a in body["allocations"])
    assert "correlation 0.30" in body["volatility_assumption"]


def test_explanation_sums_to_the_technical_score(make_gateway, shared_env) -> None:
    client = make_gateway()
    ticker = shared_env.tickers[1]
    key = new_key(client)
    body = client.get(f"/v1/explanations/{ticker}", params={"top": 3}, headers=auth(key)).json()
    signal = client.get("/v1/signals", params={"tickers": ticker}, headers=auth(key)).json()["signals"][0]
    assert body["score"] == pytest.approx(signal["components"]["technical"])
    assert body["units"] == "log-odds" and body["log_odds"] == pytest.approx(body["raw_score"])
    assert body["score"] == pytest.approx(1 / (1 + math.exp(-body["raw_score"])))
    assert len(body["contributions"]) == 3
    sizes = [abs(c["contribution"]) for c in body["contributions"]]
    assert sizes == sorted(sizes, reverse=True)
    assert body["narrative"].startswith(f"{ticker}: technical score {body['score']:.2f}")
    assert f"{body['contributions'][0]['contribution']:+.2f} log-odds" in body["narrative"]


def test_sentiment_scores_texts_or_says_it_is_not_deployed(make_gateway, shared_env) -> None:
    client = make_gateway()
    texts = {"texts": ["Record profit and strong growth", "Lawsuit and weak sales decline"]}
    body = client.post("/v1/sentiment", json=texts, headers=auth(new_key(client))).json()
    assert [r["label"] for r in body["results"]] == ["positive", "negative"]
    assert all(sum((r["negative"], r["neutral"], r["positive"])) == pytest.approx(1) for r in body["results"])
    urls = {k: v for k, v in shared_env.model_urls().items() if k != "sentiment_text"}
    other = make_gateway(model_urls=urls)
    response = other.post("/v1/sentiment", json=texts, headers=auth(new_key(other)))
    error = assert_error_body(response, 503, "model_not_deployed")
    assert "sentiment model" in error["message"] and "not deployed" in error["message"]


def test_models_report_readiness_and_versions(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)
    client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(key))
    models = {m["name"]: m for m in client.get("/v1/models", headers=auth(key)).json()["models"]}
    assert models["technical"]["ready"] is True and models["technical"]["serving_version"] == "7"
    assert models["technical"]["circuit_state"] == "closed"
    assert models["allocator"]["deployed"] is False and models["allocator"]["ready"] is None
    assert models["ensemble"]["registry"] is None  # no MLFLOW_URL configured


def test_the_serving_version_is_read_from_the_model_info_metric() -> None:
    page = (
        "# HELP portfolio_os_model_info The loaded version.\n"
        'portfolio_os_model_info{feature_service="technical_model_v1",model="technical",version="3"} 1.0\n'
        'portfolio_os_model_info{feature_service="none",model="ensemble",version="2"} 1.0\n'
    )
    assert info_version(page, "technical") == "3" and info_version(page, "ensemble") == "2"
    assert info_version(page, "allocator") is None and info_version("", "technical") is None
