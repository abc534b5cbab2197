"""One cache primitive for the gateway: TTL, one load per key, refresh-ahead, a size bound, metrics.

Every short-lived cache of the gateway (online feature rows, API key rows, model answers, the market
views, the sentinel's flags, compositions) is a :class:`Cache`:

- an entry is served for ``ttl`` seconds after its load finished, never longer;
- concurrent misses of a key share one load (:meth:`Cache.get_many` from worker threads,
  :meth:`Cache.aget` on the event loop); a failed load is never cached, and its error reaches every
  caller that waited on it;
- with ``refresh_share`` set, an entry served after that share of its life is reloaded once in the
  background while the old value keeps being served, so steady traffic never waits on an expiry
  (every concurrent request would at once: the latency tail);
- at most ``max_entries`` are kept (least recently used out first);
- hits, misses, loads, load errors, evictions and the size are exported per cache name
  (:class:`api.metrics.GatewayMetrics`, ``portfolio_os_gateway_cache_*``).

Time comes from ``clock`` and background reloads are started by ``spawn`` (a thread by default), so
tests drive expiry and refresh with a fake clock and run reloads when they choose.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from api.metrics import GatewayMetrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
DEFAULT_REFRESH_SHARE: Final = 0.5
log = logging.getLogger(__name__)
# Loads every missing key it is given at once; keys it does not return are "not found" (not cached).
BatchLoader = Callable[[list[K]], Mapping[K, V]]


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    loaded_at: float


def _thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="cache-refresh", daemon=True).start()


class Cache(Generic[K, V]):
    """A bounded TTL cache with one load per key and optional refresh-ahead.

    Args:
        name: the ``cache`` label of its metrics.
        metrics: the gateway's metrics.
        ttl: seconds an entry is served after its load; ``<= 0`` turns the cache off (every call
            loads, nothing is kept).
        max_entries: the bound; the least recently used entry goes first.
        refresh_share: reload in the background an entry served after this share of ``ttl``
            (``None``: never; the entry simply expires).
        clock: monotonic seconds.
        spawn: starts a background reload of the blocking API (default: a daemon thread).
    """

    def __init__(
        self,
        name: str,
        metrics: GatewayMetrics,
        *,
        ttl: float,
        max_entries: int,
        refresh_share: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _thread,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"cache {name!r}: max_entries must be at least 1, got {max_entries}")
        if refresh_share is not None and not 0.0 < refresh_share < 1.0:
            raise ValueError(f"cache {name!r}: refresh_share must be in (0, 1), got {refresh_share}")
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self.refresh_share = refresh_share
        self.clock = clock
        self.spawn = spawn
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        # Bumped by every store: a memo of values derived from entries is valid while it is unchanged.
        self.generation = 0
        self._lock = threading.Lock()
        self._loading: dict[K, Future[Mapping[K, V]]] = {}
        self._async_loading: dict[K, asyncio.Future[V]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._hits = metrics.cache_hits.labels(cache=name)
        self._misses = metrics.cache_misses.labels(cache=name)
        self._loads = metrics.cache_loads.labels(cache=name)
        self._load_errors = metrics.cache_load_errors.labels(cache=name)
        self._evictions = metrics.cache_evictions.labels(cache=name)
        self._size = metrics.cache_size.labels(cache=name)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def idle(self) -> bool:
        """No load (foreground or background) is running."""
        return not self._loading and not self._async_loading

    # -- non-blocking -----------------------------------------------------------------------------

    def peek_many(self, keys: Iterable[K], load: BatchLoader[K, V] | None = None) -> dict[K, V] | None:
        """Every key's fresh value, or ``None`` when any must be loaded (never blocks, counts hits only).

        With ``load``, entries past the refresh share are reloaded by one background call.
        """
        if not self.enabled:
            return None
        expired, renew = self._bounds()
        found, aging, entries = {}, [], self._entries
        with self._lock:
            for key in keys:
                entry = entries.get(key)
                if entry is None or entry.loaded_at <= expired:
                    return None
                entries.move_to_end(key)
                found[key] = entry.value
                if entry.loaded_at <= renew:
                    aging.append(key)
        self._hits.inc(len(found))
        if aging and load is not None:
            self._refresh(aging, load)
        return found

    def loaded_at(self, key: K) -> float | None:
        """When the entry of ``key`` was loaded (``None``: no entry), expired or not."""
        entry = self._entries.get(key)
        return None if entry is None else entry.loaded_at

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` (a memo whose value the caller computed; off when ``ttl <= 0``)."""
        self._store({key: value})

    def peek(self, key: K) -> V | None:
        """The fresh value of ``key``, or ``None`` (never blocks; no refresh)."""
        found = self.peek_many((key,))
        return None if found is None else found[key]

    # -- blocking (worker threads) ----------------------------------------------------------------

    def get_many(self, keys: Iterable[K], load: BatchLoader[K, V]) -> dict[K, V]:
        """The values of ``keys`` that exist: fresh entries, plus one ``load`` of the keys no one is loading.

        Keys another caller is loading are awaited, not loaded again. A key absent from the answer
        was not found by its load (and is not cached).

        Raises:
            Exception: whatever ``load`` raised (for this caller's load or one it waited on).
        """
        keys = list(dict.fromkeys(keys))
        if not self.enabled:
            self._misses.inc(len(keys))
            return self._counted_load(keys, load)
        expired, renew = self._bounds()
        found, aging, missing, entries = {}, [], [], self._entries
        with self._lock:
            for key in keys:
                entry = entries.get(key)
                if entry is not None and entry.loaded_at > expired:
                    entries.move_to_end(key)
                    found[key] = entry.value
                    if entry.loaded_at <= renew:
                        aging.append(key)
                else:
                    missing.append(key)
            mine, theirs = self._claim(missing)
        self._hits.inc(len(found))
        self._misses.inc(len(missing))
        if aging:
            self._refresh(aging, load)
        if mine:
            found.update(self._load_claimed(mine, load)[1])
        for key, future in theirs.items():
            loaded = future.result()
            if key in loaded:
                found[key] = loaded[key]
        return {k: found[k] for k in keys if k in found}

    def get(self, key: K, load: Callable[[], V | None]) -> V | None:
        """:meth:`get_many` of one key; ``load`` returns ``None`` when the key does not exist."""

        def one(_: list[K]) -> dict[K, V]:
            value = load()
            return {} if value is None else {key: value}

        return self.get_many((key,), one).get(key)

    def _claim(self, keys: list[K]) -> tuple[list[K], dict[K, Future[Mapping[K, V]]]]:
        """Split ``keys`` into those this caller loads (registered now) and those already loading."""
        mine = [k for k in keys if k not in self._loading]
        theirs = {k: self._loading[k] for k in keys if k in self._loading}
        if mine:
            future: Future[Mapping[K, V]] = Future()
            for key in mine:
                self._loading[key] = future
        return mine, theirs

    def _load_claimed(self, keys: list[K], load: BatchLoader[K, V]) -> tuple[Future[Mapping[K, V]], Mapping[K, V]]:
        future = self._loading[keys[0]]
        try:
            loaded = self._counted_load(keys, load)
        except BaseException as e:
            self._release(keys, future)
            future.set_exception(e)
            # Retrieved here so a failed load no one else waited on is not reported as lost.
            future.exception()
            raise
        self._store(loaded)
        self._release(keys, future)
        future.set_result(loaded)
        return future, loaded

    def _counted_load(self, keys: list[K], load: BatchLoader[K, V]) -> dict[K, V]:
        self._loads.inc()
        try:
            return dict(load(keys))
        except BaseException:
            self._load_errors.inc()
            raise

    def _release(self, keys: list[K], future: Future[Mapping[K, V]]) -> None:
        with self._lock:
            for key in keys:
                if self._loading.get(key) is future:
                    del self._loading[key]

    def _refresh(self, keys: list[K], load: BatchLoader[K, V]) -> None:
        """One background load of the ``keys`` no one is loading yet."""
        with self._lock:
            mine, _ = self._claim(keys)
        if not mine:
            return

        def job() -> None:
            try:
                self._load_claimed(mine, load)
            except Exception as e:  # counted; the entries expire as usual and a request reloads them
                log.warning("cache %s: background refresh failed: %s", self.name, e)

        self.spawn(job)

    # -- async (the event loop) -------------------------------------------------------------------

    async def aget(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value of ``key``: a fresh entry (refreshed ahead in a task), or one shared ``load``.

        Raises:
            Exception: whatever ``load`` raised (for this caller or the call it shared).
        """
        if not self.enabled:
            self._misses.inc()
            self._loads.inc()
            try:
                return await load()
            except BaseException:
                self._load_errors.inc()
                raise
        expired, renew = self._bounds()
        entry = self._entries.get(key)
        if entry is not None and entry.loaded_at > expired:
            self._entries.move_to_end(key)
            self._hits.inc()
            if entry.loaded_at <= renew and key not in self._async_loading:
                self._start_async(key, load)
            return entry.value
        self._misses.inc()
        pending = self._async_loading.get(key)
        if pending is None:
            pending = self._start_async(key, load)
        return await asyncio.shield(pending)

    def _start_async(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        # Registered before the task runs, so the next caller shares it instead of starting another.
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        self._async_loading[key] = future
        task = asyncio.create_task(self._load_async(key, load, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _load_async(self, key: K, load: Callable[[], Awaitable[V]], future: asyncio.Future[V]) -> None:
        self._loads.inc()
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:  # handed to every caller that awaits the future; never cached
            self._load_errors.inc()
            future.set_exception(e)
            return
        finally:
            if self._async_loading.get(key) is future:
                del self._async_loading[key]
        self._store({key: value})
        future.set_result(value)

    async def drain(self) -> None:
        """Wait for every async load running now (tests; failures stay with their callers)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the async loads still running."""
        for task in list(self._tasks):
            task.cancel()
        await self.drain()

    # -- shared -----------------------------------------------------------------------------------

    def _bounds(self) -> tuple[float, float]:
        """Load times at or before which an entry is expired, and at or before which it is renewed."""
        now, share = self.clock(), self.refresh_share
        return now - self.ttl, (now - self.ttl * share if share is not None else -math.inf)

    def _store(self, values: Mapping[K, V]) -> None:
        if not self.enabled or not values:
            return
        now, evicted = self.clock(), 0
        with self._lock:
            entries = self._entries
            for key, value in values.items():
                entries[key] = _Entry(value, now)
                entries.move_to_end(key)
            self.generation += 1
            while len(entries) > self.max_entries:
                entries.popitem(last=False)
                evicted += 1
            size = len(entries)
        if evicted:
            self._evictions.inc(evicted)
        self._size.set(size)
