"""Keys, scopes, quotas, the error body on every error, request ids, CORS and the keys CLI."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import text

from api.keys import revoke_key
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    PEPPER,
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def client(make_gateway):
    return make_gateway()


def test_missing_malformed_unknown_and_revoked_keys_are_401(make_gateway, shared_env) -> None:
    client = make_gateway(auth_cache_seconds=0)  # revocation at once; the cached delay: test_gateway_caches
    params = {"tickers": shared_env.tickers[0]}
    assert "missing API key" in assert_error_body(client.get("/v1/signals", params=params), 401)["message"]
    assert_error_body(client.get("/v1/signals", params=params, headers=auth("nonsense")), 401, "unauthenticated")
    key = new_key(client)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_error_body(client.get("/v1/signals", params=params, headers=auth(forged)), 401)
    assert client.get("/v1/signals", params=params, headers={"X-API-Key": key}).status_code == 200
    assert revoke_key(client.app.state.services.engine, key.split("_")[1])
    error = assert_error_body(client.get("/v1/signals", params=params, headers=auth(key)), 401)
    assert "revoked" in error["message"]


def test_a_missing_scope_is_403(client, shared_env) -> None:
    key = new_key(client, scopes=("models:read",))
    response = client.get("/v1/signals", params={"tickers": shared_env.tickers[0]}, headers=auth(key))
    assert "signals:read" in assert_error_body(response, 403, "forbidden")["message"]
    assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_quota_is_429_with_retry_after_and_counted(client, shared_env) -> None:
    key = new_key(client, rate_limit="3/minute", tenant="small")
    statuses = [client.get("/v1/models", headers=auth(key)).status_code for _ in range(3)]
    response = client.get("/v1/models", headers=auth(key))
    assert statuses == [200, 200, 200]
    assert_error_body(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    metrics = client.get("/metrics").text
    assert 'portfolio_os_gateway_rate_limited_total{tenant="small"} 1.0' in metrics
    assert 'portfolio_os_gateway_tenant_requests_total{route="/v1/models",tenant="small"} 4.0' in metrics


def test_keys_are_stored_hashed_never_in_plaintext(client) -> None:
    key = new_key(client)
    secret = key.split("_", 2)[2]
    with client.app.state.services.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM gateway_api_keys")).all()
    dump = json.dumps([list(map(str, r)) for r in rows])
    assert key not in dump and secret not in dump
    assert rows[0].key_hash != key and len(rows[0].key_hash) == 64


@pytest.mark.parametrize(
    "case",
    [
        ("GET", "/v1/nowhere", {}, 404, "not_found"),
        ("DELETE", "/v1/signals", {}, 405, "method_not_allowed"),
        ("POST", "/v1/allocations", {"content": b"{not json"}, 400, "bad_request"),
        ("POST", "/v1/sentiment", {"content": b"\xff\xfe{"}, 400, "bad_request"),
        ("POST", "/v1/allocations", {"json": {"universe": [], "capital": -1}}, 422, "validation_error"),
        ("GET", "/v1/signals", {}, 422, "validation_error"),
        ("GET", "/v1/explanations/bad%20ticker!", {}, 422, "validation_error"),
        ("POST", "/v1/sentiment", {"content": b"x" * 70_000}, 413, "payload_too_large"),
    ],
)
def test_every_error_has_the_error_body(client, case) -> None:
    method, path, kwargs, status, code = case
    headers = {**auth(new_key(client)), "Content-Type": "application/json"}
    response = client.request(method, path, headers=headers, **kwargs)
    assert_error_body(response, status, code)


def test_chunked_oversized_body_is_413(client) -> None:
    def chunks():
        for _ in range(40):
            yield b"x" * 4096

    headers = {**auth(new_key(client)), "Content-Type": "application/json"}
    response = client.post("/v1/sentiment", content=chunks(), headers=headers)
    assert_error_body(response, 413, "payload_too_large")


def test_request_ids_are_echoed_or_minted(client) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    minted = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert minted != "bad id with spaces" and len(minted) == 32


def test_cors_is_closed_by_default_and_configurable(make_gateway) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    closed = make_gateway()
    assert "access-control-allow-origin" not in closed.options("/v1/signals", headers=preflight).headers
    opened = make_gateway(cors_origins=["https://app.example"])
    ok = opened.options("/v1/signals", headers={**preflight, "Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"


def test_keys_cli_creates_lists_and_revokes(tmp_path) -> None:
    env = {
        "PORTFOLIO_OS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PORTFOLIO_OS_API_KEY_PEPPER": PEPPER,
        "PORTFOLIO_OS_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.keys", *args], env=env, capture_output=True, text=True, check=False
        )

    created = json.loads(run("create", "--demo").stdout)
    assert created["tenant"] == "demo" and created["api_key"].startswith(f"pos_{created['key_id']}_")
    listed = run("list").stdout
    assert created["key_id"] in listed and created["api_key"] not in listed
    assert run("revoke", created["key_id"]).returncode == 0
    assert run("revoke", created["key_id"]).returncode == 1
    assert '"revoked_at": null' not in run("list").stdout
