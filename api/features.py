"""Online feature reads: short-lived cached rows plus one Feast call for the rest; ``as_of`` from event times."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from api.errors import FeatureStoreUnavailableError, UnknownTickersError
from api.metrics import GatewayMetrics
from api.universe import UniverseScan, scan_universe
from feature_repo.contract import FEATURE_SERVICES, SERVED_SERVICES, service_views
from feature_repo.schema import FEATURES_BY_VIEW, names
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo

# Which views feed which service (feature_repo.contract).
SERVICE_VIEWS: Final[dict[str, tuple[str, ...]]] = {s: service_views(s) for s in FEATURE_SERVICES}
# The gateway reads only the views of the services it composes (SERVED_SERVICES: v1 until a
# promoted v2 is wired through compose and the chart): a newer service's views (v2's alpha view
# is 163 features wide) would otherwise be fetched, cached and digested on every request for nothing.
SERVED_VIEWS: Final[tuple[str, ...]] = tuple(dict.fromkeys(v for s in SERVED_SERVICES for v in SERVICE_VIEWS[s]))
# Cached rows used after this share of their life are re-read by a background thread, so under
# steady traffic no request blocks on Feast when they expire (every concurrent request would).
REFRESH_AFTER_SHARE: Final = 0.5
# Distinct ticker sets kept assembled; small, since each holds its derived answers (memory, GC).
MAX_ASSEMBLED: Final = 128
# Tickers per online call when the whole universe is read: bounds the peak of Feast's response objects.
UNIVERSE_CHUNK: Final = 400
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSnapshot:
    """What one request read: values per feature and the event time of each (view, ticker) row."""

    tickers: list[str]
    values: dict[str, list[float | None]]
    event_times: dict[str, list[datetime | None]]
    row_digests: dict[str, list[str]]
    # Values derived from the snapshot (its digest, encoded model inputs): a snapshot served from
    # the cache to many requests computes each once.
    _derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def remember(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, evaluated once per snapshot and ``key``."""
        if key not in self._derived:
            self._derived[key] = compute()
        return cast("T", self._derived[key])

    def keep(self, key: str, value: object) -> None:
        """Store ``value`` as what :meth:`remember` returns for ``key`` from now on."""
        self._derived[key] = value

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

    def tickers_as_of(self) -> list[datetime | None]:
        """:meth:`ticker_as_of` of every ticker, in order (computed once per snapshot)."""
        return self.remember("tickers_as_of", lambda: [self.ticker_as_of(i) for i in range(len(self.tickers))])

    def digest(self) -> str:
        """sha256 of the rows read, for the audit trail (see :func:`row_digest` for one row's part).

        The hash of each (view, ticker) row is taken once, when the row is read from Feast, so a
        request served from cached rows hashes a few dozen short digests rather than re-serialising
        every feature value (that re-serialisation was the gateway's largest cost per request).
        """
        return self.remember("digest", self._digest)

    def subset(self, rows: list[int], views: tuple[str, ...], *, with_values: bool = True) -> FeatureSnapshot:
        """The snapshot of the tickers at ``rows`` (in that order), for ``views`` only.

        Its values, ``as_of`` and digest are exactly those a read of the same tickers and views
        from the same online rows would give (the scored universe answers from such subsets).
        Without values it still has the event times and digests (all an audit row needs).
        """
        values: dict[str, list[float | None]] = {}
        if with_values:
            for view in views:
                for name in names(FEATURES_BY_VIEW[view]):
                    column = self.values.get(name)
                    if column is not None:
                        values[name] = [column[i] for i in rows]
        return FeatureSnapshot(
            tickers=[self.tickers[i] for i in rows],
            values=values,
            event_times={v: [self.event_times[v][i] for i in rows] for v in views},
            row_digests={v: [self.row_digests[v][i] for i in rows] for v in views},
        )

    def _digest(self) -> str:
        hasher = hashlib.sha256()
        for view, digests in self.row_digests.items():
            for ticker, row in zip(self.tickers, digests, strict=True):
                hasher.update(f"{view}\t{ticker}\t{row}\n".encode())
        return hasher.hexdigest()


def row_digest(values: dict[str, float | None], event_time: datetime | None) -> str:
    """sha256 of one row: canonical JSON of its feature values by name and its ISO event time."""
    payload = {"values": values, "event_time": event_time.isoformat() if event_time else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Assembled:
    """A snapshot assembled from cached rows, valid while no row was replaced and none expired."""

    generation: int
    oldest_read_at: float
    snapshot: FeatureSnapshot


@dataclass(frozen=True)
class _Row:
    """One (view, ticker) online row as read: its feature values and event time (``None``: no row)."""

    values: tuple[float | None, ...]
    event_time: datetime | None
    read_at: float
    digest: str


class OnlineFeatures:
    """The gateway's window on the Feast online store (opened on first use, reopened after a failure).

    Online rows change only at materialisation (daily), so each (view, ticker) row is reused for
    ``cache_seconds``: a request reads Feast only for the tickers it lacks. A snapshot is always
    assembled from the rows it reports, so its ``as_of`` and :meth:`FeatureSnapshot.digest` describe
    exactly the vectors scored, whether they came from the cache or from Feast. Tickers with no row in
    any view are never cached (the cache stays bounded by the real universe). Rows served after half
    their life are re-read in the background (one refresh at a time), so steady traffic never waits
    for Feast; a row is still never served older than ``cache_seconds``.
    """

    def __init__(
        self,
        settings: FeatureStoreSettings,
        metrics: GatewayMetrics,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._repo: FeatureRepo | None = None
        # Feast's SQLite online store shares one connection across threads; serialise its reads.
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], _Row] = {}
        self._refreshing = False
        # Bumped whenever rows are replaced; assembled snapshots of an older generation are stale.
        self._generation = 0
        self._assembled: dict[tuple[tuple[str, ...], tuple[str, ...]], _Assembled] = {}

    def open(self) -> FeatureRepo:
        """The Feast repository, opened (registry loaded, online store connected) on first use.

        Raises:
            Exception: whatever Feast raises when the registry or the store cannot be reached.
        """
        if self._repo is None:
            # Online only: the gateway image carries no offline store engine (DuckDB, Dask).
            self._repo = FeatureRepo.open(self.settings, online_only=True)
        return self._repo

    def cached(self, tickers: list[str], views: tuple[str, ...] = SERVED_VIEWS) -> FeatureSnapshot | None:
        """The snapshot from fresh cached rows alone, or ``None`` if any is missing (non-blocking).

        The same tickers asked again get the same snapshot object while none of its rows was
        replaced or has reached half its life (after that the rows are checked one by one, which
        also starts their background renewal).
        """
        key, generation = (tuple(tickers), views), self._generation
        assembled = self._assembled.get(key)
        if (
            assembled is not None
            and assembled.generation == generation
            and assembled.oldest_read_at > self.clock() - self.cache_seconds * REFRESH_AFTER_SHARE
        ):
            return assembled.snapshot
        rows = self._fresh(tickers, views)
        if len(rows) < len(tickers) * len(views):
            return None
        self._refresh_ahead(views, rows)
        snapshot = _assemble(tickers, views, rows)
        # A ticker cached from other views may lack a row in these: let read() name it.
        if not all(snapshot.tickers_as_of()):
            return None
        if len(self._assembled) >= MAX_ASSEMBLED:
            self._assembled.clear()  # distinct ticker sets are few; a flood of new ones restarts it
        self._assembled[key] = _Assembled(generation, min(row.read_at for row in rows.values()), snapshot)
        return snapshot

    def read(self, tickers: list[str], views: tuple[str, ...] = SERVED_VIEWS) -> FeatureSnapshot:
        """Every feature of ``views`` for ``tickers``: cached rows plus one online call for the rest (blocking).

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
            UnknownTickersError: tickers with no row in any of ``views``.
        """
        rows = self._fresh(tickers, views)
        if len(rows) < len(tickers) * len(views):
            with self._lock:
                # Re-check under the lock: a concurrent request may just have read the same tickers.
                rows = self._fresh(tickers, views)
                missing = list(dict.fromkeys(t for v in views for t in tickers if (v, t) not in rows))
                if missing:
                    rows.update(self._read_online(missing, views))
        snapshot = _assemble(tickers, views, rows)
        unknown = [t for i, t in enumerate(tickers) if snapshot.ticker_as_of(i) is None]
        if unknown:
            raise UnknownTickersError(unknown)
        return snapshot

    def scan(self, known_marker: str | None = None) -> UniverseScan:
        """The online universe's marker, and its tickers unless the marker is ``known_marker`` (blocking).

        See :mod:`api.universe`.

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
        """
        with self._lock:
            try:
                return scan_universe(self.open(), known_marker)
            except Exception as e:
                self._repo = None
                raise FeatureStoreUnavailableError(f"online universe unreadable: {type(e).__name__}") from e

    def read_refs(self, refs: list[str], entity_rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        """One online call for ``refs`` (``view:feature``) and ``entity_rows``, with event times (blocking).

        For views outside the served model views (the market views of :mod:`api.market_data`): the
        caller decodes and caches the rows itself.

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
        """
        start = time.perf_counter()
        with self._lock:
            try:
                raw = self.open().store.get_online_features(features=refs, entity_rows=entity_rows)
                data: dict[str, list[Any]] = raw.to_dict(include_event_timestamps=True)
            except Exception as e:
                self._repo = None
                raise FeatureStoreUnavailableError(f"online feature store unavailable: {type(e).__name__}") from e
            finally:
                self.metrics.feature_read_duration.observe(time.perf_counter() - start)
        return data

    def read_known(self, tickers: list[str], services: tuple[str, ...]) -> FeatureSnapshot:
        """The rows of ``tickers`` in one online call, leaving out tickers with no row at all (blocking).

        Every view's event times and row digests are kept (for ``as_of`` and the audit digest); the
        values only of the features ``services`` read (a view no served model reads can be large).

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
        """
        rows: dict[tuple[str, str], _Row] = {}
        for start in range(0, len(tickers), UNIVERSE_CHUNK):
            # The lock is released between chunks, so request-path reads wait for one chunk at most.
            # Not kept in the row cache: the universe's rows live in the scored snapshot.
            with self._lock:
                rows.update(self._read_online(tickers[start : start + UNIVERSE_CHUNK], SERVED_VIEWS, cache=False))
        known = [t for t in tickers if any(rows[(v, t)].event_time is not None for v in SERVED_VIEWS)]
        snapshot = _assemble(known, SERVED_VIEWS, rows)
        used = {name for s in services for view in SERVICE_VIEWS[s] for name in names(FEATURES_BY_VIEW[view])}
        values = {name: column for name, column in snapshot.values.items() if name in used}
        return FeatureSnapshot(known, values, snapshot.event_times, snapshot.row_digests)

    def _refresh_ahead(self, views: tuple[str, ...], rows: dict[tuple[str, str], _Row]) -> None:
        """Start a background re-read of the tickers whose rows are past half their life."""
        if self._refreshing:
            return
        renew_before = self.clock() - self.cache_seconds * REFRESH_AFTER_SHARE
        aging = list(dict.fromkeys(ticker for (_, ticker), row in rows.items() if row.read_at <= renew_before))
        if aging:
            self._refreshing = True
            threading.Thread(target=self._refresh, args=(aging, views), name="feature-refresh", daemon=True).start()

    def _refresh(self, tickers: list[str], views: tuple[str, ...]) -> None:
        try:
            with self._lock:
                self._read_online(tickers, views)
        except FeatureStoreUnavailableError as e:
            # The rows expire as usual; the next request then reads Feast itself and answers 503.
            log.warning("background feature refresh failed: %s", e)
        finally:
            self._refreshing = False

    def _fresh(self, tickers: list[str], views: tuple[str, ...]) -> dict[tuple[str, str], _Row]:
        if self.cache_seconds <= 0:
            return {}
        oldest = self.clock() - self.cache_seconds
        found = {}
        for view in views:
            for ticker in tickers:
                row = self._rows.get((view, ticker))
                if row is not None and row.read_at > oldest:
                    found[(view, ticker)] = row
        return found

    def _read_online(
        self, tickers: list[str], views: tuple[str, ...], *, cache: bool = True
    ) -> dict[tuple[str, str], _Row]:
        """One Feast call for ``tickers`` (caller holds the lock); caches the rows of known tickers."""
        refs = [f"{view}:{name}" for view in views for name in names(FEATURES_BY_VIEW[view])]
        start = time.perf_counter()
        try:
            repo = self.open()
            raw = repo.store.get_online_features(features=refs, entity_rows=[{"ticker": t} for t in tickers])
            data = raw.to_dict(include_event_timestamps=True)
        except Exception as e:
            # Any Feast/Redis/SQLite failure means the same to a client: no features right now.
            self._repo = None
            raise FeatureStoreUnavailableError(f"online feature store unavailable: {type(e).__name__}") from e
        finally:
            self.metrics.feature_read_duration.observe(time.perf_counter() - start)
        rows = _rows(tickers, views, data, self.clock())
        self._export_age(rows)
        known = {t for (_, t), row in rows.items() if row.event_time is not None}
        if cache and self.cache_seconds > 0:
            self._rows.update({key: row for key, row in rows.items() if key[1] in known})
            self._generation += 1
        return rows

    def check(self) -> None:
        """Readiness: the registry lists the views and the online store answers a read (never cached).

        Raises:
            FeatureStoreUnavailableError: it does not.
        """
        with self._lock:
            self._read_online(["__readiness_probe__"], ("technical_features",))

    def _export_age(self, rows: dict[tuple[str, str], _Row]) -> None:
        now = datetime.now(UTC)
        for service, views in SERVICE_VIEWS.items():
            stamps = [row.event_time for (view, _), row in rows.items() if view in views and row.event_time]
            if stamps:
                self.metrics.feature_age.labels(service=service).set((now - max(stamps)).total_seconds())


def _rows(
    tickers: list[str], views: tuple[str, ...], data: dict[str, list[Any]], read_at: float
) -> dict[tuple[str, str], _Row]:
    rows = {}
    for view in views:
        feature_names = names(FEATURES_BY_VIEW[view])
        columns = [[_number(v) for v in data[name]] for name in feature_names]
        # Every feature of a view shares its row's event time; zero seconds means no row.
        seconds = data[f"{feature_names[0]}__ts"]
        for i, ticker in enumerate(tickers):
            stamp = datetime.fromtimestamp(seconds[i], UTC) if seconds[i] else None
            values = tuple(column[i] for column in columns)
            digest = row_digest(dict(zip(feature_names, values, strict=True)), stamp)
            rows[(view, ticker)] = _Row(values, stamp, read_at, digest)
    return rows


def _assemble(tickers: list[str], views: tuple[str, ...], rows: dict[tuple[str, str], _Row]) -> FeatureSnapshot:
    values: dict[str, list[float | None]] = {}
    event_times: dict[str, list[datetime | None]] = {}
    row_digests: dict[str, list[str]] = {}
    for view in views:
        view_rows = [rows[(view, t)] for t in tickers]
        for j, name in enumerate(names(FEATURES_BY_VIEW[view])):
            values[name] = [row.values[j] for row in view_rows]
        event_times[view] = [row.event_time for row in view_rows]
        row_digests[view] = [row.digest for row in view_rows]
    return FeatureSnapshot(tickers=list(tickers), values=values, event_times=event_times, row_digests=row_digests)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
