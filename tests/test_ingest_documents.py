"""News and announcements that users bring: formats, skipped records, de-duplication, storage."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from feature_repo.settings import FeatureStoreSettings
from feature_repo.tables import DOCUMENT_COLUMNS
from tests.fake_eodhd import news_items
from training.config import EodhdSource, FilesSource, PipelineConfig, SkfolioSource, SyntheticSource
from training.context import RunContext
from training.errors import IngestError, InputProblem
from training.ingest.documents import DocumentBatch, combine_documents, load_documents
from training.ingest.eodhd_parse import content_doc_id, document_frame, parse_news_page
from training.ingest.sources import load_source
from training.ingest.synthetic import SyntheticDataError, announcements_for
from training.pipeline import run_pipeline
from training.store import OfflineStore

HEADER = "id,ticker,published_at,title,body"


def doc(**overrides: Any) -> dict[str, Any]:
    """A valid JSON record; keyword arguments replace (or, with None, null) fields."""
    return {"ticker": "AAPL", "published_at": "2024-01-02T10:00:00Z", "title": "Results", "body": "Up."} | overrides


def write_json(path: Path, records: list[Any]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def located(batch: DocumentBatch) -> list[tuple[str, int | None, str | None]]:
    return [(p.file, p.row, p.column) for p in batch.problems]


def file_error(path: Path) -> InputProblem:
    """The single file-level problem that loading ``path`` raises."""
    with pytest.raises(IngestError) as info:
        load_documents(path)
    problems = info.value.problems
    assert problems and all(p.file == str(path) and p.row is None for p in problems)
    assert str(path) in str(info.value)
    return problems[0]


# --- formats ------------------------------------------------------------------------------------


def test_csv_loads_into_the_document_contract(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "asx_news.csv",
        "Ticker,Published At,Headline,Body,Source,Exchange\n"
        " bhp.ax ,2024-01-02T09:30:00+10:00,BHP results,Profit up.,,ASX\n"
        "aapl,2024-01-02 15:00,Apple news,,wire,NASDAQ\n"
        "msft,2024-01-03,,Microsoft body,,NASDAQ\n",
    )
    batch = load_documents(path)

    assert batch.problems == () and batch.skipped == 0
    frame = batch.frame
    assert list(frame.columns) == list(DOCUMENT_COLUMNS)
    assert str(frame["published_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["ticker"].tolist() == ["AAPL", "BHP.AX", "MSFT"]  # stripped, upper-cased, sorted
    stamps = dict(zip(frame["ticker"], frame["published_at"], strict=True))
    assert stamps["BHP.AX"] == pd.Timestamp("2024-01-01T23:30:00Z")  # offset converted to UTC
    assert stamps["AAPL"] == pd.Timestamp("2024-01-02T15:00:00Z")  # no offset means UTC
    assert stamps["MSFT"] == pd.Timestamp("2024-01-03T00:00:00Z")  # a bare date is midnight UTC
    assert frame["source"].tolist() == ["wire", "asx_news", "asx_news"]  # column, else the file stem
    assert not frame["synthetic"].any()
    bhp = frame.set_index("ticker").loc["BHP.AX"]
    assert bhp["doc_id"] == content_doc_id("BHP results", "Profit up.")
    assert load_documents(path, source="my-feed").frame["source"].tolist() == ["wire", "my-feed", "my-feed"]


def test_json_list_and_documents_object_and_json_lines_load_alike(tmp_path: Path) -> None:
    records = [doc(id="n-1"), doc(ticker="msft", title="Other", body="Text.")]
    listed = load_documents(write_json(tmp_path / "list.json", records), source="feed")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"documents": records, "next": None}), encoding="utf-8")
    for path in (wrapped, write_jsonl(tmp_path / "lines.jsonl", records), write_jsonl(tmp_path / "l.ndjson", records)):
        other = load_documents(path, source="feed")
        assert other.problems == ()
        pd.testing.assert_frame_equal(other.frame, listed.frame)
    assert listed.frame["ticker"].tolist() == ["AAPL", "MSFT"]


def test_a_line_that_is_not_json_is_a_problem_for_that_line_only(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(
        json.dumps(doc()) + "\n\n{not json\n" + json.dumps(doc(title="Second")) + "\n[1, 2]\n", encoding="utf-8"
    )
    batch = load_documents(path)
    assert located(batch) == [(str(path), 3, None), (str(path), 5, None)]  # blank line 2 still counts
    assert "not valid JSON" in batch.problems[0].message and "JSON object" in batch.problems[1].message
    assert batch.frame["title"].tolist() == ["Results", "Second"]


def test_csv_rows_are_numbered_by_the_line_they_start_on(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "news.csv",
        f'{HEADER}\na1,AAPL,2024-01-02,Split,"line one\nline two\nline three"\n\n'
        "a2,AAPL,not-a-date,Bad,Body\na3,AAPL,2024-01-03,Fine,Body\n",
    )
    batch = load_documents(path)
    assert located(batch) == [(str(path), 6, "published_at")]  # header 1, rows 2-4, blank 5
    assert "'not-a-date'" in batch.problems[0].message and "(record id 'a2')" in batch.problems[0].message
    assert batch.frame["body"].tolist() == ["line one\nline two\nline three", "Body"]


# --- malformed records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"ticker": None}, "ticker", "ticker is missing"),
        ({"ticker": "  "}, "ticker", "ticker is empty"),
        ({"ticker": 700}, "ticker", "as text, got 700"),
        ({"published_at": "02/01/2024"}, "published_at", "ISO 8601"),
        ({"published_at": 1704186000}, "published_at", "got 1704186000"),
        ({"published_at": "0001-01-01"}, "published_at", "ISO 8601"),
        ({"published_at": None}, "published_at", "published_at is missing"),
        ({"title": 5}, "title", "expected text, got 5"),
        ({"body": ["a"]}, "body", "expected text"),
        ({"title": None, "body": " "}, "title/body", "both empty"),
        ({"source": 3}, "source", "expected text"),
        ({"content": "Also the body."}, "body", "given twice"),
    ],
)
def test_a_malformed_json_record_is_named_and_the_others_kept(
    tmp_path: Path, bad: dict[str, Any], field: str, words: str
) -> None:
    broken = {k: v for k, v in doc(**({"id": 42, "title": "Bad one"} | bad)).items() if v is not None}
    path = write_json(tmp_path / "news.json", [doc(title="First"), broken, doc(title="Third")])
    batch = load_documents(path)
    assert located(batch) == [(str(path), 2, field)]
    assert words in batch.problems[0].message and "(record id 42)" in batch.problems[0].message
    assert batch.frame["title"].tolist() == ["First", "Third"] and batch.skipped == 1


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("x,,2024-01-02,T,B", "ticker", "ticker is empty"),
        ("x,AAPL,yesterday,T,B", "published_at", "'yesterday'"),
        ("x,AAPL,,T,B", "published_at", "missing"),
        ("x,AAPL,2024-01-02,,", "title/body", "both empty"),
        ("x,AAPL,2024-01-02,Apple, Inc. beats,B", None, "6 cells but the header has 5"),
    ],
)
def test_a_malformed_csv_row_is_named_and_the_others_kept(
    tmp_path: Path, row: str, field: str | None, words: str
) -> None:
    path = write_text(tmp_path / "news.csv", f"{HEADER}\ng1,AAPL,2024-01-02,A,B\n{row}\ng2,MSFT,2024-01-02,C,D,,\n")
    batch = load_documents(path)
    assert located(batch) == [(str(path), 3, field)]
    assert words in batch.problems[0].message and "(record id 'x')" in batch.problems[0].message
    assert batch.frame["title"].tolist() == ["A", "C"]  # trailing empty cells are harmless


def test_every_fault_of_a_record_is_listed_once_each(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "n.jsonl", [doc(), doc(ticker="", published_at="soon", title=1), "text"])
    batch = load_documents(path)
    assert located(batch) == [
        (str(path), 2, "ticker"),
        (str(path), 2, "published_at"),
        (str(path), 2, "title"),
        (str(path), 3, None),
    ]
    assert batch.skipped == 2 and len(batch.frame) == 1


# --- file-level errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "field", "words"),
    [
        ("news.txt", "ticker,published_at,title\n", None, "unsupported file type"),
        ("news.csv", "", None, "empty"),
        ("news.jsonl", "\n \n", None, "empty"),
        ("news.csv", f"{HEADER}\n\n", None, "no data rows"),
        ("news.csv", "id,published_at,title\nx,2024-01-02,T\n", "ticker", "required column is missing"),
        ("news.csv", "ticker,date,title\nA,2024-01-02,T\n", "published_at", "required column is missing"),
        ("news.csv", "ticker,published_at,summary\nA,2024-01-02,T\n", "title/body", "'title' or a 'body'"),
        ("news.csv", "ticker,symbol,published_at,title\nA,A,2024-01-02,T\n", "ticker", "more than once"),
        ("news.json", '[{"ticker": "A",', None, "not valid JSON"),
        ("news.json", '{"items": []}', None, "'documents' list"),
        ("news.json", "[]", None, "no records"),
        ("news.json", '[{"symbol": "A", "date": "2024-01-02", "title": "T"}]', "published_at", "in no record"),
        ("news.jsonl", '{"ticker": "A", "published_at": "2024-01-02"}\n', "title/body", "no record has"),
    ],
)
def test_a_file_level_fault_raises_naming_the_file(
    tmp_path: Path, name: str, content: str, field: str | None, words: str
) -> None:
    problem = file_error(write_text(tmp_path / name, content))
    assert problem.column == field and words in problem.message


def test_an_unreadable_file_raises_naming_it(tmp_path: Path) -> None:
    assert "cannot read file" in file_error(tmp_path / "missing.csv").message
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\nx,AAPL,2024-01-02,Soci\xe9t\xe9,B\n".encode("latin-1"))
    assert "not UTF-8" in file_error(latin).message


# --- de-duplication -----------------------------------------------------------------------------


def test_the_same_text_is_kept_once_within_a_file(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "n.json",
        [
            doc(ticker="BHP", title="Trading Halt", body="Pending an announcement."),
            doc(ticker="RIO", title="Other", body="Different text."),
            doc(ticker="bhp", title="  TRADING   halt ", body="pending an\nannouncement.", published_at="2024-02-01"),
        ],
    )
    frame = load_documents(path).frame
    assert len(frame) == 2 and frame["doc_id"].is_unique
    kept = frame.set_index("ticker").loc["BHP"]
    assert kept["title"] == "Trading Halt" and kept["published_at"] == pd.Timestamp("2024-01-02T10:00:00Z")


def test_the_same_text_in_two_files_and_from_eodhd_is_one_document(tmp_path: Path) -> None:
    article = news_items(1)[0]
    first = load_documents(
        write_text(tmp_path / "a.csv", f"{HEADER}\n1,AAPL,2024-01-05,{article['title']},{article['content']}\n")
    )
    second = load_documents(
        write_jsonl(tmp_path / "b.jsonl", [doc(title=article["title"].upper(), body=article["content"]), doc()])
    )
    fetched = document_frame(parse_news_page([article, *news_items(1, start=1)], "AAPL", "EODHD /news", 0))
    shared_id = content_doc_id(article["title"], article["content"])
    assert first.frame["doc_id"].iloc[0] == fetched["doc_id"].iloc[0] == shared_id

    combined = combine_documents([first.frame, second.frame, fetched])
    assert len(combined) == 3 and combined["doc_id"].is_unique  # the shared text, "Results", EODHD's second
    shared = combined.set_index("doc_id").loc[shared_id]
    assert shared["source"] == "a" and shared["published_at"] == pd.Timestamp("2024-01-05", tz="UTC")
    assert str(combined["published_at"].dtype) == "datetime64[ns, UTC]"


def test_sources_merge_document_files_and_carry_the_skipped_records(tmp_path: Path) -> None:
    prices = write_text(tmp_path / "p.csv", "ticker,date,open,high,low,close,volume\nAAPL,2024-01-02,1,2,1,2,10\n")
    a = write_json(tmp_path / "a.json", [doc(), doc(title="Only in a"), doc(ticker="")])
    b = write_jsonl(tmp_path / "b.jsonl", [doc(published_at="2025-01-01"), doc(title="Only in b")])
    loaded = load_source(FilesSource(prices=[prices], documents=[a, b]))
    documents = loaded.tables["documents"]
    assert sorted(documents["title"]) == ["Only in a", "Only in b", "Results"]
    assert documents.set_index("title").loc["Results", "source"] == "a"  # the first file wins
    assert [(p.file, p.row, p.column) for p in loaded.problems] == [(str(a), 3, "ticker")]
    assert "2 document file(s)" in loaded.description
    assert "documents" not in load_source(FilesSource(prices=[prices])).tables


# --- storage and the pipeline -------------------------------------------------------------------


def test_storing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "n.jsonl", [doc(), doc(ticker="MSFT", title="Two", published_at="2024-01-02")])
    with OfflineStore(tmp_path / "offline.duckdb") as store:
        first = store.upsert("documents", load_documents(path).frame)
        stored = store.read("documents")
        second = store.upsert("documents", load_documents(path).frame)
        assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
        assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
        pd.testing.assert_frame_equal(store.read("documents"), stored)
    assert set(stored["doc_id"]) == set(load_documents(path).frame["doc_id"])
    assert stored.set_index("ticker").loc["MSFT", "published_at"] == pd.Timestamp("2024-01-02", tz="UTC")


def test_the_ingest_stage_stores_real_news_beside_the_demo_data_and_lists_skipped_records(tmp_path: Path) -> None:
    news = write_text(
        tmp_path / "news.csv",
        f"{HEADER}\nn1,AAPL,2022-06-01T13:30:00Z,Apple event,Keynote.\nn2,MSFT,June 2nd,Bad date,Body.\n"
        "n3,JPM,2022-06-02T12:00:00-04:00,JPM results,Beat.\n",
    )
    config = PipelineConfig(data=SkfolioSource(start=date(2022, 5, 1), documents=[news]))
    settings = FeatureStoreSettings(environment="local", data_dir=str(tmp_path / "data"))
    outputs = []
    for _ in range(2):
        out = io.StringIO()
        [report] = run_pipeline(RunContext(config=config, settings=settings, out=out, progress=False), ["ingest"])
        outputs.append(out.getvalue())
        assert report.summary["skipped_records"] == 1
    first, second = outputs
    assert "skipped 1 malformed record(s)" in first
    assert f"{news}, row 3, column 'published_at'" in first and "(record id 'n2')" in first
    assert re.search(r"documents +2 rows: 2 new, 0 changed, 0 unchanged", first)
    assert re.search(r"documents +2 rows: 0 new, 0 changed, 2 unchanged", second)
    with OfflineStore(tmp_path / "data" / "offline.duckdb", read_only=True) as store:
        stored = store.read("documents")
        assert store.count("prices") > 0
    assert sorted(stored["ticker"]) == ["AAPL", "JPM"] and not stored["synthetic"].any()
    assert stored.set_index("ticker").loc["JPM", "published_at"] == pd.Timestamp("2022-06-02T16:00:00Z")


def test_every_real_source_takes_document_files_and_the_synthetic_one_refuses_them() -> None:
    assert SkfolioSource().documents == []
    assert FilesSource(prices=[Path("p.csv")], documents=[Path("n.csv")]).documents == [Path("n.csv")]
    eodhd = EodhdSource.model_validate({"tickers": ["AAPL.US"], "start": "2024-01-01", "documents": ["n.jsonl"]})
    assert eodhd.documents == [Path("n.jsonl")]
    with pytest.raises(ValidationError):
        SyntheticSource.model_validate({"documents": ["n.csv"]})


# --- synthetic announcements for given tickers --------------------------------------------------


def test_announcements_for_given_tickers_and_sessions_are_deterministic_and_flagged(sp500: Any) -> None:
    recent = sp500.prices[sp500.prices["date"] >= "2021-01-01"]
    tickers = sorted(recent["ticker"].unique())
    dates = pd.DatetimeIndex(sorted(recent["date"].unique()))
    frame = announcements_for([t.lower() for t in tickers], dates, seed=7)

    pd.testing.assert_frame_equal(frame, announcements_for(tickers, dates, seed=7))
    assert not frame.equals(announcements_for(tickers, dates, seed=8))
    assert list(frame.columns) == list(DOCUMENT_COLUMNS)
    assert str(frame["published_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["synthetic"].all() and (frame["source"] == "synthetic").all()
    assert set(frame["ticker"]) <= set(tickers) and frame["doc_id"].is_unique
    local = frame["published_at"].dt.tz_localize(None)
    assert local.min() >= dates[0] - pd.Timedelta(hours=10) and local.max() < dates[-1] + pd.Timedelta(days=1)
    assert (frame["doc_id"] == [content_doc_id(a, b) for a, b in zip(frame["title"], frame["body"], strict=True)]).all()
    years = (dates[-1] - dates[0]).days / 365.25
    assert abs(len(frame) / (len(tickers) * years) - 20) < 3  # the generator's default rate
    assert len(announcements_for(tickers, dates, rate=0.0)) == 0
    assert len(announcements_for(tickers, dates, rate=60.0)) > 2 * len(frame)


def test_announcements_for_refuses_what_it_cannot_generate() -> None:
    week = pd.bdate_range("2024-01-01", periods=5)
    for tickers, dates, rate in (
        ([], week, None),
        (["A", " "], week, None),
        (["A"], pd.DatetimeIndex([]), None),
        (["A"], week, -1.0),
        (["A"], week, float(np.nan)),
    ):
        with pytest.raises(SyntheticDataError):
            announcements_for(tickers, dates, rate=rate)
