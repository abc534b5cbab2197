"""Per-day end-of-day vendor files (ASX style) into the price and benchmark tables.

What the files hold, and what happens to it:

* codes matching the code rule (ASX: three characters) become price rows; index codes (XJO, XAO,
  ...) become benchmark rows (symbol = code, close); the rest (options, warrants, rights) are
  counted and skipped;
* an empty file (a holiday, a bad day) is counted, not an error;
* the same day twice (in two archives, or a folder and a zip): identical rows are counted and
  skipped, different rows are an error naming both files;
* a trading halt (open/high/low 0, close positive) keeps its close; a zero open/high/low is no
  value and becomes NaN; a row with a zero close carries no price and is counted and skipped;
* a bar outside its own range is refused or kept with a warning (``bracket``); for an index it is
  always a warning, because a benchmark is read for its close;
* the YYYYMMDD field must be the date in the file's name (or, for a file whose name has no date,
  the date of its first row); a malformed line, a negative price or a code repeated within a day
  is an error naming the file (archive and member) and the line.

Everything is validated before anything is returned, so the ingest stage writes all or nothing.
Prices are raw as delivered: ``adj_close`` is the close until corporate actions are applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_repo.tables import BENCHMARK_COLUMNS, DATE, PRICE_COLUMNS, SOURCE, SYNTHETIC, TICKER
from training.errors import IngestError, InputProblem
from training.ingest.bars import BracketPolicy, BracketViolations, bracket_violations
from training.ingest.eod_codes import ASX_CODE_PATTERN, ASX_INDEX_CODES
from training.ingest.eod_read import ParsedDay, find_day_files, read_day_files
from training.ingest.eod_report import SHOWN, EodReport

__all__ = ["EodLoad", "EodReport", "load_eod_files"]

MAX_PROBLEMS: Final = 200
_PRICES: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class EodLoad:
    """Rows in the store's contracts, and the report of what was counted and skipped."""

    prices: pd.DataFrame
    benchmark: pd.DataFrame
    report: EodReport


def load_eod_files(
    paths: Sequence[Path],
    *,
    code_pattern: str = ASX_CODE_PATTERN,
    index_codes: Sequence[str] = ASX_INDEX_CODES,
    bracket: BracketPolicy = "warn",
    start: date | None = None,
    end: date | None = None,
    workers: int | None = None,
) -> EodLoad:
    """Loads folders and zip archives of per-day files into price and benchmark rows.

    Args:
        paths: folders (searched recursively; zips inside are opened), zip archives or day files.
        code_pattern: regular expression (``re.search``) a code must match to be kept as a share.
        index_codes: codes routed to the benchmark table.
        bracket: ``refuse`` or ``warn`` about a share bar outside its own range.
        start: first session kept (inclusive); None keeps all.
        end: last session kept (inclusive); None keeps all.
        workers: threads parsing archives (default: one per CPU).

    Returns:
        Price rows (:data:`PRICE_COLUMNS`, ``adj_close`` = ``close``) and benchmark rows, in date
        order, ``synthetic`` False, ``source`` ``eod:<archive or folder name>``, and the report.

    Raises:
        IngestError: every problem found (up to :data:`MAX_PROBLEMS`); nothing is returned then.
    """
    files = [f for f in find_day_files(paths) if f.day is None or _in_period(f.day, start, end)]
    if not files:
        raise IngestError([InputProblem(_names(paths), None, None, "no .txt/.csv day files found in the period")])
    parsed = read_day_files(files, workers=workers)
    days, counts = _one_file_per_day(parsed, start, end)
    if not days:
        raise IngestError([InputProblem(_names(paths), None, None, "every day file is empty or outside the period")])
    rows, table = _Rows.of(days)
    # The sorter copies the columns out; dropping the parsed tables here lowers the peak memory.
    del parsed, days
    sorter = _Sorter(rows, table, re.compile(code_pattern), frozenset(index_codes), bracket)
    del table
    return sorter.load(counts)


# --- one file per day ----------------------------------------------------------------------------


def _in_period(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _first_date(day: ParsedDay) -> date | None:
    """The date of a file's first row (for a file whose name carries none), or None if invalid."""
    assert day.table is not None
    value = str(day.table["date"][0].as_py())
    stamp = pd.to_datetime(value, format="%Y%m%d", errors="coerce")
    return None if pd.isna(stamp) else stamp.date()


@dataclass(frozen=True)
class _FileCounts:
    """What :func:`_one_file_per_day` counted, with a few file labels per kind."""

    files_read: int
    empty_files: int
    duplicate_files: int
    files_without_date: int
    examples: dict[str, tuple[str, ...]]


def _one_file_per_day(
    parsed: Sequence[ParsedDay], start: date | None, end: date | None
) -> tuple[list[ParsedDay], _FileCounts]:
    """Drops empty files and repeated days (refusing a day held twice with different rows)."""
    chosen: dict[date, ParsedDay] = {}
    seen: dict[str, list[str]] = {"empty": [], "duplicate": [], "undated": []}
    problems: list[InputProblem] = []
    for day in parsed:
        if day.table is None:
            seen["empty"].append(day.file.label)
            continue
        when = day.file.day
        if when is None:
            seen["undated"].append(day.file.label)
            when = _first_date(day)
            if when is None:
                problems.append(InputProblem(day.file.label, day.line(0), "date", "not a YYYYMMDD date"))
                continue
            if not _in_period(when, start, end):
                continue
        first = chosen.setdefault(when, day)
        if first is day:
            continue
        assert first.table is not None
        if first.table.equals(day.table):
            seen["duplicate"].append(f"{day.file.label} repeats {first.file.label}")
        else:
            problems.append(
                InputProblem(
                    day.file.label,
                    None,
                    None,
                    f"holds {when} like {first.file.label}, with different rows "
                    f"({day.table.num_rows:,} vs {first.table.num_rows:,}); keep one of the two files",
                )
            )
    if problems:
        raise IngestError(problems)
    counts = _FileCounts(
        files_read=len(parsed),
        empty_files=len(seen["empty"]),
        duplicate_files=len(seen["duplicate"]),
        files_without_date=len(seen["undated"]),
        examples={key: tuple(labels[:SHOWN]) for key, labels in seen.items() if labels},
    )
    return [chosen[d] for d in sorted(chosen)], counts


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """The way back from a row of the kept files (in one table) to its file and line."""

    days: list[ParsedDay]  # without their tables
    offsets: np.ndarray
    file_index: np.ndarray
    dates: np.ndarray  # datetime64[D] per file

    @classmethod
    def of(cls, days: list[ParsedDay]) -> tuple[_Rows, pa.Table]:
        """The rows' map and every row in one table (files in the order given)."""
        tables = [d.table for d in days if d.table is not None]
        counts = np.array([t.num_rows for t in tables], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        file_dates = np.array([_file_date(d) for d in days], dtype="datetime64[D]")
        bare = [replace(d, table=None) for d in days]
        return cls(bare, offsets, np.repeat(np.arange(len(days)), counts), file_dates), pa.concat_tables(tables)

    def per_row(self, values: np.ndarray) -> np.ndarray:
        """A per-file array spread to one value per row."""
        return np.repeat(values, np.diff(self.offsets))

    def where(self, row: int) -> tuple[str, int]:
        """The file label and the line of row ``row``."""
        i = int(self.file_index[row])
        return self.days[i].file.label, self.days[i].line(row - int(self.offsets[i]))

    def named(self, row: int, code: str) -> str:
        """A row as a person finds it: ``BHP 2008-01-02 (archive, member ..., line 5)``."""
        label, line = self.where(row)
        return f"{code} {self.dates[self.file_index[row]]} ({label}, line {line})"


def _file_date(day: ParsedDay) -> date:
    when = day.file.day or _first_date(day)
    assert when is not None  # files without a valid date were refused in _one_file_per_day
    return when


class _Found:
    """Problems located by file and line, capped at :data:`MAX_PROBLEMS` but all counted."""

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows
        self.problems: list[InputProblem] = []
        self.total = 0

    def add(self, mask: np.ndarray, column: str | None, message: Callable[[int], str]) -> None:
        positions = np.flatnonzero(mask)
        self.total += len(positions)
        for p in positions[: max(MAX_PROBLEMS - len(self.problems), 0)]:
            label, line = self.rows.where(int(p))
            self.problems.append(InputProblem(label, line, column, message(int(p))))

    def raise_if_any(self) -> None:
        if not self.problems:
            return
        if self.total > len(self.problems):
            summary = f"{self.total:,} problems in all; only the first {len(self.problems)} are listed"
            self.problems.append(InputProblem("eod files", None, None, summary))
        raise IngestError(self.problems)


class _Sorter:
    """Checks every row, then sorts them into shares, indices and skipped rows."""

    def __init__(
        self, rows: _Rows, table: pa.Table, rule: re.Pattern[str], index_codes: frozenset[str], bracket: BracketPolicy
    ):
        self.rows = rows
        self.bracket = bracket
        # Codes are few (thousands) and rows many (millions): decide per distinct code, then spread.
        # Spaces around a code are trimmed per distinct spelling, which maps " BHP" and "BHP" to one code.
        encoded = table["code"].combine_chunks().dictionary_encode()
        trimmed = np.array([c.strip() for c in encoded.dictionary.to_pylist()], dtype=object)
        self.codes, canonical = np.unique(trimmed, return_inverse=True)
        self.code_index = canonical[encoded.indices.to_numpy()]
        # One concatenation per column: ChunkedArray.to_numpy over thousands of chunks is 3x slower.
        self.values = {c: _column(table, c) for c in _PRICES}
        self.date_field = _column(table, "date")
        is_index = np.array([c in index_codes for c in self.codes], dtype=bool)[self.code_index]
        kept = np.array([rule.search(c) is not None for c in self.codes], dtype=bool)[self.code_index]
        self.skipped = ~is_index & ~kept
        self.no_close = ~self.skipped & (self.values["close"] == 0)
        self.index = is_index & ~self.no_close
        self.share = ~is_index & kept & ~self.no_close

    def load(self, counts: _FileCounts) -> EodLoad:
        found = _Found(self.rows)
        self._check_format(found)
        ohl = {c: np.where(self.values[c] == 0, np.nan, self.values[c]) for c in ("open", "high", "low")}
        zero = {c: self.values[c] == 0 for c in ("open", "high", "low")}
        halt = self.share & zero["open"] & zero["high"] & zero["low"]
        partial = self.share & (zero["open"] | zero["high"] | zero["low"]) & ~halt
        bad = bracket_violations(ohl["open"], ohl["high"], ohl["low"], self.values["close"])
        share_rows, index_rows = self.share & bad.any, self.index & bad.any
        if self.bracket == "refuse":
            self._refuse_brackets(found, bad, ohl)
        found.raise_if_any()
        examples = dict(counts.examples)
        for key, mask in (
            ("halt", halt),
            ("partial", partial),
            ("no_close", self.no_close),
            ("bracket", share_rows),
            ("index_bracket", index_rows),
        ):
            examples[key] = self._examples(mask, bad, ohl)
        report = EodReport(
            files_read=counts.files_read,
            empty_files=counts.empty_files,
            duplicate_files=counts.duplicate_files,
            files_without_date=counts.files_without_date,
            rows_kept=int(self.share.sum()),
            rows_skipped_by_code_rule=int(self.skipped.sum()),
            index_rows=int(self.index.sum()),
            halt_rows=int(halt.sum()),
            partial_zero_rows=int(partial.sum()),
            no_close_rows=int(self.no_close.sum()),
            bracket_rows=int(share_rows.sum()) if self.bracket == "warn" else 0,
            index_bracket_rows=int(index_rows.sum()),
            examples={k: v for k, v in examples.items() if v},
        )
        return EodLoad(self._prices(ohl), self._benchmark(), report)

    def _check_format(self, found: _Found) -> None:
        """Dates matching the file, finite non-negative numbers, non-empty codes, a code once a day."""
        rows = self.rows
        expected = rows.per_row(np.array([int(d.strftime("%Y%m%d")) for d in rows.dates.tolist()], dtype=np.int64))
        named = rows.per_row(np.array([d.file.day is not None for d in rows.days], dtype=bool))
        field_ = self.date_field
        found.add(
            field_ != expected,
            "date",
            lambda p: (
                f"date {field_[p]} differs from the file's date {expected[p]} "
                + ("in its name" if named[p] else "on its first row")
            ),
        )
        for column in _PRICES:
            self._check_number(found, column)
        empty = np.array([c == "" for c in self.codes], dtype=bool)[self.code_index]
        found.add(empty, "code", lambda _p: "code is empty")
        repeated = _repeated_within_files(rows.file_index, self.code_index, self.share | self.index)
        found.add(repeated, "code", lambda p: f"code {self.codes[self.code_index[p]]} appears more than once this day")

    def _check_number(self, found: _Found, column: str) -> None:
        value = self.values[column]
        found.add(~np.isfinite(value), column, lambda p: f"{value[p]!r} is not a finite number")
        found.add(value < 0, column, lambda p: f"{column} must not be negative, got {value[p]:g}")

    def _refuse_brackets(self, found: _Found, bad: BracketViolations, ohl: dict[str, np.ndarray]) -> None:
        for column, mask in (("high", bad.inverted), ("open", bad.open_outside), ("close", bad.close_outside)):
            found.add(
                self.share & mask,
                column,
                lambda p: (
                    bad.describe(p, ohl["open"], ohl["high"], ohl["low"], self.values["close"])
                    + " (set bracket_violations: warn to keep such bars)"
                ),
            )

    def _examples(self, mask: np.ndarray, bad: BracketViolations, ohl: dict[str, np.ndarray]) -> tuple[str, ...]:
        shown = []
        for p in np.flatnonzero(mask)[:SHOWN]:
            text = self.rows.named(int(p), str(self.codes[self.code_index[p]]))
            if bad.any[p]:
                text += ": " + bad.describe(int(p), ohl["open"], ohl["high"], ohl["low"], self.values["close"])
            shown.append(text)
        return tuple(shown)

    def _frame(self, mask: np.ndarray, code: str, columns: dict[str, np.ndarray], names: Sequence[str]) -> pd.DataFrame:
        """The rows of ``mask``; per-file values (date, source) are taken through the row's file."""
        rows = np.flatnonzero(mask)
        files = self.rows.file_index[rows]
        sources = np.array([d.file.source for d in self.rows.days], dtype=object)
        data = {
            code: self.codes[self.code_index[rows]],  # one shared str object per code, not per row
            DATE: self.rows.dates.astype("datetime64[ns]")[files],
            **{name: column[rows] for name, column in columns.items()},
            SOURCE: sources[files],
            SYNTHETIC: np.zeros(len(rows), dtype=bool),
        }
        # Built in contract order: reordering afterwards would copy every column once more.
        return pd.DataFrame({name: data[name] for name in names}, copy=False)

    def _prices(self, ohl: dict[str, np.ndarray]) -> pd.DataFrame:
        close = self.values["close"]
        columns = {**ohl, "close": close, "adj_close": close, "volume": self.values["volume"]}
        return self._frame(self.share, TICKER, columns, PRICE_COLUMNS)

    def _benchmark(self) -> pd.DataFrame:
        return self._frame(self.index, "symbol", {"close": self.values["close"]}, BENCHMARK_COLUMNS)


def _column(table: pa.Table, name: str) -> np.ndarray:
    values: np.ndarray = pa.concat_arrays(table[name].chunks).to_numpy()
    return values


def _repeated_within_files(file_index: np.ndarray, code_index: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Marks the ``used`` rows whose code occurs more than once in their file.

    Vendor files list codes in order, and codes are numbered in sorted order: where the numbers
    rise strictly within a file nothing repeats, so only files out of order are hashed.
    """
    out = np.zeros(len(used), dtype=bool)
    rows = np.flatnonzero(used)
    files, codes = file_index[rows], code_index[rows]
    unordered = (files[1:] == files[:-1]) & (codes[1:] <= codes[:-1])
    if not unordered.any():
        return out
    suspect = np.isin(files, np.unique(files[1:][unordered]))
    key = files[suspect].astype(np.int64) * (int(code_index.max()) + 1) + codes[suspect]
    out[rows[suspect]] = pd.Series(key).duplicated(keep=False).to_numpy()
    return out
