"""The gateway opens the Feast store online-only: DuckDB, ibis and Dask (offline stores') never load.

The gateway image carries no DuckDB (tests/test_architecture.py); this proves the code path the
gateway takes needs none, in a fresh interpreter so nothing imported by other tests can hide it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from feature_repo.online_only import OfflineReadRefused, OnlineOnlyOfflineStore
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo

PROBE = """
import json, sys
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
repo = FeatureRepo.open(FeatureStoreSettings(data_dir=sys.argv[1]), online_only={online_only})
repo.store.list_feature_views()
kind = type(repo.store.config.offline_store).__name__
print(json.dumps({{"kind": kind, "loaded": [m for m in ("duckdb", "ibis", "dask") if m in sys.modules]}}))
"""


def _probe(data_dir: Path, *, online_only: bool) -> dict[str, object]:
    code = PROBE.format(online_only=online_only)
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_online_only_store_never_imports_the_offline_engine(tmp_path: Path) -> None:
    result = _probe(tmp_path, online_only=True)
    assert result == {"kind": "OnlineOnlyOfflineStoreConfig", "loaded": []}


def test_the_full_store_still_uses_the_configured_duckdb_offline_store(tmp_path: Path) -> None:
    result = _probe(tmp_path, online_only=False)
    assert result["kind"] == "DuckDBOfflineStoreConfig"
    assert "duckdb" in result["loaded"]  # type: ignore[operator]


def test_an_offline_read_on_an_online_only_store_is_refused_naming_the_cause(tmp_path: Path) -> None:
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(tmp_path)), online_only=True)
    # The store Feast builds from the config when an offline operation is attempted.
    offline = repo.store._get_provider().offline_store
    assert isinstance(offline, OnlineOnlyOfflineStore)
    for call, name in (
        (offline.get_historical_features, "get_historical_features"),
        (offline.pull_latest_from_table_or_query, "pull_latest_from_table_or_query"),
        (offline.offline_write_batch, "offline_write_batch"),
    ):
        with pytest.raises(OfflineReadRefused, match=rf"^{name}.*opened online-only"):
            call()
