"""A real HTTP server on 127.0.0.1 that answers like (a small part of) the EODHD API.

It serves ``/api/eod/{SYMBOL}``, ``/api/fundamentals/{SYMBOL}`` and ``/api/news``
from in-memory data, and has knobs for the failures a client must survive:
a required token (401 otherwise), the first N requests failing with 429/503,
slow answers (timeouts), raw (malformed) bodies per path, and a log of every
request received. The sample-data factories for the EODHD tests live here too.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

TEST_TOKEN = "tok-9f8e7d6c-NEVER-LOG-ME"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received: decoded path and query parameters."""

    path: str
    params: dict[str, str]


@dataclass
class FakeEodhd:
    """In-memory EODHD. Set the public attributes before (or between) client calls.

    Attributes:
        api_token: the token every request must carry, else 401.
        prices: symbol -> list of ``/eod`` records.
        fundamentals: symbol -> ``/fundamentals`` payload.
        news: symbol -> every article, served in pages by ``offset``/``limit``.
        fail_first: the first N requests answer ``fail_status`` instead.
        fail_status: status of those failures (429, 503, ...).
        retry_after: ``Retry-After`` header sent with them, if any.
        delay_first: the first N requests wait ``delay_s`` before answering.
        delay_s: how long those wait.
        raw_bodies: path (``"/api/eod/AAPL.US"``) -> body sent with 200 instead of data.
        requests: every request received, in order.
    """

    api_token: str = TEST_TOKEN
    prices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fundamentals: dict[str, Any] = field(default_factory=dict)
    news: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    delay_first: int = 0
    delay_s: float = 0.0
    raw_bodies: dict[str, bytes] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _httpd: _Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api"

    def start(self) -> Self:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-eodhd", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def paths(self) -> list[str]:
        """Paths of the requests received, in order."""
        with self._lock:
            return [r.path for r in self.requests]

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, extra headers and body for one request (called by the handler)."""
        with self._lock:
            self.requests.append(RecordedRequest(path, params))
            n = len(self.requests)
        if n <= self.delay_first:
            self._stopping.wait(self.delay_s)
        if n <= self.fail_first:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return self.fail_status, headers, _json({"error": f"injected failure {n}"})
        if params.get("api_token") != self.api_token:
            return 401, {}, b"Unauthenticated"
        if path in self.raw_bodies:
            return 200, {}, self.raw_bodies[path]
        return self._route(path, params)

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/api/eod/"):
            rows = self.prices.get(path.removeprefix("/api/eod/"))
            if rows is None:
                return 404, {}, b"Ticker Not Found."
            lo, hi = params.get("from", ""), params.get("to", "9999")
            return 200, {}, _json([r for r in rows if lo <= str(r.get("date")) <= hi])
        if path.startswith("/api/fundamentals/"):
            payload = self.fundamentals.get(path.removeprefix("/api/fundamentals/"))
            return (404, {}, b"Ticker Not Found.") if payload is None else (200, {}, _json(payload))
        if path == "/api/news":
            items = self.news.get(params.get("s", ""), [])
            offset, limit = int(params.get("offset", "0")), int(params.get("limit", "50"))
            return 200, {}, _json(items[offset : offset + limit])
        return 404, {}, b"Not found"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeEodhd

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out closed its socket before the slow answer came;
        # the resulting BrokenPipe is expected, not worth a traceback on stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        status, headers, body = self.server.fake.answer(unquote(parts.path), params)
        self.send_response(status)
        content_type = "application/json" if body[:1] in (b"[", b"{") else "text/plain"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes the request line, token included, to stderr.
        pass


def _json(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")


# -- sample data ---------------------------------------------------------------------------------


def price_rows(n: int, first: date = date(2024, 1, 2)) -> list[dict[str, Any]]:
    """``n`` daily ``/eod`` records on consecutive days with distinct, checkable values."""
    rows = []
    for i in range(n):
        close = 100.0 + i
        rows.append(
            {
                "date": (first + timedelta(days=i)).isoformat(),
                "open": close - 0.5,
                "high": close + 1.0,
                "low": close - 1.0,
                "close": close,
                "adjusted_close": close * 0.5,
                "volume": 1000 + i,
            }
        )
    return rows


def fundamentals_payload() -> dict[str, Any]:
    """Three quarters: fully filed, filing date missing everywhere, and all-null."""

    def quarter(day: str, filed: str | None, **values: str | None) -> dict[str, Any]:
        return {"date": day, "filing_date": filed, "currency_symbol": "USD", **values}

    return {
        "General": {"Code": "AAPL", "Type": "Common Stock"},
        "Financials": {
            "Income_Statement": {
                "currency_symbol": "USD",
                "quarterly": {
                    "2024-03-31": quarter(
                        "2024-03-31", "2024-05-03", totalRevenue="90753000000.00", netIncome="23636000000.00"
                    ),
                    "2023-12-31": quarter("2023-12-31", None, totalRevenue="119575000000.00", netIncome=None),
                    "2023-09-30": quarter("2023-09-30", None, totalRevenue=None, netIncome=None),
                },
            },
            "Balance_Sheet": {
                "quarterly": {
                    # Filed a day after the income statement: the row is visible from the later date.
                    "2024-03-31": quarter(
                        "2024-03-31",
                        "2024-05-04",
                        totalAssets="337411000000.00",
                        totalStockholderEquity="74194000000.00",
                        shortLongTermDebtTotal="104590000000.00",
                        commonStockSharesOutstanding="15337686000.00",
                    ),
                    "2023-12-31": quarter("2023-12-31", None, totalAssets="353514000000.00"),
                },
            },
            "Cash_Flow": {
                "quarterly": {
                    "2024-03-31": quarter(
                        "2024-03-31", "2024-05-03", totalCashFromOperatingActivities="22690000000.00"
                    ),
                },
            },
        },
    }


def news_items(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct ``/news`` articles, newest first, as EODHD sends them."""
    return [
        {
            "date": f"2024-01-{2 + (k % 28):02d}T13:{k % 60:02d}:00+00:00",
            "title": f"Headline {k}",
            "content": f"Body of article {k}.",
            "link": f"https://example.invalid/{k}",
            "symbols": ["AAPL.US"],
            "tags": [],
            "sentiment": {"polarity": 0.1, "neg": 0.0, "neu": 0.9, "pos": 0.1},
        }
        for k in range(start, start + n)
    ]
