"""The market views read online: the benchmark's regime history and tickers' trailing daily returns.

Both views are snapshots materialised by the pipeline (see :mod:`feature_repo.market`); they change
once a day, so each row read is kept for ``cache_seconds`` (the gateway's feature cache setting)
and every answer built from it says which rows (a digest for the audit trail).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from api.errors import GatewayError, UnknownTickersError
from api.features import OnlineFeatures
from feature_repo.market import (
    MARKET_ENTITY,
    PRIMARY_MARKET,
    REGIME_FIELDS,
    REGIME_VIEW,
    RETURN_WINDOW_FIELDS,
    RETURN_WINDOW_VIEW,
    RegimeHistory,
    regime_history,
)
from feature_repo.tables import TICKER

REGIME_REFS: Final = [f"{REGIME_VIEW}:{f.name}" for f in REGIME_FIELDS]
RETURN_REFS: Final = [f"{RETURN_WINDOW_VIEW}:{f.name}" for f in RETURN_WINDOW_FIELDS]


class MarketDataUnavailableError(GatewayError):
    """The market views hold no row yet (the pipeline's features stage has not materialised them)."""

    status_code = 503
    code = "market_data_unavailable"


@dataclass(frozen=True, eq=False)
class RegimeRead:
    """The decoded regime history, when its online row is stamped, and the row's digest."""

    history: RegimeHistory
    event_time: datetime
    digest: str


@dataclass(frozen=True, eq=False)
class ReturnWindow:
    """One ticker's trailing daily returns (NaN where it had none) on the common calendar."""

    returns: npt.NDArray[np.float64]
    sessions: npt.NDArray[np.datetime64]
    event_time: datetime
    digest: str


@dataclass(frozen=True)
class _Cached:
    value: Any
    read_at: float


def _digest(*parts: object) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        hasher.update(b"\t")
    return hasher.hexdigest()


def _stamp(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


class MarketData:
    """Cached reads of the two market views through the gateway's online-store window."""

    def __init__(
        self, features: OnlineFeatures, cache_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.features = features
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._regime: _Cached | None = None
        self._windows: dict[str, _Cached] = {}

    def _fresh(self, cached: _Cached | None) -> bool:
        return cached is not None and cached.read_at > self.clock() - self.cache_seconds

    def regime(self) -> RegimeRead:
        """The regime history of the primary market (blocking on a cache miss).

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            MarketDataUnavailableError: the view holds no row.
        """
        cached = self._regime
        if cached is not None and self._fresh(cached):
            read: RegimeRead = cached.value
            return read
        data = self.features.read_refs(REGIME_REFS, [{MARKET_ENTITY: PRIMARY_MARKET}])
        row = {f.name: data[f.name][0] for f in REGIME_FIELDS}
        history = regime_history(row)
        stamp = _stamp(data[f"{REGIME_FIELDS[0].name}__ts"][0])
        if history is None or stamp is None:
            raise MarketDataUnavailableError(
                f"the {REGIME_VIEW} view has no row: run the pipeline's features and materialize stages"
            )
        series = history.series
        digest = _digest(history.benchmark, series.dates, series.labels, series.trend, series.volatility, stamp)
        read = RegimeRead(history, stamp, digest)
        with self._lock:
            self._regime = _Cached(read, self.clock())
        return read

    def return_windows(self, tickers: list[str]) -> dict[str, ReturnWindow]:
        """Each ticker's return window (blocking for those not cached).

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            UnknownTickersError: tickers with no row in the view.
        """
        found: dict[str, ReturnWindow] = {}
        for ticker in tickers:
            cached = self._windows.get(ticker)
            if cached is not None and self._fresh(cached):
                found[ticker] = cached.value
        missing = [t for t in tickers if t not in found]
        if missing:
            data = self.features.read_refs(RETURN_REFS, [{TICKER: t} for t in missing])
            now = self.clock()
            unknown = []
            for i, ticker in enumerate(missing):
                window = _window(data, i)
                if window is None:
                    unknown.append(ticker)
                    continue
                found[ticker] = window
                with self._lock:
                    self._windows[ticker] = _Cached(window, now)
            if unknown:
                raise UnknownTickersError(unknown)
        return {t: found[t] for t in tickers}


def _window(data: dict[str, list[Any]], i: int) -> ReturnWindow | None:
    stamp = _stamp(data["returns__ts"][i])
    values = data["returns"][i]
    if stamp is None or not values:
        return None
    returns = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    sessions = np.asarray(data["sessions"][i], dtype=np.int64).astype("datetime64[D]")
    if sessions.shape != returns.shape:
        return None
    return ReturnWindow(returns, sessions, stamp, _digest(returns, sessions, stamp))
