"""Online feature reads: short-lived cached rows plus one Feast call for the rest; ``as_of`` from event times."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from api.cache import Cache
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
# (view, ticker) rows kept: the served views of a universe of thousands of tickers.
MAX_CACHED_ROWS: Final = 50_000
# Distinct ticker sets kept assembled; small, since each holds a snapshot (memory, GC).
MAX_ASSEMBLED: Final = 128
# Tickers per online call when the whole universe is read: bounds the peak of Feast's response objects.
UNIVERSE_CHUNK: Final = 400


@dataclass(frozen=True)
class FeatureSnapshot:
    """What one request read: values per feature and the event time of each (view, ticker) row.

    Immutable: its digest (which every answer audits) is computed once, when it is built.
    """

    tickers: list[str]
    values: dict[str, list[float | None]]
    event_times: dict[str, list[datetime | None]]
    row_digests: dict[str, list[str]]
    _digest: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        hasher = hashlib.sha256()
        for view, digests in self.row_digests.items():
            for ticker, row in zip(self.tickers, digests, strict=True):
                hasher.update(f"{view}\t{ticker}\t{row}\n".encode())
        object.__setattr__(self, "_digest", hasher.hexdigest())

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
        return max((t for times in self.event_times.values() if (t := times[index]) is not None), default=None)

    def tickers_as_of(self) -> list[datetime | None]:
        """:meth:`ticker_as_of` of every ticker, in order."""
        columns = list(self.event_times.values())
        return [max((t for c in columns if (t := c[i]) is not None), default=None) for i in range(len(self.tickers))]

    def digest(self) -> str:
        """sha256 of the rows read, for the audit trail (see :func:`row_digest` for one row's part).

        The hash of each (view, ticker) row is taken once, when the row is read from Feast, so a
        request served from cached rows hashes a few dozen short digests rather than re-serialising
        every feature value (that re-serialisation was the gateway's largest cost per request).
        """
        return self._digest

    def subset(self, rows: list[int], views: tuple[str, ...]) -> FeatureSnapshot:
        """The snapshot of the tickers at ``rows`` (in that order), for ``views`` only.

        Its values, ``as_of`` and digest are exactly those a read of the same tickers and views
        from the same online rows would give (the scored universe answers from such subsets).
        """
        values: dict[str, list[float | None]] = {}
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


def row_digest(values: dict[str, float | None], event_time: datetime | None) -> str:
    """sha256 of one row: canonical JSON of its feature values by name and its ISO event time."""
    payload = {"values": values, "event_time": event_time.isoformat() if event_time else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Assembled:
    """A snapshot assembled from cached rows: valid while no row was stored since and none is aging."""

    generation: int
    oldest_loaded_at: float
    snapshot: FeatureSnapshot


@dataclass(frozen=True)
class _Row:
    """One (view, ticker) online row as read: its feature values and event time (``None``: no row)."""

    values: tuple[float | None, ...]
    event_time: datetime | None
    digest: str


class OnlineFeatures:
    """The gateway's window on the Feast online store (opened on first use, reopened after a failure).

    Online rows change only at materialisation (daily), so each (view, ticker) row is kept in
    :attr:`rows` (a :class:`api.cache.Cache`) for ``cache_seconds``: a request reads Feast only for
    the tickers it lacks, and concurrent requests lacking the same rows share one read. A snapshot is
    always assembled from the rows it reports, so its ``as_of`` and :meth:`FeatureSnapshot.digest`
    describe exactly the vectors scored, whether they came from the cache or from Feast. Tickers with
    no row in any view are never cached (the cache stays bounded by the real universe). Rows served
    after half their life are re-read in the background, so steady traffic never waits for Feast; a
    row is still never served older than ``cache_seconds``.
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
        self._repo: FeatureRepo | None = None
        # Feast's SQLite online store shares one connection across threads; serialise its reads.
        self._lock = threading.Lock()
        self.rows: Cache[tuple[str, str], _Row] = Cache(
            "feature_rows",
            metrics,
            ttl=cache_seconds,
            max_entries=MAX_CACHED_ROWS,
            refresh_share=REFRESH_AFTER_SHARE,
            clock=clock,
        )
        # Keyed by (tickers, views): the same tickers asked again skip the assembly and its digest.
        self.snapshots: Cache[tuple[tuple[str, ...], tuple[str, ...]], _Assembled] = Cache(
            "feature_snapshots", metrics, ttl=cache_seconds, max_entries=MAX_ASSEMBLED, clock=clock
        )

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

        Rows past half their life are served and re-read in the background. The same tickers asked
        again get the snapshot already assembled while no row was stored since and none is aging
        (after that the rows are checked one by one, which also starts their renewal).
        """
        key, rows_cache = (tuple(tickers), views), self.rows
        assembled = self.snapshots.peek(key)
        renew_before = rows_cache.clock() - self.cache_seconds * REFRESH_AFTER_SHARE
        if (
            assembled is not None
            and assembled.generation == rows_cache.generation
            and assembled.oldest_loaded_at > renew_before
        ):
            return assembled.snapshot
        generation, keys = rows_cache.generation, _keys(tickers, views)  # read before the rows it covers
        rows = rows_cache.peek_many(keys, self._loader(views))
        if rows is None:
            return None
        snapshot = _assemble(tickers, views, rows)
        # A ticker cached from other views may lack a row in these: let read() name it.
        if not all(snapshot.tickers_as_of()):
            return None
        oldest = min((t for k in keys if (t := rows_cache.loaded_at(k)) is not None), default=renew_before)
        self.snapshots.put(key, _Assembled(generation, oldest, snapshot))
        return snapshot

    def read(self, tickers: list[str], views: tuple[str, ...] = SERVED_VIEWS) -> FeatureSnapshot:
        """Every feature of ``views`` for ``tickers``: cached rows plus one online call for the rest (blocking).

        Raises:
            FeatureStoreUnavailableError: the registry or online store cannot be read.
            UnknownTickersError: tickers with no row in any of ``views``.
        """
        rows = self.rows.get_many(_keys(tickers, views), self._loader(views))
        unknown = [t for t in dict.fromkeys(tickers) if any((v, t) not in rows for v in views)]
        if unknown:
            raise UnknownTickersError(unknown)
        snapshot = _assemble(tickers, views, rows)
        unknown = [t for t, as_of in zip(tickers, snapshot.tickers_as_of(), strict=True) if as_of is None]
        if unknown:
            raise UnknownTickersError(unknown)
        return snapshot

    def _loader(self, views: tuple[str, ...]) -> Callable[[list[tuple[str, str]]], dict[tuple[str, str], _Row]]:
        """The row cache's loader: one online call for the tickers of the missing rows, in every view of ``views``."""

        def load(keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Row]:
            tickers = list(dict.fromkeys(ticker for _, ticker in keys))
            with self._lock:
                rows = self._read_online(tickers, views)
            # Tickers with no row in any view read are left out: never cached, named by read().
            known = {t for (_, t), row in rows.items() if row.event_time is not None}
            return {key: row for key, row in rows.items() if key[1] in known}

        return load

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
                rows.update(self._read_online(tickers[start : start + UNIVERSE_CHUNK], SERVED_VIEWS))
        known = [t for t in tickers if any(rows[(v, t)].event_time is not None for v in SERVED_VIEWS)]
        used = {name for s in services for view in SERVICE_VIEWS[s] for name in names(FEATURES_BY_VIEW[view])}
        return _assemble(known, SERVED_VIEWS, rows, keep=used)

    def _read_online(self, tickers: list[str], views: tuple[str, ...]) -> dict[tuple[str, str], _Row]:
        """One Feast call for ``tickers`` (caller holds the lock): every (view, ticker) row, found or not."""
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
        rows = _rows(tickers, views, data)
        self._export_age(rows)
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


def _keys(tickers: list[str], views: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(view, ticker) for view in views for ticker in tickers]


def _rows(tickers: list[str], views: tuple[str, ...], data: dict[str, list[Any]]) -> dict[tuple[str, str], _Row]:
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
            rows[(view, ticker)] = _Row(values, stamp, digest)
    return rows


def _assemble(
    tickers: list[str],
    views: tuple[str, ...],
    rows: Mapping[tuple[str, str], _Row],
    keep: set[str] | None = None,
) -> FeatureSnapshot:
    """The snapshot of ``tickers`` from ``rows`` (values of the features in ``keep`` only, when given)."""
    values: dict[str, list[float | None]] = {}
    event_times: dict[str, list[datetime | None]] = {}
    row_digests: dict[str, list[str]] = {}
    for view in views:
        view_rows = [rows[(view, t)] for t in tickers]
        for j, name in enumerate(names(FEATURES_BY_VIEW[view])):
            if keep is None or name in keep:
                values[name] = [row.values[j] for row in view_rows]
        event_times[view] = [row.event_time for row in view_rows]
        row_digests[view] = [row.digest for row in view_rows]
    return FeatureSnapshot(tickers=list(tickers), values=values, event_times=event_times, row_digests=row_digests)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
