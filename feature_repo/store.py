"""Opening the Feast store for an environment, and the operations the project runs on it.

The per-environment ``feature_store*.yaml`` files are the configuration; this module fills in
their ``${...}`` placeholders from typed settings (never from a mutated ``os.environ``) and builds
the ``RepoConfig`` in-process, so the same files serve the ``feast`` CLI and the project.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import pandas as pd
import yaml
from feast import FeatureStore, RepoConfig

from feature_repo.definitions import FeatureDefinitions, build_definitions
from feature_repo.online_only import ONLINE_ONLY_TYPE
from feature_repo.settings import FeatureStoreSettings

REPO_DIR: Final = Path(__file__).resolve().parent
CONFIG_FILES: Final = {
    "local": REPO_DIR / "feature_store.yaml",
    "production": REPO_DIR / "feature_store.production.yaml",
}


class FeatureStoreConfigError(ValueError):
    """The feature store configuration is incomplete or invalid."""


def redis_url_to_feast(url: str) -> str:
    """Convert ``redis://[:password@]host:port[/db]`` (or ``rediss://``) to Feast's format."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise FeatureStoreConfigError("the Redis URL must look like redis://[:password@]host:port[/db]")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.lstrip("/")
    if db:
        parts.append(f"db={int(db)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


# What an online-only reader (the gateway) declares as its offline store: one that imports nothing
# and refuses every read (feature_repo/online_only.py). It keeps Feast from importing the DuckDB
# offline store (duckdb, ibis) that the YAML names, or Dask (Feast's default), neither of which
# the gateway image carries.
ONLINE_ONLY_OFFLINE_STORE: Final = {"type": ONLINE_ONLY_TYPE}


def load_repo_config(settings: FeatureStoreSettings, *, online_only: bool = False) -> RepoConfig:
    """Read the environment's YAML, fill its placeholders from ``settings`` and validate it.

    With ``online_only`` the offline store is swapped for ``ONLINE_ONLY_OFFLINE_STORE``: the
    caller reads the online store and the registry only.
    """
    values = {"PORTFOLIO_OS_DATA_DIR": settings.data_dir.rstrip("/")}
    if settings.redis_url:
        values["PORTFOLIO_OS_FEAST_REDIS"] = redis_url_to_feast(settings.redis_url)
    if settings.registry_url:
        values["PORTFOLIO_OS_REGISTRY_URL"] = settings.registry_url
    text = CONFIG_FILES[settings.environment].read_text()
    try:
        raw: dict[str, Any] = yaml.safe_load(string.Template(text).substitute(values))
    except KeyError as e:
        raise FeatureStoreConfigError(
            f"{CONFIG_FILES[settings.environment].name} needs ${{{e.args[0]}}}, which is not configured"
        ) from e
    if online_only:
        raw["offline_store"] = dict(ONLINE_ONLY_OFFLINE_STORE)
    config = RepoConfig(**raw)
    config.repo_path = REPO_DIR
    return config


@dataclass
class FeatureRepo:
    """A Feast store plus the project's definitions for it."""

    store: FeatureStore
    definitions: FeatureDefinitions

    @classmethod
    def open(cls, settings: FeatureStoreSettings, *, online_only: bool = False) -> FeatureRepo:
        """The store of ``settings``; ``online_only`` for a process that never reads offline."""
        if settings.environment == "local":
            (Path(settings.data_dir) / "feast").mkdir(parents=True, exist_ok=True)
        store = FeatureStore(config=load_repo_config(settings, online_only=online_only))
        return cls(store=store, definitions=build_definitions(settings.data_dir))

    def apply(self) -> None:
        """Register (or update) the entity, views and services."""
        self.store.apply(list(self.definitions.objects))  # type: ignore[arg-type]  # Feast's list is invariant

    def materialize(self, start: datetime, end: datetime, views: list[str] | None = None) -> None:
        """Load the newest row per ticker with event time in [start, end] into the online store."""
        self.store.materialize(start_date=start, end_date=end, feature_views=views)

    def materialize_incremental(self, end: datetime, views: list[str] | None = None) -> None:
        """Load everything newer than each view's last materialisation, up to ``end``."""
        self.store.materialize_incremental(end_date=end, feature_views=views)

    def online(self, service: str, tickers: list[str]) -> pd.DataFrame:
        """The service's online feature vector for each ticker, in the service's feature order."""
        fs = self.store.get_feature_service(service)
        response = self.store.get_online_features(features=fs, entity_rows=[{"ticker": t} for t in tickers])
        frame = response.to_df()
        return frame[["ticker", *service_feature_names(fs)]]

    def historical(self, service: str, entity_frame: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time join of the service's features onto (ticker, event_timestamp) rows."""
        fs = self.store.get_feature_service(service)
        job = self.store.get_historical_features(entity_df=entity_frame, features=fs)
        return job.to_df()


def service_feature_names(service: Any) -> list[str]:
    """Feature names of a Feast ``FeatureService`` in declaration order."""
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def full_window(event_times: pd.Series) -> tuple[datetime, datetime]:
    """A materialisation window covering every row of a feature file."""
    first, last = (_utc(pd.Timestamp(event_times.min())), _utc(pd.Timestamp(event_times.max())))
    return first, last + timedelta(seconds=1)


def _utc(ts: pd.Timestamp) -> datetime:
    value: datetime = ts.to_pydatetime()
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def release_offline_engine() -> None:
    """Close the in-process DuckDB connection Feast's offline store opened through ibis.

    ibis keeps it as its global default backend; left open until interpreter teardown, duckdb's
    bindings print dozens of "nanobind: leaked ..." lines. Call this when a process is done with
    offline reads (the CLI and the test session do); the next read opens a fresh connection.
    """
    ibis = sys.modules.get("ibis")
    if ibis is None:  # nothing opened it; importing ibis here would cost seconds for nothing
        return
    backend = ibis.options.default_backend
    if backend is not None:
        backend.disconnect()
        ibis.options.default_backend = None
