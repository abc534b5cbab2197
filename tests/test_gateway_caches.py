"""The gateway's short-lived caches: TTLs, revocation delay, exactness (audit writer: test_gateway_audit_storage)."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.errors import ModelCallError, UnknownTickersError
from api.features import SERVED_VIEWS, OnlineFeatures
from api.inference import InferenceClient, fp64_inputs
from api.keys import revoke_key
from api.metrics import GatewayMetrics
from api.ratelimit import MemoryMovingWindow
from feature_repo.settings import FeatureStoreSettings
from tests.clocks import Clock
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    make_gateway,
    new_key,
    shared_env,
)
from tests.gateway_fixtures.servers import ModelServerProcess
from tests.serving_fixtures import wait_for

pytestmark = pytest.mark.slow


def _feature_reader(shared_env: Any, monkeypatch: pytest.MonkeyPatch, ttl: float) -> tuple[OnlineFeatures, Clock, list]:
    """An OnlineFeatures on the shared Feast repo whose online calls are recorded (tickers per call)."""
    clock = Clock()
    features = OnlineFeatures(FeatureStoreSettings(data_dir=str(shared_env.data_dir)), GatewayMetrics(), ttl, clock)
    store = features.open().store
    calls: list[list[str]] = []
    original = store.get_online_features

    def spy(**kwargs: Any) -> Any:
        calls.append([row["ticker"] for row in kwargs["entity_rows"]])
        return original(**kwargs)

    monkeypatch.setattr(store, "get_online_features", spy)
    return features, clock, calls


def test_feature_rows_are_reused_until_the_ttl_then_reread(shared_env, monkeypatch) -> None:
    features, clock, calls = _feature_reader(shared_env, monkeypatch, ttl=5.0)
    a, b, c = shared_env.tickers[:3]
    first = features.read([a, b])
    assert calls == [[a, b]]
    again = features.cached([a, b])
    assert again is not None and features.read([b, a]) is not None and len(calls) == 1
    features.read([a, b, c])
    assert calls[-1] == [c]  # one online call, for the missing ticker only
    # Cached vectors are the vectors read: same values, event times, as_of and digest.
    assert again.values == first.values and again.event_times == first.event_times
    assert again.as_of() == first.as_of() and again.digest() == first.digest()
    clock.now += 5.0
    assert features.cached([a, b]) is None
    reread = features.read([a, b])
    assert calls[-1] == [a, b] and reread.digest() == first.digest()


def test_feature_cache_off_reads_every_time_and_never_caches_unknown_tickers(shared_env, monkeypatch) -> None:
    off, _, calls = _feature_reader(shared_env, monkeypatch, ttl=0.0)
    off.read(shared_env.tickers[:1])
    off.read(shared_env.tickers[:1])
    assert len(calls) == 2 and off.cached(shared_env.tickers[:1]) is None
    on, _, calls = _feature_reader(shared_env, monkeypatch, ttl=5.0)
    for _ in range(2):
        with pytest.raises(UnknownTickersError, match="NOPE"):
            on.read([shared_env.tickers[0], "NOPE"])
    assert calls == [[shared_env.tickers[0], "NOPE"], ["NOPE"]]


def test_revocation_takes_effect_within_the_auth_cache_delay(make_gateway, shared_env) -> None:
    client = make_gateway(auth_cache_seconds=5.0)
    clock = Clock()
    client.app.state.services.auth.clock = clock
    key = new_key(client)
    params = {"tickers": shared_env.tickers[0]}
    assert client.get("/v1/signals", params=params, headers=auth(key)).status_code == 200
    assert revoke_key(client.app.state.services.engine, key.split("_")[1])
    clock.now += 4.9  # within the documented delay the cached row still admits the key
    assert client.get("/v1/signals", params=params, headers=auth(key)).status_code == 200
    clock.now += 0.1
    error = assert_error_body(client.get("/v1/signals", params=params, headers=auth(key)), 401)
    assert "revoked" in error["message"]
    # A cached row never admits a wrong secret for its key id.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_error_body(client.get("/v1/signals", params=params, headers=auth(forged)), 401)


def _calls(metrics: GatewayMetrics, model: str, version: str) -> float:
    sample = metrics.registry.get_sample_value(
        "portfolio_os_gateway_model_call_duration_seconds_count",
        {"model": model, "version": version, "outcome": "ok"},
    )
    return sample or 0.0


def test_scores_are_reused_for_identical_inputs_and_a_new_version_shows_after_the_ttl(shared_env) -> None:
    newer = ModelServerProcess(["technical"], version="8").start()
    try:
        newer.wait_ready()
        asyncio.run(_score_cache_scenario(shared_env, newer.url))
    finally:
        newer.stop()


async def _score_cache_scenario(shared_env: Any, newer_url: str) -> None:
    from api.circuit import CircuitBreaker

    metrics, clock = GatewayMetrics(), Clock()
    urls = shared_env.model_urls()
    breakers = {name: CircuitBreaker(name, 3, 5.0, metrics.circuit_state) for name in urls}
    client = InferenceClient(urls, 1.0, breakers, metrics, cache_seconds=2.0, clock=clock)
    blend = fp64_inputs({"technical": [0.6, None]})
    technical = fp64_inputs({f: [0.0] for f in _technical_features()})
    try:
        first, second = await asyncio.gather(client.infer("ensemble", blend), client.infer("ensemble", blend))
        assert first is second and _calls(metrics, "ensemble", "7") == 1  # concurrent callers share one call
        await client.infer("ensemble", fp64_inputs({"technical": [0.7, None]}))
        assert _calls(metrics, "ensemble", "7") == 2  # other inputs: a call of their own
        # Failures are never cached: the next identical call goes out again.
        client.urls["ensemble"] = "http://127.0.0.1:9"
        other = fp64_inputs({"technical": [0.8, None]})
        for _ in range(2):
            with pytest.raises(ModelCallError):
                await client.infer("ensemble", other)
        client.urls["ensemble"] = urls["ensemble"]
        assert (await client.infer("ensemble", other)).version == "7"
        # The champion changes behind the URL: a reused answer keeps naming the version that made it.
        assert (await client.infer("technical", technical)).version == "7"
        client.urls["technical"] = newer_url
        clock.now += 1.9
        assert (await client.infer("technical", technical)).version == "7"
        clock.now += 0.1
        assert (await client.infer("technical", technical)).version == "8"
        assert _calls(metrics, "technical", "8") == 1
    finally:
        await client.aclose()


def _technical_features() -> list[str]:
    from feature_repo.schema import FEATURES_BY_VIEW, names

    return names(FEATURES_BY_VIEW["technical_features"])


def test_memory_moving_window_admits_the_limit_per_window() -> None:
    clock = Clock()
    window = MemoryMovingWindow(clock)
    # (admitted, remaining, seconds until the oldest hit leaves the window)
    assert [window.hit("k", 2, 10.0) for _ in range(2)] == [(True, 1, 10.0), (True, 0, 10.0)]
    clock.now += 4.0
    assert window.hit("k", 2, 10.0) == (False, 0, pytest.approx(6.0))  # the first hit leaves in 6 s
    assert window.hit("other", 2, 10.0) == (True, 1, 10.0)
    clock.now += 6.0
    assert window.hit("k", 2, 10.0) == (True, 1, 10.0)


def test_feature_rows_past_half_their_life_are_reread_in_the_background(shared_env, monkeypatch) -> None:
    features, clock, calls = _feature_reader(shared_env, monkeypatch, ttl=4.0)
    a, b = shared_env.tickers[:2]
    first = features.read([a, b])
    clock.now += 1.9  # before half the TTL: served from the cache, no read
    assert features.cached([a, b]) is not None
    assert calls == [[a, b]] and features.rows.idle()
    clock.now += 0.2  # past half: served at once, and one background read renews the rows
    served = features.cached([a, b])
    assert served is not None and served.digest() == first.digest()
    wait_for(features.rows.idle, 60.0, "the background feature refresh")
    assert calls == [[a, b], [a, b]]
    # The renewed rows carry the renewal's read time: at 1.5 TTL after the first read they are fresh.
    clock.now += 3.9
    assert features.cached([a, b]) is not None
    # Renewal never stretches a row's life: rows that were not renewed expire on time.
    clock.now += 4.0
    assert features.cached([a, b]) is None


def test_an_assembled_snapshot_is_reused_only_while_its_rows_are_unchanged_and_fresh(shared_env, monkeypatch) -> None:
    features, clock, calls = _feature_reader(shared_env, monkeypatch, ttl=4.0)
    a, b, c = shared_env.tickers[:3]
    features.read([a, b])
    first = features.cached([a, b])
    assert first is not None and features.cached([a, b]) is first  # same tickers again: no reassembly
    assert features.cached([b, a]) is not first  # another order is another snapshot
    features.read([c])  # a row stored since: the assembly is checked again, same rows, same digest
    again = features.cached([a, b])
    assert again is not None and again is not first and again.digest() == first.digest()
    assert features.cached([a, b]) is again
    clock.now += 2.1  # past half the rows' life: checked row by row, which starts their renewal
    aging = features.cached([a, b])
    assert aging is not None and aging is not again
    wait_for(features.rows.idle, 60.0, "the background feature refresh")
    assert calls[-1] == [a, b]
    clock.now += 4.0  # the renewed rows expired too: nothing is served from the memo
    assert features.cached([a, b]) is None


def test_a_failed_background_feature_refresh_leaves_the_rows_to_expire(shared_env, monkeypatch) -> None:
    features, clock, _ = _feature_reader(shared_env, monkeypatch, ttl=4.0)
    a = shared_env.tickers[0]
    features.read([a])
    store = features.open().store

    def broken(**_: Any) -> Any:
        raise ConnectionError("online store down")

    monkeypatch.setattr(store, "get_online_features", broken)
    clock.now += 3.0
    assert features.cached([a]) is not None  # still within its life: served
    wait_for(features.rows.idle, 60.0, "the background feature refresh")
    clock.now += 1.0
    assert features.cached([a]) is None
    # The failure dropped the repository: the next request's own read reopens it (the store is back).
    assert features.read([a]) is not None and features.open().store is not store


def test_snapshot_digest_follows_the_rows_scored(shared_env, monkeypatch) -> None:
    from datetime import UTC, datetime

    from api.features import row_digest

    features, _, _ = _feature_reader(shared_env, monkeypatch, ttl=0.0)
    a, b = shared_env.tickers[:2]
    ab, ba = features.read([a, b]), features.read([b, a])
    assert ab.digest() == features.read([a, b]).digest()
    assert ab.digest() != ba.digest()  # the order of the answer's rows is part of what was scored
    stamp = datetime(2024, 1, 2, tzinfo=UTC)
    assert row_digest({"x": 1.0, "y": None}, stamp) == row_digest({"y": None, "x": 1.0}, stamp)
    assert row_digest({"x": 1.0}, stamp) != row_digest({"x": 1.5}, stamp)
    assert row_digest({"x": 1.0}, stamp) != row_digest({"x": 1.0}, None)


def test_scores_past_half_their_life_are_renewed_in_the_background(shared_env) -> None:
    asyncio.run(_score_renewal_scenario(shared_env))


async def _score_renewal_scenario(shared_env: Any) -> None:
    from api.circuit import CircuitBreaker

    metrics, clock = GatewayMetrics(), Clock()
    urls = shared_env.model_urls()
    breakers = {name: CircuitBreaker(name, 3, 5.0, metrics.circuit_state) for name in urls}
    client = InferenceClient(urls, 1.0, breakers, metrics, cache_seconds=2.0, clock=clock)
    blend = fp64_inputs({"technical": [0.4, None]})
    try:
        first = await client.infer("ensemble", blend)
        clock.now += 0.9
        assert await client.infer("ensemble", blend) is first and client.answers.idle()
        clock.now += 0.2  # past half its life: the cached answer comes back at once, a renewal starts
        assert await client.infer("ensemble", blend) is first
        assert not client.answers.idle()
        assert await client.infer("ensemble", blend) is first  # one renewal at a time
        await client.answers.drain()
        assert _calls(metrics, "ensemble", "7") == 2
        renewed = await client.infer("ensemble", blend)
        assert renewed is not first and renewed.outputs == first.outputs
        clock.now += 1.9  # 3.0 s after the first call, 1.9 s after the renewal: still fresh
        assert await client.infer("ensemble", blend) is renewed
        # A failed renewal is counted and dropped; the answer then expires on time.
        await client.answers.drain()
        client.urls["ensemble"] = "http://127.0.0.1:9"
        clock.now += 1.1
        latest = client.answers.peek(("ensemble", "ensemble", _body(blend)))
        assert latest is not None and await client.infer("ensemble", blend) is latest
        await client.answers.drain()
        clock.now += 1.0
        with pytest.raises(ModelCallError):
            await client.infer("ensemble", blend)
    finally:
        await client.aclose()


def _body(inputs: list[dict[str, Any]]) -> bytes:
    import orjson

    return orjson.dumps({"inputs": inputs})


def test_the_gateway_freezes_its_startup_heap(make_gateway) -> None:
    import gc

    try:
        make_gateway(gc_freeze=True)
        # Startup objects (Feast, pandas, SQLAlchemy, pydantic) sit outside later collections.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_a_snapshot_from_cached_rows_equals_the_read_and_moves_the_cache_metrics(shared_env, monkeypatch) -> None:
    features, clock, calls = _feature_reader(shared_env, monkeypatch, ttl=4.0)
    a, b = shared_env.tickers[:2]
    read = features.read([a, b])
    cached = features.cached([a, b])
    assert cached is not None and cached == read and cached.digest() == read.digest() and len(calls) == 1
    other_order = features.cached([b, a])
    assert other_order is not None and other_order.digest() != read.digest()  # another order, another answer
    with pytest.raises(AttributeError):
        read.tickers = [b]  # type: ignore[misc]  # a snapshot never changes once built

    def sample(name: str) -> float:
        value = features.metrics.registry.get_sample_value(
            f"portfolio_os_gateway_cache_{name}", {"cache": "feature_rows"}
        )
        return value or 0.0

    rows = 2 * len(SERVED_VIEWS)
    assert sample("loads_total") == 1 and sample("misses_total") == rows and sample("hits_total") == 2 * rows
    assert sample("entries") == rows
    clock.now += 4.0
    assert features.cached([a, b]) is None


def test_a_composition_is_reused_only_while_every_model_answer_is_the_same(shared_env, monkeypatch) -> None:
    asyncio.run(_composition_reuse_scenario(shared_env, monkeypatch))


async def _composition_reuse_scenario(shared_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.circuit import CircuitBreaker
    from api.compose import Compositions, compose_signals

    metrics, clock = GatewayMetrics(), Clock()
    urls = shared_env.model_urls()
    breakers = {name: CircuitBreaker(name, 3, 5.0, metrics.circuit_state) for name in urls}
    client = InferenceClient(urls, 1.0, breakers, metrics, cache_seconds=2.0, clock=clock)
    features, _, _ = _feature_reader(shared_env, monkeypatch, ttl=60.0)
    memo = Compositions(metrics, 2.0, clock)
    tickers = shared_env.tickers[:3]
    try:
        snapshot = features.read(tickers)
        first = await compose_signals(client, snapshot, metrics, memo)
        assert not first.degraded and await compose_signals(client, snapshot, metrics, memo) is first
        # Reused by key (the rows' digest and the versions), not identity: another read of the same rows.
        assert await compose_signals(client, features.read(tickers), metrics, memo) is first
        assert await compose_signals(client, features.read(tickers[::-1]), metrics, memo) is not first
        served = metrics.registry.get_sample_value("portfolio_os_gateway_signal_score_count", {"model": "ensemble"})
        assert served == 4 * len(tickers)  # a reused answer is still counted as served
        public = first.public(snapshot.as_of(), "r1")
        assert public["request_id"] == "r1" and first.public(snapshot.as_of(), "r2")["request_id"] == "r2"
        assert [s["ticker"] for s in public["signals"]] == tickers
        clock.now += 2.5  # every cached model answer expired: new answer objects, a new composition
        again = await compose_signals(client, snapshot, metrics, memo)
        assert again is not first and again.public(snapshot.as_of(), "r1") == public
        client.urls["ensemble"] = "http://127.0.0.1:9"  # the blend fails: degraded, never reused
        clock.now += 2.5
        degraded = await compose_signals(client, snapshot, metrics, memo)
        assert degraded.degraded and await compose_signals(client, snapshot, metrics, memo) is not degraded
    finally:
        await client.aclose()
