"""Per-key quotas with the `limits` library (moving window): memory by default, Redis in production."""

from __future__ import annotations

import math
import time
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


class RateLimiter:
    """Checks one hit per request against the caller's key limit."""

    def __init__(self, storage_uri: str, metrics: GatewayMetrics) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.metrics = metrics

    def hit(self, principal: Principal) -> None:
        """Count a request (blocking when the storage is Redis: call from a worker thread).

        Raises:
            RateLimitedError: the window is full; carries ``Retry-After`` in whole seconds.
        """
        item = _item(principal.rate_limit)
        if self._limiter.hit(item, "key", principal.key_id):
            return
        stats = self._limiter.get_window_stats(item, "key", principal.key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self.metrics.rate_limited.labels(tenant=principal.tenant).inc()
        raise RateLimitedError(retry_after, principal.rate_limit)
