"""The gateway's housekeeping, off the request path: audit retention and partitions, expired idempotency keys.

Run once at start and then every ``MAINTENANCE_INTERVAL_S`` by the app's lifespan (in a worker
thread). Every replica runs it; each step is idempotent (``CREATE ... IF NOT EXISTS``, ``DROP
... IF EXISTS``, DELETEs of rows past a horizon), so concurrent runs only repeat each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.audit_storage import RetentionReport, apply_retention
from api.idempotency import IdempotencyStore
from api.settings import AuditSettings

log = logging.getLogger(__name__)


@dataclass
class MaintenanceReport:
    """What one run did (None: the step failed and was logged)."""

    audit: RetentionReport | None
    idempotency_keys_purged: int | None


class Maintenance:
    """One housekeeping run at a time, with an injected clock."""

    def __init__(
        self, engine: Engine, audit: AuditSettings, idempotency: IdempotencyStore, clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.idempotency = idempotency
        self.clock = clock

    def run_once(self) -> MaintenanceReport:
        """Each step on its own: a failing one (the database is down) is logged and the next still runs."""
        report = MaintenanceReport(audit=None, idempotency_keys_purged=None)
        try:
            report.audit = apply_retention(self.engine, self.audit, self.clock())
        except SQLAlchemyError:
            log.exception("audit retention failed; retried at the next run")
        try:
            report.idempotency_keys_purged = self.idempotency.purge_expired()
        except SQLAlchemyError:
            log.exception("purging expired idempotency keys failed; retried at the next run")
        return report
