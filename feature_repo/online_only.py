"""An offline store for processes that only read online: it imports nothing and refuses every read.

Feast imports the module of the offline store that ``feature_store*.yaml`` names just to parse the
configuration, even for online reads. The YAML names DuckDB (duckdb + ibis, about 90 MB) and
Feast's own default is Dask (``dask.dataframe``); the gateway image carries neither. A process that
opens the store with ``FeatureRepo.open(..., online_only=True)`` declares this store instead, so
parsing the configuration loads nothing heavy, and an offline read by mistake fails naming the
cause rather than with an import error deep inside Feast.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NoReturn

from feast.infra.offline_stores.offline_store import OfflineStore
from feast.repo_config import FeastConfigBaseModel

# Feast resolves a dotted offline store type to ``<module>.<Class>``, with config ``<Class>Config``.
ONLINE_ONLY_TYPE: Final = "feature_repo.online_only.OnlineOnlyOfflineStore"


class OfflineReadRefused(RuntimeError):
    """An online-only store was asked for an offline read or write."""


class OnlineOnlyOfflineStoreConfig(FeastConfigBaseModel):
    """The offline store of an online-only reader (no settings)."""

    type: Literal["feature_repo.online_only.OnlineOnlyOfflineStore"] = ONLINE_ONLY_TYPE


def _refuse(operation: str) -> NoReturn:
    raise OfflineReadRefused(
        f"{operation}: this Feast store was opened online-only (FeatureRepo.open(..., online_only=True)); "
        "open it without online_only for offline reads, materialisation or pushes"
    )


class OnlineOnlyOfflineStore(OfflineStore):
    """Refuses every offline operation (Feast creates it only when one is attempted)."""

    @staticmethod
    def pull_latest_from_table_or_query(*args: Any, **kwargs: Any) -> NoReturn:
        _refuse("pull_latest_from_table_or_query (materialisation)")

    @staticmethod
    def get_historical_features(*args: Any, **kwargs: Any) -> NoReturn:
        _refuse("get_historical_features")

    @staticmethod
    def pull_all_from_table_or_query(*args: Any, **kwargs: Any) -> NoReturn:
        _refuse("pull_all_from_table_or_query")

    @staticmethod
    def offline_write_batch(*args: Any, **kwargs: Any) -> NoReturn:
        _refuse("offline_write_batch (push to the offline store)")

    @staticmethod
    def write_logged_features(*args: Any, **kwargs: Any) -> NoReturn:
        _refuse("write_logged_features")
