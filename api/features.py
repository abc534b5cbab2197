"""Online feature reads: one Feast call per request, with ``as_of`` from the rows' event timestamps."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from api.errors import FeatureStoreUnavailableError, UnknownTickersError
from api.metrics import GatewayMetrics
from feature_repo.schema import FEATURES_BY_VIEW, MODEL_SERVICES, names
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo

# Which view feeds which service; the allocator's features all live in the technical view.
SERVICE_VIEWS: Final[dict[str, tuple[str, ...]]] = {**MODEL_SERVICES, "allocator_v1": ("technical_features",)}
ALL_VIEWS: Final[tuple[str, ...]] = tuple(FEATURES_BY_VIEW)


@dataclass(frozen=True)
class FeatureSnapshot:
    """What one request read: values per feature and the event time of each (view, ticker) row."""

    tickers: list[str]
    values: dict[str, list[float | None]]
    event_times: dict[str, list[datetime | None]]

    def service_columns(self, service: str) -> dict[str, list[float | None]]:
        """The features of a model service (all features of its views), by name."""
        return {f: self.values[f] for view in SERVICE_VIEWS[service] for f in names(FEATURES_BY_VIEW[view])}

    def as_of(self, view: str | None = None) -> datetime | None:
        """The newest event time among the rows read (of one view, or of all)."""
        views = [view] if view else list(self.event_times)
        stamps = [t for v in views for t in self.event_times.get(v, []) if t is not None]
        return max(stamps) if stamps else None

    def ticker_as_of(self, index: int) -> datetime | None:
        """The newest event time of one ticker's rows."""
        stamps = [t for times in self.event_times.values() if (t := times[index]) is not None]
        return max(stamps) if stamps else None

    def digest(self) -> str:
        """sha256 of the values and event times read, for the audit trail."""
        payload = {
            "tickers": self.tickers,
            "values": self.values,
            "event_times": {v: [t.isoformat() if t else None for t in ts] for v, ts in self.event_times.items()},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class OnlineFeatures:
    """The gateway's window on the Feast online store (opened on first use, reopened after a failure)."""

    def __init__(self, settings: FeatureStoreSettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._repo: FeatureRepo | None = None
        # Feast's SQLite online store shares one connection across threads; serialise its reads.
        self._lock = threading.Lock()

    def _open(self) -> FeatureRepo:
        if self._repo is None:
            self._repo = FeatureRepo.open(self.settings)
        return self._repo

    def read(self, tickers: list[str], views: tuple[str, ...] = ALL_VIEWS) -> FeatureSnapshot:
        """Read every feature of ``views`` for ``tickers`` in one online call (blocking: run it in a thread).

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
            UnknownTickersError: tickers with no row in any of ``views``.
        """
        refs = [f"{view}:{name}" for view in views for name in names(FEATURES_BY_VIEW[view])]
        start = time.perf_counter()
        try:
            with self._lock:
                repo = self._open()
                raw = repo.store.get_online_features(features=refs, entity_rows=[{"ticker": t} for t in tickers])
                data = raw.to_dict(include_event_timestamps=True)
        except Exception as e:
            # Any Feast/Redis/SQLite failure means the same to a client: no features right now.
            self._repo = None
            raise FeatureStoreUnavailableError(f"online feature store unavailable: {type(e).__name__}") from e
        finally:
            self.metrics.feature_read_duration.observe(time.perf_counter() - start)
        snapshot = _snapshot(tickers, views, data)
        unknown = [t for i, t in enumerate(tickers) if snapshot.ticker_as_of(i) is None]
        if unknown:
            raise UnknownTickersError(unknown)
        self._export_age(snapshot)
        return snapshot

    def check(self) -> None:
        """Readiness: the registry lists the views and the online store answers a read.

        Raises:
            FeatureStoreUnavailableError: it does not.
        """
        try:
            self.read(["__readiness_probe__"], ("technical_features",))
        except UnknownTickersError:
            return

    def _export_age(self, snapshot: FeatureSnapshot) -> None:
        now = datetime.now(UTC)
        for service, views in SERVICE_VIEWS.items():
            stamps = [snapshot.as_of(v) for v in views if v in snapshot.event_times]
            newest = max((s for s in stamps if s is not None), default=None)
            if newest is not None:
                self.metrics.feature_age.labels(service=service).set((now - newest).total_seconds())


def _snapshot(tickers: list[str], views: tuple[str, ...], data: dict[str, list[Any]]) -> FeatureSnapshot:
    values: dict[str, list[float | None]] = {}
    event_times: dict[str, list[datetime | None]] = {}
    for view in views:
        feature_names = names(FEATURES_BY_VIEW[view])
        for name in feature_names:
            values[name] = [_number(v) for v in data[name]]
        # Every feature of a view shares its row's event time; zero seconds means no row.
        seconds = data[f"{feature_names[0]}__ts"]
        event_times[view] = [datetime.fromtimestamp(s, UTC) if s else None for s in seconds]
    return FeatureSnapshot(tickers=list(tickers), values=values, event_times=event_times)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
