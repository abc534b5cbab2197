"""The point-in-time universe: who is a member on each session, decided from the past only.

**Reconstitution dates** are the first session of each month (``monthly``) or of each quarter
(``quarterly``) in the data's session calendar. Membership chosen on a date holds from that session
until the next reconstitution date.

**Membership on a date d** (session position ``p``) uses bars before d only:

* traded value per session is ``close x volume`` (raw close: the money that changed hands); a
  session without a bar counts 0 (the name did not trade);
* a name is *eligible* when it has a bar on the previous session ``p - 1`` with a close of at least
  ``min_price``, at least ``min_history_sessions`` bars up to and including ``p - 1``, and a positive
  ``statistic`` (median or mean) of traded value over the ``lookback_sessions`` sessions ending at
  ``p - 1``;
* the ``top_n`` eligible names by that statistic are the members (ties: ticker order), ranked 1..n.

Nothing dated d or later is read, so a name that delists next month is still eligible now and a
name's later history cannot change a past membership: the universe is survivorship-free by
construction (a test truncates and scrambles the future and compares).

**Leaving.** A member whose bars stop leaves from the session after its last bar
(:func:`member_mask` with ``last_bar``); at the next reconstitution it is not eligible (no bar on the
previous session). A suspended member (bars resume later) stays a member but has no price while
suspended, so whoever trades it must also check that it has a bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.tables import DATE, TICKER, UNIVERSE_MEMBERSHIP_COLUMNS
from training.errors import TrainingError
from training.signals.config import UniverseRule
from training.store import OfflineStore, UpsertResult

TABLE = "universe_membership"
_QUARTER_MONTHS = (1, 4, 7, 10)


def reconstitution_dates(sessions: pd.DatetimeIndex, reconstitute: str) -> pd.DatetimeIndex:
    """The first session of each month (``monthly``) or quarter (``quarterly``) among ``sessions``."""
    days = pd.DatetimeIndex(sessions).unique().sort_values()
    if len(days) == 0:
        return days
    month = days.year * 12 + days.month
    first = np.r_[True, month[1:] != month[:-1]]
    if reconstitute == "quarterly":
        quarter = days.year * 4 + (days.month - 1) // 3
        first = np.r_[True, quarter[1:] != quarter[:-1]]
    elif reconstitute != "monthly":
        raise TrainingError(f"unknown reconstitution schedule '{reconstitute}'; use monthly or quarterly")
    return days[first]


@dataclass(frozen=True, eq=False)
class _Grid:
    """Prices laid on a dense (session x ticker) grid, NaN where a ticker has no bar."""

    sessions: pd.DatetimeIndex
    tickers: pd.Index
    close: npt.NDArray[np.float64]
    traded: npt.NDArray[np.float64]


def _grid(prices: pd.DataFrame) -> _Grid:
    """Factorise dates and tickers once and scatter close and close x volume onto the grid."""
    missing = [c for c in (TICKER, DATE, "close", "volume") if c not in prices.columns]
    if missing:
        raise TrainingError(f"the liquidity universe needs price column(s) {missing}")
    day_codes, sessions = pd.factorize(pd.DatetimeIndex(prices[DATE]), sort=True)
    tick_codes, tickers = pd.factorize(prices[TICKER].astype(str), sort=True)
    close = np.full((len(sessions), len(tickers)), np.nan)
    traded = np.full_like(close, np.nan)
    raw = prices["close"].to_numpy(np.float64, na_value=np.nan)
    volume = prices["volume"].to_numpy(np.float64, na_value=np.nan)
    if len(volume) and np.isnan(volume).all():
        raise TrainingError("the liquidity universe ranks by close x volume, but the prices hold no volume")
    close[day_codes, tick_codes] = raw
    traded[day_codes, tick_codes] = raw * volume
    return _Grid(pd.DatetimeIndex(sessions), pd.Index(tickers), close, traded)


def _life_starts(grid: _Grid, breaks: pd.DataFrame | None) -> list[tuple[int, int]]:
    """(session position, ticker column) of each ``code_reused`` series break, in session order."""
    if breaks is None or breaks.empty:
        return []
    reused = breaks[breaks["reason"] == "code_reused"]
    rows = grid.sessions.get_indexer(pd.DatetimeIndex(reused[DATE]))
    cols = grid.tickers.get_indexer(pd.Index(reused[TICKER].astype(str)))
    keep = (rows >= 0) & (cols >= 0)
    return sorted(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))


def compute_membership(prices: pd.DataFrame, rule: UniverseRule, *, breaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The membership table of ``rule`` over the prices' sessions (module docstring: the rule).

    Args:
        prices: long rows with ``ticker``, ``date``, ``close`` (raw) and ``volume``.
        rule: the universe rule.
        breaks: stored series breaks; a ``code_reused`` break starts a new company under the same
            code, so its history (``min_history_sessions``) counts from the break, not from the
            previous company's bars.

    Returns:
        Rows in the :data:`~feature_repo.tables.UNIVERSE_MEMBERSHIP_COLUMNS` contract, sorted by
        date then rank; reconstitution dates where no name is eligible have no rows.
    """
    columns = list(UNIVERSE_MEMBERSHIP_COLUMNS)
    if prices.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    grid = _grid(prices)
    counts = _BarCounts(~np.isnan(grid.close), _life_starts(grid, breaks))
    days, tickers, ranks, values = [], [], [], []
    for day in reconstitution_dates(grid.sessions, rule.reconstitute):
        p = int(grid.sessions.searchsorted(day))
        if p == 0:
            continue  # nothing before the first session to decide on
        chosen, stat = _rank_on(grid, counts.has_bar, counts.before(p), p, rule)
        days.append(np.full(chosen.size, day.to_datetime64()))
        tickers.append(grid.tickers.to_numpy()[chosen])
        ranks.append(np.arange(1, chosen.size + 1, dtype=np.int64))
        values.append(stat)
    if not days:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame = pd.DataFrame(
        {
            "universe": rule.name,
            DATE: pd.DatetimeIndex(np.concatenate(days)).astype("datetime64[ns]"),
            TICKER: np.concatenate(tickers).astype(str).astype(object),
            "rank": np.concatenate(ranks),
            "traded_value": np.concatenate(values).astype(np.float64),
        }
    )
    return frame[columns]


class _BarCounts:
    """Bars each ticker has before a session, counted forward once; a reused code counts from its break."""

    def __init__(self, has_bar: npt.NDArray[np.bool_], starts: list[tuple[int, int]]) -> None:
        self.has_bar = has_bar
        self.starts = starts  # (session, column) where a new company starts, sorted
        self.bars = np.zeros(has_bar.shape[1], dtype=np.int64)
        self.counted = 0  # bars are counted over sessions [0, counted)
        self.next_start = 0

    def before(self, p: int) -> npt.NDArray[np.int64]:
        """Bars per ticker over sessions ``[0, p)`` (``p`` never decreases between calls)."""
        self.bars += self.has_bar[self.counted : p].sum(axis=0)
        self.counted = p
        while self.next_start < len(self.starts) and self.starts[self.next_start][0] < p:
            at, col = self.starts[self.next_start]
            self.bars[col] = int(self.has_bar[at:p, col].sum())  # a new company: its own bars only
            self.next_start += 1
        return self.bars


def _rank_on(
    grid: _Grid, has_bar: npt.NDArray[np.bool_], bars: npt.NDArray[np.int64], p: int, rule: UniverseRule
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The members decided before session ``p``: their columns in rank order and their statistics."""
    prev = p - 1
    with np.errstate(invalid="ignore"):
        candidates = np.flatnonzero(
            has_bar[prev] & (grid.close[prev] >= rule.min_price) & (bars >= rule.min_history_sessions)
        )
    # Only the names that pass the filters are summarised: a session without a bar traded 0.
    window = np.nan_to_num(grid.traded[max(0, p - rule.lookback_sessions) : p, candidates], nan=0.0)
    summarise = np.median if rule.statistic == "median" else np.mean
    stat = summarise(window, axis=0)
    positive = stat > 0
    candidates, stat = candidates[positive], stat[positive]
    # Highest statistic first; equal statistics in ticker order (the grid's columns are sorted).
    order = np.lexsort((candidates, -stat))[: rule.top_n]
    return candidates[order], stat[order]


def member_mask(
    membership: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    reconstitute: str,
    *,
    last_bar: pd.Series | None = None,
) -> pd.DataFrame:
    """Expand a membership table to a daily mask: sessions x tickers (ever members), True = member.

    Args:
        membership: one universe's rows of the membership table.
        sessions: the full session calendar the membership was computed on (reconstitution dates
            come from it, so pass the whole calendar and slice the mask afterwards).
        reconstitute: the rule's schedule.
        last_bar: each ticker's last bar; a member leaves from the session after it.

    Returns:
        A boolean frame indexed by ``sessions`` (ascending) with one column per ticker ever a member.
    """
    days = pd.DatetimeIndex(sessions).unique().sort_values()
    tickers = pd.Index(sorted(membership[TICKER].astype(str).unique())) if len(membership) else pd.Index([])
    mask = np.zeros((len(days), len(tickers)), dtype=bool)
    recon = reconstitution_dates(days, reconstitute)
    starts = days.get_indexer(recon)
    stops = np.r_[starts[1:], len(days)]
    if len(membership):
        by_date = membership.groupby(pd.DatetimeIndex(membership[DATE]))[TICKER]
        for day, start, stop in zip(recon, starts, stops, strict=True):
            if day in by_date.groups:
                cols = tickers.get_indexer(pd.Index(by_date.get_group(day).astype(str)))
                mask[start:stop, cols] = True
    frame = pd.DataFrame(mask, index=days, columns=tickers)
    if last_bar is not None and len(tickers):
        ends = pd.DatetimeIndex(last_bar.reindex(tickers).to_numpy())
        after = days.to_numpy()[:, None] > ends.to_numpy()[None, :]
        frame = frame & ~pd.DataFrame(after, index=days, columns=tickers)
    return frame


def restrict_to_members(frame: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
    """The rows of a long ``date, ticker, ...`` frame whose ticker is a member on its date."""
    if frame.empty:
        return frame
    rows = mask.index.get_indexer(pd.DatetimeIndex(frame[DATE]))
    cols = mask.columns.get_indexer(pd.Index(frame[TICKER].astype(str)))
    keep = (rows >= 0) & (cols >= 0)
    keep[keep] = mask.to_numpy(bool)[rows[keep], cols[keep]]
    return frame.loc[keep].reset_index(drop=True)


def check_member_counts(universe: Universe, *, start: object, end: object, need: int, what: str) -> None:
    """Refuse a universe with fewer than ``need`` members on a reconstitution date governing ``[start, end]``.

    Raises:
        TrainingError: naming the first such date, its member count and what needed more.
    """
    rule, membership = universe.rule, universe.membership
    recon = reconstitution_dates(pd.DatetimeIndex(universe.mask.index), rule.reconstitute)
    lo, hi = pd.Timestamp(str(start)), pd.Timestamp(str(end))
    # The date governing the window's first session, and every later one up to the window's end.
    first = max(int(recon.searchsorted(lo, side="right")) - 1, 0)
    governing = recon[first:][recon[first:] <= hi]
    counts = membership.groupby(pd.DatetimeIndex(membership[DATE])).size() if len(membership) else pd.Series()
    for day in governing:
        have = int(counts.get(day, 0))
        if have < need:
            raise TrainingError(
                f"universe '{rule.name}' has {have} member(s) on reconstitution date {day.date()}, "
                f"fewer than the {need} {what} needs: lower it, loosen the rule or move the segments"
            )


@dataclass(frozen=True, eq=False)
class Universe:
    """A rule's membership, as stored, and its daily mask over the prices' full session calendar."""

    rule: UniverseRule
    membership: pd.DataFrame
    mask: pd.DataFrame
    written: UpsertResult
    removed: int = 0

    def summary(self) -> str:
        counts = self.membership.groupby(DATE).size() if len(self.membership) else pd.Series(dtype=int)
        span = f"{counts.min()}..{counts.max()} members" if len(counts) else "no members"
        return (
            f"universe {self.rule.name}: {len(counts)} reconstitution(s), {span}, "
            f"{self.mask.shape[1]} ticker(s) ever members; stored {self.written.inserted} new, "
            f"{self.written.updated} changed, {self.removed} removed"
        )


def refresh_universe(
    offline_store: OfflineStore, prices: pd.DataFrame, rule: UniverseRule, *, breaks: pd.DataFrame | None = None
) -> Universe:
    """Recompute the rule's membership from ``prices`` (and series ``breaks``), store it, expand it daily.

    Deterministic: a re-run on the same prices stores the same rows and reports 0 new, 0 changed
    (and 0 removed: rows no longer derived are deleted by the replace and counted).
    """
    membership = compute_membership(prices, rule, breaks=breaks)
    before = len(offline_store.read(TABLE, "universe = ?", [rule.name]))
    written = offline_store.replace(TABLE, membership, "universe = ?", [rule.name])
    removed = before - written.updated - written.unchanged
    sessions = pd.DatetimeIndex(prices[DATE]).unique().sort_values()
    last_bar = prices.groupby(prices[TICKER].astype(str))[DATE].max()
    mask = member_mask(membership, sessions, rule.reconstitute, last_bar=last_bar)
    return Universe(rule, membership, mask, written, removed)
