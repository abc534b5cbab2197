"""Append-only audit trail of signals and allocations answers, written in batches off the request path.

Policy on failure: the answer goes out, the loss is counted. ``record`` only queues the row (a
bounded queue, no I/O); one writer thread commits what waits in multi-row INSERTs, so a slow or
unreachable audit store never delays or refuses an answer. A row that cannot be kept (the queue
is full, or its batch could not be committed) is counted in
``portfolio_os_gateway_audit_rows_dropped_total{reason}``, logged with its request id, and
alerted on (``PortfolioOSAuditRowsDropped``): the loss is never silent. Every batch that fails to
commit also counts in ``portfolio_os_gateway_audit_failures_total``.

Cost: a durable commit is one fsync (several milliseconds) and on SQLite commits serialise; the
writer shares each commit among every row waiting. ``flush`` waits for the rows queued before it
(tests and shutdown); ``close`` flushes and stops the writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError

from api import audit_partitions
from api.db import audit_log
from api.metrics import GatewayMetrics

log = logging.getLogger(__name__)
_STOP: Final = object()
QUEUE_FULL: Final = "queue_full"
WRITE_FAILED: Final = "write_failed"


def canonical_hash(payload: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Flush:
    """A marker in the queue: set once every row queued before it is committed or dropped."""

    done: threading.Event = field(default_factory=threading.Event)


class AuditLog:
    """Queues audit rows for the writer thread; there is deliberately no method to change or remove one."""

    def __init__(
        self,
        engine: Engine,
        metrics: GatewayMetrics,
        *,
        queue_rows: int = 10_000,
        batch_rows: int = 256,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_rows)
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def record(
        self,
        *,
        tenant: str,
        route: str,
        request_id: str,
        request: Any,
        feature_snapshot_hash: str,
        model_versions: dict[str, str],
        answer: dict[str, Any],
    ) -> None:
        """Queue one row and return at once (no I/O); a row that finds the queue full is dropped and counted.

        A coroutine so routes ``await`` it as before; it never suspends.
        """
        row = {
            "created_at": self.clock(),
            "tenant": tenant,
            "route": route,
            "request_id": request_id,
            "request_hash": canonical_hash(request),
            "feature_snapshot_hash": feature_snapshot_hash,
            "model_versions": model_versions,
            "answer": answer,
        }
        self._ensure_writer()
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.metrics.audit_rows_dropped.labels(reason=QUEUE_FULL).inc()
            log.error("audit queue full (%d rows): row of request %s dropped", self._queue.maxsize, request_id)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row queued before this call is committed or dropped; False on timeout."""
        if self._writer is None:
            return True
        marker = _Flush()
        self._queue.put(marker)  # blocking: a flush waits for room rather than being lost
        return marker.done.wait(timeout)

    def close(self) -> None:
        """Commit the rows already queued, then stop the writer (idempotent)."""
        with self._start_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(_STOP)
            writer.join(timeout=30)

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._start_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_forever, name="audit-writer", daemon=True)
                    self._writer.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.batch_rows:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit([item for item in batch if isinstance(item, dict)])
            for item in batch:
                if isinstance(item, _Flush):
                    item.done.set()
            if any(item is _STOP for item in batch):
                return

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            self._insert(rows)
        except Exception:
            # Any failure (store down, disk full, a row that will not serialise) drops this batch,
            # counted and logged; the writer lives on for the next one.
            self.metrics.audit_failures.inc()
            self.metrics.audit_rows_dropped.labels(reason=WRITE_FAILED).inc(len(rows))
            ids = ", ".join(str(r["request_id"]) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
            log.exception("audit write failed: %d rows dropped (request ids %s)", len(rows), ids)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit_log), rows)
        except DBAPIError as e:
            if self.engine.dialect.name != "postgresql" or "no partition" not in str(e.orig):
                raise
            # A month with no partition yet (the maintenance loop fell behind): make it, then retry once.
            audit_partitions.ensure_months(self.engine, {audit_partitions.month_start(r["created_at"]) for r in rows})
            with self.engine.begin() as conn:
                conn.execute(insert(audit_log), rows)
