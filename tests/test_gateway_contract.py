"""The API contract has no gaps: the OpenAPI declares what the gateway enforces, every answer carries its quota.

The last test runs schemathesis's own CLI with every check (``positive_data_acceptance`` and
``status_code_conformance`` among them) over more than 1,000 seeded, deterministic cases against
a real uvicorn serving the real app with every test model server up, and expects 0 failures.
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.client import PortfolioOSClient, RateLimitState
from api.errors import InvalidRequestError, RateLimitedError
from api.keys import ALL_SCOPES, create_key
from api.metrics import GatewayMetrics
from api.ratelimit import Quota, RateLimiter
from api.settings import GatewaySettings
from api.tenants import Principal
from api.tickers import parse_tickers, tickers_query_pattern
from tests.backtest_fixtures import publish
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    PEPPER,
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    running_gateway,
    settings_for,
    shared_env,
)

ROOT = Path(__file__).resolve().parents[1]
KEYED = (
    "/v1/signals",
    "/v1/allocations",
    "/v1/explanations/{ticker}",
    "/v1/sentiment",
    "/v1/models",
    "/v1/regime",
    "/v1/portfolios/forecast",
    "/v1/briefing",
)
# Routes the issue asks to refuse schema-valid requests with a 422 naming a bound only the data know
# (a date range outside the data, a horizon beyond its length, weights not summing to 1): JSON Schema
# cannot say them, so positive_data_acceptance takes 422 there (and only there) as an answer.
DATA_BOUNDED = ("/v1/regime", "/v1/portfolios/forecast", "/v1/backtests", "/v1/briefing")
# Backtest jobs: keyed like KEYED, but a submission answers 202 and the job routes need a job's id.
BACKTESTS = ("/v1/backtests", "/v1/backtest-data", "/v1/backtests/{job_id}", "/v1/backtests/{job_id}/report")
# Sessions inside and outside the catalogue the fuzzed gateway publishes, so submissions reach 202 too.
BACKTEST_DATES = ("2021-06-01", "2022-03-01", "2022-09-01", "2023-06-30", "2024-06-28")
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")
# Per operation: about 3,000 cases in all (coverage phase included; 170 gave ~3,900 for a third more
# time). Checked against a planted gap, a 500 on a repeated ticker in GET /v1/signals: found at 110
# (and 170), missed at 60.
MAX_EXAMPLES = 110


def _document(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    values = {"data_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'g.db'}", "api_key_pepper": PEPPER}
    return create_app(GatewaySettings(**{**values, **overrides})).openapi()


def test_every_operation_documents_every_status_with_the_envelope_and_headers(tmp_path: Path) -> None:
    document = _document(tmp_path)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"400", "413", "500"} <= set(responses), (method, path)
            if path in KEYED:
                assert {"401", "403", "422", "429", "503"} <= set(responses), (method, path)
                assert set(RATE_HEADERS) <= set(responses["200"]["headers"]), path
                assert all(responses["200"]["headers"][h]["required"] for h in RATE_HEADERS)
                assert responses["429"]["headers"]["Retry-After"]["required"] is True
            for status, response in responses.items():
                assert response["headers"]["X-Request-ID"]["required"] is True
                if status >= "400":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (path, status)
    for path in BACKTESTS:
        for operation in document["paths"][path].values():
            expected = {"401", "403", "422", "429", "503"} | ({"404"} if "{" in path else set())
            assert expected <= set(operation["responses"]), path
            assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    accepted = document["paths"]["/v1/backtests"]["post"]["responses"]["202"]
    assert all(accepted["headers"][h]["required"] for h in RATE_HEADERS)
    assert "404" in document["paths"]["/v1/signals"]["get"]["responses"]
    assert "404" not in document["paths"]["/v1/sentiment"]["post"]["responses"]


def test_the_limits_settings_decide_are_declared(tmp_path: Path) -> None:
    document = _document(tmp_path, max_tickers=7)
    (tickers,) = document["paths"]["/v1/signals"]["get"]["parameters"]
    assert tickers["schema"]["pattern"] == tickers_query_pattern(7) and tickers["schema"]["maxLength"] == 4096
    request = document["components"]["schemas"]["AllocationRequest"]["properties"]
    assert request["universe"]["maxItems"] == 7 and "uniqueItems" not in request["universe"]
    assert request["current_weights"]["additionalProperties"] is False
    text = document["components"]["schemas"]["SentimentRequest"]["properties"]["texts"]
    assert text["maxItems"] == 64 and text["items"]["pattern"]


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(raw=st.text(alphabet="aZ09.-, !\t", max_size=24), limit=st.integers(1, 4))
def test_the_tickers_parser_accepts_exactly_the_declared_pattern(raw: str, limit: int) -> None:
    declared = re.fullmatch(tickers_query_pattern(limit), raw) is not None
    try:
        parse_tickers(raw, limit)
        accepted = True
    except InvalidRequestError:
        accepted = False
    assert accepted == declared, raw


def test_the_quota_follows_a_moving_window() -> None:
    now = [0.0]
    limiter = RateLimiter("memory://", GatewayMetrics(), clock=lambda: now[0])
    principal = Principal(tenant="t", key_id="k", scopes=frozenset(), rate_limit="2/minute")
    assert limiter.hit(principal) == Quota(limit=2, remaining=1, reset_s=60, window_s=60)
    now[0] = 10.0
    assert limiter.hit(principal) == Quota(limit=2, remaining=0, reset_s=50, window_s=60)
    now[0] = 20.0
    with pytest.raises(RateLimitedError) as refused:
        limiter.hit(principal)
    assert refused.value.headers == {"Retry-After": "40"} and refused.value.quota == Quota(2, 0, 40, 60)
    now[0] = 60.5  # the first hit has left the window; the second leaves in 9.5 s
    assert limiter.hit(principal) == Quota(limit=2, remaining=0, reset_s=10, window_s=60)
    assert Quota(2, 0, 10, 60).headers() == {
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "10",
        "RateLimit-Policy": "2;w=60",
    }


@pytest.mark.slow
def test_the_quota_is_the_same_on_redis(redis_url: str) -> None:
    """The replicas' shared windows (``limits`` on a real Redis) report what the memory ones do."""
    principal = Principal(tenant="t", key_id=uuid.uuid4().hex, scopes=frozenset(), rate_limit="2/hour")
    limiter = RateLimiter(redis_url, GatewayMetrics())
    first, second = limiter.hit(principal), limiter.hit(principal)
    with pytest.raises(RateLimitedError) as refused:
        limiter.hit(principal)
    assert (first.limit, first.remaining, second.remaining, first.window_s) == (2, 1, 0, 3600)
    assert 3590 <= second.reset_s <= 3600  # an hour's window: the test takes seconds of it
    assert refused.value.quota is not None and refused.value.quota.remaining == 0


@pytest.mark.slow
def test_every_answer_to_a_known_key_carries_its_quota(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client, rate_limit="3/hour")  # an hour: no request of this test leaves the window
    ok = client.get("/v1/models", headers=auth(key))
    assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "3" and ok.headers["RateLimit-Remaining"] == "2"
    assert ok.headers["RateLimit-Policy"] == "3;w=3600" and 0 < int(ok.headers["RateLimit-Reset"]) <= 3600
    invalid = client.get("/v1/signals", headers=auth(key))  # no tickers: 422, counted
    assert_error_body(invalid, 422)
    assert invalid.headers["RateLimit-Remaining"] == "1"
    client.get("/v1/models", headers=auth(key))
    limited = client.get("/v1/models", headers=auth(key))
    assert_error_body(limited, 429, "rate_limited")
    assert limited.headers["RateLimit-Remaining"] == "0" and int(limited.headers["Retry-After"]) >= 1
    narrow = new_key(client, scopes=("models:read",), rate_limit="5/hour")
    forbidden = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(narrow))
    assert_error_body(forbidden, 403, "forbidden")
    assert forbidden.headers["RateLimit-Remaining"] == "4"
    anonymous = client.get("/v1/models")
    assert_error_body(anonymous, 401)
    assert not set(RATE_HEADERS) & set(anonymous.headers)


def test_the_typed_client_exposes_the_quota() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"RateLimit-Limit": "600", "RateLimit-Remaining": "599", "RateLimit-Reset": "60"}
        return httpx.Response(200, json={"models": [], "request_id": "r"}, headers=headers)

    with PortfolioOSClient("http://gateway", "key", transport=httpx.MockTransport(answer)) as client:
        assert client.rate_limit is None
        client.models()
        assert client.rate_limit == RateLimitState(limit=600, remaining=599, reset_s=60)


def _config(tickers: list[str], path: Path) -> Path:
    """A schemathesis.toml that draws tickers from the store's half the time, so cases reach the 200 paths."""
    known = ", ".join(json.dumps(t) for t in [*tickers[:3], tickers[3].lower()])
    path.write_text(
        f"[dictionaries.tickers]\nvalues = [{known}]\n\n"
        f"[dictionaries.dates]\nvalues = {json.dumps(list(BACKTEST_DATES))}\n\n[parameters]\n"
        '"query.tickers" = { dictionary = "tickers", probability = 0.5 }\n'
        '"path.ticker" = { dictionary = "tickers", probability = 0.5 }\n'
        '"body.universe[*]" = { dictionary = "tickers", probability = 0.7 }\n'
        '"body.start" = { dictionary = "dates", probability = 0.8 }\n'
        '"body.end" = { dictionary = "dates", probability = 0.8 }\n'
        f"\n[[operations]]\ninclude-path = {json.dumps(list(DATA_BOUNDED))}\n"
        'checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]\n'
    )
    return path


def _schemathesis(url: str, key: str, config: Path, report: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json"]
    command += ["--checks", "all", "-H", f"Authorization: Bearer {key}", "--max-examples", str(MAX_EXAMPLES)]
    # Deterministic generation (no seed, no example database): the same cases on every run.
    command += ["--generation-deterministic", "--workers", "1", "--no-color"]
    command += ["--report", "json", "--report-json-path", str(report)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.gateway_fixtures.contract_checks"}
    return subprocess.run(command, check=False, cwd=report.parent, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_schemathesis_with_every_check_finds_no_gap(shared_env, tmp_path: Path) -> None:
    config = _config(shared_env.tickers, tmp_path / "schemathesis.toml")
    # The production default: signals answered from the scored universe once it is built.
    with running_gateway(settings_for(shared_env, tmp_path, scored={"enabled": True})) as (url, app):
        services = app.state.services
        key = create_key(services.engine, "fuzzer", ALL_SCOPES, "1000000/minute", services.settings.pepper)
        publish(services.engine, tickers=tuple(shared_env.tickers))  # 2022-01-03..2023-12-29
        run = _schemathesis(url, key.plaintext, config, tmp_path / "report.json")
        metrics = httpx.get(f"{url}/metrics").text
    assert (tmp_path / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    print(f"schemathesis: {report['test_cases']} in {report['running_time']:.0f} s")
    assert run.returncode == 0 and report["failures"] == [] and report["errors"] == [], run.stdout[-6000:]
    assert report["test_cases"]["generated"] >= 1000 and report["test_cases"]["with_failures"] == 0
    document = create_app(settings_for(shared_env, tmp_path)).openapi()
    assert report["operations"]["tested"] == sum(len(item) for item in document["paths"].values())
    # The cases reached every handler's answer, not only its refusals; nothing was a 5xx.
    for route in (*KEYED, "/healthz", "/readyz"):
        assert re.search(rf'_requests_total{{method="\w+",route="{re.escape(route)}",status="200"}}', metrics), route
    assert 'status="422"' in metrics and not re.search(r'status="5\d\d"', metrics)
    assert 'route="/v1/backtests",status="202"' in metrics  # submissions got through, not only refusals
