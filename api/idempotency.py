"""Stored answers of ``Idempotency-Key`` requests, per tenant, in the gateway database.

The first request with a key claims it (a ``pending`` row with a lease); its answer is then
stored (``done``) and replayed to every later request with the same key and the same request
until the key expires (``IDEMPOTENCY__TTL_HOURS``, 24 h by default). The same key with another
request (another body or another route) is a client error (409). A duplicate that arrives while
the first is still running gets 409 ``idempotency_in_progress`` at once rather than waiting: the
gateway may run as several replicas, and a 409 with ``Retry-After`` needs no cross-replica wake-up.
A claim whose lease ran out (its gateway died mid-request) may be taken over.

Every decision is one atomic statement (an INSERT on the primary key, or an UPDATE guarded by
the state it expects), so two replicas on one database never both claim a key. Time comes from
an injected clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Engine, RowMapping, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.db import idempotency_keys as keys
from api.errors import IDEMPOTENCY_IN_PROGRESS, GatewayError

PENDING: Final = "pending"
DONE: Final = "done"
ROUTE_SEPARATOR: Final = b"\n"


class IdempotencyKeyReusedError(GatewayError):
    """The key was first used with another request (body or route)."""

    status_code = 409
    code = "idempotency_key_reused"


class IdempotencyInProgressError(GatewayError):
    """The first request with this key has not finished yet."""

    status_code = 409
    code = IDEMPOTENCY_IN_PROGRESS

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class IdempotencyUnavailableError(GatewayError):
    """The database holding the keys cannot be reached: the request is not run (it might run twice)."""

    status_code = 503
    code = "idempotency_unavailable"


@dataclass(frozen=True)
class StoredAnswer:
    """An answer to replay."""

    status: int
    content_type: str
    body: bytes


def request_fingerprint(method: str, route: str, body: bytes) -> str:
    """sha256 of the method, route and raw body: the "same request" a key may be reused with."""
    return hashlib.sha256(method.encode() + b" " + route.encode() + ROUTE_SEPARATOR + body).hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored one is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class IdempotencyStore:
    """Claims keys, stores answers, replays them; see the module docstring."""

    def __init__(self, engine: Engine, ttl: timedelta, lease: timedelta, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.ttl = ttl
        self.lease = lease
        self.clock = clock

    def begin(self, tenant: str, key: str, fingerprint: str) -> StoredAnswer | None:
        """Claim ``key`` for this request (returns None), or return the answer stored for it.

        Raises:
            IdempotencyKeyReusedError: the key was used with another request.
            IdempotencyInProgressError: the first request with the key is still running.
        """
        for _ in range(3):  # a lost race re-reads; three rounds settle any interleaving of two replicas
            now = self.clock()
            # Read first: a replay is then a read, which never waits for a writer (SQLite's WAL).
            with self.engine.connect() as conn:
                row = conn.execute(select(keys).where(keys.c.tenant == tenant, keys.c.key == key)).mappings().first()
            if row is None:
                if self._insert(tenant, key, fingerprint, now):
                    return None
                continue  # another request claimed it between the two statements
            if _aware(row["expires_at"]) <= now or (row["state"] == PENDING and _aware(row["locked_until"]) <= now):
                if self._take_over(tenant, key, fingerprint, now, row):
                    return None
                continue
            if row["request_hash"] != fingerprint:
                raise IdempotencyKeyReusedError(
                    "this Idempotency-Key was used with a different request; use a new key for a new request"
                )
            if row["state"] == DONE:
                return StoredAnswer(int(row["status"]), str(row["content_type"]), bytes(row["body"]))
            raise IdempotencyInProgressError("a request with this Idempotency-Key is still being answered; retry")
        raise IdempotencyInProgressError("this Idempotency-Key is contended; retry")

    def complete(self, tenant: str, key: str, answer: StoredAnswer) -> None:
        """Store the answer of the request that claimed ``key``."""
        with self.engine.begin() as conn:
            conn.execute(
                update(keys)
                .where(keys.c.tenant == tenant, keys.c.key == key, keys.c.state == PENDING)
                .values(state=DONE, status=answer.status, content_type=answer.content_type, body=answer.body)
            )

    def release(self, tenant: str, key: str) -> None:
        """Forget a claim whose request was not answered for good (5xx, 429): a retry runs it anew."""
        with self.engine.begin() as conn:
            conn.execute(delete(keys).where(keys.c.tenant == tenant, keys.c.key == key, keys.c.state == PENDING))

    def purge_expired(self, batch_rows: int = 1000) -> int:
        """Delete expired keys in batches (the maintenance loop, never a request); returns how many."""
        total = 0
        while True:
            now = self.clock()
            expired = select(keys.c.tenant, keys.c.key).where(keys.c.expires_at <= now).limit(batch_rows)
            with self.engine.begin() as conn:
                pairs = [tuple(r) for r in conn.execute(expired)]
                for tenant, key in pairs:
                    conn.execute(
                        delete(keys).where(keys.c.tenant == tenant, keys.c.key == key, keys.c.expires_at <= now)
                    )
            total += len(pairs)
            if len(pairs) < batch_rows:
                return total

    def _insert(self, tenant: str, key: str, fingerprint: str, now: datetime) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(keys).values(**self._claim(tenant, key, fingerprint, now)))
        except IntegrityError:
            return False
        return True

    def _take_over(self, tenant: str, key: str, fingerprint: str, now: datetime, seen: RowMapping) -> bool:
        """Replace an expired key or a claim whose lease ran out, unless someone else just did (the guard)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(keys)
                .where(
                    keys.c.tenant == tenant,
                    keys.c.key == key,
                    keys.c.created_at == seen["created_at"],
                    or_(keys.c.expires_at <= now, and_(keys.c.state == PENDING, keys.c.locked_until <= now)),
                )
                .values(**self._claim(tenant, key, fingerprint, now), status=None, content_type=None, body=None)
            )
        return result.rowcount == 1

    def _claim(self, tenant: str, key: str, fingerprint: str, now: datetime) -> dict[str, object]:
        return {
            "tenant": tenant,
            "key": key,
            "request_hash": fingerprint,
            "state": PENDING,
            "created_at": now,
            "expires_at": now + self.ttl,
            "locked_until": now + self.lease,
        }
