"""The online universe: which tickers the online store holds, and a marker that changes when its rows do.

Feast reads rows by key and cannot list them, so the keys are listed from the online store itself
(SQLite: the view tables; Redis: a ``SCAN`` of the entity's keys). The marker is what the scored
universe compares between polls to notice a new materialisation: each view's last materialised
interval from the registry (what ``feast materialize`` records) plus, on SQLite, the row count and
newest timestamps of each view table, which also catch rows pushed with ``write_to_online_store``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from feast.infra.key_encoding_utils import deserialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id

from feature_repo.schema import FEATURES_BY_VIEW
from feature_repo.store import FeatureRepo

ENTITY: Final = "ticker"
SCAN_BATCH: Final = 1000


@dataclass(frozen=True)
class UniverseScan:
    """The tickers with an online row in at least one view (sorted) and the marker of the rows' state.

    ``tickers`` is ``None`` when the marker equals the one the caller already holds (not listed again).
    """

    tickers: list[str] | None
    marker: str


def scan_universe(repo: FeatureRepo, known_marker: str | None = None) -> UniverseScan:
    """Fingerprint the online universe, and list it unless the marker is ``known_marker`` (blocking).

    The caller serialises store access. Listing reads every key; the marker only a few aggregates.

    Raises:
        Exception: whatever the registry or the online store raises when it cannot be read.
    """
    store = repo.store
    config = store.config
    registered = store.registry.list_feature_views(config.project, allow_cache=False)
    views = [v for v in registered if v.name in FEATURES_BY_VIEW]
    parts = [f"{v.name}:{max((i[1] for i in v.materialization_intervals), default=None)}" for v in views]
    kind = config.online_store.type
    tickers: set[str] | None = None
    if kind == "sqlite":
        state = _sqlite_state(config, views)
    elif kind == "redis":
        tickers = _redis_tickers(store, config)
        # Redis keeps no cheap per-view summary; a materialisation shows in the registry's intervals.
        state = [f"redis:{len(tickers)}"]
    else:
        raise ValueError(f"listing the online universe is not implemented for online store {kind!r}")
    marker = hashlib.sha256("\n".join(parts + state).encode()).hexdigest()
    if marker == known_marker:
        return UniverseScan(tickers=None, marker=marker)
    if tickers is None:
        tickers = _sqlite_tickers(config, views)
    return UniverseScan(tickers=sorted(tickers), marker=marker)


def _ticker(serialized: bytes, version: int) -> str:
    key = deserialize_entity_key(serialized, entity_key_serialization_version=version)
    return str(key.entity_values[list(key.join_keys).index(ENTITY)].string_val)


def _tables(config: Any, views: list[Any]) -> list[str]:
    return ['"' + compute_table_id(config.project, view).replace('"', '""') + '"' for view in views]


def _sqlite_query(config: Any, views: list[Any], sql: str) -> list[list[Any]]:
    """``sql`` (``{table}`` filled in) on each view table that exists; a connection of our own, read-only.

    Feast's own connection is shared with the request path's reads.
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    path = SqliteOnlineStore._get_db_path(config)
    out = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        for table in _tables(config, views):
            try:
                out.append(conn.execute(sql.format(table=table)).fetchall())
            except sqlite3.OperationalError as e:
                if "no such table" not in str(e):
                    raise
                # A view never materialised has no table yet.
    return out


def _sqlite_state(config: Any, views: list[Any]) -> list[str]:
    sql = "SELECT count(*), max(event_ts), max(created_ts) FROM {table}"
    return [repr(rows) for rows in _sqlite_query(config, views, sql)]


def _sqlite_tickers(config: Any, views: list[Any]) -> set[str]:
    version = config.entity_key_serialization_version
    keys = _sqlite_query(config, views, "SELECT DISTINCT entity_key FROM {table}")
    return {_ticker(row[0], version) for rows in keys for row in rows}


def _redis_tickers(store: Any, config: Any) -> set[str]:
    from feast.infra.key_encoding_utils import serialize_entity_key_prefix

    client = store._get_provider().online_store._get_client(config.online_store)
    suffix = config.project.encode()
    pattern = serialize_entity_key_prefix([ENTITY]) + b"*" + suffix
    version = config.entity_key_serialization_version
    return {_ticker(key[: -len(suffix)], version) for key in client.scan_iter(pattern, count=SCAN_BATCH)}
