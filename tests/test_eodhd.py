"""EODHD client against a real fake EODHD server on 127.0.0.1: parsing, retries, paging, secrecy."""

from __future__ import annotations

import hashlib
import logging
import random
import traceback
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from feature_repo.tables import DOCUMENT_COLUMNS, FUNDAMENTAL_COLUMNS, PRICE_COLUMNS
from tests.fake_eodhd import TEST_TOKEN, FakeEodhd, fundamentals_payload, news_items, price_rows
from tests.servers import free_port
from training.errors import DataSourceError, IngestError
from training.ingest.eodhd import API_KEY_ENV, EodhdClient, EodhdFormatError, content_doc_id


@pytest.fixture
def fake() -> Iterator[FakeEodhd]:
    with FakeEodhd() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked for; recorded instead of slept, so the suite stays fast."""
    return []


def make_client(fake: FakeEodhd, sleeps: list[float], **overrides: Any) -> EodhdClient:
    options: dict[str, Any] = {
        "api_key": TEST_TOKEN,
        "base_url": fake.base_url,
        "timeout": 2.0,
        "connect_timeout": 2.0,
        "max_retries": 3,
        "backoff": 0.2,
        "sleep": sleeps.append,
        "rng": random.Random(7),
    }
    return EodhdClient(**(options | overrides))


# -- parsing into the contracts ------------------------------------------------------------------


def test_eod_prices_parse_into_price_contract(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.prices["AAPL.US"] = price_rows(10)
    with make_client(fake, sleeps) as client:
        prices = client.eod_prices("AAPL.US", "2024-01-03", "2024-01-07")

    assert list(prices.columns) == list(PRICE_COLUMNS)
    assert prices["date"].dtype == "datetime64[ns]"
    assert prices["date"].tolist() == list(pd.date_range("2024-01-03", "2024-01-07"))
    assert (prices["date"] == prices["date"].dt.normalize()).all()
    assert prices["close"].tolist() == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert prices["adj_close"].tolist() == [50.5, 51.0, 51.5, 52.0, 52.5]
    assert prices["volume"].dtype == np.float64
    assert set(prices["ticker"]) == {"AAPL.US"}
    assert set(prices["source"]) == {"eodhd"}
    assert prices["synthetic"].dtype == bool
    assert not prices["synthetic"].any()
    [request] = fake.requests
    assert request.path == "/api/eod/AAPL.US"
    assert request.params == {
        "fmt": "json",
        "from": "2024-01-03",
        "to": "2024-01-07",
        "api_token": TEST_TOKEN,
    }


def test_eod_prices_many_concatenates_and_empty_range_keeps_contract(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.prices["AAPL.US"] = price_rows(3)
    fake.prices["BHP.AU"] = price_rows(2)
    with make_client(fake, sleeps) as client:
        both = client.eod_prices_many(["BHP.AU", "AAPL.US", "BHP.AU"], "2024-01-01", "2024-01-31")
        empty = client.eod_prices("AAPL.US", "2020-01-01", "2020-01-31")

    assert list(both.columns) == list(PRICE_COLUMNS)
    assert both.groupby("ticker").size().to_dict() == {"AAPL.US": 3, "BHP.AU": 2}
    assert fake.paths().count("/api/eod/BHP.AU") == 1  # the repeat is fetched once
    assert empty.empty
    assert list(empty.columns) == list(PRICE_COLUMNS)
    assert empty["date"].dtype == "datetime64[ns]"


def test_fundamentals_parse_into_fundamental_contract(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.fundamentals["AAPL.US"] = fundamentals_payload()
    with make_client(fake, sleeps) as client:
        funda = client.fundamentals("AAPL.US")

    assert list(funda.columns) == list(FUNDAMENTAL_COLUMNS)
    # 2023-09-30 has no value at all and is dropped.
    assert funda["period_end"].tolist() == [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-03-31")]
    q4, q1 = funda.iloc[0], funda.iloc[1]
    # No filing date anywhere: period end + 45 days.
    assert q4["report_date"] == pd.Timestamp("2024-02-14")
    # Filing dates differ between statements: the latest one.
    assert q1["report_date"] == pd.Timestamp("2024-05-04")
    assert q1["revenue"] == 90_753_000_000.0
    assert q1["net_income"] == 23_636_000_000.0
    assert q1["total_assets"] == 337_411_000_000.0
    assert q1["total_equity"] == 74_194_000_000.0
    assert q1["total_debt"] == 104_590_000_000.0
    assert q1["shares_outstanding"] == 15_337_686_000.0
    assert q1["operating_cash_flow"] == 22_690_000_000.0
    assert np.isnan(q4["net_income"])  # null -> NaN
    assert np.isnan(q4["operating_cash_flow"])  # absent from Cash_Flow -> NaN
    assert funda["report_date"].dtype == "datetime64[ns]"
    assert funda["revenue"].dtype == np.float64
    assert set(funda["source"]) == {"eodhd"}
    assert not funda["synthetic"].any()
    assert fake.requests[0].params["fmt"] == "json"


def test_news_parse_into_document_contract(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.news["AAPL.US"] = news_items(3)
    with make_client(fake, sleeps) as client:
        docs = client.news("AAPL.US", "2024-01-01", "2024-01-31")

    assert list(docs.columns) == list(DOCUMENT_COLUMNS)
    assert str(docs["published_at"].dt.tz) == "UTC"
    assert docs["published_at"].iloc[1] == pd.Timestamp("2024-01-03T13:01:00", tz="UTC")
    assert docs["title"].tolist() == ["Headline 0", "Headline 1", "Headline 2"]
    assert docs["body"].iloc[0] == "Body of article 0."
    assert docs["doc_id"].iloc[0] == hashlib.sha256(b"headline 0\nbody of article 0.").hexdigest()
    assert set(docs["source"]) == {"eodhd"}
    assert not docs["synthetic"].any()
    params = fake.requests[0].params
    assert (params["s"], params["from"], params["to"], params["fmt"]) == (
        "AAPL.US",
        "2024-01-01",
        "2024-01-31",
        "json",
    )


# -- paging and de-duplication -------------------------------------------------------------------


def test_news_pages_until_a_short_page(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.news["AAPL.US"] = news_items(120)
    with make_client(fake, sleeps) as client:
        docs = client.news("AAPL.US", "2024-01-01", "2024-01-31", page_size=50)

    assert [(r.params["offset"], r.params["limit"]) for r in fake.requests] == [
        ("0", "50"),
        ("50", "50"),
        ("100", "50"),
    ]
    assert len(docs) == 120
    assert docs["title"].tolist() == [f"Headline {k}" for k in range(120)]


def test_news_stops_on_an_empty_page_and_at_max_pages(
    fake: FakeEodhd, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    fake.news["AAPL.US"] = news_items(100)
    with make_client(fake, sleeps) as client:
        exact = client.news("AAPL.US", "2024-01-01", "2024-01-31", page_size=50)
        assert len(fake.requests) == 3  # two full pages, then an empty one
        fake.requests.clear()
        with caplog.at_level(logging.WARNING):
            capped = client.news("AAPL.US", "2024-01-01", "2024-01-31", page_size=10, max_pages=2)

    assert len(exact) == 100
    assert len(capped) == 20
    assert len(fake.requests) == 2
    assert "max_pages=2" in caplog.text


def test_news_deduplicates_by_normalised_content(fake: FakeEodhd, sleeps: list[float]) -> None:
    first, other = news_items(2)
    copy = first | {
        "title": "  HEADLINE   0 ",
        "content": "Body of\n\tarticle 0.",
        "date": "2024-01-09T08:00:00Z",
    }
    # The copy sits on the second page, so de-duplication works across pages too.
    fake.news["AAPL.US"] = [first, other, copy]
    with make_client(fake, sleeps) as client:
        docs = client.news("AAPL.US", "2024-01-01", "2024-01-31", page_size=2)

    assert len(fake.requests) == 2
    assert docs["title"].tolist() == ["Headline 0", "Headline 1"]  # first appearance kept
    assert docs["doc_id"].is_unique
    assert content_doc_id("Headline 0", "Body of article 0.") == content_doc_id(" headline 0", "BODY OF  ARTICLE 0.")
    assert content_doc_id("Headline 0", "Body") != content_doc_id("Headline 0", "Body!")


# -- retries -------------------------------------------------------------------------------------


def test_retries_on_429_honouring_retry_after_then_succeeds(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.prices["AAPL.US"] = price_rows(2)
    fake.fail_first, fake.fail_status, fake.retry_after = 2, 429, "3"
    with make_client(fake, sleeps) as client:
        prices = client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")

    assert len(prices) == 2
    assert len(fake.requests) == 3
    assert sleeps == [3.0, 3.0]  # Retry-After beats the (shorter) backoff


def test_retries_on_503_with_exponential_jittered_backoff(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.fundamentals["AAPL.US"] = fundamentals_payload()
    fake.fail_first, fake.fail_status = 3, 503
    with make_client(fake, sleeps, backoff=0.2) as client:
        funda = client.fundamentals("AAPL.US")

    assert len(funda) == 2
    assert len(fake.requests) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        ceiling = 0.2 * 2**attempt
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(sleeps)) == 3


def test_gives_up_after_max_retries(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.prices["AAPL.US"] = price_rows(2)
    fake.fail_first, fake.fail_status = 100, 503
    with make_client(fake, sleeps, max_retries=2) as client, pytest.raises(DataSourceError) as caught:
        client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")

    assert len(fake.requests) == 3
    message = str(caught.value)
    assert "/eod" in message
    assert "'AAPL.US'" in message
    assert "HTTP 503" in message
    assert "3 attempt(s)" in message


def test_retry_after_longer_than_allowed_fails_at_once(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.fail_first, fake.fail_status, fake.retry_after = 100, 429, "86400"
    with (
        make_client(fake, sleeps, max_retry_after=60) as client,
        pytest.raises(DataSourceError, match="86400"),
    ):
        client.fundamentals("AAPL.US")

    assert len(fake.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("api_key", "symbol", "status"),
    [("wrong-token", "AAPL.US", 401), (TEST_TOKEN, "NOPE.US", 404)],
)
def test_no_retry_on_client_errors(
    fake: FakeEodhd, sleeps: list[float], api_key: str, symbol: str, status: int
) -> None:
    fake.prices["AAPL.US"] = price_rows(2)
    with make_client(fake, sleeps, api_key=api_key) as client, pytest.raises(DataSourceError) as caught:
        client.eod_prices(symbol, "2024-01-01", "2024-01-31")

    assert len(fake.requests) == 1
    assert sleeps == []
    assert f"HTTP {status}" in str(caught.value)
    assert repr(symbol) in str(caught.value)
    assert "/eod" in str(caught.value)


def test_read_timeout_is_retried_then_succeeds(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.prices["AAPL.US"] = price_rows(2)
    # The delayed answer never comes in time (the fake releases it when it stops); the next one has
    # the default 2 s, plenty for a loopback answer on a busy machine (a 0.1 s budget was not).
    fake.delay_first, fake.delay_s = 1, 60.0
    with make_client(fake, sleeps) as client:
        prices = client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")

    assert len(prices) == 2
    assert len(fake.requests) == 2
    assert len(sleeps) == 1


def test_read_timeout_on_every_attempt_raises(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.delay_first, fake.delay_s = 100, 2.0
    with (
        make_client(fake, sleeps, timeout=0.05, max_retries=2) as client,
        pytest.raises(DataSourceError) as caught,
    ):
        client.news("AAPL.US", "2024-01-01", "2024-01-31")

    assert len(fake.requests) == 3
    assert "ReadTimeout" in str(caught.value)
    assert "3 attempt(s)" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


def test_connection_refused_is_retried_then_raises(sleeps: list[float]) -> None:
    port = free_port()  # bound and released: nothing listens there
    client = EodhdClient(TEST_TOKEN, base_url=f"http://127.0.0.1:{port}/api", max_retries=2, sleep=sleeps.append)
    with client, pytest.raises(DataSourceError, match="ConnectError"):
        client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")
    assert len(sleeps) == 2


# -- malformed answers ---------------------------------------------------------------------------


def test_body_that_is_not_json(fake: FakeEodhd, sleeps: list[float]) -> None:
    fake.raw_bodies["/api/eod/AAPL.US"] = b"<html>maintenance</html>"
    with make_client(fake, sleeps) as client, pytest.raises(DataSourceError, match="not JSON") as caught:
        client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")
    assert "'AAPL.US'" in str(caught.value)
    assert "maintenance" in str(caught.value)


def test_price_rows_with_bad_values_name_record_and_field(fake: FakeEodhd, sleeps: list[float]) -> None:
    rows = price_rows(4)
    rows[2]["close"] = "n/a"
    rows[3]["adjusted_close"] = None
    rows[0]["date"] = "2024-01-0x"
    fake.prices["AAPL.US"] = rows
    with make_client(fake, sleeps) as client, pytest.raises(EodhdFormatError) as caught:
        client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")

    located = {(p.file, p.row, p.column) for p in caught.value.problems}
    assert located == {
        ("EODHD /eod/AAPL.US", 3, "close"),
        ("EODHD /eod/AAPL.US", 4, "adjusted_close"),
        ("EODHD /eod/AAPL.US", 1, "date"),
    }
    assert "EODHD /eod/AAPL.US, row 3, column 'close': expected a number, got 'n/a'" in str(caught.value)
    assert isinstance(caught.value, DataSourceError)
    assert isinstance(caught.value, IngestError)


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/eod/AAPL.US", b'{"error": "oops"}', "expected a JSON list"),
        ("/api/fundamentals/AAPL.US", b'{"General": {}}', "no 'Financials' object"),
        (
            "/api/fundamentals/AAPL.US",
            b'{"Financials": {"Balance_Sheet": {"quarterly": {"2024-03-31": {"date": "2024-03-31",'
            b' "totalAssets": "lots"}}}}}',
            "Financials.Balance_Sheet.quarterly.2024-03-31.totalAssets': expected a number, got 'lots'",
        ),
        ("/api/news", b'[{"date": "yesterday", "title": "x", "content": "y"}]', "row 1, column 'date'"),
        ("/api/news", b'[{"date": "2024-01-02T00:00:00Z", "title": 5, "content": "y"}]', "column 'title'"),
    ],
)
def test_wrong_shapes_name_endpoint_and_field(
    fake: FakeEodhd, sleeps: list[float], path: str, body: bytes, expected: str
) -> None:
    fake.raw_bodies[path] = body
    with make_client(fake, sleeps) as client, pytest.raises(DataSourceError) as caught:
        if "fundamentals" in path:
            client.fundamentals("AAPL.US")
        elif "news" in path:
            client.news("AAPL.US", "2024-01-01", "2024-01-31")
        else:
            client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")
    assert expected in str(caught.value)
    assert "AAPL.US" in str(caught.value)


# -- the API key ---------------------------------------------------------------------------------


def test_key_is_read_from_the_environment(
    fake: FakeEodhd, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.prices["AAPL.US"] = price_rows(1)
    monkeypatch.setenv(API_KEY_ENV, TEST_TOKEN)
    with EodhdClient(base_url=fake.base_url, sleep=sleeps.append) as client:
        assert len(client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")) == 1
    assert fake.requests[0].params["api_token"] == TEST_TOKEN


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(API_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(API_KEY_ENV, value)
    with pytest.raises(DataSourceError, match=f"API key missing.*{API_KEY_ENV}"):
        EodhdClient()


def test_log_capture_would_see_a_leaked_key(fake: FakeEodhd, caplog: pytest.LogCaptureFixture) -> None:
    """Control for the next test: plain httpx with the key in the URL does log it."""
    caplog.set_level(logging.DEBUG)
    httpx.get(f"{fake.base_url}/eod/X.US", params={"api_token": TEST_TOKEN}, timeout=2.0)
    assert TEST_TOKEN in caplog.text


def test_key_never_appears_in_logs_errors_or_repr(
    fake: FakeEodhd, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger, so httpx and httpcore records too
    fake.prices["AAPL.US"] = price_rows(2)
    fake.fail_first, fake.fail_status, fake.retry_after = 1, 429, "0"
    fake.delay_first, fake.delay_s = 2, 60.0  # the first two requests also time out (released at stop)
    # A server that echoes the key in an error body must not get it into a message either.
    fake.raw_bodies["/api/fundamentals/AAPL.US"] = f"<bad> token={TEST_TOKEN}".encode()
    errors: list[BaseException] = []
    with make_client(fake, sleeps) as client:
        texts = [repr(client), str(client)]
        assert len(client.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")) == 2
        for call in (
            partial(client.fundamentals, "AAPL.US"),
            partial(client.eod_prices, "NOPE.US", "2024-01-01", "2024-01-31"),
        ):
            with pytest.raises(DataSourceError) as caught:
                call()
            errors.append(caught.value)
    with (
        make_client(fake, sleeps, api_key=TEST_TOKEN + "x") as wrong,
        pytest.raises(DataSourceError) as caught,
    ):
        wrong.eod_prices("AAPL.US", "2024-01-01", "2024-01-31")
    errors.append(caught.value)

    texts += ["".join(traceback.format_exception(error)) for error in errors]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert all(TEST_TOKEN not in text for text in texts)
    # The records did include httpx's request lines, so the check above had something to see.
    assert any(r.name == "httpx" and "/api/eod/AAPL.US" in r.getMessage() for r in caplog.records)
    assert any("ReadTimeout" in r.getMessage() for r in caplog.records)
    assert "***" in errors[0].args[0]
