"""Known defects planted in a clean synthetic price frame, for data health-check tests ONLY.

:func:`inject_defects` takes the clean prices of
:func:`training.ingest.synthetic.generate_universe` and plants six defects a health check must catch
(a missing span, a ticker that stops trading, a non-positive price, a one-day outlier, an unadjusted
split, duplicated rows), each on its own ticker, and reports where it put them. Like everything
synthetic, the result is for tests and edge cases; no quality figure may be computed on it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo import tables as t
from training.ingest.synthetic import DateArray, SyntheticDataError

MIN_DEFECT_SESSIONS: Final = 80
STALE_SESSIONS: Final = 30
MISSING_SPAN_SESSIONS: Final = 10  # at least; and at least MISSING_SPAN_SHARE of the sessions
MISSING_SPAN_SHARE: Final = 0.05
DUPLICATED_SESSIONS: Final = 5
OUTLIER_FACTOR: Final = 1.8
SPLIT_FACTOR: Final = 0.5


@dataclass(frozen=True)
class Defect:
    """One planted defect: the ticker it is on and the sessions it touches."""

    ticker: str
    dates: tuple[pd.Timestamp, ...]


@dataclass(frozen=True)
class InjectedDefects:
    """What :func:`inject_defects` planted, one distinct ticker per defect.

    Attributes:
        missing_span: ``dates`` are the consecutive mid-series sessions whose rows were removed.
        stale: ``dates`` are the last ``STALE_SESSIONS`` sessions, removed: the ticker stops trading.
        non_positive: on ``dates[0]`` close and adj_close (and low) are 0.0.
        outlier: on ``dates[0]`` every price is x1.8 (+80%) and back the next session.
        split: an unadjusted 2:1 split: from ``dates[0]`` on, every price (close *and* adj_close)
            halves and volume doubles.
        duplicated: the rows of ``dates`` appear twice (exact copies).
    """

    missing_span: Defect
    stale: Defect
    non_positive: Defect
    outlier: Defect
    split: Defect
    duplicated: Defect

    def tickers(self) -> dict[str, str]:
        """Defect name -> ticker."""
        return {f.name: getattr(self, f.name).ticker for f in fields(self)}


_PRICE_VALUES: Final = ["open", "high", "low", "close", "adj_close"]


def inject_defects(prices: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, InjectedDefects]:
    """Plant six known defects on six distinct tickers of a clean price frame, for health-check tests.

    The outlier and the split go on the calmest session of their ticker (smallest own move), so the
    jump is almost exactly x1.8 or x0.5 whatever the ticker's volatility.

    Args:
        prices: a clean ``PRICE_COLUMNS`` frame with at least 6 tickers and ``MIN_DEFECT_SESSIONS``
            sessions, every ticker trading every session (``generate_universe(...).prices``); it is
            not modified.
        seed: picks the tickers and sessions.

    Returns:
        The defective frame (sorted by ticker then date, duplicates adjacent) and what was planted.

    Raises:
        SyntheticDataError: the frame is too small.
    """
    sessions = pd.DatetimeIndex(np.sort(prices[t.DATE].unique()))
    names = np.sort(prices[t.TICKER].unique())
    n = len(sessions)
    if names.size < 6 or n < MIN_DEFECT_SESSIONS:
        raise SyntheticDataError(
            f"inject_defects needs >= 6 tickers and >= {MIN_DEFECT_SESSIONS} sessions, got {names.size} and {n}"
        )
    rng = np.random.default_rng(seed)
    picked = [str(x) for x in rng.choice(names, 6, replace=False)]
    span_length = max(MISSING_SPAN_SESSIONS, int(np.ceil(MISSING_SPAN_SHARE * n)))
    first, last = 10, n - STALE_SESSIONS - 10  # defects stay clear of both ends and of the stale tail
    starts = rng.integers(first, last - span_length, 3)

    def span(start: int, length: int) -> tuple[pd.Timestamp, ...]:
        return tuple(sessions[start : start + length])

    window = (sessions[first], sessions[last])
    expected = InjectedDefects(
        missing_span=Defect(picked[0], span(int(starts[0]), span_length)),
        stale=Defect(picked[1], span(n - STALE_SESSIONS, STALE_SESSIONS)),
        non_positive=Defect(picked[2], span(int(starts[1]), 1)),
        outlier=Defect(picked[3], (_calm_session(prices, picked[3], window, with_next=True),)),
        split=Defect(picked[4], (_calm_session(prices, picked[4], window, with_next=False),)),
        duplicated=Defect(picked[5], span(int(starts[2]), DUPLICATED_SESSIONS)),
    )
    return _apply_defects(prices, expected), expected


def _calm_session(
    prices: pd.DataFrame, ticker: str, window: tuple[pd.Timestamp, pd.Timestamp], *, with_next: bool
) -> pd.Timestamp:
    """The session in ``window`` where ``ticker`` moved least (that day, plus the next if asked)."""
    bars = prices.loc[prices[t.TICKER] == ticker, [t.DATE, "adj_close"]].sort_values(t.DATE)
    dates = bars[t.DATE].to_numpy()
    move = np.abs(np.diff(np.log(bars["adj_close"].to_numpy()), prepend=np.nan))
    if with_next:
        move[:-1] += move[1:]
    inside = (dates >= window[0].to_datetime64()) & (dates <= window[1].to_datetime64())
    return pd.Timestamp(dates[int(np.argmin(np.where(inside & np.isfinite(move), move, np.inf)))])


def _apply_defects(prices: pd.DataFrame, d: InjectedDefects) -> pd.DataFrame:
    frame = prices.loc[:, list(t.PRICE_COLUMNS)].copy()
    ticker, date = frame[t.TICKER].to_numpy(), frame[t.DATE].to_numpy()

    def rows(defect: Defect) -> npt.NDArray[np.bool_]:
        mask: npt.NDArray[np.bool_] = (ticker == defect.ticker) & np.isin(date, _as_ns(defect.dates))
        return mask

    frame.loc[rows(d.non_positive), ["low", "close", "adj_close"]] = 0.0
    frame.loc[rows(d.outlier), _PRICE_VALUES] *= OUTLIER_FACTOR
    after_split = (ticker == d.split.ticker) & (date >= _as_ns(d.split.dates[:1])[0])
    frame.loc[after_split, _PRICE_VALUES] *= SPLIT_FACTOR
    frame.loc[after_split, "volume"] *= 1 / SPLIT_FACTOR
    copies = frame.loc[rows(d.duplicated)]
    frame = frame.loc[~(rows(d.missing_span) | rows(d.stale))]
    frame = pd.concat([frame, copies], ignore_index=True)
    return frame.sort_values(list(t.PRICE_KEY), kind="stable", ignore_index=True)


def _as_ns(dates: tuple[pd.Timestamp, ...]) -> DateArray:
    return pd.DatetimeIndex(dates).as_unit("ns").to_numpy()
