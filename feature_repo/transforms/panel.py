"""Long <-> wide panel helpers shared by the transforms.

Transforms work on wide frames (one row per session, one column per ticker), so every rolling,
exponential and cross-sectional operation is one vectorised call over all tickers at once, and a
fill can never cross from one ticker to another (each ticker is its own column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.tables import DATE, TICKER


def to_wide(long: pd.DataFrame, value: str, dates: pd.DatetimeIndex, tickers: pd.Index) -> pd.DataFrame:
    """Pivot one value column of a (ticker, date) frame onto a sessions x tickers grid."""
    wide = long.pivot(index=DATE, columns=TICKER, values=value)
    return wide.reindex(index=dates, columns=tickers)


def grid(long: pd.DataFrame, extra_sessions: pd.Index | None = None) -> tuple[pd.DatetimeIndex, pd.Index]:
    """The sorted session calendar and the sorted tickers.

    The calendar is the union of every ticker's dates and ``extra_sessions`` (the benchmark's
    sessions) within the span of the prices, so a ticker's missing bar is a missing session of
    the market, whatever else is in the universe.
    """
    dates = pd.DatetimeIndex(long[DATE].unique())
    if extra_sessions is not None and len(dates):
        extra = pd.DatetimeIndex(extra_sessions)
        dates = dates.union(extra[(extra >= dates.min()) & (extra <= dates.max())])
    dates = pd.DatetimeIndex(np.sort(dates.unique()), name=DATE)
    tickers = pd.Index(np.sort(long[TICKER].unique()), name=TICKER)
    return dates, tickers


def to_long(columns: dict[str, pd.DataFrame], present: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Stack wide frames back to (ticker, date) rows, keeping only the cells where ``present``.

    Rows come out sorted by ticker then date; columns in the order of ``columns``.
    """
    mask = present.to_numpy().T  # tickers x dates, so the flattened order is ticker-major
    ticker_idx, date_idx = np.nonzero(mask)
    out: dict[str, object] = {
        TICKER: present.columns.to_numpy()[ticker_idx],
        DATE: present.index.to_numpy()[date_idx],
    }
    for name, wide in columns.items():
        values = wide.to_numpy(dtype="float64").T[mask]
        out[name] = values.astype(dtypes[name]) if dtypes[name] != "float64" else values
    return pd.DataFrame(out)


def cross_sectional_rank(wide: pd.DataFrame) -> pd.DataFrame:
    """Percentile rank across the tickers present on each date (NaN stays NaN)."""
    return wide.rank(axis=1, pct=True)


def cross_sectional_zscore(wide: pd.DataFrame) -> pd.DataFrame:
    """Z-score across the tickers present on each date; NaN where fewer than two have a value."""
    mean = wide.mean(axis=1)
    std = wide.std(axis=1).replace(0.0, np.nan)
    return wide.sub(mean, axis=0).div(std, axis=0)


# A segment's column label is the ticker, then U+0001 and a zero-padded segment number: U+0001
# sorts before every character a ticker has, so a ticker's segments sort right after it, in date
# order, and before any other ticker. The grids (sorted columns) then emit rows already in
# (ticker, date) order, exactly as without breaks. Not NUL: pandas hashes object strings as C
# strings, so "AAA\x00..." and "AAA" would be one key.
_SEGMENT_MARK = "\x01"


@dataclass(frozen=True)
class Segments:
    """A long frame whose ``ticker`` column names segments of a ticker's history.

    Attributes:
        frame: the input rows with ``ticker`` relabelled: the first segment keeps the ticker, later
            ones are ``ticker + U+0001 + nnnn``. Segments of one ticker never overlap in time, so
            ``(segment, date)`` is as unique as ``(ticker, date)`` was.
        ends: per segment label that a break ends, the break's date (the first bar of the next
            segment): nothing of the segment may be carried to that session or later.
    """

    frame: pd.DataFrame
    ends: pd.Series

    @property
    def split(self) -> bool:
        """Whether any ticker has more than one segment (else ``frame`` is the input unchanged)."""
        return not self.ends.empty


def split_at_breaks(long: pd.DataFrame, breaks: pd.DataFrame | None, *, on: str = DATE) -> Segments:
    """Relabel each ticker's rows by the segment of its history they fall in.

    Args:
        long: rows with ``ticker`` and the date column ``on``.
        breaks: rows with ``ticker`` and ``date`` (:data:`feature_repo.tables.SERIES_BREAK_COLUMNS`;
            any reason): the bar at ``date`` starts a new segment. ``None`` or empty: no split.
        on: the column of ``long`` that dates each row (a bar's ``date``, a document's session).

    Returns:
        :class:`Segments`; compute on ``frame`` as if each segment were a ticker of its own, then
        :func:`restore_tickers`. A transform that looks back (rolling windows, returns) then never
        reaches before a break, and one that looks ahead masks with :func:`cut_at_ends`.
    """
    none = pd.Series(dtype="datetime64[ns]")
    if breaks is None or breaks.empty or long.empty:
        return Segments(long, none)
    cuts = breaks[[TICKER, DATE]].drop_duplicates().sort_values([TICKER, DATE], kind="stable")
    cuts = cuts[cuts[TICKER].isin(long[TICKER].unique())]
    if cuts.empty:
        return Segments(long, none)
    cuts = cuts.assign(_k=cuts.groupby(TICKER).cumcount() + 1)
    affected = long[TICKER].isin(cuts[TICKER].unique()).to_numpy()
    rows = long.loc[affected, [TICKER, on]].assign(_row=np.flatnonzero(affected))
    rows[on] = pd.to_datetime(rows[on]).astype("datetime64[ns]")
    found = pd.merge_asof(
        rows.sort_values(on, kind="stable"),
        cuts.rename(columns={DATE: on}).astype({on: "datetime64[ns]"}).sort_values(on, kind="stable"),
        on=on,
        by=TICKER,
        direction="backward",  # a break at d covers the bar at d: it starts the new segment
    )
    k = found["_k"].fillna(0).astype("int64").to_numpy()
    labels = long[TICKER].to_numpy(dtype=object, copy=True)
    later = k > 0
    labels[found["_row"].to_numpy()[later]] = _label(found[TICKER].to_numpy()[later], k[later])
    ends = cuts.assign(_label=_label(cuts[TICKER].to_numpy(), (cuts["_k"] - 1).to_numpy()))
    return Segments(
        long.assign(**{TICKER: labels}),
        pd.Series(ends[DATE].to_numpy(dtype="datetime64[ns]"), index=pd.Index(ends["_label"], name=TICKER)),
    )


def _label(tickers: npt.NDArray[np.object_], k: npt.NDArray[np.integer]) -> npt.NDArray[np.object_]:
    """Segment labels: segment 0 is the ticker itself, segment k > 0 is ``ticker U+0001 kkkk``."""
    out = np.asarray(tickers, dtype=object).copy()
    for i in np.flatnonzero(k > 0):
        out[i] = f"{tickers[i]}{_SEGMENT_MARK}{int(k[i]):04d}"
    return out


def restore_tickers(out: pd.DataFrame, segments: Segments) -> pd.DataFrame:
    """Map segment labels in ``out[ticker]`` back to tickers (rows keep their order)."""
    if not segments.split or out.empty:
        return out
    codes, uniques = pd.factorize(out[TICKER])
    tickers = np.array([str(u).split(_SEGMENT_MARK, 1)[0] for u in uniques], dtype=object)
    return out.assign(**{TICKER: tickers[codes]})


def cut_at_ends(wide: pd.DataFrame, segments: Segments) -> pd.DataFrame:
    """NaN in each segment's column from its ending break's session on.

    For transforms that carry a segment's values forward (a bridged end price): the last price
    before a break must not stand in for a session at or after it.
    """
    if not segments.split:
        return wide
    ends = segments.ends.reindex(wide.columns).to_numpy(dtype="datetime64[ns]")
    ends = np.where(np.isnat(ends), np.datetime64("2262-04-11", "ns"), ends)
    before = wide.index.to_numpy(dtype="datetime64[ns]")[:, None] < ends[None, :]
    return wide.where(before)


def link_across_breaks(close: pd.DataFrame, breaks: pd.DataFrame | None) -> pd.DataFrame:
    """Rescale each ticker's closes before each of its breaks so the return across the break is 0.

    For consumers that need one price column per ticker (backtests, allocation panels): a position
    held over a break earns nothing from the last bar before it to the break's bar, instead of a
    10x consolidation or the jump from one company's price to another's. Every other return is
    unchanged, since both of its closes are scaled alike.

    Args:
        close: wide closes (sessions x tickers, ascending sessions).
        breaks: rows with ``ticker`` and ``date``; breaks of other tickers, or at a ticker's first
            bar, change nothing.
    """
    if breaks is None or breaks.empty or close.empty:
        return close
    values = close.to_numpy(dtype="float64", copy=True)
    index = pd.DatetimeIndex(close.index)
    column_of = {ticker: i for i, ticker in enumerate(close.columns)}
    for ticker, date in breaks[[TICKER, DATE]].drop_duplicates().itertuples(index=False):
        if ticker not in column_of:
            continue
        column = values[:, column_of[ticker]]  # a view: scaling it scales ``values``
        at = int(index.searchsorted(pd.Timestamp(date)))
        after = np.flatnonzero(~np.isnan(column[at:]))
        before = np.flatnonzero(~np.isnan(column[:at]))
        if len(after) and len(before):
            column[:at] *= column[at + after[0]] / column[before[-1]]
    return pd.DataFrame(values, index=close.index, columns=close.columns)
