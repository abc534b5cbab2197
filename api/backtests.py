"""Backtest jobs in the gateway database: admission (the tenant's limit, the data's bounds), state, cancel.

The rows are the ground floor's ``gateway_backtest_jobs`` (:mod:`feature_repo.backtests`), shared
with the job that runs on Ray. Every state change is a conditional UPDATE (``WHERE state = ...``),
so the gateway's dispatcher, a second gateway replica, a client's cancel and the job itself never
overwrite each other: whoever moves the row first wins, the others see zero rows changed.

The tenant's limit of active jobs holds across replicas: admission is one transaction that first
upserts the tenant's row of ``gateway_backtest_admissions`` (a row lock on PostgreSQL, the write
lock on SQLite, both held to the commit), then counts the tenant's queued and running jobs and
inserts the new one. A second admission of the same tenant, on any replica, waits at its upsert
until the first commits, and its count then sees the first's job. Other tenants do not wait on
PostgreSQL (another row); SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from api.errors import GatewayError, InvalidRequestError
from feature_repo.backtests import (
    ACTIVE,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    BacktestSpec,
    backtest_admissions,
    backtest_catalogue,
    backtest_jobs,
    backtest_metadata,
    decode_report,
    report_gzip,
)

Clock = Callable[[], datetime]
SHOWN = 10  # tickers named in a refusal; the count says how many more


class BacktestDataUnavailableError(GatewayError):
    """No catalogue of backtest data has been published yet."""

    status_code = 503
    code = "backtest_data_unavailable"


class JobNotFoundError(GatewayError):
    """No job with that id for this tenant."""

    status_code = 404
    code = "not_found"


class JobConflictError(GatewayError):
    """The job is in a state that refuses the request (a report before success, a cancel after the end)."""

    status_code = 409
    code = "conflict"


class JobLimitError(GatewayError):
    """The tenant already has its limit of queued and running jobs."""

    status_code = 429
    code = "backtest_limit"

    def __init__(self, tenant: str, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"tenant {tenant} already has {limit} backtest job(s) queued or running (the limit); "
            f"retry after {retry_after_s} s or cancel one",
            headers={"Retry-After": str(retry_after_s)},
        )


@dataclass(frozen=True)
class Catalogue:
    """The data a backtest may cover, as published by the training side."""

    first_session: date
    last_session: date
    tickers: frozenset[str]
    label: str
    updated_at: datetime


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (``gzip``, ``x-gzip`` or ``*`` with a q above 0)."""
    weights: dict[str, float] = {}
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def report_body(stored: str, gzip_ok: bool) -> tuple[bytes, dict[str, str]]:
    """The tear sheet's bytes and headers: the stored gzip as is when the client takes it, else the HTML.

    Either way the client reads the same HTML; a row stored before compression is sent as it is.

    Raises:
        ValueError: a stored report that does not decode (damaged row).
    """
    headers = {"Vary": "Accept-Encoding"}
    packed = report_gzip(stored)
    if packed is not None and gzip_ok:
        return packed, {**headers, "Content-Encoding": "gzip"}
    return decode_report(stored).encode("utf-8"), headers


def init_backtest_tables(engine: Engine) -> None:
    """Create the job and catalogue tables when missing (idempotent)."""
    backtest_metadata.create_all(engine)


def _check_range(spec: BacktestSpec, catalogue: Catalogue) -> None:
    """A 422 naming the bound the range crosses, or the tickers the data lack."""
    first, last = catalogue.first_session, catalogue.last_session
    if spec.start < first:
        raise InvalidRequestError(f"start {spec.start} is before the data's first session {first} (the lower bound)")
    if spec.end > last:
        raise InvalidRequestError(f"end {spec.end} is after the data's last session {last} (the upper bound)")
    if spec.start > last:
        raise InvalidRequestError(f"start {spec.start} is after the data's last session {last} (the upper bound)")
    unknown = sorted(set(spec.universe) - catalogue.tickers)
    if unknown:
        more = f" (+{len(unknown) - SHOWN} more)" if len(unknown) > SHOWN else ""
        raise InvalidRequestError(f"universe: ticker(s) not in the backtest data: {', '.join(unknown[:SHOWN])}{more}")


def lock_tenant(conn: Connection, tenant: str, now: datetime) -> None:
    """Take ``tenant``'s admission lock until ``conn``'s transaction ends (module docstring).

    Raises:
        NotImplementedError: a database other than PostgreSQL or SQLite (the two the gateway supports).
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        upsert: Any = postgresql.insert(backtest_admissions)
    elif dialect == "sqlite":
        upsert = sqlite.insert(backtest_admissions)
    else:
        raise NotImplementedError(f"backtest admission needs PostgreSQL or SQLite, not {dialect}")
    statement = upsert.values(tenant=tenant, updated_at=now).on_conflict_do_update(
        index_elements=[backtest_admissions.c.tenant], set_={"updated_at": now}
    )
    conn.execute(statement)


def active_jobs(conn: Connection, tenant: str) -> int:
    """The tenant's queued and running jobs, as ``conn`` sees them."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(backtest_jobs)
            .where(backtest_jobs.c.tenant == tenant, backtest_jobs.c.state.in_(ACTIVE))
        ).scalar_one()
    )


class BacktestStore:
    """The gateway's reads and writes of backtest jobs (module docstring)."""

    def __init__(self, engine: Engine, clock: Clock, *, limit: int, retry_after_s: int) -> None:
        self.engine, self.clock = engine, clock
        self.limit, self.retry_after_s = limit, retry_after_s

    def catalogue(self) -> Catalogue:
        """The published data range.

        Raises:
            BacktestDataUnavailableError: nothing published yet.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(backtest_catalogue).where(backtest_catalogue.c.id == 1)).first()
        if row is None:
            raise BacktestDataUnavailableError(
                "no backtest data published yet: run `python -m training.backtest_job catalogue` after ingest"
            )
        return Catalogue(row.first_session, row.last_session, frozenset(row.tickers), row.label, row.updated_at)

    def submit(self, tenant: str, spec: BacktestSpec) -> Row[Any]:
        """Queue a job after checking the data's bounds and the tenant's limit; returns its row.

        Raises:
            InvalidRequestError: a range outside the data, or tickers it lacks (422).
            JobLimitError: the tenant's limit of active jobs reached (429).
            BacktestDataUnavailableError: no catalogue (503).
        """
        _check_range(spec, self.catalogue())
        job_id = uuid.uuid4().hex
        now = self.clock()
        with self.engine.begin() as conn:  # lock, count and insert in one transaction (module docstring)
            lock_tenant(conn, tenant, now)
            if active_jobs(conn, tenant) >= self.limit:
                raise JobLimitError(tenant, self.limit, self.retry_after_s)
            conn.execute(
                insert(backtest_jobs).values(
                    id=job_id,
                    tenant=tenant,
                    state=QUEUED,
                    spec=spec.model_dump(mode="json"),
                    created_at=now,
                    updated_at=now,
                    progress=0.0,
                    message="queued",
                )
            )
        return self.get(tenant, job_id)

    def get(self, tenant: str, job_id: str, *, with_report: bool = False) -> Row[Any]:
        """The tenant's job (the report column only when asked: it is megabytes).

        Raises:
            JobNotFoundError: no such job for this tenant (another tenant's job is not found either).
        """
        columns = [c for c in backtest_jobs.c if with_report or c.name != "report"]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*columns).where(backtest_jobs.c.id == job_id, backtest_jobs.c.tenant == tenant)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no backtest job {job_id}")
        return row

    def cancel(self, tenant: str, job_id: str) -> tuple[Row[Any], str | None]:
        """Cancel a queued or running job; returns its row and the executor reference to stop (if running).

        Raises:
            JobNotFoundError: unknown job.
            JobConflictError: the job already ended.
        """
        before = self.get(tenant, job_id)
        now = self.clock()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == job_id, backtest_jobs.c.state.in_(ACTIVE))
                .values(
                    state=CANCELLED,
                    message="cancelled",
                    error="cancelled by the client",
                    finished_at=now,
                    updated_at=now,
                )
            ).rowcount
        if changed != 1:
            state = self.get(tenant, job_id).state
            raise JobConflictError(f"backtest job {job_id} already ended ({state}): nothing to cancel")
        ref = before.executor_ref if before.state == RUNNING else None
        return self.get(tenant, job_id), ref

    # -- the dispatcher's side -------------------------------------------------------------------

    def rows_in(self, state: str) -> list[Any]:
        """Jobs in ``state``, oldest first (without results or reports)."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(backtest_jobs.c.id, backtest_jobs.c.tenant, backtest_jobs.c.executor_ref)
                    .where(backtest_jobs.c.state == state)
                    .order_by(backtest_jobs.c.created_at, backtest_jobs.c.id)
                ).all()
            )

    def claim(self, job_id: str) -> bool:
        """Move a queued job to running (before it is handed to the executor); False if another got it."""
        now = self.clock()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == job_id, backtest_jobs.c.state == QUEUED)
                .values(state=RUNNING, started_at=now, updated_at=now, message="starting")
            ).rowcount
        return changed == 1

    def started(self, job_id: str, ref: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(backtest_jobs).where(backtest_jobs.c.id == job_id).values(executor_ref=ref))

    def requeue(self, job_id: str, reason: str) -> None:
        """Back to the queue after the executor refused it (unreachable Ray...): tried again next poll."""
        with self.engine.begin() as conn:
            conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == job_id, backtest_jobs.c.state == RUNNING)
                .values(state=QUEUED, started_at=None, message=f"waiting: {reason}", updated_at=self.clock())
            )

    def fail(self, job_id: str, reason: str) -> bool:
        """Mark a running job failed with ``reason`` (only if it is still running)."""
        now = self.clock()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == job_id, backtest_jobs.c.state == RUNNING)
                .values(state=FAILED, error=reason, message="failed", finished_at=now, updated_at=now)
            ).rowcount
        return changed == 1

    def counts(self) -> dict[str, int]:
        """Jobs per state (for the gauge)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(backtest_jobs.c.state, func.count()).group_by(backtest_jobs.c.state)).all()
        return {str(state): int(n) for state, n in rows}
