"""Pure pieces of the gateway: circuit breaker, fallback weights, narrative, ticker parsing, and the client."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import math

import pytest

from api.circuit import CircuitBreaker, CircuitState
from api.client import GatewayClientError, PortfolioOSClient
from api.errors import InvalidRequestError
from api.fallback import allocate, capped, portfolio_volatility
from api.metrics import GatewayMetrics
from api.narrative import narrative
from api.settings import GatewaySettings
from api.tickers import parse_tickers
from tests.clocks import Clock
from tests.gateway_fixtures.fixtures import new_key, running_gateway, settings_for, shared_env  # noqa: F401


def test_circuit_opens_probes_once_and_closes() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker("m", threshold=2, reset_s=5, gauge=GatewayMetrics().circuit_state, clock=clock)
    breaker.record_failure()
    assert breaker.allow() and breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    clock.now = 5
    assert breaker.allow() and breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    clock.now = 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()


def test_capped_weights_respect_the_cap_and_keep_the_order() -> None:
    weights = capped([10.0, 1.0, 1.0, 1.0], 0.4)
    assert sum(weights) == pytest.approx(1.0) and max(weights) == pytest.approx(0.4)
    assert weights[1:] == pytest.approx([0.2, 0.2, 0.2])
    assert capped([1.0, 2.0], 0.3) == [0.3, 0.3]  # infeasible to invest fully: the rest is cash


def test_allocation_methods_follow_risk_tolerance() -> None:
    vols = [0.1, 0.2, None]
    low, mid, high = (allocate(vols, 1.0, r) for r in ("low", "medium", "high"))
    assert (low.method, mid.method, high.method) == ("inverse_variance", "inverse_volatility", "equal_weight")
    assert mid.weights[0] == pytest.approx(2 * mid.weights[1]) and low.weights[0] == pytest.approx(4 * low.weights[1])
    assert high.weights == pytest.approx([1 / 3] * 3)
    assert "median" in mid.notes[0]
    assert allocate([None, None], 1.0, "medium").method == "equal_weight"


def test_portfolio_volatility_under_constant_correlation() -> None:
    assert portfolio_volatility([0.5, 0.5], [0.2, 0.2], 1.0) == pytest.approx(0.2)
    assert portfolio_volatility([0.5, 0.5], [0.2, 0.2], 0.0) == pytest.approx(0.2 / math.sqrt(2))
    assert portfolio_volatility([1.0], [None], 0.3) is None


def test_narrative_is_deterministic_and_signed() -> None:
    text = narrative("AAA", 0.62, [("ret_252d_csz", 0.21), ("vol_63d", -0.06)])
    assert text == narrative("AAA", 0.62, [("ret_252d_csz", 0.21), ("vol_63d", -0.06)])
    assert "12-month return (z-score vs peers) strongly lifts it (+0.21 log-odds)" in text
    assert "3-month volatility moderately lowers it (-0.06 log-odds)" in text


def test_narrative_of_a_rank_model_speaks_in_score_units() -> None:
    # A regression on the centred cross-sectional rank: 0 is the peers' median, no odds, no log-odds.
    text = narrative("AAA", -0.031, [("ret_252d_csz", -0.024), ("vol_63d", 0.006)], units="score")
    assert text.startswith("AAA: technical score -0.031, below the peers' median")
    assert "12-month return (z-score vs peers) strongly lowers it (-0.024)" in text
    assert "3-month volatility moderately lifts it (+0.006)" in text
    assert "odds" not in text


def test_ticker_parsing() -> None:
    assert parse_tickers(" aapl, MSFT,AAPL,,brk.b ", 10) == ["AAPL", "MSFT", "BRK.B"]
    for raw, limit in (("", 5), ("A,B,C", 2), ("GOOD,BAD!", 5)):
        with pytest.raises(InvalidRequestError):
            parse_tickers(raw, limit)


def test_production_refuses_unsafe_defaults() -> None:
    with pytest.raises(ValueError, match="API_KEY_PEPPER"):
        GatewaySettings(environment="production", redis_url="redis://x:1", registry_url="sqlite://")


@pytest.mark.slow
def test_client_retries_429_honouring_retry_after(shared_env, tmp_path) -> None:
    with running_gateway(settings_for(shared_env, tmp_path)) as (url, app):
        services = app.state.services
        from api.keys import create_key

        key = create_key(services.engine, "t", ("signals:read", "models:read"), "2/second", services.settings.pepper)
        # The quota's window runs on a clock the client's back-off moves: no request races a second.
        clock = Clock(0.0)
        window = services.limiter._memory
        assert window is not None
        window.clock = clock
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            clock.now += seconds

        with PortfolioOSClient(url, key.plaintext, timeout_s=30, sleep=sleep) as client:
            client.signals(shared_env.tickers[:1])  # warm-up: opens the feature store
            clock.now += 1.0
            answers = [client.signals(shared_env.tickers[:2]) for _ in range(5)]
            assert all(len(a.signals) == 2 for a in answers)
            # Requests 3 and 5 find the window full; each waits the Retry-After (1 s), then passes.
            assert waits == [1.0, 1.0], waits
            with pytest.raises(GatewayClientError) as caught:
                client.explanation(shared_env.tickers[0])
            assert caught.value.status == 403 and caught.value.code == "forbidden"


def test_gateway_metrics_stay_in_memory_when_a_parent_left_feasts_multiprocess_dir(tmp_path) -> None:
    """A parent that imported Feast passes PROMETHEUS_MULTIPROC_DIR on; the gateway must not use it."""
    import os
    import subprocess
    import sys

    # What `python -m api` does before it imports the app (which imports Feast).
    probe = (
        "import os; from api.__main__ import prepare_process; prepare_process(); "
        "print('PROMETHEUS_MULTIPROC_DIR' in os.environ); import api.app, prometheus_client.values as v; "
        "print(v.ValueClass.__name__)"
    )
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=90)
    assert out.stdout.split() == ["False", "MutexValue"]
    assert list(tmp_path.iterdir()) == []  # no mmap file was written


def test_launched_servers_do_not_inherit_feasts_multiprocess_dir(monkeypatch) -> None:
    from serving.launcher import Service, child_env

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/feast-left-this")
    monkeypatch.setenv("PORTFOLIO_OS_SOMETHING", "kept")
    env = child_env(Service("gateway", ["true"], 1, "/readyz", {"PORTFOLIO_OS_DATA_DIR": "/data"}))
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    assert env["PORTFOLIO_OS_SOMETHING"] == "kept" and env["PORTFOLIO_OS_DATA_DIR"] == "/data"


def test_bulk_score_histogram_exposes_what_a_prometheus_histogram_would() -> None:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.parser import text_string_to_metric_families

    from api.metrics import SCORE_BUCKETS, BulkHistogram

    values = [0.0, 0.05, 0.1, 0.1000001, 0.5, 0.9, 0.95, 1.0, 0.3]
    expected, bulk = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("score", "d", ["model"], buckets=SCORE_BUCKETS, registry=expected)
    for value in values:
        reference.labels(model="m").observe(value)
    histogram = BulkHistogram("score", "d", "model", SCORE_BUCKETS, registry=bulk)
    histogram.observe_many("m", values[:4])
    histogram.observe_many("m", values[4:])
    histogram.observe_many("other", [])

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
        from prometheus_client import generate_latest

        text = generate_latest(registry).decode()
        return {
            (s.name, s.labels.get("le", ""), s.labels["model"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(bulk), samples(expected)
    assert got.pop(("score_sum", "", "m")) == pytest.approx(want.pop(("score_sum", "", "m")))
    assert got.pop(("score_count", "", "other")) == 0.0
    assert {k: v for k, v in got.items() if k[2] == "m"} == want


def test_client_posts_keep_one_idempotency_key_across_retries_and_retry_in_progress() -> None:
    import httpx

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Idempotency-Key"))
        if len(seen) == 1:
            raise httpx.ConnectError("gateway restarting", request=request)
        if len(seen) == 2:
            body = {"error": {"code": "idempotency_in_progress", "message": "first still running", "request_id": "r"}}
            return httpx.Response(409, json=body, headers={"Retry-After": "1"})
        return httpx.Response(200, json={"results": [], "model_version": "3", "request_id": "r"})

    waits: list[float] = []
    client = PortfolioOSClient("http://127.0.0.1:9", "k", transport=httpx.MockTransport(handler), sleep=waits.append)
    assert client.sentiment(["Profit rose."]).model_version == "3"
    assert len(seen) == 3 and seen[0] is not None and len(set(seen)) == 1  # one key for the whole call
    assert waits[1] == 1.0  # the in-progress duplicate waited its Retry-After
    seen.clear()
    client.sentiment(["Profit rose."], idempotency_key="order-42")
    assert set(seen) == {"order-42"}  # the caller's key, on every attempt


def test_client_does_not_retry_a_reused_idempotency_key() -> None:
    import httpx

    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        body = {"error": {"code": "idempotency_key_reused", "message": "other body", "request_id": "r"}}
        return httpx.Response(409, json=body)

    client = PortfolioOSClient("http://127.0.0.1:9", "k", transport=httpx.MockTransport(handler), sleep=lambda _: None)
    with pytest.raises(GatewayClientError) as caught:
        client.sentiment(["Profit rose."], idempotency_key="order-42")
    assert caught.value.status == 409 and caught.value.code == "idempotency_key_reused" and len(calls) == 1
