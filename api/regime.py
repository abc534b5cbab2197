"""The regime answer: the state on a session, a history over a date range, bounds named when refused.

:func:`regime_on` is the one call other routes make (the daily briefing): the regime state on a
date, read from the same materialised view as ``GET /v1/regime``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

import numpy as np
from starlette.concurrency import run_in_threadpool

from api.errors import InvalidRequestError
from api.market_schemas import RegimeInputsPublic, RegimePublic, RegimeStatePublic
from feature_repo.market import RegimeHistory
from feature_repo.transforms.regime import DEFINITION, RegimeSeries

if TYPE_CHECKING:
    from api.services import Services

ANNUAL: float = math.sqrt(252)


def _number(value: float, scale: float = 1.0) -> float | None:
    return float(value) * scale if math.isfinite(value) else None


def _date(value: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(value.astype("datetime64[D]")))


def states(series: RegimeSeries, start: int, stop: int) -> list[RegimeStatePublic]:
    """The public state of sessions ``start``..``stop - 1`` of ``series``."""
    trends, vols = series.trend_states(), series.volatility_states()
    return [
        RegimeStatePublic(
            date=_date(series.dates[i]),
            regime=str(series.labels[i]),  # type: ignore[arg-type]  # one of RegimeLabel by construction
            trend=trends[i],  # type: ignore[arg-type]
            volatility=vols[i],  # type: ignore[arg-type]
            inputs=RegimeInputsPublic(
                trend=_number(series.trend[i]),
                trend_window=series.trend_window,
                volatility=_number(series.volatility[i], ANNUAL),
                volatility_median=_number(series.volatility_median[i], ANNUAL),
                vol_window=series.vol_window,
            ),
        )
        for i in range(start, stop)
    ]


def history_range(series: RegimeSeries, start: dt.date | None, end: dt.date | None) -> tuple[int, int]:
    """Session indices [lo, hi) of ``start``..``end`` (defaults: the last year up to the last session).

    Raises:
        InvalidRequestError: a bound outside the data or an empty range; the message names the bound.
    """
    first, last = _date(series.dates[0]), _date(series.dates[-1])
    end = end or last
    if end > last:
        raise InvalidRequestError(f"to {end} is after the last session in the data, {last}")
    if end < first:
        raise InvalidRequestError(f"to {end} is before the first session with a benchmark return, {first}")
    start = start or max(first, end - dt.timedelta(days=365))
    if start < first:
        raise InvalidRequestError(f"from {start} is before the first session with a benchmark return, {first}")
    if start > last:
        raise InvalidRequestError(f"from {start} is after the last session in the data, {last}")
    if start > end:
        raise InvalidRequestError(f"from {start} is after to {end}")
    days = series.dates.astype("datetime64[D]")
    lo = int(np.searchsorted(days, np.datetime64(start, "D"), side="left"))
    hi = int(np.searchsorted(days, np.datetime64(end, "D"), side="right"))
    if lo >= hi:
        raise InvalidRequestError(f"no session between from {start} and to {end}")
    return lo, hi


def regime_answer(history: RegimeHistory, start: dt.date | None, end: dt.date | None, request_id: str) -> RegimePublic:
    """The answer of ``GET /v1/regime`` (see :func:`history_range` for the refusals)."""
    series = history.series
    lo, hi = history_range(series, start, end)
    shown = states(series, lo, hi)
    (current,) = states(series, series.dates.size - 1, series.dates.size)
    return RegimePublic(
        benchmark=history.benchmark,
        as_of=current.date,
        current=current,
        history_from=shown[0].date,
        history_to=shown[-1].date,
        history=shown,
        first_session=_date(series.dates[0]),
        definition=DEFINITION.format(trend=series.trend_window, vol=series.vol_window),
        request_id=request_id,
    )


def state_on(history: RegimeHistory, day: dt.date) -> RegimeStatePublic:
    """The regime of the last session on or before ``day``.

    Raises:
        InvalidRequestError: ``day`` is before the first session or after the last (named).
    """
    series = history.series
    first, last = _date(series.dates[0]), _date(series.dates[-1])
    if day < first:
        raise InvalidRequestError(f"date {day} is before the first session with a benchmark return, {first}")
    if day > last:
        raise InvalidRequestError(f"date {day} is after the last session in the data, {last}")
    i = int(np.searchsorted(series.dates.astype("datetime64[D]"), np.datetime64(day, "D"), side="right")) - 1
    (state,) = states(series, i, i + 1)
    return state


async def regime_on(services: Services, day: dt.date | None = None) -> tuple[str, RegimeStatePublic]:
    """The benchmark's symbol and its regime on ``day`` (the last session when None): for other routes.

    Raises:
        InvalidRequestError: ``day`` outside the data (the message names the bound).
        MarketDataUnavailableError: the regime view holds no row.
        FeatureStoreUnavailableError: the online store cannot be read.
    """
    read = await run_in_threadpool(services.market.regime)
    series = read.history.series
    state = (
        state_on(read.history, day) if day is not None else states(series, series.dates.size - 1, series.dates.size)[0]
    )
    return read.history.benchmark, state
