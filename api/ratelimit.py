"""Per-key quotas (moving window): in process by default, the `limits` library on Redis in production."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.errors import RateLimitedError
from api.metrics import GatewayMetrics
from api.tenants import Principal


@lru_cache(maxsize=256)
def _item(limit: str) -> RateLimitItem:
    return parse(limit)


class MemoryMovingWindow:
    """The moving window of ``limits`` for one process, without its storage's expiry thread.

    ``limits``' memory storage starts a ``threading.Timer`` whenever none is alive (every ~10 ms
    under load); on 2 busy cores each start cost milliseconds of the request. Here each key keeps
    the times of its hits in the current window, trimmed on every hit: same answers, no threads.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, amount: int, window_s: float) -> float:
        """Count a hit; ``0.0`` when admitted, else the seconds until the window has room."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) < amount:
                hits.append(now)
                return 0.0
            return hits[0] + window_s - now


class RateLimiter:
    """Checks one hit per request against the caller's key limit."""

    def __init__(self, storage_uri: str, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        # memory:// stays in process (no thread, no I/O); anything else is a network round trip.
        self.blocking = not storage_uri.startswith("memory://")
        self._memory = None if self.blocking else MemoryMovingWindow()
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri)) if self.blocking else None

    def hit(self, principal: Principal) -> None:
        """Count a request (blocking when the storage is Redis: call from a worker thread).

        Raises:
            RateLimitedError: the window is full; carries ``Retry-After`` in whole seconds.
        """
        item = _item(principal.rate_limit)
        if self._memory is not None:
            wait = self._memory.hit(principal.key_id, item.amount, item.get_expiry())
            if wait <= 0:
                return
            retry_after = max(1, math.ceil(wait))
        else:
            assert self._limiter is not None
            if self._limiter.hit(item, "key", principal.key_id):
                return
            stats = self._limiter.get_window_stats(item, "key", principal.key_id)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self.metrics.rate_limited.labels(tenant=principal.tenant).inc()
        raise RateLimitedError(retry_after, principal.rate_limit)
