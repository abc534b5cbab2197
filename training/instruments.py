"""Reused codes: one ticker's bars split into listing lives, each its own instrument.

ASX hands the code of a delisted company to a new listing, sometimes years later, so a vendor's
per-day files show one code with two unrelated price histories and a long hole between them. A
code absent for more than ``gap_sessions`` sessions that trades again starts a new instrument:
the ``instruments`` table gets one row per life, and each later life starts with a ``code_reused``
row in ``series_breaks``, so no return, feature window or label spans the two companies.

Both are derived from the stored prices (never from one batch, so an incremental load sees the
whole history) and written with :meth:`training.store.OfflineStore.replace`: a re-run that derives
the same lives reports ``0 new, 0 changed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.tables import DATE, INSTRUMENT_COLUMNS, SERIES_BREAK_COLUMNS, TICKER
from training.calendar import run_sessions
from training.store import OfflineStore, UpsertResult

__all__ = ["REASON", "CodeLives", "code_lives", "refresh_code_lives", "write_code_lives"]

REASON: Final = "code_reused"


@dataclass(frozen=True)
class CodeLives:
    """The derived rows: ``instruments`` (one per life) and the ``code_reused`` series breaks."""

    instruments: pd.DataFrame
    breaks: pd.DataFrame

    @property
    def reused_tickers(self) -> list[str]:
        """Tickers with more than one life, sorted."""
        return sorted(self.breaks[TICKER].unique())


def code_lives(prices: pd.DataFrame, *, gap_sessions: int, sessions: pd.DatetimeIndex | None = None) -> CodeLives:
    """Split every ticker's bars into lives at holes longer than ``gap_sessions`` sessions.

    Args:
        prices: rows with at least ``ticker`` and ``date`` (any order, duplicates allowed). Every
            row counts as a bar: a halted day with a close is still the same company quoting.
        gap_sessions: the most sessions a code may be absent and stay the same instrument.
        sessions: the exchange's sessions; ``None`` counts the data's own dates. Dates of the data
            that are not sessions count as sessions too, so an off-calendar bar never shortens a hole.

    Returns:
        :class:`CodeLives`, both frames sorted by ticker then date.
    """
    if gap_sessions < 1:
        raise ValueError(f"gap_sessions must be at least 1, got {gap_sessions}")
    # One int64 key per (ticker, day), sorted and de-duplicated by hand: on millions of rows,
    # pandas on strings and timestamps, and numpy 2's hash-based np.unique, take tens of seconds.
    codes, tickers = pd.factorize(prices[TICKER], sort=True)
    ordinal = pd.to_datetime(prices[DATE]).to_numpy(dtype="datetime64[D]").astype(np.int64)
    epoch = int(ordinal.min()) if len(ordinal) else 0
    span = int(ordinal.max()) - epoch + 1 if len(ordinal) else 1
    keys = np.sort(codes.astype(np.int64) * span + (ordinal - epoch))
    keys = keys[np.append(True, keys[1:] != keys[:-1])] if len(keys) else keys  # sorted by ticker, then date
    code = keys // span
    day = (keys % span + epoch).astype("datetime64[D]").astype("datetime64[ns]")
    traded = (np.flatnonzero(np.bincount(keys % span, minlength=span)) + epoch).astype("datetime64[D]")
    days = traded.astype("datetime64[ns]")
    calendar = days if sessions is None else np.union1d(days, sessions.to_numpy("datetime64[ns]"))
    position = np.searchsorted(calendar, day)
    same = np.zeros(len(code), dtype=bool)
    same[1:] = code[1:] == code[:-1]
    absent = np.zeros(len(code), dtype=np.int64)
    absent[1:] = position[1:] - position[:-1] - 1
    starts = ~same | (absent > gap_sessions)
    first = np.flatnonzero(starts)
    last = np.append(first[1:] - 1, len(code) - 1) if len(first) else first
    names = np.asarray(tickers, dtype=object)[code[first]]
    first_day = pd.DatetimeIndex(day[first])
    ids = [f"{name}:{d:%Y%m%d}" for name, d in zip(names, first_day, strict=True)]
    instruments = pd.DataFrame(
        {
            "instrument_id": ids,
            TICKER: names,
            "first_date": first_day,
            "last_date": pd.DatetimeIndex(day[last]),
        },
        columns=list(INSTRUMENT_COLUMNS),
    )
    reused = np.flatnonzero(same[first])  # a life that starts where the same code had bars before
    at = first[reused]
    details = [
        f"code absent {absent[i]} sessions after {pd.Timestamp(day[i - 1]):%Y-%m-%d}; new instrument {ids[j]}"
        for i, j in zip(at, reused, strict=True)
    ]
    breaks = pd.DataFrame(
        {TICKER: names[reused], DATE: pd.DatetimeIndex(day[at]), "reason": REASON, "detail": details},
        columns=list(SERIES_BREAK_COLUMNS),
    )
    return CodeLives(instruments.reset_index(drop=True), breaks.reset_index(drop=True))


def write_code_lives(store: OfflineStore, lives: CodeLives) -> tuple[UpsertResult, UpsertResult]:
    """Replace the ``instruments`` table and the ``code_reused`` breaks (other reasons are left alone)."""
    instruments = store.replace("instruments", lives.instruments)
    breaks = store.replace("series_breaks", lives.breaks, "reason = ?", [REASON])
    return instruments, breaks


def refresh_code_lives(store: OfflineStore, *, exchange: str | None, gap_sessions: int) -> tuple[CodeLives, str]:
    """Derive the lives from every stored price bar, write them, and say what changed in one line."""
    keys = store.read("prices", columns=[TICKER, DATE])
    lives = code_lives(keys, gap_sessions=gap_sessions, sessions=run_sessions(exchange, keys[DATE]))
    instruments, breaks = write_code_lives(store, lives)
    line = (
        f"{'instruments':<17} {len(lives.instruments):>9,} rows: {instruments.inserted:,} new, "
        f"{instruments.updated:,} changed; "
        f"{len(lives.breaks):,} reused code(s) (absent > {gap_sessions} sessions): "
        f"{breaks.inserted:,} new, {breaks.updated:,} changed"
    )
    return lives, line
