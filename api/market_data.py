"""The market views read online: the benchmark's regime history and tickers' trailing daily returns.

Both views are snapshots materialised by the pipeline (see :mod:`feature_repo.market`); they change
once a day, so each row read is kept for ``cache_seconds`` (the gateway's feature cache setting)
and every answer built from it says which rows (a digest for the audit trail).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from api.cache import Cache
from api.errors import GatewayError, UnknownTickersError
from api.features import OnlineFeatures
from api.metrics import GatewayMetrics
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
# The return windows of a universe of thousands of tickers.
MAX_CACHED_WINDOWS: Final = 20_000


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


def _digest(*parts: object) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        hasher.update(b"\t")
    return hasher.hexdigest()


def _stamp(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


class MarketData:
    """Cached reads of the two market views through the gateway's online-store window (one
    :class:`api.cache.Cache` each)."""

    def __init__(
        self,
        features: OnlineFeatures,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.features = features
        metrics = metrics or GatewayMetrics()
        self.regimes: Cache[str, RegimeRead] = Cache(
            "market_regime", metrics, ttl=cache_seconds, max_entries=1, clock=clock
        )
        self.windows: Cache[str, ReturnWindow] = Cache(
            "market_return_windows", metrics, ttl=cache_seconds, max_entries=MAX_CACHED_WINDOWS, clock=clock
        )

    def cached_regime(self) -> RegimeRead | None:
        """The regime history from a fresh cached read, or ``None`` (non-blocking)."""
        return self.regimes.peek(PRIMARY_MARKET)

    def cached_windows(self, tickers: list[str]) -> dict[str, ReturnWindow] | None:
        """Every ticker's return window from fresh cached reads, or ``None`` when any must be read (non-blocking)."""
        return self.windows.peek_many(tickers)

    def regime(self) -> RegimeRead:
        """The regime history of the primary market (blocking on a cache miss).

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            MarketDataUnavailableError: the view holds no row.
        """
        read = self.regimes.get(PRIMARY_MARKET, self._read_regime)
        if read is None:  # _read_regime raises instead
            raise MarketDataUnavailableError(f"the {REGIME_VIEW} view has no row")
        return read

    def _read_regime(self) -> RegimeRead:
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
        return RegimeRead(history, stamp, digest)

    def return_windows(self, tickers: list[str]) -> dict[str, ReturnWindow]:
        """Each ticker's return window (blocking for those not cached).

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            UnknownTickersError: tickers with no row in the view.
        """
        found = self.windows.get_many(tickers, self._read_windows)
        unknown = [t for t in tickers if t not in found]
        if unknown:
            raise UnknownTickersError(unknown)
        return {t: found[t] for t in tickers}

    def _read_windows(self, tickers: list[str]) -> dict[str, ReturnWindow]:
        """One online read of the tickers' windows; tickers with no row are left out (not cached)."""
        data = self.features.read_refs(RETURN_REFS, [{TICKER: t} for t in tickers])
        return {t: window for i, t in enumerate(tickers) if (window := _window(data, i)) is not None}


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
