"""EODHD API client: end-of-day prices, quarterly fundamentals and news.

Every method returns a frame in a column contract of :mod:`feature_repo.tables`
(``PRICE_COLUMNS``, ``FUNDAMENTAL_COLUMNS``, ``DOCUMENT_COLUMNS``), tagged
``source="eodhd"`` and ``synthetic=False``.

The API key never leaves the transport. EODHD only accepts the key as the
``api_token`` query parameter, and httpx logs every request URL at INFO, so the
client builds token-free requests and a small transport adds the token to the
copy that goes on the wire. The requests httpx logs, attaches to responses and to
exceptions are therefore the token-free ones; messages this module builds from
response bodies are redacted as well, in case a server echoes the key back.

Example:
    >>> with EodhdClient() as client:  # reads EODHD_API_KEY
    ...     prices = client.eod_prices("AAPL.US", "2024-01-01", "2024-06-30")
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import httpx
import pandas as pd
from pydantic import SecretStr

from feature_repo.tables import (
    DOCUMENT_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    FUNDAMENTAL_VALUE_COLUMNS,
    PRICE_COLUMNS,
)
from training.errors import DataSourceError, IngestError, InputProblem

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://eodhd.com/api"
API_KEY_ENV: Final = "EODHD_API_KEY"
SOURCE: Final = "eodhd"
# EODHD caps a news page at 1000 items.
MAX_NEWS_PAGE_SIZE: Final = 1000

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
_SNIPPET_CHARS: Final = 200


class EodhdFormatError(DataSourceError, IngestError):
    """EODHD answered with a body this client cannot read.

    Both a :class:`DataSourceError` (the source misbehaved) and an
    :class:`IngestError` (nothing was ingested; every problem is listed).

    Attributes:
        problems: every problem found, each naming the endpoint and symbol (as
            ``file``), the 1-based record number (``row``) and the field (``column``).
    """


class _TokenTransport(httpx.BaseTransport):
    """Adds ``api_token`` to the request that goes on the wire, and nowhere else.

    httpx logs, and attaches to responses and exceptions, the request the client
    built; this transport sends a copy with the token, so the key never reaches
    a log record, an exception or a ``repr``.
    """

    def __init__(self, token: SecretStr, inner: httpx.BaseTransport) -> None:
        self._token = token
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_merge_params({"api_token": self._token.get_secret_value()})
        wire = httpx.Request(
            request.method, url, headers=request.headers, stream=request.stream, extensions=request.extensions
        )
        return self._inner.handle_request(wire)

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return "_TokenTransport(api_token='***')"


class EodhdClient:
    """Synchronous client for the EODHD REST API with retries and a redacted key.

    Retries (with exponential backoff and jitter) on HTTP 429, HTTP 5xx, timeouts
    and other transport errors; a numeric ``Retry-After`` header is honoured.
    Other 4xx answers fail at once. Every failure is a
    :class:`~training.errors.DataSourceError` naming the endpoint and symbol.

    Args:
        api_key: the EODHD key; read from ``EODHD_API_KEY`` when omitted.
        base_url: API root, overridable for tests and proxies.
        timeout: read/write/pool timeout in seconds, per attempt.
        connect_timeout: connect timeout in seconds, per attempt.
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts).
        backoff: first backoff delay in seconds; doubles on each retry.
        max_backoff: cap on the computed backoff delay in seconds.
        max_retry_after: the longest ``Retry-After`` the client will wait; a
            longer one (an exhausted daily quota, say) fails at once instead.
        sleep: how to wait between attempts; tests inject a recorder.
        rng: random source of the jitter; seed it for reproducible delays.

    Raises:
        DataSourceError: when no key is given and ``EODHD_API_KEY`` is unset or empty.
        ValueError: on a negative retry count, backoff or non-positive timeout.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key.strip():
            raise DataSourceError(f"EODHD API key missing: set the {API_KEY_ENV} environment variable or pass api_key=")
        if max_retries < 0 or backoff < 0 or max_backoff < 0 or max_retry_after < 0:
            raise ValueError("max_retries, backoff, max_backoff and max_retry_after must be >= 0")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be > 0")
        self._key = SecretStr(key.strip())
        self._base_url = base_url.rstrip("/")
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._http = httpx.Client(
            base_url=self._base_url + "/",
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=_TokenTransport(self._key, httpx.HTTPTransport(retries=0)),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"EodhdClient(base_url={self._base_url!r}, api_key='***', max_retries={self._max_retries})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    # -- endpoints -------------------------------------------------------------------------------

    def eod_prices(self, symbol: str, start: date | str, end: date | str) -> pd.DataFrame:
        """Daily bars of one symbol between two session dates, both included.

        Args:
            symbol: EODHD symbol with exchange suffix (``"AAPL.US"``, ``"BHP.AU"``);
                the ``ticker`` column holds it upper-cased, as the contract requires.
            start: first session date (``date`` or ``"YYYY-MM-DD"``).
            end: last session date.

        Returns:
            A frame in ``PRICE_COLUMNS`` sorted by date; empty when there are no bars.

        Raises:
            DataSourceError: the request failed after retries or the answer was malformed.
            ValueError: on an empty symbol or a bad date range.
        """
        path = f"eod/{_path_symbol(symbol)}"
        params = {"fmt": "json", **_date_range(start, end)}
        payload = self._get_json(path, params, symbol)
        return _parse_prices(payload, _ticker(symbol), f"EODHD /{path}")

    def eod_prices_many(self, symbols: Iterable[str], start: date | str, end: date | str) -> pd.DataFrame:
        """Daily bars of several symbols, concatenated (see :meth:`eod_prices`).

        Args:
            symbols: EODHD symbols; repeats are fetched once.
            start: first session date.
            end: last session date.

        Returns:
            A frame in ``PRICE_COLUMNS`` sorted by ticker then date.

        Raises:
            DataSourceError: any symbol failed; nothing is returned for the others.
        """
        unique = list(dict.fromkeys(symbols))
        frames = [self.eod_prices(symbol, start, end) for symbol in unique]
        if not frames:
            return _frame({}, _PRICE_DTYPES)
        # concat of frames that are all empty would lose the datetime dtype; rebuild it.
        out = pd.concat(frames, ignore_index=True).astype(dict(_PRICE_DTYPES))
        return out.sort_values(["ticker", "date"], kind="stable", ignore_index=True)

    def fundamentals(self, symbol: str, *, fallback_report_lag_days: int = 45) -> pd.DataFrame:
        """Quarterly fundamentals of one symbol, visible from their filing date.

        ``report_date`` is the latest ``filing_date`` among the three statements of
        the quarter, so a row becomes visible only once all of it was public. When
        EODHD gives no filing date, ``period_end + fallback_report_lag_days`` is
        used: 45 days is the SEC 10-Q deadline for large filers, a conservative
        guess for quarters (annual reports may come later still, up to 90 days).
        Quarters with no value at all are dropped.

        Args:
            symbol: EODHD symbol with exchange suffix.
            fallback_report_lag_days: days after period end assumed when the filing
                date is missing.

        Returns:
            A frame in ``FUNDAMENTAL_COLUMNS`` sorted by ``period_end``.

        Raises:
            DataSourceError: the request failed, or the answer has no ``Financials``
                object (ETFs and indices have none) or malformed values.
        """
        path = f"fundamentals/{_path_symbol(symbol)}"
        payload = self._get_json(path, {"fmt": "json"}, symbol)
        lag = timedelta(days=fallback_report_lag_days)
        return _parse_fundamentals(payload, _ticker(symbol), f"EODHD /{path}", lag)

    def news(
        self,
        symbol: str,
        start: date | str,
        end: date | str,
        *,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> pd.DataFrame:
        """News articles tagged with one symbol, de-duplicated by content.

        Pages through ``offset``/``limit`` until a page comes back shorter than
        ``page_size`` (or empty), or ``max_pages`` pages were read (logged as a
        warning, since more articles may exist). ``doc_id`` is the sha256 of the
        normalised title and body (see :func:`content_doc_id`); an article that
        appears twice (syndicated copies, a page boundary that moved while paging)
        is kept once, at its first appearance.

        Args:
            symbol: EODHD symbol with exchange suffix.
            start: first publication date.
            end: last publication date.
            page_size: articles per request, 1 to 1000.
            max_pages: the most requests made.

        Returns:
            A frame in ``DOCUMENT_COLUMNS`` with ``published_at`` in UTC.

        Raises:
            DataSourceError: a request failed after retries or a page was malformed.
            ValueError: on a bad page size, page count, symbol or date range.
        """
        if not 1 <= page_size <= MAX_NEWS_PAGE_SIZE or max_pages < 1:
            raise ValueError(f"page_size must be in 1..{MAX_NEWS_PAGE_SIZE} and max_pages >= 1")
        what = f"EODHD /news (s={_ticker(symbol)})"
        params: dict[str, str | int] = {"s": _clean_symbol(symbol), "fmt": "json", **_date_range(start, end)}
        rows: list[dict[str, Any]] = []
        for page in range(max_pages):
            offset = page * page_size
            payload = self._get_json("news", {**params, "offset": offset, "limit": page_size}, symbol)
            items = _parse_news_page(payload, _ticker(symbol), what, offset)
            rows.extend(items)
            if len(items) < page_size:
                break
        else:
            logger.warning("%s: stopped after max_pages=%d; older articles may be missing", what, max_pages)
        return _document_frame(rows)

    # -- transport -------------------------------------------------------------------------------

    def _get_json(self, path: str, params: Mapping[str, str | int], symbol: str) -> object:
        """GET ``path`` with retries and decode the JSON body."""
        what = f"EODHD /{path.partition('/')[0]} for symbol {symbol!r}"
        response = self._send(path, params, what)
        try:
            return response.json()
        except ValueError as exc:
            raise DataSourceError(
                f"{what}: answer is not JSON (HTTP {response.status_code}, "
                f"content-type {response.headers.get('content-type')!r}): {self._snippet(response)}"
            ) from exc

    def _send(self, path: str, params: Mapping[str, str | int], what: str) -> httpx.Response:
        """Send one GET, retrying on 429, 5xx and transport errors."""
        attempts = self._max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.get(path, params=dict(params))
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
                if last:
                    raise DataSourceError(f"{what}: {reason} after {attempts} attempt(s)") from exc
                self._pause(attempt, None, what, reason)
                continue
            if response.is_success:
                return response
            if not _retryable(response.status_code) or last:
                raise self._status_error(response, what, attempt + 1)
            self._pause(attempt, _retry_after(response), what, f"HTTP {response.status_code}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pause(self, attempt: int, retry_after: float | None, what: str, reason: str) -> None:
        """Wait before retry ``attempt + 1``: backoff with jitter, at least ``Retry-After``."""
        # "Equal jitter": half the exponential delay is fixed, half random, so
        # clients that failed together do not retry together.
        ceiling = min(self._max_backoff, self._backoff * 2**attempt)
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            if retry_after > self._max_retry_after:
                raise DataSourceError(
                    f"{what}: {reason} with Retry-After {retry_after:g}s, longer than "
                    f"max_retry_after={self._max_retry_after:g}s (quota exhausted?); giving up"
                )
            delay = max(delay, retry_after)
        logger.warning("%s: %s; retry %d/%d in %.2fs", what, reason, attempt + 1, self._max_retries, delay)
        self._sleep(delay)

    def _status_error(self, response: httpx.Response, what: str, attempts: int) -> DataSourceError:
        status = response.status_code
        if status in (401, 403):
            hint = f"the API key was rejected or the plan lacks this endpoint; check {API_KEY_ENV}"
        elif status == 404:
            hint = "unknown symbol or endpoint"
        elif _retryable(status):
            hint = f"still failing after {attempts} attempt(s)"
        else:
            hint = "request refused"
        return DataSourceError(f"{what}: HTTP {status} ({hint}): {self._snippet(response)}")

    def _snippet(self, response: httpx.Response) -> str:
        text = " ".join(response.text[:_SNIPPET_CHARS].split())
        return repr(self._redact(text))

    def _redact(self, text: str) -> str:
        key = self._key.get_secret_value()
        for form in {key, quote(key, safe=""), quote(key)}:
            text = text.replace(form, "***")
        return text


# -- helpers (pure) ------------------------------------------------------------------------------


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


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a numeric ``Retry-After``; ``None`` when absent or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _ticker(symbol: str) -> str:
    return symbol.strip().upper()


def _clean_symbol(symbol: str) -> str:
    """The symbol stripped; refuses what cannot be a symbol (and could bend the URL)."""
    cleaned = symbol.strip()
    if not cleaned or any(ch.isspace() or ch in "/?#&" for ch in cleaned):
        raise ValueError(f"not an EODHD symbol: {symbol!r}")
    return cleaned


def _path_symbol(symbol: str) -> str:
    return quote(_clean_symbol(symbol), safe="")


def _iso_day(value: date | str, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}") from exc


def _date_range(start: date | str, end: date | str) -> dict[str, str]:
    first, last = _iso_day(start, "start"), _iso_day(end, "end")
    if first > last:
        raise ValueError(f"start {first} is after end {last}")
    return {"from": first.isoformat(), "to": last.isoformat()}


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


def _parse_prices(payload: object, ticker: str, where: str) -> pd.DataFrame:
    """Rows of the ``/eod`` answer as a ``PRICE_COLUMNS`` frame."""
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


def _parse_fundamentals(payload: object, ticker: str, where: str, lag: timedelta) -> pd.DataFrame:
    """Quarterly statements of the ``/fundamentals`` answer as a ``FUNDAMENTAL_COLUMNS`` frame."""
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


def _parse_news_page(payload: object, ticker: str, where: str, offset: int) -> list[dict[str, Any]]:
    """One page of the ``/news`` answer as document rows; record numbers count across pages."""
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


def _document_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
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
