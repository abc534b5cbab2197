"""Bounded audit storage: the group-committing writer, its back-pressure and counted losses, and retention.

Rows are SYNTHETIC (made-up tenants and answers). Time is an injected clock: rows are written
"in" past months and retention runs "at" a chosen instant, so nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import DBAPIError

from api import audit_partitions
from api.audit import ROW_OVERHEAD_BYTES, AuditLog
from api.audit_storage import apply_retention, row_count
from api.db import audit_log, init_db, make_engine, raw_json
from api.idempotency import IdempotencyStore
from api.maintenance import Maintenance
from api.metrics import GatewayMetrics
from api.settings import AuditSettings
from tests.gateway_fixtures.databases import fresh_postgres_database
from tests.serving_fixtures import wait_for

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    init_db(engine, now=T0)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(database_url: str) -> Iterator[Engine]:
    with fresh_postgres_database(database_url) as url:
        engine = make_engine(url)
        init_db(engine, partitions_ahead=3, now=T0)
        yield engine
        engine.dispose()


def _record(audit: AuditLog, i: int, fields: dict[str, Any] | None = None) -> None:
    """Record row ``i`` (``fields``, default :func:`_fields`) from a synchronous test."""
    asyncio.run(audit.record(**(fields or _fields(i))))


def _dropped(metrics: GatewayMetrics, reason: str) -> float:
    return float(metrics.audit_rows_dropped.labels(reason=reason)._value.get())


def test_recording_never_waits_for_a_locked_store_and_flush_commits_in_batches(sqlite_engine: Engine, tmp_path) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    statements: list[str] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0]))
    audit = AuditLog(sqlite_engine, GatewayMetrics(), batch_rows=16)
    locker = sqlite3.connect(tmp_path / "gateway.db", timeout=1)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the audit writer must wait
        for i in range(40):
            _record(audit, i)  # returns at once: nothing here waits for the lock
        assert not audit.flush(timeout=0.2)  # the rows are still queued or in flight
        locker.rollback()
        assert audit.flush()
        assert row_count(sqlite_engine) == 40
        assert 3 <= statements.count("INSERT") <= 40  # first row alone, the rest in batches of at most 16
    finally:
        locker.close()
        audit.close()


def _fields(i: int) -> dict[str, Any]:
    return {
        "tenant": "synthetic",
        "route": "/v1/signals",
        "request_id": f"r{i}",
        "request": {"i": i},
        "feature_snapshot_hash": "0" * 64,
        "model_versions": {"ensemble": "1"},
        "answer": {"i": i, "synthetic": True},
    }


def test_rows_of_one_interval_share_one_commit_and_flush_or_close_ends_the_wait(sqlite_engine: Engine) -> None:
    inserts: list[int] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *a: inserts.append(1) if "INSERT" in a[2] else None)
    # An interval of an hour: only a flush (or close) makes the writer commit before it ends.
    audit = AuditLog(sqlite_engine, GatewayMetrics(), commit_interval_s=3600)
    try:
        for i in range(30):
            _record(audit, i)
        assert audit.flush()
        assert row_count(sqlite_engine) == 30 and len(inserts) == 1  # one transaction for the 30 rows
        for i in range(30, 35):
            _record(audit, i)
    finally:
        audit.close()  # shutdown commits what is queued, without waiting for the interval
    assert row_count(sqlite_engine) == 35 and len(inserts) == 2


def test_a_full_queue_makes_requests_wait_for_room_and_loses_nothing(sqlite_engine: Engine, tmp_path) -> None:
    metrics = GatewayMetrics()
    audit = AuditLog(sqlite_engine, metrics, queue_rows=2, batch_rows=1, commit_interval_s=0)
    locker = sqlite3.connect(tmp_path / "gateway.db", timeout=1)

    async def scenario() -> None:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the audit writer is stuck
        await audit.record(**_fields(0))
        wait_for(lambda: audit._lanes[0].rows.qsize() == 0, 10, "the writer to take the first row")
        for i in (1, 2):
            await audit.record(**_fields(i))  # the queue is now full
        waiting = [asyncio.create_task(audit.record(**_fields(i))) for i in (3, 4, 5)]
        for _ in range(10):
            await asyncio.sleep(0)  # let every task reach its wait (nothing can make room meanwhile)
        assert not any(task.done() for task in waiting)
        assert metrics.audit_waits._value.get() == 3
        locker.rollback()  # the writer commits, takes the next rows, and wakes the waiting requests
        await asyncio.wait_for(asyncio.gather(*waiting), 30)

    try:
        asyncio.run(scenario())
        assert audit.flush() and row_count(sqlite_engine) == 6
        assert _dropped(metrics, "queue_full") == 0 and _dropped(metrics, "write_failed") == 0
    finally:
        locker.close()
        audit.close()


def test_a_row_that_finds_no_room_in_time_is_dropped_and_counted(sqlite_engine: Engine, tmp_path) -> None:
    metrics = GatewayMetrics()
    audit = AuditLog(sqlite_engine, metrics, queue_rows=2, batch_rows=1, commit_interval_s=0, enqueue_timeout_s=0)
    locker = sqlite3.connect(tmp_path / "gateway.db", timeout=1)
    try:
        locker.execute("BEGIN IMMEDIATE")
        _record(audit, 0)
        wait_for(lambda: audit._lanes[0].rows.qsize() == 0, 10, "the writer to take the first row")
        for i in range(1, 6):
            _record(audit, i)  # two fit in the queue, three find no room and may not wait
        assert _dropped(metrics, "queue_full") == 3
        locker.rollback()
        assert audit.flush() and row_count(sqlite_engine) == 3
    finally:
        locker.close()
        audit.close()


def _large(i: int) -> dict[str, Any]:
    """A row whose answer is ~10 KB of JSON, as a many-ticker answer is much larger than its other fields."""
    return _fields(i) | {"answer": {"i": i, "synthetic": True, "pad": "x" * 10_000}}


# What a large row weighs against the byte bound: its answer's JSON plus the fixed overhead (i < 10).
LARGE_ROW_BYTES = len(raw_json(_large(0)["answer"])) + ROW_OVERHEAD_BYTES


def test_the_queue_is_bounded_in_bytes_so_large_answers_wait_though_rows_have_room(
    sqlite_engine: Engine, tmp_path
) -> None:
    metrics = GatewayMetrics()
    # Room for 1,000 rows but only two large answers: the one the writer holds and one queued.
    audit = AuditLog(
        sqlite_engine,
        metrics,
        queue_rows=1000,
        queue_bytes=int(2.5 * LARGE_ROW_BYTES),
        batch_rows=1,
        commit_interval_s=0,
    )
    locker = sqlite3.connect(tmp_path / "gateway.db", timeout=1)

    async def scenario() -> None:
        locker.execute("BEGIN IMMEDIATE")  # the writer gets stuck committing the first row, whose bytes it holds
        await audit.record(**_large(0))
        wait_for(lambda: audit._lanes[0].rows.qsize() == 0, 10, "the writer to take the first row")
        await audit.record(**_large(1))
        waiting = asyncio.create_task(audit.record(**_large(2)))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waiting.done() and metrics.audit_waits._value.get() == 1
        assert audit._lanes[0].rows.qsize() == 1  # 998 rows of room left: the bytes are what is full
        locker.rollback()
        await asyncio.wait_for(waiting, 30)

    try:
        asyncio.run(scenario())
        assert audit.flush() and row_count(sqlite_engine) == 3
        assert audit._lanes[0].bytes_held == 0  # every committed row gave its bytes back
        assert _dropped(metrics, "queue_full") == 0
    finally:
        locker.close()
        audit.close()


def test_a_batch_is_cut_by_bytes_and_an_answer_over_the_whole_bound_still_goes_in_alone(
    sqlite_engine: Engine,
) -> None:
    inserts: list[int] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *a: inserts.append(1) if "INSERT" in a[2] else None)
    metrics = GatewayMetrics()
    audit = AuditLog(sqlite_engine, metrics, commit_interval_s=3600, batch_bytes=int(2.5 * LARGE_ROW_BYTES))
    try:
        for i in range(6):
            _record(audit, i, _large(i))
        assert audit.flush()
        assert row_count(sqlite_engine) == 6 and len(inserts) == 2  # three large answers per transaction
    finally:
        audit.close()
    alone = AuditLog(sqlite_engine, metrics, queue_bytes=1000, enqueue_timeout_s=0)
    try:
        _record(alone, 6, _large(6))  # larger than the bound, into an empty queue: never waits
        assert alone.flush() and row_count(sqlite_engine) == 7
        assert metrics.audit_waits._value.get() == 0 and _dropped(metrics, "queue_full") == 0
    finally:
        alone.close()


def test_a_failed_commit_is_retried_with_back_off_and_counted(sqlite_engine: Engine) -> None:
    metrics, sleeps = GatewayMetrics(), list[float]()
    audit = AuditLog(sqlite_engine, metrics, commit_interval_s=3600, retries=3, sleep=sleeps.append)
    real_insert, failures = audit._insert, [2]

    def flaky_insert(rows: list[dict[str, Any]]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OSError("synthetic: disk briefly unavailable")
        real_insert(rows)

    audit._insert = flaky_insert  # type: ignore[method-assign]
    try:
        for i in range(4):
            _record(audit, i)
        assert audit.flush()
        assert row_count(sqlite_engine) == 4 and sleeps == [0.1, 0.4]  # third try committed, no time waited here
        assert metrics.audit_failures._value.get() == 2 and _dropped(metrics, "write_failed") == 0
    finally:
        audit.close()


def test_one_unwritable_row_costs_only_itself(sqlite_engine: Engine) -> None:
    metrics = GatewayMetrics()
    audit = AuditLog(sqlite_engine, metrics, commit_interval_s=3600, retries=1, sleep=lambda _s: None)
    try:
        for i in range(5):
            fields = _fields(i)
            if i == 2:
                fields["request_id"] = None  # NOT NULL refuses this row
            asyncio.run(audit.record(**fields))
        assert audit.flush()  # one batch of 5 fails twice, then each row is tried alone
        with sqlite_engine.connect() as conn:
            assert sorted(conn.execute(select(audit_log.c.request_id)).scalars()) == ["r0", "r1", "r3", "r4"]
        assert _dropped(metrics, "write_failed") == 1
    finally:
        audit.close()


def test_a_store_that_stays_down_loses_counted_rows_and_the_writer_recovers(sqlite_engine: Engine) -> None:
    metrics = GatewayMetrics()
    audit = AuditLog(sqlite_engine, metrics, commit_interval_s=3600, retries=2, sleep=lambda _s: None)
    try:
        with sqlite_engine.begin() as conn:
            conn.execute(text("DROP TABLE gateway_audit_log"))
        for i in range(5):
            _record(audit, i)
        assert audit.flush()
        assert _dropped(metrics, "write_failed") == 5  # one batch, not tried row by row (no such table)
        assert metrics.audit_failures._value.get() == 3  # each try counted
        init_db(sqlite_engine, now=T0)  # the table is back: the same writer records again
        _record(audit, 5)
    finally:
        audit.close()  # close() commits what is queued
    assert row_count(sqlite_engine) == 1


def test_sqlite_retention_deletes_old_rows_in_small_batches_and_only_those(sqlite_engine: Engine) -> None:
    clock = Clock(T0 - timedelta(days=100))
    audit = AuditLog(sqlite_engine, GatewayMetrics(), clock=clock)
    for i in range(7):  # 100 days old
        _record(audit, i)
    assert audit.flush()
    clock.now = T0 - timedelta(days=10)
    for i in range(7, 10):
        _record(audit, i)
    audit.close()
    deletes: list[str] = []
    event.listen(
        sqlite_engine, "before_cursor_execute", lambda *a: deletes.append(a[2]) if a[2].startswith("DELETE") else None
    )
    report = apply_retention(sqlite_engine, AuditSettings(retention_days=30, purge_batch_rows=3), T0)
    assert report.rows_deleted == 7 and report.horizon == T0 - timedelta(days=30)
    assert len(deletes) == 3  # 3 + 3 + 1 rows: short transactions, never one long lock
    with sqlite_engine.connect() as conn:
        assert sorted(conn.execute(select(audit_log.c.request_id)).scalars()) == ["r7", "r8", "r9"]
    # Rows younger than the horizon stay append-only; an earlier run never moves the horizon back.
    with pytest.raises(DBAPIError, match="append-only"), sqlite_engine.begin() as conn:
        conn.execute(text("DELETE FROM gateway_audit_log WHERE request_id = 'r7'"))
    assert apply_retention(sqlite_engine, AuditSettings(retention_days=300), T0).rows_deleted == 0
    with pytest.raises(DBAPIError, match="append-only"), sqlite_engine.begin() as conn:
        conn.execute(text("UPDATE gateway_audit_log SET tenant = 'forged'"))
    assert row_count(sqlite_engine) == 3


@pytest.mark.slow
def test_postgres_partitions_by_month_ahead_and_drops_whole_old_months(pg_engine: Engine) -> None:
    assert audit_partitions.is_partitioned(pg_engine)
    assert audit_partitions.partitions(pg_engine) == [
        f"gateway_audit_log_p{m}" for m in ("202612", "202701", "202702", "202703")
    ]
    clock = Clock()
    audit = AuditLog(pg_engine, GatewayMetrics(), clock=clock)
    for month_offset, count in ((-3, 2), (-2, 3), (0, 4), (5, 1)):  # -3, -2: no partition yet; made on demand
        clock.now = audit_partitions.add_months(audit_partitions.month_start(T0), month_offset) + timedelta(days=3)
        for i in range(count):
            _record(audit, month_offset * 100 + i)
        assert audit.flush()
    audit.close()
    assert row_count(pg_engine) == 10
    assert audit.metrics.audit_rows_dropped.labels(reason="write_failed")._value.get() == 0
    names = audit_partitions.partitions(pg_engine)
    assert {"gateway_audit_log_p202609", "gateway_audit_log_p202610", "gateway_audit_log_p202705"} <= set(names)

    # 2027-01-20 with 100 days kept: the horizon is 2026-10-12, so September goes, October stays (part young).
    now = datetime(2027, 1, 20, tzinfo=UTC)
    report = apply_retention(pg_engine, AuditSettings(retention_days=100, partitions_ahead=3), now)
    assert report.partitions_dropped == ["gateway_audit_log_p202609"]
    assert "gateway_audit_log_p202704" in report.partitions_created  # the months ahead of the new now
    assert row_count(pg_engine) == 8
    for statement in ("UPDATE gateway_audit_log SET tenant = 'forged'", "DELETE FROM gateway_audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), pg_engine.begin() as conn:
            conn.execute(text(statement))
    assert row_count(pg_engine) == 8


def test_maintenance_runs_each_step_and_survives_a_failing_one(sqlite_engine: Engine, monkeypatch) -> None:
    clock = Clock()
    store = IdempotencyStore(sqlite_engine, ttl=timedelta(hours=1), lease=timedelta(seconds=60), clock=clock)
    assert store.begin("synthetic", "k1", "a" * 64) is None
    clock.now = T0 + timedelta(hours=2)
    maintenance = Maintenance(sqlite_engine, AuditSettings(retention_days=30), store, clock)
    report = maintenance.run_once()
    assert report.idempotency_keys_purged == 1 and report.audit is not None and report.audit.rows_deleted == 0

    def broken(*_: Any) -> Any:
        raise DBAPIError("DELETE", {}, Exception("database is down"))

    monkeypatch.setattr("api.maintenance.apply_retention", broken)
    report = maintenance.run_once()
    assert report.audit is None and report.idempotency_keys_purged == 0


@pytest.mark.slow
def test_a_plain_postgres_audit_table_of_an_older_install_becomes_the_legacy_partition(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with fresh_postgres_database(database_url) as url:
        engine = make_engine(url)
        try:
            audit_log.create(engine)  # what init_db made before partitioning: a plain table
            old = AuditLog(engine, GatewayMetrics(), clock=Clock(datetime(2026, 10, 20, tzinfo=UTC)))
            for i in range(3):
                _record(old, i)
            old.close()
            with caplog.at_level("WARNING"):
                init_db(engine, now=T0)
            assert audit_partitions.is_partitioned(engine) and "its 3 rows in gateway_audit_log_legacy" in caplog.text
            # The legacy partition holds everything before November; the months from then on are their own.
            assert audit_partitions.partitions(engine) == [
                "gateway_audit_log_legacy",
                *(f"gateway_audit_log_p{m}" for m in ("202612", "202701", "202702", "202703")),
            ]
            init_db(engine, now=T0)  # idempotent
            audit = AuditLog(engine, GatewayMetrics(), clock=Clock(datetime(2026, 11, 2, tzinfo=UTC)))
            _record(audit, 3)  # November: a partition of its own, made on demand
            audit.clock = Clock(datetime(2026, 10, 30, tzinfo=UTC))
            _record(audit, 4)  # October: the legacy partition's
            audit.close()
            with engine.connect() as conn:
                ids = conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars().all()
            assert len(ids) == len(set(ids)) == 5  # the id sequence carried on
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text("DELETE FROM gateway_audit_log_legacy"))  # the parent's trigger guards it
            kept = apply_retention(engine, AuditSettings(retention_days=30), datetime(2026, 11, 20, tzinfo=UTC))
            assert kept.partitions_dropped == [] and row_count(engine) == 5
            report = apply_retention(engine, AuditSettings(retention_days=30), datetime(2026, 12, 2, tzinfo=UTC))
            assert report.partitions_dropped == ["gateway_audit_log_legacy"] and row_count(engine) == 1
        finally:
            engine.dispose()


@pytest.mark.slow
def test_two_writers_on_postgres_commit_every_row_and_flush_is_exact(pg_engine: Engine) -> None:
    audit = AuditLog(pg_engine, GatewayMetrics(), writers=2, batch_rows=8, clock=Clock())
    try:
        for i in range(101):
            _record(audit, i)
            if i in (0, 37, 100):
                assert audit.flush()  # every row queued so far is in, whichever writer had it
                assert row_count(pg_engine) == i + 1
    finally:
        audit.close()
    with pg_engine.connect() as conn:
        ids = conn.execute(select(audit_log.c.request_id)).scalars().all()
    assert sorted(ids) == sorted(f"r{i}" for i in range(101))
