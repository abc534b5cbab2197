"""Append-only audit trail of signals and allocations answers, written in batches off the request path.

Policy on failure: the answer goes out, the loss is counted. ``record`` only queues the row (a
bounded queue, no I/O); one writer thread commits what waits in multi-row INSERTs, so a slow or
unreachable audit store never delays or refuses an answer. A row that cannot be kept (the queue
is full, or its batch could not be committed) is counted in
``portfolio_os_gateway_audit_rows_dropped_total{reason}``, logged with its request id, and
alerted on (``PortfolioOSAuditRowsDropped``): the loss is never silent. Every batch that fails to
commit also counts in ``portfolio_os_gateway_audit_failures_total``.

Cost: a durable commit is one fsync (several milliseconds) and on SQLite commits serialise; a
writer shares each commit among every row waiting. PostgreSQL spends its time per row in the
server (JSON input, TOAST compression), one backend per connection, so it gets ``writers``
threads, each with its own queue (rows are dealt round-robin): FIFO per queue keeps ``flush``
exact. ``flush`` waits for the rows queued before it (tests and shutdown); ``close`` flushes and
stops the writers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import queue
import threading
import time
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
        writers: int = 1,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.clock = clock
        self._queues: list[queue.Queue[Any]] = [
            queue.Queue(maxsize=max(1, queue_rows // writers)) for _ in range(writers)
        ]
        self._deal = itertools.count()
        self._writers: list[threading.Thread] = []
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
        self._ensure_writers()
        target = self._queues[next(self._deal) % len(self._queues)]
        try:
            target.put_nowait(row)
        except queue.Full:
            self.metrics.audit_rows_dropped.labels(reason=QUEUE_FULL).inc()
            log.error("audit queue full (%d rows): row of request %s dropped", target.maxsize, request_id)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row queued before this call is committed or dropped; False on timeout."""
        if not self._writers:
            return True
        markers = [_Flush() for _ in self._queues]
        for q, marker in zip(self._queues, markers, strict=True):
            q.put(marker)  # blocking: a flush waits for room rather than being lost
        deadline = time.monotonic() + timeout
        return all(marker.done.wait(max(0.0, deadline - time.monotonic())) for marker in markers)

    def close(self) -> None:
        """Commit the rows already queued, then stop the writers (idempotent)."""
        with self._start_lock:
            writers, self._writers = self._writers, []
        for q in self._queues if writers else []:
            q.put(_STOP)
        for writer in writers:
            writer.join(timeout=30)

    def _ensure_writers(self) -> None:
        if not self._writers:
            with self._start_lock:
                if not self._writers:
                    self._writers = [
                        threading.Thread(target=self._write_forever, args=(q,), name=f"audit-writer-{i}", daemon=True)
                        for i, q in enumerate(self._queues)
                    ]
                    for writer in self._writers:
                        writer.start()

    def _write_forever(self, source: queue.Queue[Any]) -> None:
        while True:
            batch = [source.get()]
            while len(batch) < self.batch_rows:
                try:
                    batch.append(source.get_nowait())
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
