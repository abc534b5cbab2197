"""Factories of the backtest job tests: a synthetic offline store, its catalogue, a gateway, a fake executor.

The prices are SYNTHETIC (training.ingest.synthetic), labelled so in every job result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, delete, insert, select

from api.app import create_app
from api.backtest_executors import ExecutorError, Liveness
from api.keys import create_key
from api.settings import GatewaySettings
from feature_repo.backtests import BacktestSpec, backtest_catalogue, backtest_jobs, backtest_metadata
from training.ingest.synthetic import generate_universe
from training.store import OfflineStore

PEPPER = "test-pepper-0123456789abcdef"
FIRST, LAST = datetime(2022, 1, 3).date(), datetime(2023, 12, 29).date()
TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE")


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeExecutor:
    """Records submissions; a job runs until the test ends it (``finish``) or the executor refuses."""

    running: dict[str, bool] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    refuse: str | None = None

    def submit(self, job_id: str) -> str:
        if self.refuse:
            raise ExecutorError(self.refuse)
        self.running[f"fake:{job_id}"] = True
        return f"fake:{job_id}"

    def alive(self, ref: str) -> Liveness:
        alive = self.running.get(ref, False)
        return Liveness(alive, "running" if alive else "the fake process ended")

    def stop(self, ref: str) -> None:
        self.stopped.append(ref)
        self.running[ref] = False


def publish(engine: Engine, first: Any = FIRST, last: Any = LAST, tickers: tuple[str, ...] = TICKERS) -> None:
    """A catalogue row as the training side publishes it."""
    backtest_metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(delete(backtest_catalogue))
        conn.execute(
            insert(backtest_catalogue).values(
                id=1,
                first_session=first,
                last_session=last,
                tickers=list(tickers),
                label="SYNTHETIC data: test",
                updated_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )


def settings(tmp_path: Path, **backtests: Any) -> GatewaySettings:
    return GatewaySettings(
        data_dir=str(tmp_path),
        database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        api_key_pepper=PEPPER,
        scored={"enabled": False},
        gc_freeze=False,
        backtests={"executor": "off", "background": False, **backtests},
    )


def gateway(config: GatewaySettings) -> TestClient:
    return TestClient(create_app(config), raise_server_exceptions=False)


def key(
    client: TestClient, tenant: str = "acme", scopes: tuple[str, ...] = ("backtests:write", "backtests:read")
) -> dict[str, str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    plaintext = create_key(services.engine, tenant, scopes, "100000/minute", services.settings.pepper).plaintext
    return {"Authorization": f"Bearer {plaintext}"}


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "strategy": "topk",
        "universe": list(TICKERS),
        "start": "2023-01-03",
        "end": "2023-06-30",
        "params": {"k": 2, "buffer": 1},
    }
    return {**values, **overrides}


def synthetic_store(data_dir: Path, n_tickers: int = 8, n_months: int = 18) -> list[str]:
    """A small SYNTHETIC offline store under ``data_dir``; returns its tickers."""
    universe = generate_universe(n_tickers=n_tickers, n_months=n_months, seed=3)
    with OfflineStore(data_dir / "offline.duckdb") as store:
        store.upsert("prices", universe.prices)
    return sorted(universe.prices["ticker"].unique())


def sqlite_engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")


def queue_job(engine: Engine, job_id: str, spec: dict[str, Any], state: str = "running") -> None:
    """A job row as the gateway leaves it for the job (running once the dispatcher claimed it)."""
    backtest_metadata.create_all(engine)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    checked = BacktestSpec.model_validate(spec).model_dump(mode="json")
    with engine.begin() as conn:
        conn.execute(
            insert(backtest_jobs).values(
                id=job_id, tenant="acme", state=state, spec=checked, created_at=now, updated_at=now, progress=0.0
            )
        )


def job_row(engine: Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(backtest_jobs).where(backtest_jobs.c.id == job_id)).one()
