"""The per-tenant limit of backtest jobs holds across gateway replicas, on SQLite and on a real PostgreSQL.

Each "replica" is its own :class:`api.backtests.BacktestStore` with its own engine (its own
connection pool) on one shared database, as two gateway pods share the chart's PostgreSQL. The
interleaving test holds one replica's admission open at the exact point where a per-process lock
would have let the other through, and proves the other waits for it (PostgreSQL shows the wait in
``pg_stat_activity``: a condition the test waits for, not a sleep it races).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text

from api.backtest_schemas import BacktestRequest
from api.backtests import BacktestStore, JobLimitError, init_backtest_tables, lock_tenant
from api.db import make_engine
from feature_repo.backtests import ACTIVE, QUEUED, backtest_jobs
from tests.backtest_fixtures import body, publish
from tests.gateway_fixtures.databases import fresh_postgres_database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SPEC = BacktestRequest.model_validate(body())


def _prepared(url: str) -> str:
    """``url`` with the backtest tables and a published catalogue."""
    engine = make_engine(url)
    init_backtest_tables(engine)
    publish(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh gateway database: SQLite in tmp_path, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield _prepared(f"sqlite:///{tmp_path / 'gateway.db'}")
        return
    with fresh_postgres_database(request.getfixturevalue("database_url")) as url:
        yield _prepared(url)


@pytest.fixture
def postgres(database_url: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL (the one that shows who waits on a lock)."""
    with fresh_postgres_database(database_url) as url:
        yield _prepared(url)


def _replica(url: str, limit: int) -> BacktestStore:
    return BacktestStore(make_engine(url), lambda: NOW, limit=limit, retry_after_s=30)


def _active(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(backtest_jobs)
                .where(backtest_jobs.c.tenant == tenant, backtest_jobs.c.state.in_(ACTIVE))
            ).scalar_one()
        )


def test_concurrent_submissions_on_two_replicas_never_pass_the_limit(database: str) -> None:
    replicas = [_replica(database, limit=2), _replica(database, limit=2)]
    start = threading.Barrier(8)

    def submit(n: int) -> str:
        start.wait()  # all eight at once, four per replica
        try:
            replicas[n % 2].submit("acme", SPEC)
        except JobLimitError:
            return "limited"
        return "accepted"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(submit, range(8)))  # any other exception fails the test here
    assert outcomes == ["accepted"] * 2 + ["limited"] * 6
    assert _active(replicas[0].engine, "acme") == 2
    replicas[1].submit("globex", SPEC)  # another tenant's limit is its own
    for replica in replicas:
        replica.engine.dispose()


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO gateway_backtest_admissions%'"
            )
        ).scalar_one()
    return int(waiting) == 1


def _wait_until_blocked(engine: Engine, other: Future[object]) -> None:
    """Until replica B's admission waits on A's lock (a precondition; it fails the test if B finishes instead)."""
    for _ in range(3000):  # at most about 60 s
        assert not other.done(), f"replica B finished while A held the tenant's lock: {other.result()}"
        if _waiting_on_a_lock(engine):
            return
        threading.Event().wait(0.02)
    raise AssertionError("replica B never waited on the tenant's admission lock")


def test_a_second_replica_waits_for_an_open_admission_and_then_sees_its_job(postgres: str) -> None:
    a, b = _replica(postgres, limit=1), _replica(postgres, limit=1)
    with a.engine.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
        transaction = conn.begin()
        lock_tenant(conn, "acme", NOW)  # replica A: locked, counted 0 active, about to insert
        other = pool.submit(b.submit, "acme", SPEC)  # replica B, the same tenant, at the same moment
        _wait_until_blocked(a.engine, other)
        conn.execute(
            insert(backtest_jobs).values(
                id="a" * 32,
                tenant="acme",
                state=QUEUED,
                spec=SPEC.model_dump(mode="json"),
                created_at=NOW,
                updated_at=NOW,
                progress=0.0,
            )
        )
        transaction.commit()
        with pytest.raises(JobLimitError, match="already has 1 backtest job"):
            other.result(timeout=60)
    assert _active(a.engine, "acme") == 1
    # Another tenant is never held up by acme's admission (its own lock row).
    with a.engine.connect() as conn:
        transaction = conn.begin()
        lock_tenant(conn, "acme", NOW)
        b.submit("globex", SPEC)
        transaction.rollback()
    for replica in (a, b):
        replica.engine.dispose()
