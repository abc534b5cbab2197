"""The gateway's cache primitive (api/cache.py), on a fake clock: no test waits on a TTL or a sleep."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from api.cache import Cache
from api.metrics import GatewayMetrics
from tests.clocks import Clock


class Jobs:
    """Collects background reloads; the test runs them when it chooses."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.pending.append(job)

    def run(self) -> None:
        jobs, self.pending = self.pending, []
        for job in jobs:
            job()


class Loader:
    """A batch loader over a dict of values that records every call (keys absent: not found)."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.calls: list[list[str]] = []
        self.fail = False

    def __call__(self, keys: list[str]) -> dict[str, int]:
        self.calls.append(list(keys))
        if self.fail:
            raise ConnectionError("store down")
        return {k: self.values[k] for k in keys if k in self.values}


def _cache(ttl: float = 10.0, *, max_entries: int = 100, refresh: float | None = 0.5, name: str = "t"):
    metrics, clock, jobs = GatewayMetrics(), Clock(), Jobs()
    cache: Cache[str, int] = Cache(
        name, metrics, ttl=ttl, max_entries=max_entries, refresh_share=refresh, clock=clock, spawn=jobs
    )
    return cache, metrics, clock, jobs


def _metric(metrics: GatewayMetrics, name: str, cache: str = "t") -> float:
    return metrics.registry.get_sample_value(f"portfolio_os_gateway_{name}", {"cache": cache}) or 0.0


def test_entries_are_served_until_the_ttl_then_loaded_again() -> None:
    cache, metrics, clock, _ = _cache(ttl=10.0, refresh=None)
    load = Loader({"a": 1, "b": 2})
    assert cache.get_many(["a", "b"], load) == {"a": 1, "b": 2}
    clock.now += 9.9
    assert cache.peek_many(["b", "a"]) == {"b": 2, "a": 1} and load.calls == [["a", "b"]]
    load.values["a"] = 10
    clock.now += 0.1  # exactly the TTL: expired
    assert cache.peek_many(["a"]) is None and cache.peek("a") is None
    assert cache.get_many(["a"], load) == {"a": 10} and load.calls[-1] == ["a"]
    assert _metric(metrics, "cache_hits_total") == 2 and _metric(metrics, "cache_misses_total") == 3
    assert _metric(metrics, "cache_loads_total") == 2 and _metric(metrics, "cache_entries") == 2


def test_only_missing_keys_are_loaded_and_unknown_keys_are_never_cached() -> None:
    cache, _, _, _ = _cache()
    load = Loader({"a": 1, "b": 2})
    cache.get_many(["a"], load)
    assert cache.get_many(["a", "b", "nope"], load) == {"a": 1, "b": 2}
    assert cache.get_many(["nope"], load) == {}
    assert load.calls == [["a"], ["b", "nope"], ["nope"]]
    assert cache.get("b", lambda: 99) == 2 and cache.get("nope", lambda: None) is None


def test_a_load_error_reaches_the_caller_and_is_not_cached() -> None:
    cache, metrics, _, _ = _cache()
    load = Loader({"a": 1})
    load.fail = True
    for _ in range(2):
        with pytest.raises(ConnectionError):
            cache.get_many(["a"], load)
    load.fail = False
    assert cache.get_many(["a"], load) == {"a": 1} and len(load.calls) == 3
    assert _metric(metrics, "cache_load_errors_total") == 2 and _metric(metrics, "cache_loads_total") == 3
    assert cache.idle()


def test_concurrent_misses_share_one_load() -> None:
    cache, metrics, _, _ = _cache()
    started, second_loading, release = threading.Event(), threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def slow(keys: list[str]) -> dict[str, int]:
        calls.append(list(keys))
        (second_loading if keys == ["c"] else started).set()
        assert release.wait(30.0)
        return dict.fromkeys(keys, 7)

    results: dict[str, dict[str, int]] = {}
    first = threading.Thread(target=lambda: results.update(first=cache.get_many(["a", "b"], slow)))
    first.start()
    assert started.wait(30.0)
    # "a" and "b" are being loaded: a second caller waits on that load and loads only "c" itself.
    second = threading.Thread(target=lambda: results.update(second=cache.get_many(["b", "c"], slow)))
    second.start()
    # Its own load of "c" starts only after it registered as a waiter on "b" (one step, under the lock).
    assert second_loading.wait(30.0)
    release.set()
    first.join(30.0)
    second.join(30.0)
    assert sorted(map(tuple, calls)) == [("a", "b"), ("c",)]
    assert results == {"first": {"a": 7, "b": 7}, "second": {"b": 7, "c": 7}}
    assert _metric(metrics, "cache_loads_total") == 2 and cache.idle()


def test_past_the_refresh_share_the_old_value_is_served_while_one_reload_runs() -> None:
    cache, metrics, clock, jobs = _cache(ttl=10.0, refresh=0.5)
    load = Loader({"a": 1})
    cache.get_many(["a"], load)
    clock.now += 4.9
    assert cache.peek_many(["a"], load) == {"a": 1} and not jobs.pending
    load.values["a"] = 2
    clock.now += 0.2  # past half its life: the old value at once, one reload queued
    assert cache.peek_many(["a"], load) == {"a": 1}
    assert cache.get_many(["a"], load) == {"a": 1}
    assert len(jobs.pending) == 1 and not cache.idle()  # one reload however often it is asked
    jobs.run()
    assert load.calls == [["a"], ["a"]] and cache.idle() and _metric(metrics, "cache_loads_total") == 2
    assert cache.peek_many(["a"], load) == {"a": 2}
    clock.now += 9.9  # the reload's entry lives a full TTL from the reload
    assert cache.peek("a") == 2


def test_a_failed_refresh_leaves_the_entry_to_expire_on_time() -> None:
    cache, metrics, clock, jobs = _cache(ttl=10.0, refresh=0.5)
    load = Loader({"a": 1})
    cache.get_many(["a"], load)
    clock.now += 6.0
    load.fail = True
    assert cache.peek_many(["a"], load) == {"a": 1}
    jobs.run()
    assert _metric(metrics, "cache_load_errors_total") == 1 and cache.idle()
    clock.now += 3.9
    assert cache.peek("a") == 1
    clock.now += 0.1
    assert cache.peek("a") is None


def test_the_bound_evicts_the_least_recently_used() -> None:
    cache, metrics, _, _ = _cache(max_entries=2)
    load = Loader({"a": 1, "b": 2, "c": 3})
    cache.get_many(["a", "b"], load)
    assert cache.peek("a") == 1  # "a" used last: "b" goes first
    cache.get_many(["c"], load)
    assert len(cache) == 2 and cache.peek("b") is None and cache.peek("a") == 1 and cache.peek("c") == 3
    assert _metric(metrics, "cache_evictions_total") == 1 and _metric(metrics, "cache_entries") == 2


def test_a_ttl_of_zero_turns_the_cache_off() -> None:
    cache, metrics, _, _ = _cache(ttl=0.0)
    load = Loader({"a": 1})
    assert cache.get_many(["a"], load) == {"a": 1} and cache.get_many(["a"], load) == {"a": 1}
    assert len(load.calls) == 2 and cache.peek_many(["a"]) is None and len(cache) == 0
    assert _metric(metrics, "cache_misses_total") == 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Cache("x", GatewayMetrics(), ttl=1.0, max_entries=0)
    with pytest.raises(ValueError, match="refresh_share"):
        Cache("x", GatewayMetrics(), ttl=1.0, max_entries=1, refresh_share=1.0)


def test_async_callers_share_one_load_and_renew_ahead() -> None:
    asyncio.run(_async_scenario())


async def _async_scenario() -> None:
    cache, metrics, clock, _ = _cache(ttl=2.0, refresh=0.5, name="answers")
    gate = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    first = asyncio.gather(cache.aget("k", load), cache.aget("k", load))
    await asyncio.sleep(0)
    gate.set()
    assert list(await first) == [1, 1] and calls == 1
    clock.now += 0.9
    assert await cache.aget("k", load) == 1 and cache.idle()
    clock.now += 0.2  # past half its life: the old answer at once, one renewal in a task
    assert await cache.aget("k", load) == 1 and await cache.aget("k", load) == 1
    await cache.drain()
    assert calls == 2 and await cache.aget("k", load) == 2

    async def broken() -> int:
        raise ConnectionError("down")

    clock.now += 2.0
    for _ in range(2):  # failures are never cached
        with pytest.raises(ConnectionError):
            await cache.aget("k", broken)
    assert _metric(metrics, "cache_load_errors_total", "answers") == 2
    assert _metric(metrics, "cache_loads_total", "answers") == 4
    await cache.aclose()
