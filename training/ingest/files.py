"""Loaders for price and fundamentals files that users bring (CSV, gzip CSV, Parquet).

Both loaders validate the whole file before returning anything and raise a single
:class:`~training.errors.IngestError` that lists every problem found (up to
:data:`MAX_PROBLEMS`), each located by file, row and column so a person can fix
the file in one pass instead of one error per run.

Row numbers are what a person sees: for a CSV the line number in an editor (the
header is line 1, so the first data row is row 2); for Parquet the 1-based record
number. A quoted CSV field that spans several lines shifts the numbers of the rows
after it, because the CSV parser does not report physical line numbers.

Validation is vectorised (pandas masks over whole columns); Python only formats
the messages of the rows that are reported, so a million-row file validates in
seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.tables import (
    DATE,
    FUNDAMENTAL_COLUMNS,
    FUNDAMENTAL_KEY,
    FUNDAMENTAL_VALUE_COLUMNS,
    PRICE_COLUMNS,
    PRICE_KEY,
    SOURCE,
    SYNTHETIC,
    TICKER,
)
from training.errors import IngestError, InputProblem
from training.ingest.bars import BracketPolicy, bracket_violations

__all__ = [
    "CSV_SUFFIXES",
    "MAX_PROBLEMS",
    "PARQUET_SUFFIXES",
    "PriceFile",
    "load_fundamentals",
    "load_price_file",
    "load_prices",
]

MAX_PROBLEMS: Final = 200
CSV_SUFFIXES: Final[tuple[str, ...]] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: Final[tuple[str, ...]] = (".parquet", ".pq")

# Headers are compared after normalisation ("Adj. Close" -> "adj_close"), then
# mapped through these aliases so exports from common tools load unchanged.
_PRICE_ALIASES: Final[Mapping[str, str]] = {
    "symbol": TICKER,
    "adjusted_close": "adj_close",
    "adjclose": "adj_close",
}
_FUNDAMENTAL_ALIASES: Final[Mapping[str, str]] = {"symbol": TICKER}

_OHLC: Final[tuple[str, ...]] = ("open", "high", "low")
_PRICE_VALUES: Final[tuple[str, ...]] = ("open", "high", "low", "close", "adj_close")
_PRICE_REQUIRED: Final[tuple[str, ...]] = (TICKER, DATE, *_OHLC, "close", "volume")
_FUNDAMENTAL_REQUIRED: Final[tuple[str, ...]] = (
    TICKER,
    "period_end",
    "report_date",
    *FUNDAMENTAL_VALUE_COLUMNS,
)

# Spellings of "no value" that spreadsheet and pandas exports write into numeric
# and date cells. Tickers never use them: "NA" is a real ticker (TSX).
_MISSING_TOKENS: Final[frozenset[str]] = frozenset({"", "nan", "na", "n/a", "null", "none"})

# Year-month-day (zero padding optional), optionally with an explicit midnight
# time. Anything else ("01/02/2024", "Jan 2 2024") is refused rather than guessed
# at, because day/month order cannot be inferred safely.
_DAY_FORMAT: Final = "%Y-%m-%d"
_ISO_DATE: Final = r"(\d{4}-\d{1,2}-\d{1,2})(?:[T ]00:00(?::00(?:\.0+)?)?)?"

_PARSER_LINE: Final = re.compile(r"line (\d+)")

_MessageFn = Callable[[np.ndarray], Sequence[str]]


@dataclass
class _Problems:
    """Collects problems from column masks, keeping at most ``cap`` but counting all."""

    file: str
    rows: np.ndarray
    cap: int = MAX_PROBLEMS
    found: list[InputProblem] = field(default_factory=list)
    total: int = 0

    def file_level(self, column: str | None, message: str) -> None:
        """Records a problem that concerns the whole file (no row)."""
        self.total += 1
        self.found.append(InputProblem(self.file, None, column, message))

    def add(self, mask: pd.Series | np.ndarray, column: str | None, message: str | _MessageFn) -> None:
        """Records one problem per ``True`` position of ``mask``.

        Args:
            mask: boolean per row, aligned with the frame being validated.
            column: the column at fault, or ``None`` for the whole row.
            message: one text for every row, or a function from the (capped) row
                positions to one text per position.
        """
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        self.total += len(positions)
        # Each check keeps its first ``cap`` rows; after the merge and sort in
        # ``raise_if_any`` the overall first ``cap`` rows are therefore exact.
        positions = positions[: self.cap]
        if len(positions) == 0:
            return
        texts = [message] * len(positions) if isinstance(message, str) else message(positions)
        self.found.extend(
            InputProblem(self.file, int(self.rows[p]), column, text) for p, text in zip(positions, texts, strict=True)
        )

    def raise_if_any(self) -> None:
        """Raises one IngestError listing the problems in file order, if there are any."""
        if not self.found:
            return
        ordered = sorted(self.found, key=lambda p: -1 if p.row is None else p.row)[: self.cap]
        if self.total > len(ordered):
            summary = f"{self.total} problems in all; only the first {len(ordered)} are listed"
            ordered.append(InputProblem(self.file, None, None, summary))
        raise IngestError(ordered)


@dataclass(frozen=True)
class _Table:
    """Cells of the known columns as read, with the row number a person would quote."""

    file: str
    frame: pd.DataFrame
    rows: np.ndarray


@dataclass(frozen=True)
class PriceFile:
    """A loaded price file and the bars kept despite a bracket violation (``warn`` policy)."""

    frame: pd.DataFrame
    bracket_warnings: tuple[InputProblem, ...] = ()
    bracket_violations: int = 0


def load_prices(path: Path, *, source: str | None = None) -> pd.DataFrame:
    """Loads daily bars from a user's CSV or Parquet file, refusing inconsistent bars.

    See :func:`load_price_file`, of which this is the ``bracket="refuse"`` case.
    """
    return load_price_file(path, source=source).frame


def load_price_file(path: Path, *, source: str | None = None, bracket: BracketPolicy = "refuse") -> PriceFile:
    """Loads daily bars from a user's CSV or Parquet file into the price contract.

    Headers are matched case-insensitively, ignoring spaces and punctuation;
    ``symbol`` is accepted for ``ticker`` and ``adjusted_close``/``Adj Close`` for
    ``adj_close``. Without an adjusted close column, ``adj_close`` is ``close``.
    Unknown columns are ignored. ``volume`` may be empty, and so may ``open``,
    ``high`` and ``low`` when all three are empty on the row (close-only sources).

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.
        source: the ``source`` value of every row; defaults to ``file:<name>``.
        bracket: what a bar whose open/close lies outside [low, high] (or whose
            high is below its low) does: ``refuse`` makes it a problem, ``warn``
            keeps it as delivered and lists it in ``bracket_warnings`` (a
            benchmark is read for its close, and an index open is not a trade).

    Returns:
        A frame with :data:`feature_repo.tables.PRICE_COLUMNS`, sorted by ticker
        and date, ``synthetic`` False, and the bars kept despite a violation.

    Raises:
        IngestError: listing every problem found; nothing is returned in that case.
    """
    table = _read_table(path, _PRICE_REQUIRED, ("adj_close",), _PRICE_ALIASES)
    problems = _Problems(table.file, table.rows)
    out = {TICKER: _tickers(table.frame[TICKER], problems), DATE: _dates(table.frame[DATE], DATE, problems)}
    empty: dict[str, pd.Series] = {}
    for column in (*_PRICE_VALUES, "volume"):
        if column in table.frame.columns:
            out[column], empty[column] = _numbers(table.frame[column], column, problems)
    if "adj_close" not in out:
        out["adj_close"], empty["adj_close"] = out["close"], empty["close"]
    for column in ("close", "adj_close"):
        problems.add(empty[column], column, "value is missing")
    for column in _PRICE_VALUES:
        _check_positive(out[column], column, problems)
    warnings = _Problems(table.file, table.rows)
    _check_bar(out, empty, problems, problems if bracket == "refuse" else warnings)
    volume = out["volume"]
    problems.add(
        volume < 0,
        "volume",
        lambda pos: [f"volume must not be negative, got {v:g}" for v in volume.to_numpy()[pos]],
    )
    _check_duplicates(out, PRICE_KEY, problems)
    problems.raise_if_any()
    frame = _finish(out, PRICE_COLUMNS, PRICE_KEY, path, source)
    return PriceFile(frame, tuple(warnings.found), warnings.total)


def load_fundamentals(path: Path, *, source: str | None = None) -> pd.DataFrame:
    """Loads quarterly fundamentals from a user's CSV or Parquet file into the contract.

    Every value column must be present in the header, but its cells may be empty
    (NaN); a cell that is present must be a number. ``report_date`` must be on or
    after ``period_end``; ``shares_outstanding`` must be positive when present.

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.
        source: the ``source`` value of every row; defaults to ``file:<name>``.

    Returns:
        A frame with :data:`feature_repo.tables.FUNDAMENTAL_COLUMNS`, sorted by
        ticker and period end, ``synthetic`` False.

    Raises:
        IngestError: listing every problem found; nothing is returned in that case.
    """
    table = _read_table(path, _FUNDAMENTAL_REQUIRED, (), _FUNDAMENTAL_ALIASES)
    problems = _Problems(table.file, table.rows)
    out = {TICKER: _tickers(table.frame[TICKER], problems)}
    for column in ("period_end", "report_date"):
        out[column] = _dates(table.frame[column], column, problems)
    for column in FUNDAMENTAL_VALUE_COLUMNS:
        out[column], _ = _numbers(table.frame[column], column, problems)
    period_end, report_date = out["period_end"], out["report_date"]
    problems.add(
        report_date < period_end,
        "report_date",
        lambda pos: [
            f"report date {_day(report_date.iloc[p])} is before period end {_day(period_end.iloc[p])}" for p in pos
        ],
    )
    shares = out["shares_outstanding"]
    problems.add(
        shares <= 0,
        "shares_outstanding",
        lambda pos: [f"shares outstanding must be positive, got {v:g}" for v in shares.to_numpy()[pos]],
    )
    _check_duplicates(out, FUNDAMENTAL_KEY, problems)
    problems.raise_if_any()
    return _finish(out, FUNDAMENTAL_COLUMNS, FUNDAMENTAL_KEY, path, source)


# --- reading -----------------------------------------------------------------------------------


def _read_table(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    aliases: Mapping[str, str],
) -> _Table:
    """Reads a file, resolves its header and refuses it if columns or rows are missing."""
    file = str(path)
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        raw, rows = _read_csv(path, file)
    elif name.endswith(PARQUET_SUFFIXES):
        raw, rows = _read_parquet(path, file)
    else:
        supported = ", ".join((*CSV_SUFFIXES, *PARQUET_SUFFIXES))
        raise IngestError([InputProblem(file, None, None, f"unsupported file type; expected {supported}")])
    problems = _Problems(file, rows)
    known = _resolve_header(list(raw.columns), (*required, *optional), aliases, problems)
    for column in required:
        if column not in known:
            problems.file_level(column, "required column is missing")
    if raw.empty:
        problems.file_level(None, "file has no data rows")
    problems.raise_if_any()
    frame = pd.DataFrame({column: raw.iloc[:, index] for column, index in known.items()})
    return _Table(file, frame, rows)


def _read_csv(path: Path, file: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Reads every cell as text, keeping each row's line number."""
    try:
        # The header is read as a data row so duplicate names are not mangled
        # ("close.1") and every row's position maps to its line (position + 1).
        cells = pd.read_csv(
            path,
            header=None,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError as e:
        raise IngestError([InputProblem(file, None, None, "file is empty (no header)")]) from e
    except pd.errors.ParserError as e:
        match = _PARSER_LINE.search(str(e))
        row = int(match.group(1)) if match else None
        raise IngestError([InputProblem(file, row, None, f"malformed CSV: {str(e).strip()}")]) from e
    except UnicodeDecodeError as e:
        raise IngestError([InputProblem(file, None, None, f"not UTF-8 text: {e}")]) from e
    except OSError as e:
        raise IngestError([InputProblem(file, None, None, f"cannot read file: {e}")]) from e
    header = ["" if pd.isna(h) else str(h) for h in cells.iloc[0]] if len(cells) else []
    body = cells.iloc[1:].reset_index(drop=True).set_axis(header, axis=1)
    lines = np.arange(2, len(body) + 2)
    # Blank lines and rows of bare commas (spreadsheet exports) carry no values;
    # they are skipped, but the remaining rows keep their true line numbers.
    first = body.iloc[:, 0] if header else pd.Series("", index=body.index)
    candidate = (first.isna() | (first == "")).to_numpy()
    blank = np.zeros(len(body), dtype=bool)
    # Only rows with an empty first cell can be blank; checking those alone keeps this cheap.
    rest = body.loc[candidate]
    blank[candidate] = (rest.isna() | (rest == "")).all(axis=1).to_numpy()
    return body.loc[~blank].reset_index(drop=True), lines[~blank]


def _read_parquet(path: Path, file: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Reads a Parquet file, numbering records from 1."""
    try:
        frame = pd.read_parquet(path)
    except OSError as e:
        raise IngestError([InputProblem(file, None, None, f"cannot read file: {e}")]) from e
    except ValueError as e:  # pyarrow's ArrowInvalid (bad magic bytes, corrupt footer) is one.
        raise IngestError([InputProblem(file, None, None, f"not a readable Parquet file: {e}")]) from e
    # A frame written with ``to_parquet`` may carry ticker/date as a named index.
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    frame = frame.reset_index(drop=True)
    frame.columns = pd.Index([str(c) for c in frame.columns])
    return frame, np.arange(1, len(frame) + 1)


def _normalise_header(name: str) -> str:
    """Lower-cases a header and turns runs of spaces/punctuation into one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _resolve_header(
    header: list[str],
    wanted: Sequence[str],
    aliases: Mapping[str, str],
    problems: _Problems,
) -> dict[str, int]:
    """Maps each wanted column to its position in the header; flags columns given twice."""
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        normal = _normalise_header(name)
        canonical = aliases.get(normal, normal)
        if canonical in wanted:
            positions.setdefault(canonical, []).append(index)
    for canonical, found in positions.items():
        if len(found) > 1:
            spelled = ", ".join(repr(header[i]) for i in found)
            problems.file_level(canonical, f"column appears more than once in the header ({spelled})")
    return {canonical: found[0] for canonical, found in positions.items()}


# --- parsing cells -----------------------------------------------------------------------------


def _text(cells: pd.Series) -> pd.Series:
    """Returns cells as stripped text, null cells as ``""``."""
    return cells.astype(str).str.strip().where(cells.notna(), "")


def _absent(text: pd.Series) -> pd.Series:
    """Marks cells that spell "no value" in any of the usual ways."""
    return text.str.lower().isin(_MISSING_TOKENS)


def _cell(cells: pd.Series, position: int) -> str:
    """The cell at ``position`` as stripped text, for messages."""
    return str(cells.iloc[position]).strip()


def _day(value: object) -> str:
    """Formats a timestamp as an ISO date for messages."""
    return str(pd.Timestamp(str(value)).date())


def _tickers(cells: pd.Series, problems: _Problems) -> pd.Series:
    """Upper-cases and strips tickers; flags empty ones."""
    text = _text(cells)
    problems.add(text == "", TICKER, "ticker is empty")
    return text.str.upper()


def _dates(cells: pd.Series, column: str, problems: _Problems) -> pd.Series:
    """Parses session dates to midnight ``datetime64[ns]``; flags missing and non-ISO ones."""
    if pd.api.types.is_datetime64_any_dtype(cells):
        # A tz-aware stamp keeps its local wall-clock date: that is the session it names.
        stamps = pd.Series(pd.DatetimeIndex(cells).tz_localize(None), index=cells.index)
        timed = stamps.notna() & (stamps != stamps.dt.normalize())
        problems.add(stamps.isna(), column, "date is missing")
        problems.add(timed, column, lambda pos: [f"{stamps.iloc[p]} has a time of day" for p in pos])
        return stamps.astype("datetime64[ns]")
    if not pd.api.types.is_object_dtype(cells):
        cells = cells.astype(str)  # numbers such as 20240102 must not pass as epoch offsets
    # Fast path: plain "YYYY-MM-DD" cells, the common case, parse in one C call; only
    # the rest go through the slower text handling below.
    parsed = pd.to_datetime(cells, format=_DAY_FORMAT, errors="coerce").to_numpy(dtype="datetime64[ns]")
    missing = np.zeros(len(cells), dtype=bool)
    retry = np.isnat(parsed)
    if retry.any():
        text = _text(cells[retry])
        absent = _absent(text).to_numpy()
        day = text.str.extract(_ISO_DATE, expand=False).where(text.str.fullmatch(_ISO_DATE) & ~absent)
        missing[retry] = absent
        parsed[retry] = pd.to_datetime(day, format=_DAY_FORMAT, errors="coerce").to_numpy(dtype="datetime64[ns]")
    problems.add(missing, column, "date is missing")
    problems.add(
        ~missing & np.isnat(parsed),
        column,
        lambda pos: [f"{_cell(cells, p)!r} is not a valid ISO date (YYYY-MM-DD)" for p in pos],
    )
    return pd.Series(parsed, index=cells.index)


def _numbers(cells: pd.Series, column: str, problems: _Problems) -> tuple[pd.Series, pd.Series]:
    """Parses a numeric column to float64; flags cells that are not a finite number.

    Args:
        cells: the column as read (text from a CSV, any dtype from Parquet).
        column: its contract name, for messages.
        problems: where problems go.

    Returns:
        The values (NaN where empty or unreadable) and the mask of empty cells, so
        callers can tell "left empty" from "unreadable" (already reported here).
    """
    if pd.api.types.is_bool_dtype(cells):
        cells = cells.astype(object).where(cells.isna(), "true/false")  # a flag is not a quantity
    values = pd.to_numeric(cells, errors="coerce").astype("float64")
    missing = np.zeros(len(cells), dtype=bool)
    # Only cells that did not parse are examined as text: empty spellings or garbage.
    unparsed = values.isna().to_numpy()
    if unparsed.any():
        missing[unparsed] = _absent(_text(cells[unparsed])).to_numpy()
    infinite = pd.Series(np.isinf(values.to_numpy()), index=values.index)
    # Messages quote the cell as written; formatting only reported cells keeps this cheap.
    problems.add(unparsed & ~missing, column, lambda pos: [f"{_cell(cells, p)!r} is not a number" for p in pos])
    problems.add(infinite, column, lambda pos: [f"{_cell(cells, p)!r} is not a finite number" for p in pos])
    # Unreadable cells are reported above; NaN keeps them out of the range checks.
    return values.where(~infinite), pd.Series(missing, index=cells.index)


# --- checks across columns ---------------------------------------------------------------------


def _check_positive(values: pd.Series, column: str, problems: _Problems) -> None:
    """Flags prices that are zero or negative."""
    problems.add(
        values <= 0,
        column,
        lambda pos: [f"{column} must be positive, got {v:g}" for v in values.to_numpy()[pos]],
    )


def _check_bar(
    out: Mapping[str, pd.Series], empty: Mapping[str, pd.Series], problems: _Problems, bracket: _Problems
) -> None:
    """Consistency of one bar: complete or absent open/high/low, high >= low, range holds open/close.

    Violations of the range go to ``bracket`` (the problems, or the warnings when they are tolerated).
    """
    ohlc = pd.concat([empty[c] for c in _OHLC], axis=1)
    # Close-only sources leave all of open/high/low empty; a partial bar is an error.
    partial = ohlc.any(axis=1) & ~ohlc.all(axis=1)
    for column in _OHLC:
        problems.add(partial & empty[column], column, "missing while other open/high/low values are present")
    high, low = out["high"], out["low"]
    found = bracket_violations(*(out[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")))
    bracket.add(
        found.inverted,
        "high",
        lambda pos: [
            f"high {h:g} is below low {lo:g}" for h, lo in zip(high.to_numpy()[pos], low.to_numpy()[pos], strict=True)
        ],
    )
    for column, outside in (("open", found.open_outside), ("close", found.close_outside)):
        bracket.add(outside, column, _bracket_message(column, out[column], high, low))


def _bracket_message(column: str, value: pd.Series, high: pd.Series, low: pd.Series) -> _MessageFn:
    """Builds the message function for an open/close outside the bar's low-high range."""
    return lambda pos: [
        f"{column} {v:g} is outside the bar's range [low {lo:g}, high {h:g}]"
        for v, lo, h in zip(value.to_numpy()[pos], low.to_numpy()[pos], high.to_numpy()[pos], strict=True)
    ]


def _check_duplicates(out: Mapping[str, pd.Series], key: Sequence[str], problems: _Problems) -> None:
    """Flags every row whose key repeats another row's, naming the other row."""
    keys = pd.DataFrame({column: out[column] for column in key})
    valid = keys.notna().all(axis=1) & (keys[key[0]] != "")
    keys["row"] = problems.rows
    dup = valid & keys.duplicated(subset=list(key), keep=False)
    if not dup.any():
        return
    clash = keys.loc[dup].sort_values([*key, "row"], kind="stable")
    groups = clash.groupby(list(key), sort=False)["row"]
    first = groups.transform("min")
    # The first row of a group points at the second; every later row at the first.
    is_first = (clash["row"] == first).to_numpy()
    other = pd.Series(np.where(is_first, groups.shift(-1).to_numpy(), first.to_numpy()), index=clash.index).reindex(
        keys.index
    )
    label = " and ".join(key)

    def messages(positions: np.ndarray) -> list[str]:
        return [
            f"duplicate {label} ({keys.iloc[p, 0]}, {_day(keys.iloc[p, 1])}): also on row {int(other.iloc[p])}"
            for p in positions
        ]

    problems.add(dup, key[1], messages)


def _finish(
    out: Mapping[str, pd.Series], columns: Sequence[str], key: Sequence[str], path: Path, source: str | None
) -> pd.DataFrame:
    """Assembles the contract frame: column order, source, synthetic flag, sorted by key."""
    frame = pd.DataFrame({column: out[column] for column in columns if column in out})
    frame[SOURCE] = f"file:{path.name}" if source is None else source
    frame[SYNTHETIC] = False
    return frame[list(columns)].sort_values(list(key), kind="stable").reset_index(drop=True)
