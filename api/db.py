"""The gateway database (SQLAlchemy Core): tenants, API keys, usage counters and the audit trail.

SQLite by default, PostgreSQL in production. The audit table is append-only twice over: the code
has no update path for it, and a trigger in the database rejects UPDATE and DELETE. Retention is
the one way rows leave (api/audit_storage.py): PostgreSQL partitions the table by month and drops
whole partitions (DROP TABLE fires no row trigger); SQLite's trigger admits a DELETE only of rows
older than the retention horizon recorded in ``gateway_audit_horizon``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
    text,
)

from api.audit_partitions import LEGACY, ensure_partitions, migrate_plain_table, table_kind

log = logging.getLogger(__name__)
metadata = MetaData()

tenants = Table(
    "gateway_tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "gateway_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant_id", Integer, ForeignKey("gateway_tenants.id"), nullable=False, index=True),
    Column("prefix", String(48), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("rate_limit", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Appended by periodic flushes of in-memory counters; usage is the SUM over rows.
tenant_usage = Table(
    "gateway_tenant_usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False, index=True),
    Column("route", String(200), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("requests", Integer, nullable=False),
)

audit_log = Table(
    "gateway_audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("tenant", String(100), nullable=False, index=True),
    Column("route", String(200), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("feature_snapshot_hash", String(64), nullable=False),
    Column("model_versions", JSON, nullable=False),
    Column("answer", JSON, nullable=False),
)

# SQLite only: rows created before ``horizon`` may be deleted by retention; one row (id 1).
audit_horizon = Table(
    "gateway_audit_horizon",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("horizon", DateTime(timezone=True), nullable=False),
)

# The stored answer of an Idempotency-Key request (api/idempotency.py), per tenant and key.
idempotency_keys = Table(
    "gateway_idempotency_keys",
    metadata,
    Column("tenant", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # "pending" while the first request runs, then "done"
    Column("status", Integer, nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("locked_until", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", "key"),
)

# PostgreSQL: the audit table is partitioned by month of created_at (declarative partitioning), so
# retention drops whole partitions. A partitioned table's primary key must hold the partition key.
_PG_AUDIT_TABLE: Final = (
    """
    CREATE TABLE IF NOT EXISTS gateway_audit_log (
        id BIGSERIAL NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        tenant VARCHAR(100) NOT NULL,
        route VARCHAR(200) NOT NULL,
        request_id VARCHAR(64) NOT NULL,
        request_hash VARCHAR(64) NOT NULL,
        feature_snapshot_hash VARCHAR(64) NOT NULL,
        model_versions JSON NOT NULL,
        answer JSON NOT NULL,
        PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at)
    """,
    "CREATE INDEX IF NOT EXISTS ix_gateway_audit_log_created_at ON gateway_audit_log (created_at)",
    "CREATE INDEX IF NOT EXISTS ix_gateway_audit_log_tenant ON gateway_audit_log (tenant)",
)
_PG_APPEND_ONLY: Final = (
    """
    CREATE OR REPLACE FUNCTION gateway_audit_log_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'gateway_audit_log is append-only (% rejected)', TG_OP;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS gateway_audit_log_no_change ON gateway_audit_log",
    """
    CREATE TRIGGER gateway_audit_log_no_change BEFORE UPDATE OR DELETE ON gateway_audit_log
    FOR EACH ROW EXECUTE FUNCTION gateway_audit_log_append_only()
    """,
)
# The DELETE trigger is dropped and made again: databases made before retention have one without WHEN.
_SQLITE_APPEND_ONLY: Final = (
    """
    CREATE TRIGGER IF NOT EXISTS gateway_audit_log_no_update BEFORE UPDATE ON gateway_audit_log
    BEGIN SELECT RAISE(ABORT, 'gateway_audit_log is append-only'); END
    """,
    "DROP TRIGGER IF EXISTS gateway_audit_log_no_delete",
    """
    CREATE TRIGGER gateway_audit_log_no_delete BEFORE DELETE ON gateway_audit_log
    WHEN OLD.created_at >= COALESCE((SELECT horizon FROM gateway_audit_horizon WHERE id = 1), '')
    BEGIN SELECT RAISE(ABORT, 'gateway_audit_log is append-only (only rows past retention may go)'); END
    """,
)


def make_engine(url: str, sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL") -> Engine:
    """An engine for ``url`` (no connection is made until first use)."""
    if sqlite_synchronous not in ("FULL", "NORMAL"):  # it is interpolated into a PRAGMA
        raise ValueError(f"sqlite_synchronous must be FULL or NORMAL, not {sqlite_synchronous!r}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Writers wait for each other rather than failing at once under concurrent requests.
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False}, json_serializer=json_text)
        event.listen(engine, "connect", partial(_sqlite_pragmas, synchronous=sqlite_synchronous))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, json_serializer=json_text)


class RawJSON(bytes):
    """JSON already serialised, written to a JSON column as it is: an answer's body, exactly as sent."""


def raw_json(value: Any) -> RawJSON:
    """``value`` as JSON through orjson (~10x faster than ``json``); non-finite floats become ``null``.

    ``null`` keeps it valid JSON, which PostgreSQL's ``json`` type requires.
    """
    return RawJSON(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def json_text(value: Any) -> str:
    """JSON columns as text: a :class:`RawJSON` value as it is (already serialised), else :func:`raw_json`."""
    return (value if isinstance(value, RawJSON) else raw_json(value)).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, synchronous: str) -> None:
    """WAL: readers (key lookups) never wait for the audit writer, and a commit is one append + fsync.

    The rollback journal needs several fsyncs per commit (measured ~17 ms here against ~8 ms for WAL).
    ``synchronous=FULL`` keeps every committed audit row across a power loss; NORMAL survives only a
    process crash (SQLite's documented trade-off), so it is a setting, FULL by default.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
    finally:
        cursor.close()


def init_db(engine: Engine, *, partitions_ahead: int = 3, now: datetime | None = None) -> None:
    """Create missing tables and the append-only triggers (idempotent).

    On PostgreSQL the audit table is made partitioned, with partitions from the month of ``now``
    to ``partitions_ahead`` months later (the maintenance loop keeps creating them ahead).
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        metadata.create_all(engine, tables=[t for t in metadata.sorted_tables if t not in (audit_log, audit_horizon)])
        now = now or datetime.now(UTC)
        if table_kind(engine) == "r":
            rows = migrate_plain_table(engine, _PG_AUDIT_TABLE, now)
            log.warning("gateway_audit_log was a plain table: now partitioned, its %d rows in %s", rows, LEGACY)
        else:
            with engine.begin() as conn:
                for statement in _PG_AUDIT_TABLE:
                    conn.execute(text(statement))
        ensure_partitions(engine, now, partitions_ahead)
    else:
        metadata.create_all(engine)
    if dialect not in ("postgresql", "sqlite"):
        return
    statements = _PG_APPEND_ONLY if dialect == "postgresql" else _SQLITE_APPEND_ONLY
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer ``SELECT 1``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
