"""Data health checks on daily price frames in the :data:`feature_repo.tables.PRICE_COLUMNS` contract.

:func:`run_health_checks` runs eight checks over a whole price frame and returns a
:class:`HealthReport`; :meth:`HealthReport.raise_if_failed` turns a failing report into
:class:`~training.errors.HealthCheckFailed`. Each check counts what it finds (tickers, rows or
keys) and fails only when that count crosses a limit in :class:`HealthThresholds`, because real
data always has some blemishes and a pipeline that fails on the first one gets its checks
switched off.

The checks, in report order:

* ``missing_sessions``: tickers missing too many sessions between their first and last bar.
  Without an exchange calendar the market calendar is the union of every ticker's dates, so a
  frame that mixes exchanges with different holidays (ASX and NYSE) will show each ticker missing
  the other exchange's sessions; check such frames one exchange at a time.
* ``stale_tickers``: tickers whose last bar is well before the latest market date.
* ``non_positive_prices``: rows with ``open``/``high``/``low``/``close``/``adj_close`` <= 0.
  NaN is missing, not non-positive (close-only sources have NaN open/high/low).
* ``outlier_returns``: rows whose daily ``adj_close`` return is beyond a bound, except the rows
  already reported as likely unadjusted splits, so that one defect is counted once.
* ``unadjusted_splits``: rows where ``adj_close`` jumps by a ratio typical of a split or
  consolidation and the jump is not undone nearby. See :func:`_split_suspects` for the heuristic.
* ``duplicate_rows``: ``(ticker, date)`` keys present more than once. The offline store
  de-duplicates, so this is only meaningful on input frames; the other checks keep the last row
  of each duplicated key.
* ``missing_market_sessions``: sessions the exchange was open (``sessions``, from the configured
  exchange calendar) on which the data holds no bar at all, e.g. a week the vendor never
  delivered. Named as runs of consecutive sessions. Without ``sessions`` it finds nothing.
* ``off_calendar_dates``: dates with bars on which the exchange was closed (needs ``sessions``).
  Vendors fill some holidays with a copy of the previous session's file: phantom bars with a zero
  return and the same volume, which would count as a session in every window. Each example says
  how many of that day's bars repeat the ticker's previous close.
* ``reused_codes``: tickers absent for more than ``reuse_gap_sessions`` sessions that trade again:
  the ingest stage makes each life its own instrument (``training.instruments``). Listed, never
  failed: the split is the handling.

With ``sessions`` given, the market calendar is the exchange's sessions (plus any data date that
is not one), so ``missing_sessions`` counts a ticker's holes against the real calendar, within each
listing life: a hole longer than ``reuse_gap_sessions`` separates two lives and is not counted.

Rows whose ``adj_close`` is NaN are not bars: they count as missing sessions and are skipped by
the return-based checks. Everything is vectorised over numpy arrays sorted by (ticker, date), so a
frame of 2,400 tickers x 756 sessions takes about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator

from feature_repo.tables import DATE, TICKER
from training.corporate_actions.detect import persistent_jumps
from training.errors import HealthCheckFailed, TrainingError

__all__ = ["CheckResult", "HealthReport", "HealthThresholds", "run_health_checks"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PRICE_FIELDS: Final[tuple[str, ...]] = ("open", "high", "low", "close", "adj_close")
CHECK_NAMES: Final[tuple[str, ...]] = (
    "missing_sessions",
    "stale_tickers",
    "non_positive_prices",
    "outlier_returns",
    "unadjusted_splits",
    "duplicate_rows",
    "missing_market_sessions",
    "off_calendar_dates",
    "reused_codes",
)
# Forward splits (price / k), US reverse splits and ASX-style consolidations (price x k; small
# caps consolidate 1-for-20 up to 1-for-100, and a persistent jump that size is never genuine).
# 2/3 and 3/2 (3-for-2 splits) are left out by default: a -33% or +50% day is too common a
# genuine move to call a split without more evidence; add them to split_ratios if wanted.
DEFAULT_SPLIT_RATIOS: Final[tuple[float, ...]] = (0.1, 0.2, 0.25, 1 / 3, 0.5, 2, 3, 4, 5, 10, 20, 25, 50, 100)


class HealthThresholds(BaseModel):
    """Thresholds that decide what each check flags and when a flagged count fails the run.

    Share limits (``*_ticker_share``) are fractions of the tickers in the frame; count limits
    (``max_*``) are absolute numbers of rows or keys.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_missing_session_share: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="A ticker is flagged when more than this share of the market sessions between "
        "its first and last bar has no bar. 2% is ~5 sessions a year: a halt or two, not a hole.",
    )
    stale_after_sessions: int = Field(
        default=5,
        ge=1,
        description="A ticker is stale when its last bar is at least this many market sessions before "
        "the latest market date (a trading week: longer than a normal halt).",
    )
    outlier_abs_return: float = Field(
        default=0.35,
        gt=0.0,
        description="A daily adj_close return with absolute value above this is an outlier. Large caps "
        "rarely move 35% in a day; most such rows are bad ticks or unadjusted corporate actions.",
    )
    split_ratios: tuple[PositiveFloat, ...] = Field(
        default=DEFAULT_SPLIT_RATIOS,
        min_length=1,
        description="Close-to-close price ratios typical of splits (<1) and consolidations (>1).",
    )
    split_tolerance: float = Field(
        default=0.02,
        ge=0.0,
        lt=0.5,
        description="Relative tolerance around each split ratio: |ratio / k - 1| <= tolerance. The day's "
        "own move blurs the ratio, so a tight tolerance misses some splits; those still show up as "
        "outlier returns, because every default split ratio is a move beyond 35%.",
    )
    split_confirm_bars: int = Field(
        default=5,
        ge=1,
        description="Bars before and after a suspected split that must stay on their own side of the "
        "jump; a move undone within this window is a bad tick or a rebound, not a split.",
    )
    reuse_gap_sessions: int = Field(
        default=126,
        ge=1,
        description="A code absent for more than this many sessions that trades again is a new instrument "
        "(ASX reassigns delisted codes). 126 sessions is half a year: longer than almost every trading "
        "halt, and splitting a long-suspended company by mistake only restarts its feature windows, "
        "while missing a reuse would join two companies' prices. The ingest stage splits lives with it.",
    )
    max_missing_market_sessions: int = Field(
        default=0,
        ge=0,
        description="Fail when more exchange sessions than this have no row at all (needs calendar.exchange): "
        "a session missing for every ticker is a file the vendor never delivered, not a market event.",
    )
    max_off_calendar_dates: int = Field(
        default=0,
        ge=0,
        description="Fail when more dates than this have bars although the exchange was closed (needs "
        "calendar.exchange): such a day is a holiday the data fills, usually with a copy of the day before.",
    )
    max_missing_ticker_share: float = Field(
        default=0.10, ge=0.0, le=1.0, description="Fail when more than this share of tickers miss sessions."
    )
    max_stale_ticker_share: float = Field(
        default=0.10,
        ge=0.0,
        le=1.0,
        description="Fail when more than this share of tickers is stale (delistings in a survivorship-"
        "free universe make a few stale tickers normal).",
    )
    max_non_positive_rows: int = Field(default=0, ge=0, description="Fail on more non-positive price rows.")
    max_outlier_rows: int = Field(
        default=50,
        ge=0,
        description="Fail on more outlier rows. Genuine moves beyond 35% happen (crashes, biotech "
        "readouts): 50 tolerates a few a year across a large universe.",
    )
    max_split_suspects: int = Field(default=0, ge=0, description="Fail on more likely unadjusted splits.")
    max_duplicate_keys: int = Field(default=0, ge=0, description="Fail on more duplicated (ticker, date) keys.")
    max_examples: int = Field(default=5, ge=0, description="Examples kept per check for the report.")

    @field_validator("split_ratios")
    @classmethod
    def _no_unit_ratio(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        # A ratio of 1 would flag every flat day as a split.
        if any(abs(k - 1.0) < 0.05 for k in ratios):
            raise ValueError("split_ratios must not contain ratios near 1")
        return ratios


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's name (one of :data:`CHECK_NAMES`).
        affected: how many tickers, rows or keys (see ``unit``) the check flagged.
        limit: the most tolerated; an ``int`` is a count, a ``float`` a share of ``total``.
        failed: whether ``affected`` is over ``limit``.
        examples: up to ``max_examples`` concrete findings, worst first.
        total: how many tickers, rows or keys the check looked at.
        unit: what ``affected`` and ``total`` count: ``"tickers"``, ``"rows"`` or ``"keys"``.
    """

    name: str
    affected: int
    limit: float | int
    failed: bool
    examples: list[str]
    total: int = 0
    unit: str = "rows"

    def limit_text(self) -> str:
        """The limit as a person reads it: ``"50"`` or ``"10% (2)"`` for a share of ``total``."""
        if isinstance(self.limit, float):
            return f"{self.limit * 100:g}% ({int(self.limit * self.total + 1e-9)})"
        return str(self.limit)


@dataclass(frozen=True)
class HealthReport:
    """Every check's result on one price frame.

    Attributes:
        checks: one result per check, in :data:`CHECK_NAMES` order.
        n_rows: rows in the input frame.
        n_tickers: distinct tickers in the input frame.
        n_sessions: sessions in the market calendar (dates with at least one bar).
    """

    checks: list[CheckResult]
    n_rows: int
    n_tickers: int
    n_sessions: int

    @property
    def failed(self) -> bool:
        """Whether any check failed."""
        return any(c.failed for c in self.checks)

    def check(self, name: str) -> CheckResult:
        """The result of the check called ``name``; ``KeyError`` if there is none."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_table(self) -> str:
        """A fixed-width plain-text table, one line per check plus continuation lines per example."""
        header = ("check", "affected", "limit", "status", "examples")
        rows = [
            (
                c.name,
                f"{c.affected}/{c.total} {c.unit}",
                c.limit_text(),
                "FAIL" if c.failed else "OK",
                c.examples or ["-"],
            )
            for c in self.checks
        ]
        widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(4)]
        indent = sum(widths) + 2 * len(widths)

        def line(cells: Sequence[str]) -> str:
            return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=False))

        out = [line(header[:4]) + "  " + header[4], line(["-" * w for w in widths]) + "  " + "-" * 8]
        for *cells, examples in rows:
            out.append(line(cells) + "  " + examples[0])
            out.extend(" " * indent + example for example in examples[1:])
        n_failed = sum(c.failed for c in self.checks)
        verdict = f"FAIL ({n_failed} of {len(self.checks)} checks failed)" if n_failed else "OK"
        out.append(f"{self.n_rows} rows, {self.n_tickers} tickers, {self.n_sessions} sessions: {verdict}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for logs and MLflow artefacts)."""
        return {
            "failed": self.failed,
            "n_rows": self.n_rows,
            "n_tickers": self.n_tickers,
            "n_sessions": self.n_sessions,
            "checks": [
                {
                    "name": c.name,
                    "affected": c.affected,
                    "total": c.total,
                    "unit": c.unit,
                    "limit": c.limit,
                    "failed": c.failed,
                    "examples": list(c.examples),
                }
                for c in self.checks
            ],
        }

    def raise_if_failed(self) -> None:
        """Raise :class:`HealthCheckFailed` with the table in its message if any check failed."""
        if self.failed:
            failed = ", ".join(c.name for c in self.checks if c.failed)
            raise HealthCheckFailed(f"data health checks failed: {failed}\n{self.to_table()}")


@dataclass(frozen=True)
class _Bars:
    """Bars sorted by (ticker, date), one per key, without rows whose adj_close is NaN.

    ``code`` indexes ``tickers``; ``session`` is each bar's position in ``calendar``; ``absent``
    holds the exchange's sessions on which no ticker has a bar, ``closed`` the dates with bars
    on which the exchange was closed;
    ``starts``/``ends`` index each ticker's first and last bar; ``prev_ok`` is True where the
    previous bar belongs to the same ticker.
    """

    tickers: npt.NDArray[np.object_]
    code: IntArray
    session: IntArray
    calendar: npt.NDArray[np.datetime64]
    absent: npt.NDArray[np.datetime64]
    closed: npt.NDArray[np.datetime64]
    adj: FloatArray
    prev_ok: BoolArray
    broken: BoolArray
    starts: IntArray
    ends: IntArray


def run_health_checks(
    prices: pd.DataFrame,
    thresholds: HealthThresholds | None = None,
    sessions: pd.DatetimeIndex | None = None,
    breaks: pd.DataFrame | None = None,
    tick_noise_below: float = 0.0,
) -> HealthReport:
    """Run every health check on a daily price frame.

    Args:
        prices: bars in the :data:`feature_repo.tables.PRICE_COLUMNS` contract. ``ticker``,
            ``date`` and ``adj_close`` are required; absent ``open``/``high``/``low``/``close``
            columns are treated as all-NaN. Rows may come in any order.
        thresholds: what to flag and when to fail; the defaults of :class:`HealthThresholds`
            when ``None``.
        sessions: the exchange's sessions (:func:`training.calendar.exchange_sessions`); ``None``
            takes the data's own dates as the calendar.
        breaks: series breaks (``ticker``, ``date``): the return into a break's bar is not a return,
            so a masked corporate action or a reused code is neither an outlier nor a split.
        tick_noise_below: a jump between two adjusted closes both below this is one price tick of a
            sub-cent share (0.001 -> 0.002 is x2), not a split: the corporate-actions detection's own
            ``min_price``, so the two agree on what they call a split (still an outlier return).

    Returns:
        The report; it does not raise on failed checks (call ``raise_if_failed`` for that).

    Raises:
        TrainingError: ``prices`` lacks ``ticker``, ``date`` or ``adj_close``, or has rows where
            ``ticker`` or ``date`` is missing.
    """
    t = thresholds or HealthThresholds()
    missing = [c for c in (TICKER, DATE, "adj_close") if c not in prices.columns]
    if missing:
        raise TrainingError(f"price frame lacks column(s) {missing}; see feature_repo.tables.PRICE_COLUMNS")
    if prices[TICKER].isna().any() or prices[DATE].isna().any():
        raise TrainingError("price frame has rows without a ticker or a date")
    bars, duplicates = _index(prices, t, sessions, breaks)
    splits = _split_suspects(bars, t, tick_noise_below)
    checks = [
        _missing_sessions(bars, t),
        _stale_tickers(bars, t),
        _non_positive(prices, t),
        _outliers(bars, splits, t),
        _splits_result(bars, splits, t),
        duplicates,
        _missing_market_sessions(bars, t),
        _off_calendar_dates(bars, t),
        _reused_codes(bars, t),
    ]
    return HealthReport(checks=checks, n_rows=len(prices), n_tickers=len(bars.tickers), n_sessions=len(bars.calendar))


def _index(
    prices: pd.DataFrame,
    t: HealthThresholds,
    sessions: pd.DatetimeIndex | None = None,
    breaks: pd.DataFrame | None = None,
) -> tuple[_Bars, CheckResult]:
    """Sort the frame into :class:`_Bars` and report duplicated keys on the way.

    Works on numpy arrays rather than the frame: copying 1.8M rows of object columns is what
    would make this slow.
    """
    codes, tickers = pd.factorize(prices[TICKER], sort=True)
    dates = pd.to_datetime(prices[DATE]).to_numpy(dtype="datetime64[ns]")
    all_days, day = np.unique(dates, return_inverse=True)
    # One int64 key per (ticker, date); a stable sort keeps input order within a key, so
    # "keep the last duplicate" means the last one given.
    order = np.argsort(codes.astype(np.int64) * len(all_days) + day, kind="stable")
    code, day = codes[order].astype(np.int64), day[order].astype(np.int64)
    same_as_next = np.zeros(len(code), dtype=bool)
    same_as_next[:-1] = (code[1:] == code[:-1]) & (day[1:] == day[:-1])
    duplicates = _duplicates(code, day, same_as_next, tickers=tickers, days=all_days, t=t)
    adj = prices["adj_close"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    keep = ~same_as_next & ~np.isnan(adj)
    code, day, adj = code[keep], day[keep], adj[keep]
    # The calendar is the dates with at least one real bar, with the exchange's sessions within
    # their span when given; renumber sessions onto it.
    used = np.zeros(len(all_days), dtype=bool)
    used[day] = True
    traded = all_days[used]
    calendar, absent, closed = traded, traded[:0], traded[:0]
    if sessions is not None and len(traded):
        open_days = pd.DatetimeIndex(sessions).to_numpy(dtype="datetime64[ns]")
        open_days = open_days[(open_days >= traded[0]) & (open_days <= traded[-1])]
        calendar = np.union1d(traded, open_days)
        absent = np.setdiff1d(open_days, traded)
        closed = np.setdiff1d(traded, open_days)
    prev_ok = np.zeros(len(code), dtype=bool)
    prev_ok[1:] = code[1:] == code[:-1]
    starts = np.flatnonzero(~prev_ok).astype(np.int64)
    return _Bars(
        tickers=np.asarray(tickers, dtype=object),
        code=code,
        session=np.searchsorted(calendar, all_days[day]).astype(np.int64),
        calendar=calendar,
        absent=absent,
        closed=closed,
        # Non-positive prices are reported by their own check; as returns they would only add noise.
        adj=np.where(adj > 0, adj, np.nan),
        prev_ok=prev_ok,
        broken=_at_breaks(np.asarray(tickers, dtype=object)[code], all_days[day], breaks),
        starts=starts,
        ends=np.append(starts[1:] - 1, len(code) - 1).astype(np.int64) if len(code) else starts,
    ), duplicates


def _at_breaks(
    tickers: npt.NDArray[np.object_], days: npt.NDArray[np.datetime64], breaks: pd.DataFrame | None
) -> BoolArray:
    """Which bars sit on a series break."""
    if breaks is None or breaks.empty:
        return np.zeros(len(tickers), dtype=bool)
    wanted = pd.MultiIndex.from_arrays([breaks[TICKER].to_numpy(), pd.to_datetime(breaks[DATE]).to_numpy()])
    return np.asarray(pd.MultiIndex.from_arrays([tickers, days]).isin(wanted), dtype=bool)


def _duplicates(
    code: IntArray,
    day: IntArray,
    same_as_next: BoolArray,
    *,
    tickers: pd.Index,
    days: npt.NDArray[np.datetime64],
    t: HealthThresholds,
) -> CheckResult:
    """Count (ticker, date) keys given more than once, from the sorted key arrays."""
    same_as_prev = np.zeros_like(same_as_next)
    same_as_prev[1:] = same_as_next[:-1]
    first = np.flatnonzero(same_as_next & ~same_as_prev)
    # Each run of equal keys ends at the first row whose next row differs.
    run_ends = np.flatnonzero(~same_as_next)
    counts = run_ends[np.searchsorted(run_ends, first)] - first + 1
    worst = np.argsort(-counts, kind="stable")[: t.max_examples]
    examples = [f"{tickers[code[first[i]]]} {_day(days[day[first[i]]])} appears {counts[i]} times" for i in worst]
    n_keys = int(len(code) - same_as_next.sum())
    return _result("duplicate_rows", len(first), t.max_duplicate_keys, examples, total=n_keys, unit="keys")


def _gaps(bars: _Bars) -> IntArray:
    """Per bar, the calendar sessions without a bar since the ticker's previous bar (0 on its first)."""
    gap = np.zeros(len(bars.session), dtype=np.int64)
    gap[1:] = bars.session[1:] - bars.session[:-1] - 1
    gap[~bars.prev_ok] = 0
    return gap


def _missing_sessions(bars: _Bars, t: HealthThresholds) -> CheckResult:
    """Per ticker, the share of calendar sessions within its listing lives that have no bar.

    A hole longer than ``reuse_gap_sessions`` separates two lives (a reused code) and is not counted.
    """
    gap = _gaps(bars)
    within = np.where(gap <= t.reuse_gap_sessions, gap, 0)
    present = bars.ends - bars.starts + 1
    expected = present + np.add.reduceat(within, bars.starts) if len(bars.starts) else present
    share = (expected - present) / np.maximum(expected, 1)
    flagged = np.flatnonzero(share > t.max_missing_session_share)
    names = bars.tickers[bars.code[bars.starts]]
    worst = flagged[np.argsort(-share[flagged], kind="stable")][: t.max_examples]
    examples = [
        f"{names[i]}: {expected[i] - present[i]} of {expected[i]} sessions missing ({share[i]:.1%})" for i in worst
    ]
    return _result(
        "missing_sessions",
        len(flagged),
        t.max_missing_ticker_share,
        examples,
        total=len(bars.starts),
        unit="tickers",
    )


def _missing_market_sessions(bars: _Bars, t: HealthThresholds) -> CheckResult:
    """Exchange sessions with no bar at all, reported as runs of consecutive sessions, longest first."""
    if len(bars.absent):
        position = np.searchsorted(bars.calendar, bars.absent)
        run_start = np.flatnonzero(np.diff(position, prepend=-2) != 1)
        run_end = np.append(run_start[1:], len(position)) - 1
        lengths = run_end - run_start + 1
        worst = np.argsort(-lengths, kind="stable")[: t.max_examples]
        examples = [
            f"{_day(bars.absent[run_start[i]])}..{_day(bars.absent[run_end[i]])}: {lengths[i]} session(s) without data"
            if lengths[i] > 1
            else f"{_day(bars.absent[run_start[i]])}: 1 session without data"
            for i in worst
        ]
    else:
        examples = []
    return _result(
        "missing_market_sessions",
        len(bars.absent),
        t.max_missing_market_sessions,
        examples,
        total=len(bars.calendar),
        unit="sessions",
    )


def _off_calendar_dates(bars: _Bars, t: HealthThresholds) -> CheckResult:
    """Dates with bars although the exchange was closed, each with how many bars repeat the day before."""
    examples = []
    if len(bars.closed):
        on_closed = np.isin(bars.calendar[bars.session], bars.closed)
        # A repeat: the same adj_close as the ticker's previous bar (volume is not in _Bars; a
        # repeated close on a whole day's file is evidence enough of a copied file).
        repeat = np.zeros(len(bars.adj), dtype=bool)
        repeat[1:] = bars.prev_ok[1:] & (bars.adj[1:] == bars.adj[:-1])
        day = bars.session[on_closed]
        n_bars = np.bincount(day, minlength=len(bars.calendar))
        n_repeat = np.bincount(day, weights=repeat[on_closed], minlength=len(bars.calendar))
        for d in bars.closed[: t.max_examples]:
            i = int(np.searchsorted(bars.calendar, d))
            examples.append(
                f"{_day(d)}: {n_bars[i]} bars, {n_repeat[i] / max(n_bars[i], 1):.0%} repeat the previous close"
            )
    return _result(
        "off_calendar_dates",
        len(bars.closed),
        t.max_off_calendar_dates,
        examples,
        total=len(bars.calendar),
        unit="dates",
    )


def _reused_codes(bars: _Bars, t: HealthThresholds) -> CheckResult:
    """Tickers that come back after more than ``reuse_gap_sessions`` sessions (a new instrument)."""
    gap = _gaps(bars)
    comebacks = np.flatnonzero(gap > t.reuse_gap_sessions)
    tickers = np.unique(bars.code[comebacks])
    examples = [
        f"{bars.tickers[bars.code[i]]}: absent {gap[i]} sessions after "
        f"{_day(bars.calendar[bars.session[i - 1]])}, new instrument from {_day(bars.calendar[bars.session[i]])}"
        for i in comebacks[: t.max_examples]
    ]
    # Listed, never failed: the ingest stage already split the lives (training.instruments).
    return _result("reused_codes", len(tickers), 1.0, examples, total=len(bars.starts), unit="tickers")


def _stale_tickers(bars: _Bars, t: HealthThresholds) -> CheckResult:
    """Tickers whose last bar is ``stale_after_sessions`` or more sessions before the latest date."""
    behind = len(bars.calendar) - 1 - bars.session[bars.ends]
    flagged = np.flatnonzero(behind >= t.stale_after_sessions)
    names = bars.tickers[bars.code[bars.starts]]
    worst = flagged[np.argsort(-behind[flagged], kind="stable")][: t.max_examples]
    latest = _day(bars.calendar[-1]) if len(bars.calendar) else ""
    examples = [
        f"{names[i]}: last bar {_day(bars.calendar[bars.session[bars.ends[i]]])}, {behind[i]} sessions before {latest}"
        for i in worst
    ]
    return _result(
        "stale_tickers",
        len(flagged),
        t.max_stale_ticker_share,
        examples,
        total=len(bars.starts),
        unit="tickers",
    )


def _non_positive(frame: pd.DataFrame, t: HealthThresholds) -> CheckResult:
    """Rows with any price field <= 0; NaN compares False, so missing fields are never flagged.

    Runs on the input frame, before de-duplication, so a bad row hidden behind a duplicate still counts.
    """
    fields = [c for c in PRICE_FIELDS if c in frame.columns]
    values = frame[fields].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = values <= 0
    rows = np.flatnonzero(bad.any(axis=1))
    examples = []
    for i in rows[: t.max_examples]:
        found = " ".join(f"{f}={values[i, j]:g}" for j, f in enumerate(fields) if bad[i, j])
        examples.append(f"{frame[TICKER].iat[i]} {_day(frame[DATE].iat[i])} {found}")
    return _result("non_positive_prices", len(rows), t.max_non_positive_rows, examples, total=len(frame))


def _returns(bars: _Bars) -> FloatArray:
    """Close-to-close adj_close ratio per bar (NaN on each ticker's first bar)."""
    ratio = np.full(len(bars.adj), np.nan)
    ratio[1:] = bars.adj[1:] / bars.adj[:-1]
    ratio[~bars.prev_ok | bars.broken] = np.nan
    return ratio


def _split_suspects(bars: _Bars, t: HealthThresholds, tick_noise_below: float = 0.0) -> IntArray:
    """Bars whose adj_close jump looks like an unadjusted split or consolidation.

    Heuristic: the ratio to the previous bar is within ``split_tolerance`` (relative) of one of
    ``split_ratios``, AND the ``split_confirm_bars`` bars after the jump all stay on the new side
    of the geometric midpoint between the two prices, AND the same number of bars before it stay
    on the old side. The second condition rejects bad ticks and crash-and-rebound days; the third
    rejects the bar that *undoes* a bad tick. Missing neighbours (series ends) do not veto. What
    it cannot tell apart: a genuine move of exactly a split ratio that persists (a -50% collapse
    that stays down), and a split whose day's own move pushes the ratio outside the tolerance
    (that one is still an outlier return).
    """
    ratio = _returns(bars)
    near = np.zeros(len(ratio), dtype=bool)
    with np.errstate(invalid="ignore"):
        for k in t.split_ratios:
            near |= np.abs(ratio / k - 1.0) <= t.split_tolerance
    idx = np.flatnonzero(near).astype(np.int64)
    idx = idx[np.maximum(bars.adj[idx], bars.adj[idx - 1]) >= tick_noise_below]
    # The same persistence test the corporate-actions detection uses, so both agree on what persists.
    return idx[persistent_jumps(bars.code, bars.adj, idx, t.split_confirm_bars)]


def _splits_result(bars: _Bars, splits: IntArray, t: HealthThresholds) -> CheckResult:
    """Report the rows :func:`_split_suspects` found."""
    examples = []
    for i in splits[: t.max_examples]:
        ratio = bars.adj[i] / bars.adj[i - 1]
        nearest = min(t.split_ratios, key=lambda k: abs(ratio / k - 1))
        label = f"1/{1 / nearest:g}" if nearest < 1 else f"{nearest:g}"
        examples.append(
            f"{bars.tickers[bars.code[i]]} {_day(bars.calendar[bars.session[i]])} adj_close "
            f"{bars.adj[i - 1]:g} -> {bars.adj[i]:g} (x{ratio:.3f} ~ {label})"
        )
    return _result("unadjusted_splits", len(splits), t.max_split_suspects, examples, total=len(bars.adj))


def _outliers(bars: _Bars, splits: IntArray, t: HealthThresholds) -> CheckResult:
    """Bars whose |daily adj_close return| exceeds the bound, not counting split suspects."""
    ret = _returns(bars) - 1.0
    with np.errstate(invalid="ignore"):
        flagged = np.abs(ret) > t.outlier_abs_return
    flagged[splits] = False
    rows = np.flatnonzero(flagged)
    worst = rows[np.argsort(-np.abs(ret[rows]), kind="stable")][: t.max_examples]
    examples = [
        f"{bars.tickers[bars.code[i]]} {_day(bars.calendar[bars.session[i]])} return={ret[i]:+.1%}" for i in worst
    ]
    return _result("outlier_returns", len(rows), t.max_outlier_rows, examples, total=len(bars.adj))


def _result(
    name: str, affected: int, limit: float | int, examples: list[str], *, total: int, unit: str = "rows"
) -> CheckResult:
    """Build a result; a float limit is a share of ``total``, an int limit a count."""
    # The epsilon keeps 0.29 * 100 == 28.999... from failing a run with exactly 29 affected.
    allowed = limit * total + 1e-9 if isinstance(limit, float) else limit
    return CheckResult(
        name=name,
        affected=int(affected),
        limit=limit,
        failed=bool(int(affected) > allowed),
        examples=examples,
        total=int(total),
        unit=unit,
    )


def _day(value: Any) -> str:
    """A date as ``YYYY-MM-DD`` from a numpy datetime64 or pandas Timestamp."""
    return str(pd.Timestamp(value).date())
