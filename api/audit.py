"""Append-only audit trail of signals and allocations answers.

Policy on failure: fail closed. An answer that cannot be recorded is not delivered: the client
gets 503 ``audit_unavailable`` (and may retry), ``portfolio_os_gateway_audit_failures_total``
counts it and the failure is logged with the request id. A B2B answer that may drive trades must
be reproducible from the trail, so an unrecorded answer is worse than no answer.

Cost: a durable commit is one fsync (several milliseconds), and on SQLite commits serialise. One
writer thread therefore group-commits: it takes every row waiting, writes them with one
multi-row INSERT in one transaction, and only then releases their requests. Each answer still
waits for its own row to be committed; concurrent requests share the fsync.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine, insert

from api.db import audit_log
from api.errors import AuditWriteError
from api.metrics import GatewayMetrics

log = logging.getLogger(__name__)
MAX_BATCH: Final = 256  # rows per transaction: bounds one commit's size under a burst
_STOP: Final = object()


def canonical_hash(payload: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    """Writes audit rows; there is deliberately no method to change or remove one."""

    def __init__(self, engine: Engine, metrics: GatewayMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
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
        """Append one row and wait until it is committed (the event loop is free meanwhile).

        Raises:
            AuditWriteError: the row could not be written (the caller must not send the answer).
        """
        row = {
            "created_at": datetime.now(UTC),
            "tenant": tenant,
            "route": route,
            "request_id": request_id,
            "request_hash": canonical_hash(request),
            "feature_snapshot_hash": feature_snapshot_hash,
            "model_versions": model_versions,
            "answer": answer,
        }
        done: Future[None] = Future()
        self._ensure_writer()
        self._queue.put((row, done))
        try:
            await asyncio.wrap_future(done)
        except Exception as e:
            self.metrics.audit_failures.inc()
            log.exception("audit write failed; withholding the answer")
            raise AuditWriteError("the answer could not be recorded in the audit trail; retry later") from e

    def close(self) -> None:
        """Stop the writer after the rows already queued (idempotent)."""
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
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get())
            stop = _STOP in batch
            self._commit([item for item in batch if item is not _STOP])
            if stop:
                return

    def _commit(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        if not batch:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit_log), [row for row, _ in batch])
        except Exception as e:
            # Any failure (DB down, disk full, a row that will not serialise) fails this batch's
            # requests closed; the writer lives on for the next batch.
            for _, done in batch:
                done.set_exception(e)
            return
        for _, done in batch:
            done.set_result(None)
