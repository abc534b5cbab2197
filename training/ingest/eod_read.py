"""Find and parse per-day end-of-day files (headerless ``CODE,YYYYMMDD,open,high,low,close,volume``).

Vendors deliver one file per trading day, loose in folders or packed in (yearly) zip archives.
This module finds those files, parses each with pyarrow's CSV reader (explicit column types, so
``.33`` is 0.33 and a date is an integer), and locates a malformed line by archive, member and
line number. It checks the format only; what the rows mean (codes, dates, zero prices,
duplicate days) is :mod:`training.ingest.eod_files`' job.

Archives (and chunks of a folder's files) are read on a thread pool: zlib and pyarrow release the
GIL while they decompress and parse (``bench.eod_import`` measures the gain against one thread).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from training.errors import IngestError, InputProblem

__all__ = ["COLUMNS", "DAY_SUFFIXES", "DayFile", "ParsedDay", "find_day_files", "read_day_files"]

COLUMNS: Final[tuple[str, ...]] = ("code", "date", "open", "high", "low", "close", "volume")
DAY_SUFFIXES: Final[tuple[str, ...]] = (".txt", ".csv")
# Problems listed per malformed file; the first few are enough to see the pattern.
PROBLEMS_PER_FILE: Final = 5
# Loose files in a folder are parsed in chunks of this many per task on the pool.
FOLDER_CHUNK: Final = 64

# A date in the file name: eight digits not part of a longer number (20080102.txt, asx_20080102.csv).
_NAME_DATE: Final = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_FORMAT: Final = "CODE,YYYYMMDD,open,high,low,close,volume"
_TYPES: Final = {"code": pa.string(), "date": pa.int32(), **{c: pa.float64() for c in COLUMNS[2:]}}
_READ: Final = pacsv.ReadOptions(column_names=list(COLUMNS), use_threads=False)
# No quoting in this format, and no spelling of "missing": an empty cell is malformed.
_PARSE: Final = pacsv.ParseOptions(quote_char=False)
_CONVERT: Final = pacsv.ConvertOptions(column_types=_TYPES, null_values=[], strings_can_be_null=False)


@dataclass(frozen=True)
class DayFile:
    """One per-day file: loose in a folder, or a member of a zip archive.

    Attributes:
        origin: the archive, or the folder (or file) the user named.
        member: the path inside the archive or folder.
        archive: whether ``origin`` is a zip archive.
        day: the date the file name carries, if any.
    """

    origin: Path
    member: str
    archive: bool
    day: date | None

    @property
    def label(self) -> str:
        """How a person finds the file: ``archive.zip, member 2008/20080102.txt`` or its path."""
        if self.archive:
            return f"{self.origin}, member {self.member}"
        return str(self.origin / self.member) if self.member else str(self.origin)

    @property
    def source(self) -> str:
        """The ``source`` value of its rows: ``eod:<archive or folder name>``."""
        return f"eod:{self.origin.name}"


@dataclass(frozen=True)
class ParsedDay:
    """A file as parsed: its rows (None when the file is empty) and a hash of its bytes.

    ``lines`` holds the line number of each row when the file has blank lines; otherwise row
    ``i`` is on line ``i + 1``.
    """

    file: DayFile
    table: pa.Table | None
    lines: np.ndarray | None = None

    def line(self, row: int) -> int:
        """The 1-based line number of row ``row`` (0-based) of this file."""
        return int(self.lines[row]) if self.lines is not None else row + 1


def find_day_files(paths: Sequence[Path]) -> list[DayFile]:
    """Every per-day file under ``paths`` (folders searched recursively, zips opened), in order.

    Raises:
        IngestError: a path does not exist, is not a folder/zip/.txt/.csv, or an archive is unreadable.
    """
    problems: list[InputProblem] = []
    found: list[DayFile] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                found.extend(_files_at(child, path, problems))
        elif path.exists():
            found.extend(_files_at(path, None, problems))
        else:
            problems.append(InputProblem(str(path), None, None, "no such file or folder"))
    if problems:
        raise IngestError(problems)
    return found


def read_day_files(files: Sequence[DayFile], *, workers: int | None = None) -> list[ParsedDay]:
    """Parses every file, in the order given; ``workers`` threads (default: one per CPU).

    Raises:
        IngestError: listing the malformed lines of every malformed file (each by archive, member
            and line); nothing is returned in that case.
    """
    units = list(_units(files))
    workers = max(1, min(workers or os.cpu_count() or 1, len(units) or 1))
    if workers == 1:
        results = [_read_unit(unit) for unit in units]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eod-read") as pool:
            results = list(pool.map(_read_unit, units))
    parsed = [day for days, _ in results for day in days]
    problems = [p for _, found in results for p in found]
    if problems:
        raise IngestError(problems)
    return parsed


def name_date(name: str) -> date | None:
    """The date a file name carries (``20080102.txt`` -> 2008-01-02), or None."""
    stem = name.rsplit("/", 1)[-1]
    for match in _NAME_DATE.finditer(stem):
        try:
            return datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            continue
    return None


# --- finding -------------------------------------------------------------------------------------


def _files_at(path: Path, folder: Path | None, problems: list[InputProblem]) -> list[DayFile]:
    """The day files that ``path`` holds: itself, or an archive's members."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return _archive_members(path, problems)
    member = str(path.relative_to(folder)) if folder is not None else ""
    if name.endswith(DAY_SUFFIXES) and not _hidden(path.name):
        return [DayFile(folder if folder is not None else path, member, False, name_date(path.name))]
    if folder is None:
        problems.append(InputProblem(str(path), None, None, "not a folder, a .zip archive or a .txt/.csv day file"))
    return []  # other files in a folder (a README, a checksum list) are not day files


def _archive_members(path: Path, problems: list[InputProblem]) -> list[DayFile]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (OSError, zipfile.BadZipFile) as e:
        problems.append(InputProblem(str(path), None, None, f"not a readable zip archive: {e}"))
        return []
    kept = sorted(n for n in names if n.lower().endswith(DAY_SUFFIXES) and not _hidden(n))
    return [DayFile(path, n, True, name_date(n)) for n in kept]


def _hidden(name: str) -> bool:
    """Archive debris (``__MACOSX/``, ``._20080102.txt``) that is not a day file."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith(".")


# --- reading -------------------------------------------------------------------------------------


def _units(files: Iterable[DayFile]) -> Iterator[list[DayFile]]:
    """Tasks for the pool: one per archive, chunks of loose files; file order is kept."""
    current: list[DayFile] = []
    for file in files:
        if current and (file.origin != current[0].origin or (not file.archive and len(current) >= FOLDER_CHUNK)):
            yield current
            current = []
        current.append(file)
    if current:
        yield current


def _read_unit(files: list[DayFile]) -> tuple[list[ParsedDay], list[InputProblem]]:
    parsed: list[ParsedDay] = []
    problems: list[InputProblem] = []
    archive: zipfile.ZipFile | None = None
    try:
        archive = zipfile.ZipFile(files[0].origin) if files[0].archive else None
        for file in files:
            try:
                data = archive.read(file.member) if archive is not None else _loose_bytes(file)
            except (OSError, zipfile.BadZipFile, KeyError) as e:
                problems.append(InputProblem(file.label, None, None, f"cannot read file: {e}"))
                continue
            day, found = _parse(file, data)
            parsed.append(day)
            problems.extend(found)
    except (OSError, zipfile.BadZipFile) as e:
        problems.append(InputProblem(str(files[0].origin), None, None, f"cannot read archive: {e}"))
    finally:
        if archive is not None:
            archive.close()
    return parsed, problems


def _loose_bytes(file: DayFile) -> bytes:
    return (file.origin / file.member if file.member else file.origin).read_bytes()


def _parse(file: DayFile, data: bytes) -> tuple[ParsedDay, list[InputProblem]]:
    """Parses one file's bytes; an empty (or whitespace-only) file has no table."""
    if not data.strip():
        return ParsedDay(file, None), []
    try:
        table = pacsv.read_csv(pa.py_buffer(data), read_options=_READ, parse_options=_PARSE, convert_options=_CONVERT)
    except pa.ArrowInvalid as e:
        found = _locate(file, data) or [InputProblem(file.label, None, None, f"malformed file: {e}")]
        return ParsedDay(file, None), found
    return ParsedDay(file, table, _row_lines(data)), []


def _text_lines(data: bytes) -> list[str]:
    return [line.rstrip("\r") for line in data.decode("utf-8", errors="replace").split("\n")]


def _row_lines(data: bytes) -> np.ndarray | None:
    """Line numbers of the rows when blank lines (which the parser skips) would shift them."""
    if not (data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data):
        return None
    lines = _text_lines(data)
    return np.array([n for n, line in enumerate(lines, 1) if line], dtype=np.int64)


def _locate(file: DayFile, data: bytes) -> list[InputProblem]:
    """The malformed lines of a file the parser refused, found line by line (error path only)."""
    found: list[InputProblem] = []
    for number, line in enumerate(_text_lines(data), 1):
        if not line:
            continue
        problem = _line_problem(line)
        if problem is not None:
            column, message = problem
            found.append(InputProblem(file.label, number, column, message))
            if len(found) == PROBLEMS_PER_FILE:
                break
    return found


def _line_problem(line: str) -> tuple[str | None, str] | None:
    """What is wrong with one line, as (column, message), or None when it is well formed."""
    fields = line.split(",")
    if len(fields) != len(COLUMNS):
        return (
            None,
            f"expected {len(COLUMNS)} fields ({_FORMAT}), got {len(fields)}: {line[:80]!r}",
        )
    if not fields[0].strip():
        return "code", "code is empty"
    if not re.fullmatch(r"\d{8}", fields[1]):
        return "date", f"{fields[1]!r} is not a YYYYMMDD date"
    for column, cell in zip(COLUMNS[2:], fields[2:], strict=True):
        try:
            float(cell)
        except ValueError:
            return column, f"{cell!r} is not a number"
        if cell != cell.strip():
            return column, f"{cell!r} has spaces around the number"
    return None
