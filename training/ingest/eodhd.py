"""EODHD API client: end-of-day prices, quarterly fundamentals and news.

Every method returns a frame in a column contract of :mod:`feature_repo.tables`
(``PRICE_COLUMNS``, ``FUNDAMENTAL_COLUMNS``, ``DOCUMENT_COLUMNS``), tagged
``source="eodhd"`` and ``synthetic=False``. This module holds the transport
(requests, retries, key redaction); the pure parsers of the answers live in
:mod:`training.ingest.eodhd_parse`.

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

from training.errors import DataSourceError
from training.ingest.eodhd_parse import (
    SOURCE,
    EodhdFormatError,
    combine_prices,
    content_doc_id,
    document_frame,
    parse_fundamentals,
    parse_news_page,
    parse_prices,
)

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "MAX_NEWS_PAGE_SIZE",
    "SOURCE",
    "EodhdClient",
    "EodhdFormatError",
    "content_doc_id",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://eodhd.com/api"
API_KEY_ENV: Final = "EODHD_API_KEY"
# EODHD caps a news page at 1000 items.
MAX_NEWS_PAGE_SIZE: Final = 1000
_SNIPPET_CHARS: Final = 200


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
        return parse_prices(payload, _ticker(symbol), f"EODHD /{path}")

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
        return combine_prices(frames)

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
        return parse_fundamentals(payload, _ticker(symbol), f"EODHD /{path}", lag)

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
            items = parse_news_page(payload, _ticker(symbol), what, offset)
            rows.extend(items)
            if len(items) < page_size:
                break
        else:
            logger.warning("%s: stopped after max_pages=%d; older articles may be missing", what, max_pages)
        return document_frame(rows)

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
