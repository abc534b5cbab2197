"""PostgreSQL monthly partitions of the audit table: create them ahead, list them, drop the old ones.

Partitions are named ``gateway_audit_log_pYYYYMM`` and hold ``[first of the month, first of the
next month)`` in UTC. A plain audit table made before partitioning becomes one partition,
``gateway_audit_log_legacy``, holding everything up to the end of its newest row's month; it is
dropped like a month once that end is older than the retention. Retention drops a partition only
once its whole month is older than the horizon, so no row younger than ``retention_days`` ever
goes. Dropping a partition is a catalogue change (no row is deleted, no row trigger fires),
instant whatever the month's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine, text

PARENT: Final = "gateway_audit_log"
LEGACY: Final = f"{PARENT}_legacy"
_BOUND: Final = re.compile(r"TO \('([^']+)'\)")
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
        covered_until = legacy_end(conn)  # months the legacy partition holds get no partition of their own
        for start in sorted(set(starts)):
            name = partition_name(start)
            if name in existing or (covered_until is not None and start < covered_until):
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
        end = legacy_end(conn)
    if end is not None and end <= horizon:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {LEGACY}"))
        dropped.append(LEGACY)
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
    return table_kind(engine) == "p"


def table_kind(engine: Engine) -> str | None:
    """``p`` (partitioned), ``r`` (a plain table) or None (absent) for ``gateway_audit_log``."""
    with engine.connect() as conn:
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = :name"), {"name": PARENT}).scalar()
    return None if kind is None else str(kind)


def legacy_end(conn: Connection) -> datetime | None:
    """The upper bound of the legacy partition, or None when there is none."""
    bound = conn.execute(
        text("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = :name AND relispartition"),
        {"name": LEGACY},
    ).scalar()
    match = _BOUND.search(str(bound)) if bound else None
    if match is None:
        return None
    value = match[1]
    value = value + ":00" if re.search(r"[+-]\d\d$", value) else value  # PostgreSQL writes +00
    return datetime.fromisoformat(value).astimezone(UTC)


def migrate_plain_table(engine: Engine, create_partitioned: Sequence[str], now: datetime) -> int:
    """Make a plain audit table (an older install) the legacy partition of a new partitioned one.

    One transaction: rename the table and its indexes, make the partitioned table with
    ``create_partitioned``, carry the id sequence on, attach the old table for ``[MINVALUE, end of
    its newest row's month)``. Its append-only trigger comes back from the parent's. Returns the
    rows it holds.
    """
    with engine.begin() as conn:
        rows, newest = conn.execute(text(f"SELECT count(*), max(created_at) FROM {PARENT}")).one()
        conn.execute(text(f"ALTER TABLE {PARENT} RENAME TO {LEGACY}"))
        for index in (f"ix_{PARENT}_created_at", f"ix_{PARENT}_tenant"):
            legacy_index = index.replace(PARENT, LEGACY)
            conn.execute(text(f"ALTER INDEX IF EXISTS {index} RENAME TO {legacy_index}"))
        # Its key was (id); a partition takes the parent's (id, created_at), built at ATTACH.
        conn.execute(text(f"ALTER TABLE {LEGACY} DROP CONSTRAINT IF EXISTS {PARENT}_pkey"))
        conn.execute(text(f"DROP TRIGGER IF EXISTS {PARENT}_no_change ON {LEGACY}"))
        for statement in create_partitioned:
            conn.execute(text(statement))
        if rows:
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{PARENT}', 'id'), (SELECT max(id) FROM {LEGACY}))")
            )
        end = add_months(month_start(newest or now), 1)
        conn.execute(
            text(f"ALTER TABLE {PARENT} ATTACH PARTITION {LEGACY} FOR VALUES FROM (MINVALUE) TO ('{end.isoformat()}')")
        )
    return int(rows)


def _partitions(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent ORDER BY c.relname"
        ),
        {"parent": PARENT},
    )
    return [str(name) for name in rows.scalars()]
