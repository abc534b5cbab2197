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
    """The tickers with an online row in at least one view (sorted) and the marker of the rows' state."""

    tickers: list[str]
    marker: str


def scan_universe(repo: FeatureRepo) -> UniverseScan:
    """List the online universe and fingerprint it (blocking; the caller serialises store access).

    Raises:
        Exception: whatever the registry or the online store raises when it cannot be read.
    """
    store = repo.store
    config = store.config
    views = [store.registry.get_feature_view(name, config.project, allow_cache=False) for name in FEATURES_BY_VIEW]
    parts = [f"{v.name}:{max((i[1] for i in v.materialization_intervals), default=None)}" for v in views]
    kind = config.online_store.type
    if kind == "sqlite":
        tickers, state = _sqlite(config, views)
    elif kind == "redis":
        tickers, state = _redis(store, config)
    else:
        raise ValueError(f"listing the online universe is not implemented for online store {kind!r}")
    parts += state
    marker = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return UniverseScan(tickers=sorted(tickers), marker=marker)


def _ticker(serialized: bytes, version: int) -> str:
    key = deserialize_entity_key(serialized, entity_key_serialization_version=version)
    return str(key.entity_values[list(key.join_keys).index(ENTITY)].string_val)


def _sqlite(config: Any, views: list[Any]) -> tuple[set[str], list[str]]:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    path = SqliteOnlineStore._get_db_path(config)
    version = config.entity_key_serialization_version
    tickers: set[str] = set()
    state = []
    # A connection of our own (read-only): Feast's is shared with the request path's reads.
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        for view in views:
            table = compute_table_id(config.project, view)
            quoted = '"' + table.replace('"', '""') + '"'
            try:
                keys = conn.execute(f"SELECT DISTINCT entity_key FROM {quoted}").fetchall()  # quoted id
                count, newest_event, newest_created = conn.execute(
                    f"SELECT count(*), max(event_ts), max(created_ts) FROM {quoted}"
                ).fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" not in str(e):
                    raise
                continue  # a view never materialised has no table yet
            tickers.update(_ticker(row[0], version) for row in keys)
            state.append(f"{view.name}:{count}:{newest_event}:{newest_created}")
    return tickers, state


def _redis(store: Any, config: Any) -> tuple[set[str], list[str]]:
    from feast.infra.key_encoding_utils import serialize_entity_key_prefix

    client = store._get_provider().online_store._get_client(config.online_store)
    suffix = config.project.encode()
    pattern = serialize_entity_key_prefix([ENTITY]) + b"*" + suffix
    version = config.entity_key_serialization_version
    tickers = {_ticker(key[: -len(suffix)], version) for key in client.scan_iter(pattern, count=SCAN_BATCH)}
    # Redis keeps no cheap per-view summary; a materialisation shows in the registry's intervals.
    return tickers, [f"redis:{len(tickers)}"]
