"""PostgreSQL monthly partitions of the audit table: create them ahead, list them, drop the old ones.

Partitions are named ``gateway_audit_log_pYYYYMM`` and hold ``[first of the month, first of the
next month)`` in UTC. Retention drops a partition only once its whole month is older than the
horizon, so no row younger than ``retention_days`` ever goes. Dropping a partition is a catalogue
change (no row is deleted, no row trigger fires), instant whatever the month's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, text

PARENT: Final = "gateway_audit_log"
_NAME: Final = re.compile(rf"^{PARENT}_p(\d{{4}})(\d{{2}})$")


def month_start(moment: datetime) -> datetime:
    """The first instant (UTC) of ``moment``'s month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(start: datetime, months: int) -> datetime:
    """``start`` (a month start) moved by ``months`` whole months."""
    index = start.year * 12 + start.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"{PARENT}_p{start.year:04d}{start.month:02d}"


def ensure_partitions(engine: Engine, now: datetime, ahead: int) -> list[str]:
    """Create the partitions of ``now``'s month and of the ``ahead`` months after it; returns those made."""
    first = month_start(now)
    return ensure_months(engine, (add_months(first, i) for i in range(ahead + 1)))


def ensure_months(engine: Engine, starts: Iterable[datetime]) -> list[str]:
    """Create the partitions of the given month starts that do not exist yet (idempotent)."""
    made = []
    with engine.begin() as conn:
        existing = set(_partitions(conn))
        for start in sorted(set(starts)):
            name = partition_name(start)
            if name in existing:
                continue
            end = add_months(start, 1)
            # Names and bounds come from datetimes, never from input: safe to interpolate (DDL takes no binds).
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
            )
            made.append(name)
    return made


def partitions(engine: Engine) -> list[str]:
    """The audit table's partitions, oldest first."""
    with engine.connect() as conn:
        return _partitions(conn)


def drop_before(engine: Engine, horizon: datetime) -> list[str]:
    """Drop every partition whose month ends at or before ``horizon``; returns the names dropped."""
    dropped = []
    with engine.connect() as conn:
        names = _partitions(conn)
    for name in names:
        match = _NAME.match(name)
        if match is None:
            continue
        start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
        if add_months(start, 1) > horizon:
            continue
        # One transaction per partition: the ACCESS EXCLUSIVE lock on the parent is held briefly.
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        dropped.append(name)
    return dropped


def is_partitioned(engine: Engine) -> bool:
    """Whether ``gateway_audit_log`` is a partitioned table (an older install made a plain one)."""
    with engine.connect() as conn:
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = :name"), {"name": PARENT}).scalar()
    return kind == "p"


def _partitions(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent ORDER BY c.relname"
        ),
        {"parent": PARENT},
    )
    return [str(name) for name in rows.scalars()]
