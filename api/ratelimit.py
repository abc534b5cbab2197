"""Per-key quotas (moving window): in process by default, the `limits` library on Redis in production."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Quota:
    """A key's window after a request: what the ``RateLimit-*`` headers tell a client to pace by.

    ``reset_s`` is the draft's ``RateLimit-Reset`` for a moving window: whole seconds until the
    oldest request counted leaves the window (then ``remaining`` goes up), as ``limits`` reports it.
    """

    limit: int
    remaining: int
    reset_s: int
    window_s: int

    def headers(self) -> dict[str, str]:
        """The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers), policy included."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }


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

    def hit(self, key: str, amount: int, window_s: float) -> tuple[bool, int, float]:
        """Count a hit if there is room: (admitted, remaining, seconds until the oldest hit leaves)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            admitted = len(hits) < amount
            if admitted:
                hits.append(now)
            return admitted, amount - len(hits), hits[0] + window_s - now


class RateLimiter:
    """Checks one hit per request against the caller's key limit."""

    def __init__(self, storage_uri: str, metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        # memory:// stays in process (no thread, no I/O); anything else is a network round trip.
        self.blocking = not storage_uri.startswith("memory://")
        self._memory = None if self.blocking else MemoryMovingWindow(clock)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri)) if self.blocking else None

    def hit(self, principal: Principal) -> Quota:
        """Count a request (blocking when the storage is Redis: call from a worker thread).

        Raises:
            RateLimitedError: the window is full; carries ``Retry-After`` in whole seconds and the quota.
        """
        item = _item(principal.rate_limit)
        window_s = item.get_expiry()
        if self._memory is not None:
            admitted, remaining, reset = self._memory.hit(principal.key_id, item.amount, window_s)
        else:
            assert self._limiter is not None
            # One more round trip than a bare hit: a client paces by what is left, on every answer.
            admitted = self._limiter.hit(item, "key", principal.key_id)
            stats = self._limiter.get_window_stats(item, "key", principal.key_id)
            remaining, reset = stats.remaining, stats.reset_time - time.time()
        # Clamped to the window: clock arithmetic (a float a hair past the window, or Redis's reset
        # stamp against this process's clock) must never announce more than one window to wait.
        reset_s = min(window_s, max(0, math.ceil(reset)))
        quota = Quota(limit=item.amount, remaining=max(0, remaining), reset_s=reset_s, window_s=window_s)
        if admitted:
            return quota
        self.metrics.rate_limited.labels(tenant=principal.tenant).inc()
        raise RateLimitedError(max(1, quota.reset_s), principal.rate_limit, quota)
