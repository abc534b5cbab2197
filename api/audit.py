"""Append-only audit trail of signals and allocations answers.

Policy on failure: fail closed. An answer that cannot be recorded is not delivered: the client
gets 503 ``audit_unavailable`` (and may retry), ``portfolio_os_gateway_audit_failures_total``
counts it and the failure is logged with the request id. A B2B answer that may drive trades must
be reproducible from the trail, so an unrecorded answer is worse than no answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from api.db import audit_log
from api.errors import AuditWriteError
from api.metrics import GatewayMetrics

log = logging.getLogger(__name__)


def canonical_hash(payload: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    """Writes audit rows; there is deliberately no method to change or remove one."""

    def __init__(self, engine: Engine, metrics: GatewayMetrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def record(
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
        """Append one row (blocking: call from a worker thread).

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
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit_log).values(**row))
        except SQLAlchemyError as e:
            self.metrics.audit_failures.inc()
            log.exception("audit write failed; withholding the answer")
            raise AuditWriteError("the answer could not be recorded in the audit trail; retry later") from e
