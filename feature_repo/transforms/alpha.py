"""The Alpha158-style price/volume library (:data:`feature_repo.schema.ALPHA_FEATURES`).

Qlib's ``Alpha158`` handler is the reference for the definitions (see
:mod:`feature_repo.transforms.alpha_rolling`); what differs, and why:

* Prices are adjusted, consistently: ``adj_close`` is the close, and the raw open, high and low
  are scaled by the bar's own ``adj_close / close``, so a split or consolidation never shows as a
  price move. High and low are widened to contain the open and the close (vendor bars where they
  do not would otherwise give negative shadows), and a bar without a usable high or low (close-only
  sources, trading-halt rows with O/H/L of 0) uses its close in the windows and has no kbar values.
* Qlib's VWAP0 needs a volume-weighted price no source here delivers: the typical price stands in.
* Every window is full (Qlib computes partial windows from a stock's first bar).
* Volume is the adjusted one the caller passes; traded value (for liquidity) is raw close x raw
  volume, taken from an optional ``traded_value`` column, else ``close x volume``.
* The price level is the raw close: an adjusted level would depend on actions after the date.

Vectorised like :mod:`feature_repo.transforms.technical` (one call per operator over the whole
sessions x tickers grid) and point-in-time safe the same way: windows and shifts look backwards, a
gap of at most ``max_gap_sessions`` is bridged with the ticker's own last close (a bridged session
traded nothing: volume 0), and each segment between series breaks is computed on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.schema import ALPHA_FEATURES, ALPHA_LIQUIDITY_WINDOWS, ALPHA_WINDOWS
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms import alpha_rolling as ops
from feature_repo.transforms.alpha_rolling import EPS, full, keep, safe_div
from feature_repo.transforms.panel import grid, restore_tickers, split_at_breaks, to_wide
from feature_repo.transforms.technical import MAX_GAP_SESSIONS

TRADED_VALUE = "traded_value"
# Amihud's ratio is |return| per currency unit traded: per million keeps it near 1 for small caps.
AMIHUD_SCALE = 1e6
# Tickers computed together by alpha_feature_chunks: about 0.5 GB of output per 250 tickers x 15 years.
TICKERS_PER_CHUNK = 250


def alpha_features(
    prices: pd.DataFrame,
    *,
    max_gap_sessions: int = MAX_GAP_SESSIONS,
    sessions: pd.Index | None = None,
    breaks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute every Alpha158-style feature for every (ticker, date) bar in ``prices``.

    Args:
        prices: rows with ``ticker``, ``date``, ``open``, ``high``, ``low``, ``close``,
            ``adj_close`` and ``volume`` (adjusted; O/H/L/volume may be NaN), and optionally
            ``traded_value`` (raw close x raw volume).
        max_gap_sessions: longest run of missing sessions bridged with the ticker's last close.
        sessions: the exchange's sessions, so a session missing for every ticker still counts in
            every window (``None``: the data's own dates).
        breaks: series breaks; no window spans one (:func:`~feature_repo.transforms.panel.split_at_breaks`).

    Returns:
        One row per input bar with an ``adj_close``, sorted by ticker and date: ``ticker``, ``date``
        and the features of :data:`feature_repo.schema.ALPHA_FEATURES` in that order.
    """
    segments = split_at_breaks(prices, breaks)
    return restore_tickers(_alpha(segments.frame, max_gap_sessions, sessions), segments)


def alpha_feature_chunks(
    prices: pd.DataFrame,
    *,
    tickers_per_chunk: int = TICKERS_PER_CHUNK,
    max_gap_sessions: int = MAX_GAP_SESSIONS,
    sessions: pd.Index | None = None,
    breaks: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`alpha_features` over groups of tickers, in ticker order: the same rows, bounded memory.

    Every feature is one ticker's own history (nothing cross-sectional), so a group computes
    exactly what the whole universe would; concatenated, the chunks equal :func:`alpha_features`.
    The sessions default to every date in ``prices``, the same calendar the whole frame would use.
    """
    if tickers_per_chunk < 1:
        raise ValueError(f"tickers_per_chunk must be at least 1, got {tickers_per_chunk}")
    calendar = grid(prices, sessions)[0] if len(prices) else sessions
    order = np.argsort(prices[TICKER].to_numpy(dtype=str), kind="stable")
    ordered = prices.iloc[order]
    tickers = ordered[TICKER].to_numpy(dtype=str)
    starts = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]])[::tickers_per_chunk]
    for begin, end in zip(starts, [*starts[1:], len(ordered)], strict=True):
        part = ordered.iloc[begin:end]
        yield alpha_features(part, max_gap_sessions=max_gap_sessions, sessions=calendar, breaks=breaks)


class _Bars:
    """The aligned wide inputs: adjusted OHLC, volume, traded value, raw close, presence."""

    def __init__(self, prices: pd.DataFrame, max_gap_sessions: int, sessions: pd.Index | None) -> None:
        dates, tickers = grid(prices, sessions)
        adj = to_wide(prices, "adj_close", dates, tickers)
        self.present = adj.notna()
        self.raw_close = _positive(to_wide(prices, "close", dates, tickers))
        # Carried close: the windows' close; bridged sessions keep the ticker's own last close.
        self.close = adj.ffill(limit=max_gap_sessions)
        factor = adj / self.raw_close
        o, h, lo = (_positive(to_wide(prices, c, dates, tickers)) * factor for c in ("open", "high", "low"))
        self.open = o
        self.high = cast(pd.DataFrame, np.fmax(np.fmax(h, o), adj)).where(h.notna())
        self.low = cast(pd.DataFrame, np.fmin(np.fmin(lo, o), adj)).where(lo.notna())
        traded = self.close.notna()
        self.volume = self._bridged(to_wide(prices, "volume", dates, tickers), traded)
        value = (
            to_wide(prices, TRADED_VALUE, dates, tickers)
            if TRADED_VALUE in prices.columns
            else self.raw_close * to_wide(prices, "volume", dates, tickers)
        )
        self.value = self._bridged(value, traded)

    def _bridged(self, wide: pd.DataFrame, traded: pd.DataFrame) -> pd.DataFrame:
        """Non-negative values on bars, 0 on bridged sessions, NaN outside the ticker's life."""
        return wide.where(wide >= 0).where(self.present, 0.0).where(traded)

    @property
    def window_high(self) -> pd.DataFrame:
        """High for windows: the close stands in where the bar has none (or on a bridged session)."""
        return self.high.fillna(self.close)

    @property
    def window_low(self) -> pd.DataFrame:
        return self.low.fillna(self.close)


def _positive(wide: pd.DataFrame) -> pd.DataFrame:
    """Prices of 0 (halt rows) or below are no prices."""
    return wide.where(wide > 0)


class _LongWriter:
    """Gathers wide features into one (rows x features) block, one feature at a time.

    Rows are the present cells in (ticker, date) order. Writing each feature as it is computed
    keeps one wide frame alive at a time instead of all 160, and the block becomes the frame's
    single float64 block without a copy.
    """

    def __init__(self, present: pd.DataFrame, names: list[str]) -> None:
        mask = present.to_numpy()
        ticker_idx, date_idx = np.nonzero(mask.T)  # ticker-major order
        self._flat = date_idx * mask.shape[1] + ticker_idx  # positions in the C-order (T x N) grid
        self._tickers = present.columns.to_numpy()[ticker_idx]
        self._dates = present.index.to_numpy()[date_idx]
        self._position = {name: i for i, name in enumerate(names)}
        self._names = names
        self._block: npt.NDArray[np.float64] = np.empty((len(names), len(self._flat)), dtype=np.float64)
        self._written: set[str] = set()

    def put(self, features: dict[str, pd.DataFrame]) -> None:
        for name, wide in features.items():
            values = np.ascontiguousarray(wide.to_numpy(dtype=np.float64)).ravel()
            row = self._block[self._position[name]]
            np.take(values, self._flat, out=row)
            row[np.isinf(row)] = np.nan
            self._written.add(name)

    def frame(self) -> pd.DataFrame:
        missing = [n for n in self._names if n not in self._written]
        if missing:
            raise RuntimeError(f"alpha features never computed: {missing}")
        out = pd.DataFrame(self._block.T, columns=self._names, copy=False)
        out.insert(0, DATE, self._dates)
        out.insert(0, TICKER, self._tickers)
        return out


def _alpha(prices: pd.DataFrame, max_gap_sessions: int, sessions: pd.Index | None) -> pd.DataFrame:
    bars = _Bars(prices, max_gap_sessions, sessions)
    writer = _LongWriter(bars.present, [s.name for s in ALPHA_FEATURES])
    writer.put(_kbar(bars))
    writer.put(_price_ratios(bars))
    for w in ALPHA_WINDOWS:
        for group in _rolling(bars, w):
            writer.put(group)
    writer.put(_liquidity(bars))
    return writer.frame()


def _kbar(b: _Bars) -> dict[str, pd.DataFrame]:
    c = keep(b.close, b.present)
    o, h, lo = b.open, b.high, b.low
    body_top, body_bottom = cast(pd.DataFrame, np.fmax(o, c)), cast(pd.DataFrame, np.fmin(o, c))
    spread = h - lo + EPS
    return {
        "kmid": (c - o) / o,
        "klen": (h - lo) / o,
        "kmid2": (c - o) / spread,
        "kup": (h - body_top) / o,
        "kup2": (h - body_top) / spread,
        "klow": (body_bottom - lo) / o,
        "klow2": (body_bottom - lo) / spread,
        "ksft": (2 * c - h - lo) / o,
        "ksft2": (2 * c - h - lo) / spread,
    }


def _price_ratios(b: _Bars) -> dict[str, pd.DataFrame]:
    c = b.close
    return {
        "open0": b.open / c,
        "high0": b.high / c,
        "low0": b.low / c,
        "typ0": (b.high + b.low + c) / (3.0 * c),
    }


def _rolling(b: _Bars, w: int) -> Iterable[dict[str, pd.DataFrame]]:
    """The 29 rolling operators over ``w`` sessions, in groups (each freed once written)."""
    c = b.close
    yield {
        f"roc{w}": c.shift(w) / c,
        f"ma{w}": full(c, w).mean() / c,
        f"std{w}": full(c, w).std() / c,
        f"qtlu{w}": full(c, w).quantile(0.8) / c,
        f"qtld{w}": full(c, w).quantile(0.2) / c,
        f"rank{w}": full(c, w).rank(),
    }
    yield {f"{k}{w}": v for k, v in ops.trend(c, w).items()}
    hi, lo = full(b.window_high, w).max(), full(b.window_low, w).min()
    imax = ops.position_of_extreme(b.window_high, w, highest=True)
    imin = ops.position_of_extreme(b.window_low, w, highest=False)
    yield {
        f"max{w}": hi / c,
        f"min{w}": lo / c,
        f"rsv{w}": (c - lo) / (hi - lo + EPS),
        f"imax{w}": imax / w,
        f"imin{w}": imin / w,
        f"imxd{w}": (imax - imin) / w,
    }
    yield _volume_price(b, w)
    yield {f"{k}{w}": v for k, v in ops.counts(c, w).items()}
    yield {f"{k}{w}": v for k, v in ops.ups_and_downs(c, w, "sum").items()}
    yield {f"{k}{w}": v for k, v in ops.ups_and_downs(b.volume, w, "vsum").items()}


def _volume_price(b: _Bars, w: int) -> dict[str, pd.DataFrame]:
    c, v = b.close, b.volume
    move = (c / c.shift(1) - 1.0).abs() * v
    return {
        f"corr{w}": ops.correlation(c, cast(pd.DataFrame, np.log(v + 1.0)), w),
        f"cord{w}": ops.correlation(c / c.shift(1), ops.log_volume_change(v), w),
        f"vma{w}": safe_div(full(v, w).mean(), v),
        f"vstd{w}": safe_div(full(v, w).std(), v),
        f"wvma{w}": full(move, w).std() / (full(move, w).mean() + EPS),
    }


def _liquidity(b: _Bars) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for w in ALPHA_LIQUIDITY_WINDOWS:
        out[f"log_med_value_{w}"] = cast(pd.DataFrame, np.log1p(full(b.value, w).median()))
    # Sessions that traded nothing have no price impact to measure: they leave the mean.
    impact = (b.close.pct_change(fill_method=None).abs() / keep(b.value, b.value.to_numpy() > 0)) * AMIHUD_SCALE
    for w in ALPHA_LIQUIDITY_WINDOWS:
        out[f"log_amihud_{w}"] = cast(pd.DataFrame, np.log1p(ops.Window(impact, w, min_periods=w // 2).mean()))
    out["log_price"] = cast(pd.DataFrame, np.log(b.raw_close))
    return out


def feature_frame_columns() -> list[str]:
    """Columns of the frame :func:`alpha_features` returns."""
    return [TICKER, DATE, *(s.name for s in ALPHA_FEATURES)]
