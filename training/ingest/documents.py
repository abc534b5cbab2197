"""Loader for news and announcements that users bring (CSV, JSON, JSON Lines).

Unlike prices, where one bad row makes the whole file suspect, a news export with a
few broken records is still worth loading: :func:`load_documents` drops each
malformed record, reports it as an :class:`~training.errors.InputProblem` naming the
file, the record and the field, and keeps the rest. Only problems that concern the
whole file (unreadable, unknown suffix, empty, a required field absent everywhere)
raise :class:`~training.errors.IngestError`.

Every document's ``doc_id`` is :func:`~training.ingest.eodhd_parse.content_doc_id`
of its title and body, so a text from a file and the same text from the EODHD news
endpoint are the same document, stored once.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from feature_repo.tables import DOCUMENT_COLUMNS, SOURCE, SYNTHETIC, TICKER
from training.errors import IngestError, InputProblem
from training.ingest.eodhd_parse import content_doc_id

__all__ = [
    "CSV_SUFFIXES",
    "JSONL_SUFFIXES",
    "JSON_SUFFIXES",
    "DocumentBatch",
    "combine_documents",
    "load_documents",
    "skipped_records",
]

CSV_SUFFIXES: Final[tuple[str, ...]] = (".csv",)
JSON_SUFFIXES: Final[tuple[str, ...]] = (".json",)
JSONL_SUFFIXES: Final[tuple[str, ...]] = (".jsonl", ".ndjson")

_PUBLISHED_AT: Final = "published_at"
_ID: Final = "id"
_TEXTS: Final[tuple[str, ...]] = ("title", "body")
_BOTH_TEXTS: Final = "title/body"
_REQUIRED: Final[tuple[str, ...]] = (TICKER, _PUBLISHED_AT)
_FIELDS: Final[tuple[str, ...]] = (_ID, TICKER, _PUBLISHED_AT, SOURCE, *_TEXTS)
# Field names are compared after normalisation ("Published At" -> "published_at"),
# then mapped through these aliases (``content`` is what EODHD calls the body).
_ALIASES: Final[Mapping[str, str]] = {"symbol": TICKER, "headline": "title", "content": "body"}
_DTYPES: Final[Mapping[str, str]] = {
    name: {_PUBLISHED_AT: "datetime64[ns, UTC]", SYNTHETIC: "bool"}.get(name, "object") for name in DOCUMENT_COLUMNS
}


@dataclass(frozen=True)
class DocumentBatch:
    """What one documents file yielded.

    Attributes:
        frame: the good records in :data:`feature_repo.tables.DOCUMENT_COLUMNS`,
            one row per content hash (the first record with that text is kept),
            sorted by ticker then ``published_at``; ``synthetic`` False.
        problems: one entry per fault of each dropped record, in file order.
    """

    frame: pd.DataFrame
    problems: tuple[InputProblem, ...] = ()

    @property
    def skipped(self) -> int:
        """How many records were dropped (a record may have several problems)."""
        return skipped_records(self.problems)


@dataclass(frozen=True)
class _Record:
    """One record as read: its number in the file, its known fields (raw), and faults found reading it."""

    number: int
    fields: dict[str, object]
    faults: tuple[tuple[str | None, str], ...] = ()


def load_documents(path: Path, *, source: str | None = None) -> DocumentBatch:
    """Loads news or announcements from a user's file, keeping the good records.

    Formats, by suffix (case-insensitive):

    * ``.csv``: a header row, then one record per row. The record number is the
      line on which the row starts, as an editor shows it (the header is line 1,
      so the first record is row 2), as for price files; a quoted body spanning
      several lines does not shift the numbers of later rows. Blank rows are
      skipped. A row with more non-empty cells than the header (an unquoted comma
      in a title, typically) is malformed; a shorter row has empty trailing cells.
    * ``.json``: a list of objects, or an object whose ``documents`` key holds
      that list. The record number is the 1-based position in the list.
    * ``.jsonl`` / ``.ndjson``: one object per line; the record number is the
      line number. A line that is not JSON is a problem for that line only.

    Fields (names matched case-insensitively, ignoring spaces and punctuation;
    ``symbol``, ``headline`` and ``content`` are accepted for ``ticker``,
    ``title`` and ``body``; other fields are ignored):

    * ``ticker`` (required): stripped and upper-cased.
    * ``published_at`` (required): an ISO 8601 timestamp such as
      ``2024-01-02T09:30:00+10:00``; one without an offset is taken as UTC, a
      bare date as midnight UTC. Stored in UTC.
    * ``title``, ``body``: text; either may be empty, not both.
    * ``source`` (optional): defaults to the ``source`` argument, else the file
      name without its suffix.
    * ``id`` (optional): the publisher's identifier; only used to name the
      record in problems (``doc_id`` is always the content hash).

    Args:
        path: a ``.csv``, ``.json``, ``.jsonl`` or ``.ndjson`` file (UTF-8).
        source: the default ``source`` of records that name none.

    Returns:
        The good records, de-duplicated by content, and the problems of the rest.

    Raises:
        IngestError: the file cannot be read, has an unknown suffix, holds no
            records, or lacks a required field altogether (a CSV column, or a
            field that no JSON record has).
    """
    file = str(path)
    records, problems = _read(path, file)
    rows: dict[str, dict[str, Any]] = {}
    default = source or path.stem
    for record in records:
        document = _document(record, file, default, problems)
        if document is not None:
            rows.setdefault(document["doc_id"], document)
    problems.sort(key=lambda p: p.row or 0)  # stable: a record's problems keep their field order
    return DocumentBatch(_frame(list(rows.values())), tuple(problems))


def combine_documents(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenates ``DOCUMENT_COLUMNS`` frames, keeping the first row of each ``doc_id``.

    The result is sorted by ticker then ``published_at``, with the contract's dtypes.
    """
    if not frames:
        return _frame([])
    out = pd.concat(list(frames), ignore_index=True).loc[:, list(DOCUMENT_COLUMNS)]
    out = out.drop_duplicates(subset="doc_id", keep="first").astype(dict(_DTYPES))
    return out.sort_values([TICKER, _PUBLISHED_AT], kind="stable", ignore_index=True)


def skipped_records(problems: Iterable[InputProblem]) -> int:
    """How many distinct records (file and row) the problems concern; file-level ones are not counted."""
    return len({(p.file, p.row) for p in problems if p.row is not None})


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path, file: str) -> tuple[list[_Record], list[InputProblem]]:
    """Records of the file by its suffix, and the problems of records that could not be read."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return _read_csv(_text_of(path, file), file), []
    problems: list[InputProblem] = []
    if name.endswith(JSON_SUFFIXES):
        items = _json_items(_text_of(path, file), file)
    elif name.endswith(JSONL_SUFFIXES):
        items = _jsonl_items(_text_of(path, file), file, problems)
    else:
        supported = ", ".join((*CSV_SUFFIXES, *JSON_SUFFIXES, *JSONL_SUFFIXES))
        raise _file_error(file, None, f"unsupported file type; expected {supported}")
    return _objects(items, file, problems), problems


def _file_error(file: str, field: str | None, message: str) -> IngestError:
    return IngestError([InputProblem(file, None, field, message)])


def _text_of(path: Path, file: str) -> str:
    """The whole file as text (UTF-8, a byte-order mark allowed); raises if empty."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise _file_error(file, None, f"cannot read file: {e}") from e
    except UnicodeDecodeError as e:
        raise _file_error(file, None, f"not UTF-8 text: {e}") from e
    if not text.strip():
        raise _file_error(file, None, "file is empty")
    return text


def _canonical(name: str) -> str:
    """A field name lower-cased, runs of spaces/punctuation made one underscore, aliases applied."""
    normal = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return _ALIASES.get(normal, normal)


def _read_csv(text: str, file: str) -> list[_Record]:
    """Records of a CSV file, numbered by the line each starts on; header faults raise."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[_Record] = []
    try:
        header = next(reader)
        columns = _csv_columns(header, file)
        start = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append(_csv_record(start, cells, header, columns))
            start = reader.line_num + 1
    except csv.Error as e:
        raise _file_error(file, None, f"malformed CSV near line {reader.line_num}: {e}") from e
    if not records:
        raise _file_error(file, None, "file has no data rows")
    return records


def _csv_columns(header: list[str], file: str) -> dict[str, int]:
    """Known field -> column position; raises on a missing required or a repeated column."""
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        canonical = _canonical(name)
        if canonical in _FIELDS:
            positions.setdefault(canonical, []).append(index)
    problems = [
        InputProblem(file, None, field, f"column appears more than once in the header ({_spelled(header, found)})")
        for field, found in positions.items()
        if len(found) > 1
    ]
    problems += [InputProblem(file, None, f, "required column is missing") for f in _REQUIRED if f not in positions]
    if not any(text in positions for text in _TEXTS):
        problems.append(InputProblem(file, None, _BOTH_TEXTS, "needs a 'title' or a 'body' column"))
    if problems:
        raise IngestError(problems)
    return {field: found[0] for field, found in positions.items()}


def _spelled(header: list[str], positions: list[int]) -> str:
    return ", ".join(repr(header[i]) for i in positions)


def _csv_record(number: int, cells: list[str], header: list[str], columns: dict[str, int]) -> _Record:
    """One row's known cells; a row with non-empty cells beyond the header is faulty."""
    fields: dict[str, object] = {field: cells[i] if i < len(cells) else "" for field, i in columns.items()}
    if any(cell.strip() for cell in cells[len(header) :]):
        message = f"row has {len(cells)} cells but the header has {len(header)} (an unquoted comma?)"
        return _Record(number, fields, ((None, message),))
    return _Record(number, fields)


def _json_items(text: str, file: str) -> list[tuple[int, object]]:
    """The records of a ``.json`` file, numbered from 1; a wrong shape raises."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        raise _file_error(file, None, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e
    items = payload.get("documents") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise _file_error(file, None, "expected a JSON list of objects, or an object with a 'documents' list")
    if not items:
        raise _file_error(file, None, "file has no records")
    return list(enumerate(items, start=1))


def _jsonl_items(text: str, file: str, problems: list[InputProblem]) -> list[tuple[int, object]]:
    """The records of a JSON Lines file, numbered by line; a line that is not JSON is a problem."""
    items: list[tuple[int, object]] = []
    # Split on "\n" only: str.splitlines would also split on U+2028, which JSON text may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(InputProblem(file, number, None, f"not valid JSON: {e.msg} (column {e.colno})"))
    return items


def _objects(items: list[tuple[int, object]], file: str, problems: list[InputProblem]) -> list[_Record]:
    """JSON records with canonical field names; a non-object is a problem, a repeated field a fault."""
    records: list[_Record] = []
    for number, item in items:
        if not isinstance(item, dict):
            problems.append(InputProblem(file, number, None, f"expected a JSON object, got {_show(item)}"))
            continue
        fields: dict[str, object] = {}
        spelled: dict[str, str] = {}
        faults: list[tuple[str | None, str]] = []
        for key, value in item.items():
            canonical = _canonical(str(key))
            if canonical not in _FIELDS:
                continue
            if canonical in spelled:
                faults.append((canonical, f"given twice (as {spelled[canonical]!r} and {key!r})"))
            spelled[canonical] = str(key)
            fields[canonical] = value
        records.append(_Record(number, fields, tuple(faults)))
    _check_fields_present(records, file)
    return records


def _check_fields_present(records: list[_Record], file: str) -> None:
    """Raises when a required field is in no record: a misnamed field, not bad records."""
    if not records:
        return
    seen = set().union(*(record.fields for record in records))
    problems = [InputProblem(file, None, f, "required field is in no record") for f in _REQUIRED if f not in seen]
    if not seen.intersection(_TEXTS):
        problems.append(InputProblem(file, None, _BOTH_TEXTS, "no record has a 'title' or a 'body'"))
    if problems:
        raise IngestError(problems)


# --- checking records --------------------------------------------------------------------------


def _document(record: _Record, file: str, default_source: str, problems: list[InputProblem]) -> dict[str, Any] | None:
    """The record as a document row, or ``None`` after adding its problems to ``problems``."""
    fields = record.fields
    faults = list(record.faults)
    values: dict[str, Any] = {}
    for field, parse in ((TICKER, _ticker), (_PUBLISHED_AT, _published_at), ("title", _text), ("body", _text)):
        try:
            values[field] = parse(fields.get(field))
        except ValueError as e:
            faults.append((field, str(e)))
    try:
        values[SOURCE] = _text(fields.get(SOURCE)) or default_source
    except ValueError as e:
        faults.append((SOURCE, str(e)))
    if values.get("title") == "" and values.get("body") == "":
        faults.append((_BOTH_TEXTS, "title and body are both empty"))
    if faults:
        label = _label(fields.get(_ID))
        problems.extend(InputProblem(file, record.number, field, message + label) for field, message in faults)
        return None
    values["doc_id"] = content_doc_id(values["title"], values["body"])
    return values


def _label(value: object) -> str:
    """Names the record by the publisher's id in messages, when it has one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    text = value.strip() if isinstance(value, str) else value
    return f" (record id {_show(text)})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _ticker(value: object) -> str:
    """The ticker stripped and upper-cased; raises ValueError when absent, empty or not text."""
    if value is None:
        raise ValueError("ticker is missing")
    if not isinstance(value, str):
        raise ValueError(f"expected the ticker as text, got {_show(value)}")
    if not value.strip():
        raise ValueError("ticker is empty")
    return value.strip().upper()


def _published_at(value: object) -> pd.Timestamp:
    """A UTC timestamp from ISO 8601 text; no offset means UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("published_at is missing")
    problem = f"expected an ISO 8601 timestamp (e.g. 2024-01-02T09:30:00+10:00), got {_show(value)}"
    if not isinstance(value, str):
        raise ValueError(problem)
    try:
        stamp = pd.Timestamp(datetime.fromisoformat(value.strip()))
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.as_unit("ns")  # raises OutOfBoundsDatetime (a ValueError) outside 1677-2262
    except ValueError as e:
        raise ValueError(problem) from e


def _text(value: object) -> str:
    """Optional text: stripped, ``""`` when absent; raises ValueError when not text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_show(value)}")
    return value.strip()


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The contract frame of document rows, sorted by ticker then time."""
    columns = {name: [row[name] for row in rows] for name in DOCUMENT_COLUMNS if name != SYNTHETIC}
    columns[SYNTHETIC] = [False] * len(rows)
    frame = pd.DataFrame({name: pd.Series(columns[name], dtype=dtype) for name, dtype in _DTYPES.items()})
    return frame.sort_values([TICKER, _PUBLISHED_AT], kind="stable", ignore_index=True)
