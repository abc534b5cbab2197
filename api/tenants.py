"""Who is calling: API key lookup (briefly cached), and per-tenant usage counters (metric + DB table)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from api.cache import Cache
from api.db import api_keys, tenant_usage, tenants
from api.errors import AuthenticationError
from api.keys import hash_key, split_key
from api.metrics import GatewayMetrics

log = logging.getLogger(__name__)
# Key rows kept (one per real key in use); beyond it the least recently used is read again.
MAX_CACHED_KEYS: Final = 10_000


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    key_id: str
    scopes: frozenset[str]
    rate_limit: str


@dataclass(frozen=True)
class _KeyRow:
    """What authentication needs of one key row."""

    key_hash: str
    tenant: str
    scopes: frozenset[str]
    rate_limit: str
    revoked: bool


class KeyAuthenticator:
    """Resolves a presented key to a :class:`Principal`.

    The row of a key id is kept in :attr:`rows` (a :class:`api.cache.Cache`) for ``cache_seconds``
    (the documented revocation delay): a revocation, scope or limit change takes effect within it.
    The presented key is still HMAC'd and compared in constant time on every request. Unknown key
    ids are never cached, so the cache holds at most one row per real key.
    """

    def __init__(
        self,
        engine: Engine,
        pepper: bytes,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.pepper = pepper
        # No refresh-ahead: a key row is read when its entry expires, so the revocation delay is exact.
        self.rows: Cache[str, _KeyRow] = Cache(
            "api_keys", metrics or GatewayMetrics(), ttl=cache_seconds, max_entries=MAX_CACHED_KEYS, clock=clock
        )

    @property
    def clock(self) -> Callable[[], float]:
        return self.rows.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.rows.clock = clock

    def cached(self, presented: str | None) -> Principal | None:
        """The caller from a fresh cached row, or ``None`` when the DB must be read (non-blocking).

        Raises:
            AuthenticationError: the cached row rejects the key.
        """
        key_id = split_key(presented) if presented else None
        row = self.rows.peek(key_id) if key_id else None
        if row is None:
            return None
        return self._check(row, presented or "", key_id or "")

    def authenticate(self, presented: str | None) -> Principal:
        """Blocking: a cached row or one indexed DB read; call from a worker thread.

        Raises:
            AuthenticationError: missing, malformed, unknown or revoked key (one message for the
                last three, so a caller cannot probe which key ids exist).
        """
        if not presented:
            raise AuthenticationError("missing API key: send Authorization: Bearer <key> or X-API-Key")
        key_id = split_key(presented)
        if key_id is None:
            raise AuthenticationError("invalid API key")
        row = self.rows.get(key_id, partial(self._read, key_id))
        if row is None:
            raise AuthenticationError("invalid API key")
        return self._check(row, presented, key_id)

    def _read(self, key_id: str) -> _KeyRow | None:
        query = (
            select(api_keys, tenants.c.name.label("tenant"))
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.key_id == key_id)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        if found is None:
            return None
        return _KeyRow(
            key_hash=found["key_hash"],
            tenant=found["tenant"],
            scopes=frozenset(found["scopes"].split()),
            rate_limit=found["rate_limit"],
            revoked=found["revoked_at"] is not None,
        )

    def _check(self, row: _KeyRow, presented: str, key_id: str) -> Principal:
        if not hmac.compare_digest(row.key_hash, hash_key(presented, self.pepper)):
            raise AuthenticationError("invalid API key")
        if row.revoked:
            raise AuthenticationError("API key revoked")
        return Principal(tenant=row.tenant, key_id=key_id, scopes=row.scopes, rate_limit=row.rate_limit)


class UsageCounter:
    """Counts requests per (tenant, route) in memory; :meth:`flush` appends them to the DB.

    Per-request DB writes would serialise every request on SQLite; a periodic append keeps the
    hot path free of writes and loses at most one flush interval on a crash (the Prometheus
    counter carries the live view).
    """

    def __init__(self, engine: Engine, metrics: GatewayMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._counts: Counter[tuple[str, str]] = Counter()
        self._since = datetime.now(UTC)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], Any] = {}  # labels() costs ~10 us a call: once per pair

    def count(self, tenant: str, route: str) -> None:
        series = self._series.get((tenant, route))
        if series is None:
            series = self._series[(tenant, route)] = self.metrics.tenant_requests.labels(tenant=tenant, route=route)
        series.inc()
        with self._lock:
            self._counts[(tenant, route)] += 1

    def flush(self) -> int:
        """Append the counts since the last flush; returns the rows written (blocking)."""
        with self._lock:
            counts, since = self._counts, self._since
            self._counts, self._since = Counter(), datetime.now(UTC)
        if not counts:
            return 0
        rows = [
            {"tenant": t, "route": r, "window_start": since, "window_end": self._since, "requests": n}
            for (t, r), n in counts.items()
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tenant_usage), rows)
        except SQLAlchemyError:
            self.metrics.usage_flush_failures.inc()
            log.exception("usage flush failed; the counts are kept for the next flush")
            with self._lock:
                self._counts.update(counts)
                self._since = since
            return 0
        return len(rows)
