"""Who is calling: API key lookup, and per-tenant usage counters (metric + DB table)."""

from __future__ import annotations

import hmac
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from api.db import api_keys, tenant_usage, tenants
from api.errors import AuthenticationError
from api.keys import hash_key, split_key
from api.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    key_id: str
    scopes: frozenset[str]
    rate_limit: str


class KeyAuthenticator:
    """Resolves a presented key to a :class:`Principal` (one indexed DB read per request)."""

    def __init__(self, engine: Engine, pepper: bytes) -> None:
        self.engine = engine
        self.pepper = pepper

    def authenticate(self, presented: str | None) -> Principal:
        """Blocking DB read: call from a worker thread.

        Raises:
            AuthenticationError: missing, malformed, unknown or revoked key (one message for the
                last three, so a caller cannot probe which key ids exist).
        """
        if not presented:
            raise AuthenticationError("missing API key: send Authorization: Bearer <key> or X-API-Key")
        key_id = split_key(presented)
        if key_id is None:
            raise AuthenticationError("invalid API key")
        query = (
            select(api_keys, tenants.c.name.label("tenant"))
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.key_id == key_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or not hmac.compare_digest(row["key_hash"], hash_key(presented, self.pepper)):
            raise AuthenticationError("invalid API key")
        if row["revoked_at"] is not None:
            raise AuthenticationError("API key revoked")
        return Principal(
            tenant=row["tenant"],
            key_id=key_id,
            scopes=frozenset(row["scopes"].split()),
            rate_limit=row["rate_limit"],
        )


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

    def count(self, tenant: str, route: str) -> None:
        self.metrics.tenant_requests.labels(tenant=tenant, route=route).inc()
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
