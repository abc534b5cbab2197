"""``GET /v1/regime`` through the real app on the shared SYNTHETIC feature repo: view parity, bounds, scope, audit."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import datetime as dt

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.client import GatewayClientError, PortfolioOSClient
from api.db import audit_log
from feature_repo.files import read_feature_file
from feature_repo.market import REGIME_VIEW
from feature_repo.transforms.regime import REGIMES
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
)


def typed_client(client: TestClient, key: str) -> PortfolioOSClient:
    """The typed client with its calls answered in-process by the app."""

    def relay(request: httpx.Request) -> httpx.Response:
        answer = client.request(
            request.method, request.url.raw_path.decode(), headers=request.headers, content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return PortfolioOSClient("http://testserver", key, transport=httpx.MockTransport(relay), sleep=lambda _s: None)


@pytest.mark.slow
def test_the_regime_is_the_materialised_views_and_says_its_benchmark(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client, tenant="regime-tenant")
    response = client.get("/v1/regime", headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    row = read_feature_file(shared_env.data_dir, REGIME_VIEW).iloc[0]
    last = dt.date(1970, 1, 1) + dt.timedelta(days=int(row["sessions"][-1]))
    assert body["benchmark"] == row["benchmark"] == "SYNTH-INDEX"
    assert body["as_of"] == body["history_to"] == body["current"]["date"] == last.isoformat()
    assert body["current"]["regime"] == REGIMES[int(row["regime"][-1])]
    assert body["current"]["inputs"]["trend"] == pytest.approx(row["trend"][-1])
    assert body["history"][-1] == body["current"]
    dates = [state["date"] for state in body["history"]]
    assert dates == sorted(dates) and dates[0] == body["history_from"]
    assert "trend" in body["definition"] and "126" in body["definition"]
    services = client.app.state.services
    assert services.audit.flush()
    with services.engine.connect() as conn:
        audited = conn.execute(select(audit_log).where(audit_log.c.request_id == body["request_id"])).mappings().one()
    assert audited["tenant"] == "regime-tenant" and audited["route"] == "/v1/regime"


@pytest.mark.slow
def test_a_range_outside_the_data_is_a_422_naming_the_bound(make_gateway) -> None:
    client = make_gateway()
    key = new_key(client)
    whole = client.get("/v1/regime", headers=auth(key)).json()
    first, last = whole["first_session"], whole["as_of"]
    early = client.get("/v1/regime", params={"from": "1990-01-01"}, headers=auth(key))
    assert first in assert_error_body(early, 422, "validation_error")["message"]
    late = client.get("/v1/regime", params={"to": "2999-12-31"}, headers=auth(key))
    assert last in assert_error_body(late, 422)["message"]
    assert_error_body(client.get("/v1/regime", params={"from": last, "to": first}, headers=auth(key)), 422)
    assert_error_body(client.get("/v1/regime", params={"from": "yesterday"}, headers=auth(key)), 422)
    span = client.get("/v1/regime", params={"from": first, "to": last}, headers=auth(key)).json()
    assert span["history_from"] == first and span["history_to"] == last and len(span["history"]) > 250
    narrow = new_key(client, scopes=("signals:read",))
    assert_error_body(client.get("/v1/regime", headers=auth(narrow)), 403, "forbidden")


@pytest.mark.slow
def test_the_typed_client_reads_the_regime(make_gateway) -> None:
    client: TestClient = make_gateway()
    typed = typed_client(client, new_key(client))
    whole = typed.regime()
    first = whole.first_session
    window = typed.regime(first, first + dt.timedelta(days=30))
    assert window.history_from == first and window.history_to <= first + dt.timedelta(days=30)
    with pytest.raises(GatewayClientError) as refused:
        typed.regime(end=whole.as_of + dt.timedelta(days=1))
    assert refused.value.status == 422 and str(whole.as_of) in refused.value.message
