"""/metrics parsed by prometheus_client; the audit trail on a real PostgreSQL (append-only); audit loss counted."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from api.db import audit_log
from tests.gateway_fixtures.fixtures import auth, make_gateway, new_key, shared_env  # noqa: F401

pytestmark = pytest.mark.slow

CONTRACT = {
    "portfolio_os_gateway_requests": "counter",
    "portfolio_os_gateway_request_duration_seconds": "histogram",
    "portfolio_os_gateway_model_call_duration_seconds": "histogram",
    "portfolio_os_gateway_fallbacks": "counter",
    "portfolio_os_gateway_circuit_state": "gauge",
    "portfolio_os_gateway_degraded_responses": "counter",
    "portfolio_os_gateway_feature_read_duration_seconds": "histogram",
    "portfolio_os_gateway_feature_age_seconds": "gauge",
    "portfolio_os_gateway_signal_score": "histogram",
    "portfolio_os_gateway_tenant_requests": "counter",
    "portfolio_os_gateway_rate_limited": "counter",
}


def test_metrics_carry_every_contract_name_with_route_templates(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = auth(new_key(client))
    for ticker in shared_env.tickers[:3]:
        client.get(f"/v1/explanations/{ticker}", headers=key)
    client.get("/v1/signals", params={"tickers": ",".join(shared_env.tickers)}, headers=key)
    client.get("/docs")
    client.get(f"/nothing/here/{shared_env.tickers[0]}")
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name, kind in CONTRACT.items():
        assert families[name].type == kind, name
    routes = {s.labels["route"] for s in families["portfolio_os_gateway_requests"].samples}
    assert "/v1/explanations/{ticker}" in routes and "/v1/signals" in routes
    assert not any(t in r for r in routes for t in shared_env.tickers)  # no cardinality blow-up
    assert "/docs" in routes and "<unmatched>" in routes  # FastAPI's pages by path; a 404 under one label
    calls = {
        (s.labels["model"], s.labels["version"], s.labels["outcome"])
        for s in families["portfolio_os_gateway_model_call_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert ("ensemble", "7", "ok") in calls and ("technical-explain", "7", "ok") in calls
    ages = {s.labels["service"]: s.value for s in families["portfolio_os_gateway_feature_age_seconds"].samples}
    assert ages["technical_model_v1"] > 0  # the synthetic rows end in 2023
    buckets = [
        s for s in families["portfolio_os_gateway_request_duration_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert {b.labels["le"] for b in buckets} >= {"0.005", "0.5", "+Inf"}


def test_audit_rows_on_postgresql_are_append_only(make_gateway, shared_env, database_url) -> None:
    client = make_gateway(database_url=database_url)
    key = auth(new_key(client, tenant="pg-tenant"))
    response = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=key)
    assert response.status_code == 200
    assert client.app.state.services.audit.flush()  # rows are written in the background, in batches
    engine = client.app.state.services.engine
    with engine.connect() as conn:
        row = (
            conn.execute(select(audit_log).where(audit_log.c.request_id == response.headers["x-request-id"]))
            .mappings()
            .one()
        )
    assert row["tenant"] == "pg-tenant" and row["answer"] == response.json()
    with engine.connect() as conn:  # the audited answer is the body the client got, byte for byte
        stored = conn.execute(text(f"SELECT answer::text FROM gateway_audit_log WHERE id = {row['id']}")).scalar()
    assert stored == response.text
    for statement in (
        f"UPDATE gateway_audit_log SET tenant = 'forged' WHERE id = {row['id']}",
        f"DELETE FROM gateway_audit_log WHERE id = {row['id']}",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.tenant).where(audit_log.c.id == row["id"])).scalar() == "pg-tenant"


def test_audit_failure_still_answers_and_counts_the_lost_row(make_gateway, shared_env) -> None:
    client = make_gateway(audit={"retries": 1})  # retried once (tests/test_gateway_audit_storage.py: back-off)
    key = auth(new_key(client))
    services = client.app.state.services
    with services.engine.begin() as conn:
        conn.execute(text("DROP TABLE gateway_audit_log"))
    response = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=key)
    assert response.status_code == 200 and response.json()["request_id"] == response.headers["x-request-id"]
    assert services.audit.flush()
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_audit_rows_dropped_total{reason="write_failed"} 1.0' in metrics
    assert "portfolio_os_gateway_audit_failures_total 2.0" in metrics  # each failed commit attempt
