"""``SnapshotDep``: how a route gets the rows it answers from, so the route reads top to bottom.

Every read here is served from a cache when it can be (inline, on the event loop: no thread hop)
and otherwise blocks in a worker thread, once, for the part that must be read: the pattern
``cached(...) or await run_in_threadpool(read, ...)`` lives here instead of in every route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.data_quality import Flag
from api.deps import services_of
from api.features import SERVED_VIEWS, FeatureSnapshot
from api.market_data import RegimeRead, ReturnWindow
from api.services import Services

T = TypeVar("T")


async def _cached_or_read(cached: T | None, read: Callable[[], T]) -> T:
    return cached if cached is not None else await run_in_threadpool(read)


class Snapshots:
    """The feature rows, flags and market views a request answers from (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def features(self, tickers: list[str], views: tuple[str, ...] = SERVED_VIEWS) -> FeatureSnapshot:
        """``views`` of ``tickers`` from fresh cached rows, else cached rows plus one store read.

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            UnknownTickersError: tickers with no row in ``views``.
        """
        features = self.services.features
        return await _cached_or_read(features.cached(tickers, views), lambda: features.read(tickers, views))

    async def scored_features(self, tickers: list[str], views: tuple[str, ...]) -> FeatureSnapshot:
        """The rows the scored universe was scored from when it is fresh and holds them all, else :meth:`features`.

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            UnknownTickersError: tickers with no row in ``views``.
        """
        scored = self.services.scored.features_for(tickers, views)
        return scored if scored is not None else await self.features(tickers, views)

    async def data_quality(self, tickers: list[str]) -> dict[str, Flag]:
        """Each ticker's sentinel flag (never raises: an unreadable view answers ``unchecked``)."""
        flags = self.services.data_quality
        return await _cached_or_read(flags.cached(tickers), lambda: flags.read(tickers))

    async def regime(self) -> RegimeRead:
        """The primary market's regime history.

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            MarketDataUnavailableError: the view holds no row.
        """
        market = self.services.market
        return await _cached_or_read(market.cached_regime(), market.regime)

    async def return_windows(self, tickers: list[str]) -> dict[str, ReturnWindow]:
        """Each ticker's trailing daily returns.

        Raises:
            FeatureStoreUnavailableError: the online store cannot be read.
            UnknownTickersError: tickers with no row in the view.
        """
        market = self.services.market
        return await _cached_or_read(market.cached_windows(tickers), lambda: market.return_windows(tickers))


async def get_snapshots(request: Request) -> Snapshots:  # async, and the request: see api.deps
    return Snapshots(services_of(request))


SnapshotDep = Annotated[Snapshots, Depends(get_snapshots)]
