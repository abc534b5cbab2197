"""``POST /v1/portfolios/forecast`` through the real app on the shared SYNTHETIC feature repo."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from api.client import GatewayClientError
from api.db import audit_log
from api.forecast import simulate
from api.market_schemas import ForecastRequest
from feature_repo.files import read_feature_file
from feature_repo.market import RETURN_WINDOW_VIEW
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
)
from tests.test_regime_gateway import typed_client

ROUTE = "/v1/portfolios/forecast"


def _equal(tickers: list[str]) -> dict[str, float]:
    return {t: 1.0 / len(tickers) for t in tickers}


@pytest.mark.slow
def test_given_weights_are_forecast_from_the_materialised_returns(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client, tenant="forecast-tenant")
    weights = _equal(shared_env.tickers[:4])
    body = {"weights": weights, "horizons": [63, 21], "n_paths": 500, "seed": 11, "loss_threshold": 0.05}
    response = client.post(ROUTE, json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [h["horizon"] for h in answer["horizons"]] == [21, 63]
    assert answer["method"] == "weights" and answer["cash"] == 0.0 and not answer["degraded"]
    assert (answer["n_paths"], answer["seed"], answer["block"]) == (500, 11, 21)
    # The same numbers as the forecast computed directly from the view's rows (point in time: the
    # returns end at the view's last session).
    frame = read_feature_file(shared_env.data_dir, RETURN_WINDOW_VIEW).set_index("ticker")
    matrix = np.column_stack([np.asarray(frame.loc[t, "returns"], dtype=float) for t in weights])
    start = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[-1]) + 1
    expected = simulate(
        matrix[start:] @ np.array(list(weights.values())), [21, 63], n_paths=500, block=21, seed=11, loss_threshold=0.05
    )
    assert answer["horizons"] == [h.model_dump() for h in expected]
    assert answer["history"]["sessions"] == matrix.shape[0] - start
    assert client.post(ROUTE, json=body, headers=auth(key)).json()["horizons"] == answer["horizons"]
    other = client.post(ROUTE, json={**body, "seed": 12}, headers=auth(key)).json()
    assert other["horizons"] != answer["horizons"]
    services = client.app.state.services
    assert services.audit.flush()
    with services.engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.request_id == answer["request_id"])).mappings().one()
    assert row["tenant"] == "forecast-tenant" and row["route"] == ROUTE


@pytest.mark.slow
def test_a_universe_is_forecast_at_the_allocators_answer(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)
    universe = shared_env.tickers[:3]
    allocation = client.post("/v1/allocations", json={"universe": universe, "capital": 1.0}, headers=auth(key)).json()
    response = client.post(ROUTE, json={"universe": [t.lower() for t in universe]}, headers=auth(key))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == allocation["method"] and answer["degraded"] == allocation["degraded"]
    expected = {a["ticker"]: a["weight"] for a in allocation["allocations"]}
    assert {w["ticker"]: w["weight"] for w in answer["weights"]} == pytest.approx(expected)
    assert [h["horizon"] for h in answer["horizons"]] == [21, 63, 252]


@pytest.mark.slow
def test_bad_input_is_refused_naming_the_sum_the_bound_or_the_ticker(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)
    tickers = shared_env.tickers
    short = client.post(ROUTE, json={"weights": {tickers[0]: 0.5, tickers[1]: 0.3}}, headers=auth(key))
    assert "weights sum to 0.8" in assert_error_body(short, 422, "validation_error")["message"]
    long = client.post(ROUTE, json={"weights": _equal(tickers[:2]), "horizons": [21, 700]}, headers=auth(key))
    message = assert_error_body(long, 422)["message"]
    sessions = client.post(ROUTE, json={"weights": _equal(tickers[:2])}, headers=auth(key)).json()["history"]
    assert "horizon 700 is beyond the data" in message and f"at most {sessions['sessions']}" in message
    unknown = client.post(ROUTE, json={"weights": {"NOSUCH": 1.0}}, headers=auth(key))
    assert "NOSUCH" in assert_error_body(unknown, 404, "unknown_tickers")["message"]
    both = client.post(ROUTE, json={"weights": {tickers[0]: 1.0}, "universe": tickers[:1]}, headers=auth(key))
    assert "exactly one of weights and universe" in assert_error_body(both, 422)["message"]
    assert_error_body(client.post(ROUTE, json={"weights": None, "universe": tickers[:1]}, headers=auth(key)), 422)
    assert_error_body(client.post(ROUTE, json={"weights": {tickers[0]: 1.0}, "n_paths": 10**6}, headers=auth(key)), 422)
    narrow = new_key(client, scopes=("regime:read",))
    assert_error_body(client.post(ROUTE, json={"weights": {tickers[0]: 1.0}}, headers=auth(narrow)), 403)


@pytest.mark.slow
def test_the_typed_client_forecasts(make_gateway, shared_env) -> None:
    client = make_gateway()
    typed = typed_client(client, new_key(client))
    request = ForecastRequest(weights={shared_env.tickers[0]: 1.0}, horizons=[21], seed=3)
    first = typed.forecast(request)
    assert first.horizons == typed.forecast(request).horizons and first.seed == 3
    with pytest.raises(GatewayClientError) as refused:
        typed.forecast(ForecastRequest(weights={shared_env.tickers[0]: 0.9}))
    assert refused.value.status == 422 and "0.9" in refused.value.message
