"""Feast objects: the ``ticker`` entity, one feature view per feature family, one service per model.

The objects are built by :func:`build_definitions` from the location of the materialised feature
files, so tests and the demo point them at a temporary folder and the cluster at object storage,
with no module-level state. ``feature_repo/repo.py`` exposes them to the ``feast`` CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, FeastType, Float64, Int64, PrimitiveFeastType, String

from feature_repo.contract import ALLOCATOR_SERVICE, ALLOCATOR_VIEW, MODEL_SERVICES
from feature_repo.data_quality import DATA_QUALITY_FEATURES, DATA_QUALITY_VIEW
from feature_repo.market import MARKET_ENTITY, MARKET_VIEWS
from feature_repo.schema import ALLOCATOR_FEATURES, FEATURES_BY_VIEW, FeatureSpec

__all__ = ["ALLOCATOR_FEATURES", "ALLOCATOR_SERVICE", "MODEL_SERVICES", "FeatureDefinitions", "build_definitions"]

EVENT_TIMESTAMP: Final = "event_timestamp"
CREATED_TIMESTAMP: Final = "created_timestamp"

# A daily view older than this is stale: covers a long weekend plus public holidays, no more.
DAILY_TTL: Final = timedelta(days=10)

_FEAST_TYPES: Final[dict[str, PrimitiveFeastType]] = {"float64": Float64, "int64": Int64}
_MARKET_TYPES: Final[dict[str, FeastType]] = {
    **_FEAST_TYPES,
    "string": String,
    "float64_list": Array(Float64),
    "int64_list": Array(Int64),
}


@dataclass(frozen=True)
class FeatureDefinitions:
    """Every Feast object of the project, ready for ``FeatureStore.apply``."""

    ticker: Entity
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    market: Entity | None = None

    @property
    def objects(self) -> list[Entity | FeatureView | FeatureService]:
        entities = [self.ticker] + ([self.market] if self.market is not None else [])
        return [*entities, *self.views.values(), *self.services.values()]


def feature_file(data_uri: str, view: str) -> str:
    """Where the materialised feature file of ``view`` lives under ``data_uri``."""
    return f"{data_uri.rstrip('/')}/features/{view}.parquet"


def build_definitions(data_uri: str) -> FeatureDefinitions:
    """Build the entity, views and services over the feature files under ``data_uri``.

    Args:
        data_uri: an absolute local folder or an object-store URI (``s3://bucket/prefix``).
    """
    ticker = Entity(
        name="ticker",
        join_keys=["ticker"],
        value_type=ValueType.STRING,
        description="An equity by its exchange ticker (upper case, e.g. AAPL or BHP.AX).",
    )
    views = {name: _view(name, specs, ticker, data_uri) for name, specs in FEATURES_BY_VIEW.items()}
    market = Entity(
        name=MARKET_ENTITY,
        join_keys=[MARKET_ENTITY],
        value_type=ValueType.STRING,
        description="A market, by the benchmark the pipeline run measures it with (one key: primary).",
    )
    entities = {"ticker": ticker, MARKET_ENTITY: market}
    for name, (entity, specs) in MARKET_VIEWS.items():
        views[name] = _market_view(name, specs, entities[entity], data_uri)
    # The sentinel's per-ticker anomaly flags: written by monitoring, read online by the gateway;
    # no model service serves it (not in FEATURES_BY_VIEW, so no model, drift or decay job reads it).
    views[DATA_QUALITY_VIEW] = _view(DATA_QUALITY_VIEW, DATA_QUALITY_FEATURES, ticker, data_uri)
    services = {
        name: FeatureService(
            name=name,
            features=[views[v] for v in view_names],
            description=f"Inputs of the {name.rsplit('_v', 1)[0].replace('_', ' ')} ({name}), in signature order.",
        )
        for name, view_names in MODEL_SERVICES.items()
    }
    services[ALLOCATOR_SERVICE] = FeatureService(
        name=ALLOCATOR_SERVICE,
        features=[views[ALLOCATOR_VIEW][list(ALLOCATOR_FEATURES)]],
        description="Risk and momentum inputs of the allocator and the gateway's fallback weights.",
    )
    return FeatureDefinitions(ticker=ticker, views=views, services=services, market=market)


def _view(name: str, specs: tuple[FeatureSpec, ...], ticker: Entity, data_uri: str) -> FeatureView:
    """A per-ticker view of one feature family, a row per ticker and session."""
    family = name.split("_", maxsplit=1)[0]
    return _file_view(
        name,
        specs,
        _FEAST_TYPES,
        ticker,
        data_uri,
        family=family,
        written_by=f"the {name} transform",
        description=f"Daily {family} features per ticker, stamped at the session date.",
    )


def _market_view(name: str, specs: tuple[FeatureSpec, ...], entity: Entity, data_uri: str) -> FeatureView:
    """A market-level view (feature_repo.market): a snapshot row per key, arrays allowed."""
    return _file_view(
        name,
        specs,
        _MARKET_TYPES,
        entity,
        data_uri,
        family="market",
        written_by=f"the {name} snapshot (feature_repo.market)",
        description=f"Market snapshot {name}, stamped at its last session.",
    )


def _file_view(
    name: str,
    specs: tuple[FeatureSpec, ...],
    types: Mapping[str, FeastType],
    entity: Entity,
    data_uri: str,
    *,
    family: str,
    written_by: str,
    description: str,
) -> FeatureView:
    """An online view over the materialised Parquet file of ``name`` (:func:`feature_file`), daily TTL.

    ``types`` maps each spec's dtype to its Feast type; a dtype it lacks is refused (``KeyError``).
    """
    source = FileSource(
        name=f"{name}_source",
        path=feature_file(data_uri, name),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
        description=f"Materialised output of {written_by}.",
    )
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=DAILY_TTL,
        schema=[Field(name=s.name, dtype=types[s.dtype], description=s.description) for s in specs],
        source=source,
        online=True,
        description=description,
        tags={"family": family},
    )
