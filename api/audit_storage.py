"""Bounded audit storage: retention of the audit table, run by the maintenance loop, never by a request.

PostgreSQL: the table is partitioned by month (api/audit_partitions.py); each run creates the
partitions ahead and drops the months wholly older than ``retention_days``. SQLite: each run
moves the retention horizon (the append-only trigger admits a DELETE only of rows before it) and
deletes the rows before it in batches of ``purge_batch_rows``, one short transaction each, so the
audit writer and key lookups wait at most one small batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from api import audit_partitions
from api.db import audit_horizon, audit_log
from api.settings import AuditSettings

log = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    """What one retention run did."""

    horizon: datetime
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: int = 0


def apply_retention(engine: Engine, settings: AuditSettings, now: datetime) -> RetentionReport:
    """Drop or delete audit rows older than ``settings.retention_days`` before ``now``."""
    report = RetentionReport(horizon=now - timedelta(days=settings.retention_days))
    if engine.dialect.name == "postgresql":
        if not audit_partitions.is_partitioned(engine):  # init_db partitions it; it has not run yet
            log.warning("gateway_audit_log is not partitioned yet: audit retention skipped")
            return report
        report.partitions_created = audit_partitions.ensure_partitions(engine, now, settings.partitions_ahead)
        report.partitions_dropped = audit_partitions.drop_before(engine, report.horizon)
    else:
        report.rows_deleted = delete_before(engine, report.horizon, settings.purge_batch_rows)
    if report.partitions_dropped or report.rows_deleted:
        log.info(
            "audit retention: before %s, dropped partitions %s, deleted %d rows",
            report.horizon.isoformat(),
            report.partitions_dropped,
            report.rows_deleted,
        )
    return report


def move_horizon(engine: Engine, horizon: datetime) -> datetime:
    """Record ``horizon`` (SQLite), never moving it back; returns the horizon in force."""
    with engine.begin() as conn:
        stored = conn.execute(select(audit_horizon.c.horizon).where(audit_horizon.c.id == 1)).scalar()
        if stored is None:
            conn.execute(sqlite_insert(audit_horizon).values(id=1, horizon=horizon).on_conflict_do_nothing())
            return horizon
        current: datetime = stored.replace(tzinfo=horizon.tzinfo)  # SQLite hands it back naive (UTC)
        if current >= horizon:
            return current
        conn.execute(update(audit_horizon).where(audit_horizon.c.id == 1).values(horizon=horizon))
    return horizon


def delete_before(engine: Engine, horizon: datetime, batch_rows: int) -> int:
    """Delete audit rows created before ``horizon`` in batches of ``batch_rows``; returns how many went."""
    move_horizon(engine, horizon)
    total = 0
    while True:
        oldest = select(audit_log.c.id).where(audit_log.c.created_at < horizon).order_by(audit_log.c.id)
        with engine.begin() as conn:
            deleted = conn.execute(delete(audit_log).where(audit_log.c.id.in_(oldest.limit(batch_rows)))).rowcount
        total += deleted
        if deleted < batch_rows:
            return total


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
