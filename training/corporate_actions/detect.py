"""Detection of unadjusted corporate actions: persistent price jumps, each with a proposed action.

One heuristic serves both the health check (``unadjusted_splits`` in :mod:`training.health`, which
asks for moves within a tight tolerance of its configured ratios) and the corporate-actions report
(which asks for every large move): :func:`persistent_jumps` keeps the jumps whose neighbours confirm
them. What it cannot tell apart: a genuine collapse that stays down (proposed as a split or a capital
return: a person confirms or leaves it masked) and a jump at the very end of a series (no bars after
it to veto; ``bars_after`` in the evidence says so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.tables import DATE, TICKER
from training.corporate_actions.actions import ACTION_FILE_COLUMNS
from training.corporate_actions.config import DetectionSettings

__all__ = ["EVIDENCE_COLUMNS", "SUSPECT_COLUMNS", "SortedBars", "detect_suspects", "persistent_jumps", "sort_bars"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# The action columns first, so a person can copy a row's first five fields into their actions file.
EVIDENCE_COLUMNS: Final[tuple[str, ...]] = (
    "match",
    "day_ratio",
    "close_before",
    "close_after",
    "median_before",
    "median_after",
    "level_ratio",
    "bars_after",
    "volume_ratio",
)
SUSPECT_COLUMNS: Final[tuple[str, ...]] = (*ACTION_FILE_COLUMNS, *EVIDENCE_COLUMNS)


def persistent_jumps(code: IntArray, price: FloatArray, idx: IntArray, confirm_bars: int) -> BoolArray:
    """Which candidate jumps (bar ``idx`` vs bar ``idx - 1``) persist.

    ``code``/``price`` are bars sorted by (ticker, date); NaN prices never veto. A jump persists when
    the ``confirm_bars`` bars after it all stay on the new side of the geometric midpoint between the
    two prices, and as many bars before it stay on the old side: the first rejects bad ticks and
    crash-and-rebound days, the second the bar that *undoes* a bad tick. Bars of another ticker
    (series ends) do not veto.
    """
    if not len(idx):
        return np.zeros(0, dtype=bool)
    log_mid = 0.5 * (np.log(price[idx]) + np.log(price[idx - 1]))
    direction = np.sign(np.log(price[idx]) - np.log(price[idx - 1]))
    keep = np.ones(len(idx), dtype=bool)
    last = max(len(price) - 1, 0)
    with np.errstate(invalid="ignore"):
        for step in range(1, confirm_bars + 1):
            for raw, side in ((idx + step, 1.0), (idx - 1 - step, -1.0)):
                other = np.clip(raw, 0, last)
                same = (raw >= 0) & (raw <= last) & (code[other] == code[idx])
                crossed = side * direction * (np.log(price[other]) - log_mid) <= 0
                keep &= ~(same & crossed)
    return keep


@dataclass(frozen=True)
class SortedBars:
    """Bars with a positive price, sorted by (ticker, date); ``starts_segment`` marks first bars and breaks."""

    tickers: npt.NDArray[np.object_]
    code: IntArray
    dates: npt.NDArray[np.datetime64]
    price: FloatArray
    close: FloatArray
    volume: FloatArray
    starts_segment: BoolArray


def sort_bars(prices: pd.DataFrame, breaks: pd.DataFrame | None = None) -> SortedBars:
    """Sort ``prices`` (ticker, date, adj_close[, close]) for detection; one bar per key (the last given).

    ``breaks`` (ticker, date) rows start a new segment: no jump is measured across them.
    """
    price_all = prices["adj_close"].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.flatnonzero(price_all > 0)
    codes, tickers = pd.factorize(prices[TICKER].to_numpy()[usable], sort=True)
    days = pd.to_datetime(prices[DATE]).to_numpy(dtype="datetime64[D]")[usable]
    # One int64 key per (ticker, day); a stable sort keeps the input order within a key (the last one wins).
    day_number = days.astype(np.int64)
    span = int(day_number.max() - day_number.min()) + 1 if len(days) else 1
    order = np.argsort(
        codes.astype(np.int64) * span + (day_number - (day_number.min() if len(days) else 0)), kind="stable"
    )
    code, day = codes[order].astype(np.int64), days[order]
    last_of_key = np.ones(len(code), dtype=bool)
    last_of_key[:-1] = (code[1:] != code[:-1]) | (day[1:] != day[:-1])
    order, code, day = order[last_of_key], code[last_of_key], day[last_of_key]
    rows = usable[order]
    close = prices["close"].to_numpy(dtype=np.float64, na_value=np.nan)[rows] if "close" in prices else price_all[rows]
    starts = np.ones(len(code), dtype=bool)
    starts[1:] = code[1:] != code[:-1]
    if breaks is not None and len(breaks):
        at = pd.MultiIndex.from_arrays([np.asarray(tickers)[code], day.astype("datetime64[ns]")])
        wanted = pd.MultiIndex.from_arrays(
            [breaks[TICKER].to_numpy(), pd.to_datetime(breaks[DATE]).to_numpy(dtype="datetime64[ns]")]
        )
        starts |= at.isin(wanted)
    volume = (
        prices["volume"].to_numpy(dtype=np.float64, na_value=np.nan)[rows] if "volume" in prices else close * np.nan
    )
    # A zero volume is a day without trades (or an index), not a level to compare.
    volume = np.where(volume > 0, volume, np.nan)
    return SortedBars(np.asarray(tickers, dtype=object), code, day, price_all[rows], close, volume, starts)


def detect_suspects(
    prices: pd.DataFrame, settings: DetectionSettings | None = None, breaks: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Persistent jumps of ``adj_close``, each with a proposed action and its evidence.

    Args:
        prices: bars with ``ticker``, ``date``, ``adj_close`` (after the confirmed actions were applied,
            so those are never reported) and ``close`` (raw; a proposed cash amount is in its money).
        settings: detection thresholds.
        breaks: series breaks already known (a reused code): no jump is measured across them.

    Returns:
        One row per suspect in :data:`SUSPECT_COLUMNS`, sorted by ticker and ex-date. The first five
        columns form a valid actions-file row (see :mod:`training.corporate_actions.actions`):

        * a drop near 1/k (k = 2..max_ratio): ``split`` with ratio k (a k:1 split);
        * a rise near k: ``consolidation`` with ratio 1/k (a 1:k consolidation);
        * a drop matching no ratio: ``capital_return`` whose amount reproduces the day's move;
        * a rise matching no ratio: ``consolidation`` at the measured ratio; ``match`` is "none".
    """
    s = settings or DetectionSettings()
    bars = sort_bars(prices, breaks)
    ratio = np.full(len(bars.price), np.nan)
    ratio[1:] = bars.price[1:] / bars.price[:-1]
    ratio[bars.starts_segment] = np.nan
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(np.abs(np.log(ratio)) >= np.log(s.min_jump)).astype(np.int64)
    idx = idx[np.maximum(bars.price[idx], bars.price[idx - 1]) >= s.min_price]
    idx = idx[persistent_jumps(bars.code, bars.price, idx, s.confirm_bars)]
    return _proposals(bars, idx, ratio[idx], s)


def _proposals(bars: SortedBars, idx: IntArray, ratio: FloatArray, s: DetectionSettings) -> pd.DataFrame:
    grid = np.arange(2, s.max_ratio + 1, dtype=np.float64)
    size = np.abs(np.log(ratio))
    distance = np.abs(size[:, None] - np.log(grid)[None, :])
    nearest = grid[np.argmin(distance, axis=1)] if len(idx) else np.zeros(0)
    matched = (distance.min(axis=1) <= s.ratio_tolerance) if len(idx) else np.zeros(0, dtype=bool)
    drop = ratio < 1
    before = np.where(np.isnan(bars.close[idx - 1]), bars.price[idx - 1], bars.close[idx - 1])
    kind = np.where(drop, np.where(matched, "split", "capital_return"), "consolidation")
    proposed_ratio = np.where(drop, np.where(matched, nearest, np.nan), np.where(matched, 1 / nearest, 1 / ratio))
    amount = np.where(drop & ~matched, before * (1 - ratio), np.nan)
    label = np.where(
        matched,
        np.where(drop, [f"{k:g}:1" for k in nearest], [f"1:{k:g}" for k in nearest]),
        "none",
    )
    median_before, bars_after, median_after, volume_ratio = _levels(bars, idx, s.confirm_bars)
    frame = pd.DataFrame(
        {
            "ticker": bars.tickers[bars.code[idx]],
            "ex_date": pd.DatetimeIndex(bars.dates[idx]).strftime("%Y-%m-%d"),
            "kind": kind,
            "ratio": proposed_ratio,
            "amount": amount,
            "match": label,
            "day_ratio": ratio,
            "close_before": bars.price[idx - 1],
            "close_after": bars.price[idx],
            "median_before": median_before,
            "median_after": median_after,
            "level_ratio": median_after / median_before,
            "bars_after": bars_after,
            "volume_ratio": volume_ratio,
        },
        columns=list(SUSPECT_COLUMNS),
    )
    return frame.sort_values(["ticker", "ex_date"], kind="stable").reset_index(drop=True)


def _levels(bars: SortedBars, idx: IntArray, n: int) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    """Around each jump: the median price of the ``n`` bars before, the bars after it (within ``n``), the
    median price from the jump bar on, and the ratio of the median volumes after and before.

    The median after includes the jump bar itself, so it is the new level even at a series end. A real
    1:k consolidation divides the share count, so its volume ratio is near 1/k; a genuine crash trades more.
    """
    last = max(len(bars.price) - 1, 0)

    def window(values: FloatArray, offsets: IntArray) -> tuple[FloatArray, BoolArray]:
        raw = idx[:, None] + offsets[None, :]
        other = np.clip(raw, 0, last)
        same = (raw >= 0) & (raw <= last) & (bars.code[other] == bars.code[idx][:, None])
        return np.where(same, values[other], np.nan), same

    before_offsets = -np.arange(1, n + 1, dtype=np.int64)
    after_offsets = np.arange(0, n + 1, dtype=np.int64)
    before, _ = window(bars.price, before_offsets)
    after, seen = window(bars.price, after_offsets)
    if not len(idx):
        empty = np.zeros(0)
        return empty, np.zeros(0, dtype=np.int64), empty, empty
    with warnings.catch_warnings():
        # A window with no value at all (no volume, or a series end) gives an all-NaN median: NaN is right.
        warnings.simplefilter("ignore", RuntimeWarning)
        median_before = np.nanmedian(before, axis=1)
        median_after = np.nanmedian(after, axis=1)
        volume_ratio = np.nanmedian(window(bars.volume, after_offsets)[0], axis=1) / np.nanmedian(
            window(bars.volume, before_offsets)[0], axis=1
        )
    return median_before, seen[:, 1:].sum(axis=1).astype(np.int64), median_after, volume_ratio
