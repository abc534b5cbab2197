"""Pure parsers of EODHD answers: decoded JSON in, contract frames out.

Each parser turns one endpoint's decoded body into rows of a column contract of
:mod:`feature_repo.tables` (``PRICE_COLUMNS``, ``FUNDAMENTAL_COLUMNS``,
``DOCUMENT_COLUMNS``), tagged ``source="eodhd"`` and ``synthetic=False``. They do
no I/O and see no API key; :class:`training.ingest.eodhd.EodhdClient` fetches the
bodies and hands them here. A body that cannot be read raises
:class:`EodhdFormatError` listing every problem found, not just the first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Final

import pandas as pd

from feature_repo.tables import (
    DOCUMENT_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    FUNDAMENTAL_VALUE_COLUMNS,
    PRICE_COLUMNS,
)
from training.errors import DataSourceError, IngestError, InputProblem

SOURCE: Final = "eodhd"

_PRICE_FIELDS: Final = ("open", "high", "low", "close", "adjusted_close", "volume")
_REQUIRED_PRICE_FIELDS: Final = frozenset({"close", "adjusted_close"})
_STATEMENTS: Final = ("Income_Statement", "Balance_Sheet", "Cash_Flow")
# Contract column -> (statement, EODHD field).
_FUNDAMENTAL_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "revenue": ("Income_Statement", "totalRevenue"),
    "net_income": ("Income_Statement", "netIncome"),
    "operating_cash_flow": ("Cash_Flow", "totalCashFromOperatingActivities"),
    "total_assets": ("Balance_Sheet", "totalAssets"),
    "total_equity": ("Balance_Sheet", "totalStockholderEquity"),
    "total_debt": ("Balance_Sheet", "shortLongTermDebtTotal"),
    "shares_outstanding": ("Balance_Sheet", "commonStockSharesOutstanding"),
}


def _dtypes(columns: tuple[str, ...], special: Mapping[str, str]) -> dict[str, str]:
    """Column -> dtype in the contract's order; text columns stay ``object``."""
    return {name: special.get(name, "object") for name in columns}


_PRICE_DTYPES: Final = _dtypes(
    PRICE_COLUMNS,
    {"date": "datetime64[ns]", "synthetic": "bool"}
    | dict.fromkeys(("open", "high", "low", "close", "adj_close", "volume"), "float64"),
)
_FUNDAMENTAL_DTYPES: Final = _dtypes(
    FUNDAMENTAL_COLUMNS,
    {"period_end": "datetime64[ns]", "report_date": "datetime64[ns]", "synthetic": "bool"}
    | dict.fromkeys(FUNDAMENTAL_VALUE_COLUMNS, "float64"),
)
_DOCUMENT_DTYPES: Final = _dtypes(DOCUMENT_COLUMNS, {"published_at": "datetime64[ns, UTC]", "synthetic": "bool"})


class EodhdFormatError(DataSourceError, IngestError):
    """EODHD answered with a body this client cannot read.

    Both a :class:`DataSourceError` (the source misbehaved) and an
    :class:`IngestError` (nothing was ingested; every problem is listed).

    Attributes:
        problems: every problem found, each naming the endpoint and symbol (as
            ``file``), the 1-based record number (``row``) and the field (``column``).
    """


# -- helpers -------------------------------------------------------------------------------------


def content_doc_id(title: str, body: str) -> str:
    """Content hash of a document: sha256 hex of the normalised title and body.

    Normalising (lower case, runs of whitespace collapsed to one space, ends
    stripped) makes copies that differ only in layout hash the same.

    Args:
        title: the headline.
        body: the text.

    Returns:
        64 hexadecimal characters.
    """
    text = _normalise(title) + "\n" + _normalise(body)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: object) -> float:
    """A float from a JSON number or numeric string; NaN for null.

    Raises:
        ValueError: on booleans, non-numeric strings, infinities and other types.
    """
    if value is None:
        return math.nan
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            # Fundamentals come as strings ("123.45").
            number = float(value)
        except ValueError:
            number = None
    if number is None or math.isinf(number):
        raise ValueError(f"expected a number, got {_show(value)}")
    return number


def _day(value: object) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a date 'YYYY-MM-DD', got {_show(value)}")


def _frame(columns: Mapping[str, list[Any]], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A frame with exactly the contract's columns, in order, with fixed dtypes."""
    return pd.DataFrame({name: pd.Series(columns.get(name, []), dtype=dtype) for name, dtype in dtypes.items()})


def _raise_if_any(problems: list[InputProblem]) -> None:
    if problems:
        raise EodhdFormatError(problems)


# -- prices --------------------------------------------------------------------------------------


def parse_prices(payload: object, ticker: str, where: str) -> pd.DataFrame:
    """Rows of the ``/eod`` answer as a ``PRICE_COLUMNS`` frame.

    Args:
        payload: the decoded JSON body, a list of daily bars.
        ticker: the value of the ``ticker`` column.
        where: the endpoint and symbol, named in every problem reported.

    Returns:
        The bars sorted by date.

    Raises:
        EodhdFormatError: the body is not a list, or a bar is malformed, misses
            ``close``/``adjusted_close`` or repeats a date.
    """
    if not isinstance(payload, list):
        raise EodhdFormatError([InputProblem(where, None, None, f"expected a JSON list, got {_show(payload)}")])
    problems: list[InputProblem] = []
    columns: dict[str, list[Any]] = {name: [] for name in ("date", *_PRICE_FIELDS)}
    seen: set[date] = set()
    for row, record in enumerate(payload, start=1):
        parsed = _price_record(record, row, where, problems)
        if parsed is None:
            continue
        if parsed["date"] in seen:
            problems.append(InputProblem(where, row, "date", f"duplicate date {parsed['date']}"))
            continue
        seen.add(parsed["date"])
        for name, value in parsed.items():
            columns[name].append(value)
    _raise_if_any(problems)
    n = len(columns["date"])
    columns["date"] = [pd.Timestamp(day) for day in columns["date"]]
    columns["adj_close"] = columns.pop("adjusted_close")
    columns |= {"ticker": [ticker] * n, "source": [SOURCE] * n, "synthetic": [False] * n}
    frame = _frame(columns, _PRICE_DTYPES)
    return frame.sort_values("date", kind="stable", ignore_index=True)


def combine_prices(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-symbol ``PRICE_COLUMNS`` frames, sorted by ticker then date."""
    if not frames:
        return _frame({}, _PRICE_DTYPES)
    # concat of frames that are all empty would lose the datetime dtype; rebuild it.
    out = pd.concat(frames, ignore_index=True).astype(dict(_PRICE_DTYPES))
    return out.sort_values(["ticker", "date"], kind="stable", ignore_index=True)


def _price_record(record: object, row: int, where: str, problems: list[InputProblem]) -> dict[str, Any] | None:
    """One bar, or ``None`` after recording why it cannot be read."""
    if not isinstance(record, dict):
        problems.append(InputProblem(where, row, None, f"expected a JSON object, got {_show(record)}"))
        return None
    before = len(problems)
    out: dict[str, Any] = {}
    try:
        out["date"] = _day(record.get("date"))
    except ValueError as exc:
        problems.append(InputProblem(where, row, "date", str(exc)))
    for field in _PRICE_FIELDS:
        try:
            out[field] = _number(record.get(field))
        except ValueError as exc:
            problems.append(InputProblem(where, row, field, str(exc)))
            continue
        if field in _REQUIRED_PRICE_FIELDS and math.isnan(out[field]):
            problems.append(InputProblem(where, row, field, "missing (null)"))
    return out if len(problems) == before else None


# -- fundamentals --------------------------------------------------------------------------------


def parse_fundamentals(payload: object, ticker: str, where: str, lag: timedelta) -> pd.DataFrame:
    """Quarterly statements of the ``/fundamentals`` answer as a ``FUNDAMENTAL_COLUMNS`` frame.

    Args:
        payload: the decoded JSON body, an object with ``Financials``.
        ticker: the value of the ``ticker`` column.
        where: the endpoint and symbol, named in every problem reported.
        lag: added to ``period_end`` when a quarter has no filing date.

    Returns:
        One row per quarter with any value, sorted by ``period_end``.

    Raises:
        EodhdFormatError: no ``Financials`` object, or malformed dates or values.
    """
    financials = payload.get("Financials") if isinstance(payload, dict) else None
    if not isinstance(financials, dict):
        message = "no 'Financials' object (an ETF or index, or a plan without fundamentals?)"
        raise EodhdFormatError([InputProblem(where, None, "Financials", message)])
    problems: list[InputProblem] = []
    periods: dict[date, dict[str, Any]] = {}
    for statement in _STATEMENTS:
        _collect_statement(financials, statement, where, periods, problems)
    _raise_if_any(problems)
    columns: dict[str, list[Any]] = {name: [] for name in FUNDAMENTAL_COLUMNS}
    for period_end in sorted(periods):
        values = [periods[period_end].get(name, math.nan) for name in FUNDAMENTAL_VALUE_COLUMNS]
        if all(math.isnan(v) for v in values):
            continue  # an empty quarter tells nothing and would only add a report date
        filed: list[date] = periods[period_end]["filed"]
        report = max(filed) if filed else period_end + lag
        columns["ticker"].append(ticker)
        columns["period_end"].append(pd.Timestamp(period_end))
        columns["report_date"].append(pd.Timestamp(report))
        for name, value in zip(FUNDAMENTAL_VALUE_COLUMNS, values, strict=True):
            columns[name].append(value)
        columns["source"].append(SOURCE)
        columns["synthetic"].append(False)
    return _frame(columns, _FUNDAMENTAL_DTYPES)


def _collect_statement(
    financials: dict[Any, Any],
    statement: str,
    where: str,
    periods: dict[date, dict[str, Any]],
    problems: list[InputProblem],
) -> None:
    """Merge one statement's quarterly records into ``periods`` (keyed by period end)."""
    section = financials.get(statement)
    quarterly = section.get("quarterly") if isinstance(section, dict) else None
    if quarterly is None:
        return  # a missing statement leaves its columns NaN
    base = f"Financials.{statement}.quarterly"
    if not isinstance(quarterly, dict):
        problems.append(InputProblem(where, None, base, f"expected a JSON object, got {_show(quarterly)}"))
        return
    fields = {name: field for name, (stmt, field) in _FUNDAMENTAL_FIELDS.items() if stmt == statement}
    for key, record in quarterly.items():
        path = f"{base}.{key}"
        if not isinstance(record, dict):
            problems.append(InputProblem(where, None, path, f"expected a JSON object, got {_show(record)}"))
            continue
        try:
            period_end = _day(record.get("date", key))
            filing = record.get("filing_date")
            filed = None if filing is None else _day(filing)
        except ValueError as exc:
            problems.append(InputProblem(where, None, path, str(exc)))
            continue
        entry = periods.setdefault(period_end, {"filed": []})
        if filed is not None:
            entry["filed"].append(filed)
        for name, field in fields.items():
            try:
                entry[name] = _number(record.get(field))
            except ValueError as exc:
                problems.append(InputProblem(where, None, f"{path}.{field}", str(exc)))


# -- news ----------------------------------------------------------------------------------------


def parse_news_page(payload: object, ticker: str, where: str, offset: int) -> list[dict[str, Any]]:
    """One page of the ``/news`` answer as document rows; record numbers count across pages.

    Args:
        payload: the decoded JSON body, a list of articles.
        ticker: the value of the ``ticker`` column.
        where: the endpoint and symbol, named in every problem reported.
        offset: how many articles earlier pages held.

    Returns:
        Rows for :func:`document_frame`, in the page's order, duplicates kept.

    Raises:
        EodhdFormatError: the body is not a list, or an article is malformed.
    """
    if not isinstance(payload, list):
        message = f"expected a JSON list, got {_show(payload)}"
        raise EodhdFormatError([InputProblem(where, None, None, message)])
    problems: list[InputProblem] = []
    rows: list[dict[str, Any]] = []
    for row, record in enumerate(payload, start=offset + 1):
        if not isinstance(record, dict):
            problems.append(InputProblem(where, row, None, f"expected a JSON object, got {_show(record)}"))
            continue
        texts: dict[str, str] = {}
        for field in ("title", "content"):
            value = record.get(field)
            if value is not None and not isinstance(value, str):
                problems.append(InputProblem(where, row, field, f"expected text, got {_show(value)}"))
            texts[field] = value if isinstance(value, str) else ""
        try:
            published = _utc_timestamp(record.get("date"))
        except ValueError as exc:
            problems.append(InputProblem(where, row, "date", str(exc)))
            continue
        rows.append(
            {
                "doc_id": content_doc_id(texts["title"], texts["content"]),
                "ticker": ticker,
                "published_at": published,
                "title": texts["title"],
                "body": texts["content"],
            }
        )
    _raise_if_any(problems)
    return rows


def _utc_timestamp(value: object) -> pd.Timestamp:
    """A UTC timestamp; a value without offset is taken as UTC (EODHD documents UTC)."""
    if isinstance(value, str) and value.strip():
        try:
            stamp = pd.Timestamp(value)
        except ValueError:
            pass
        else:
            if not pd.isna(stamp):
                return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    raise ValueError(f"expected an ISO 8601 timestamp, got {_show(value)}")


def document_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``DOCUMENT_COLUMNS`` frame keeping the first row of each ``doc_id``."""
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["doc_id"], row)
    columns: dict[str, list[Any]] = {
        name: [row[name] for row in unique.values()] for name in ("doc_id", "ticker", "published_at", "title", "body")
    }
    n = len(unique)
    columns |= {"source": [SOURCE] * n, "synthetic": [False] * n}
    return _frame(columns, _DOCUMENT_DTYPES)
