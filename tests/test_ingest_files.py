"""Loaders for user-supplied price and fundamentals files: contract shape and located errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.tables import FUNDAMENTAL_COLUMNS, FUNDAMENTAL_VALUE_COLUMNS, PRICE_COLUMNS
from training.errors import IngestError, InputProblem
from training.ingest.files import MAX_PROBLEMS, load_fundamentals, load_prices

PRICE_HEADER = ["ticker", "date", "open", "high", "low", "close", "adj_close", "volume"]
FUNDAMENTAL_HEADER = ["ticker", "period_end", "report_date", *FUNDAMENTAL_VALUE_COLUMNS]


def bar(**overrides: str) -> dict[str, str]:
    """A valid price row as CSV text; keyword arguments replace cells."""
    row = {
        "ticker": "AAPL",
        "date": "2024-01-02",
        "open": "10",
        "high": "12",
        "low": "9",
        "close": "11",
        "adj_close": "10.5",
        "volume": "1000",
    }
    return {**row, **overrides}


def three_bars() -> list[dict[str, str]]:
    """Three valid bars on consecutive sessions (CSV lines 2, 3 and 4)."""
    return [bar(date="2024-01-02"), bar(date="2024-01-03"), bar(date="2024-01-04")]


def quarter(**overrides: str) -> dict[str, str]:
    """A valid fundamentals row as CSV text; keyword arguments replace cells."""
    row = {"ticker": "AAPL", "period_end": "2024-03-31", "report_date": "2024-05-02"}
    row.update(dict.fromkeys(FUNDAMENTAL_VALUE_COLUMNS, "100"))
    return {**row, **overrides}


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    """Writes rows under ``header`` as plain comma-separated text (no quoting needed in tests)."""
    lines = [",".join(header)] + [",".join(row.get(column, "") for column in header) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems_of(excinfo: pytest.ExceptionInfo[IngestError]) -> list[InputProblem]:
    return excinfo.value.problems


def located(problems: list[InputProblem]) -> set[tuple[int | None, str | None]]:
    """The (row, column) pairs of the problems, for exact comparisons."""
    return {(p.row, p.column) for p in problems}


# --- valid files --------------------------------------------------------------------------------


def test_valid_csv_loads_into_the_price_contract(tmp_path: Path) -> None:
    header = ["Symbol", "Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "Exchange"]
    rows = [
        {"Symbol": " msft ", "Date": "2024-01-03", "Open": "1", "High": "2", "Low": "1", "Close": "2"},
        {"Symbol": "aapl", "Date": "2024-01-02", "Open": "10", "High": "12", "Low": "9", "Close": "11"},
    ]
    for row in rows:
        row.update({"Adj Close": "1.5", "Volume": "100", "Exchange": "NASDAQ"})
    path = write_csv(tmp_path / "prices.csv", header, rows)

    frame = load_prices(path)

    assert list(frame.columns) == list(PRICE_COLUMNS)
    assert frame["ticker"].tolist() == ["AAPL", "MSFT"]  # upper-cased, stripped, sorted by key
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert frame["date"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    for column in ("open", "high", "low", "close", "adj_close", "volume"):
        assert frame[column].dtype == np.float64
    assert frame["close"].tolist() == [11.0, 2.0]
    assert frame["adj_close"].tolist() == [1.5, 1.5]
    assert frame["source"].tolist() == ["file:prices.csv"] * 2
    assert frame["synthetic"].dtype == bool
    assert not frame["synthetic"].any()


@pytest.mark.parametrize("name", ["adj_close", "adjusted_close", "adj close", "Adj Close", "ADJUSTED CLOSE"])
def test_adjusted_close_header_aliases(tmp_path: Path, name: str) -> None:
    header = [name if c == "adj_close" else c for c in PRICE_HEADER]
    row = bar(adj_close="7.25")
    row[name] = row.pop("adj_close")
    frame = load_prices(write_csv(tmp_path / "p.csv", header, [row]))
    assert frame["adj_close"].tolist() == [7.25]


def test_missing_adjusted_close_column_defaults_to_close(tmp_path: Path) -> None:
    header = [c for c in PRICE_HEADER if c != "adj_close"]
    frame = load_prices(write_csv(tmp_path / "p.csv", header, three_bars()), source="broker")
    assert frame["adj_close"].tolist() == frame["close"].tolist() == [11.0] * 3
    assert set(frame["source"]) == {"broker"}


def test_close_only_rows_are_accepted(tmp_path: Path) -> None:
    rows = [bar(open="", high="", low="", volume=""), bar(date="2024-01-03", volume="NaN")]
    frame = load_prices(write_csv(tmp_path / "p.csv", PRICE_HEADER, rows))
    assert frame[["open", "high", "low", "volume"]].iloc[0].isna().all()
    assert np.isnan(frame["volume"].iloc[1])
    assert frame["close"].tolist() == [11.0, 11.0]


def test_valid_parquet_loads_into_the_price_contract(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "Symbol": ["msft", "aapl"],
            "Date": pd.to_datetime(["2024-01-03", "2024-01-02"]),
            "Open": [1.0, 10.0],
            "High": [2.0, 12.0],
            "Low": [1.0, 9.0],
            "Close": [2.0, 11.0],
            "Volume": [100, 200],
            "notes": ["x", "y"],
        }
    )
    path = tmp_path / "prices.parquet"
    raw.to_parquet(path)

    frame = load_prices(path)

    assert list(frame.columns) == list(PRICE_COLUMNS)
    assert frame["ticker"].tolist() == ["AAPL", "MSFT"]
    assert frame["date"].dtype == np.dtype("datetime64[ns]")
    assert frame["adj_close"].tolist() == [11.0, 2.0]
    assert frame["volume"].dtype == np.float64
    assert frame["source"].tolist() == ["file:prices.parquet"] * 2


def test_parquet_with_text_dates_and_pq_suffix(tmp_path: Path) -> None:
    path = tmp_path / "prices.pq"
    pd.DataFrame([bar(), bar(date="2024-01-03")]).to_parquet(path)  # every column as text
    frame = load_prices(path)
    assert frame["date"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert frame["high"].tolist() == [12.0, 12.0]


def test_gzip_csv_is_read(tmp_path: Path) -> None:
    text = write_csv(tmp_path / "plain.csv", PRICE_HEADER, three_bars()).read_bytes()
    path = tmp_path / "prices.csv.gz"
    path.write_bytes(gzip.compress(text))
    assert len(load_prices(path)) == 3


# --- whole-file problems ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prices.xlsx", "prices.txt", "prices"])
def test_unsupported_suffix_is_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("ticker,date\n", encoding="utf-8")
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    [problem] = problems_of(excinfo)
    assert problem.file == str(path)
    assert "unsupported file type" in problem.message


def test_header_only_file_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", PRICE_HEADER, [])
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert [(p.row, p.column, p.message) for p in problems_of(excinfo)] == [(None, None, "file has no data rows")]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [("p.csv", b"", "empty"), ("prices.parquet", b"not parquet at all", "not a readable Parquet file")],
    ids=["zero-byte csv", "corrupt parquet"],
)
def test_an_unreadable_file_is_rejected(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=words):
        load_prices(path)


def test_missing_required_columns_are_all_named(tmp_path: Path) -> None:
    header = ["ticker", "date", "close", "whatever"]
    path = write_csv(tmp_path / "p.csv", header, [{"ticker": "A", "date": "2024-01-02", "close": "1"}])
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(None, "open"), (None, "high"), (None, "low"), (None, "volume")}


def test_column_given_twice_is_rejected(tmp_path: Path) -> None:
    header = [*PRICE_HEADER, "symbol"]
    path = write_csv(tmp_path / "p.csv", header, [{**bar(), "symbol": "MSFT"}])
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(None, "ticker")}


def test_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", PRICE_HEADER, three_bars())
    path.write_text(path.read_text(encoding="utf-8") + "AAPL,2024-01-05,1,1,1,1,1,1,EXTRA\n", encoding="utf-8")
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(5, None)}


# --- row problems -------------------------------------------------------------------------------

# (cells replaced on the 3rd data row, i.e. CSV line 4; the column expected in the problem)
BAD_CELLS = [
    ({"close": "abc"}, "close"),
    ({"volume": '"1,000"'}, "volume"),  # quoted: a thousands separator
    ({"open": "inf"}, "open"),
    ({"ticker": "  "}, "ticker"),
    ({"date": "01/02/2024"}, "date"),
    ({"date": "2024-02-30"}, "date"),
    ({"date": "yesterday"}, "date"),
    ({"date": ""}, "date"),
    ({"open": "0"}, "open"),
    ({"low": "-1", "open": "-1"}, "low"),
    ({"close": "-2"}, "close"),
    ({"adj_close": "0"}, "adj_close"),
    ({"close": ""}, "close"),
    ({"adj_close": ""}, "adj_close"),
    ({"high": "8"}, "high"),  # below low 9
    ({"close": "12.5"}, "close"),  # above high 12
    ({"open": "8.5"}, "open"),  # below low 9
    ({"volume": "-5"}, "volume"),
    ({"open": ""}, "open"),  # high and low present: partial bar
    ({"high": "", "low": ""}, "high"),
]


@pytest.mark.parametrize(("cells", "column"), BAD_CELLS)
def test_bad_cell_is_located_by_line_and_column(tmp_path: Path, cells: dict[str, str], column: str) -> None:
    rows = three_bars()
    rows[2].update(cells)
    path = write_csv(tmp_path / "prices.csv", PRICE_HEADER, rows)
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    problems = problems_of(excinfo)
    assert InputProblem in {type(p) for p in problems}
    assert (4, column) in located(problems)
    assert {p.row for p in problems} == {4}
    assert {p.file for p in problems} == {str(path)}


def test_bad_close_message_names_file_row_and_column(tmp_path: Path) -> None:
    rows = three_bars()
    rows[2]["close"] = "abc"
    path = write_csv(tmp_path / "prices.csv", PRICE_HEADER, rows)
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    text = str(excinfo.value)
    assert f"{path}, row 4, column 'close'" in text
    assert "'abc' is not a number" in text


def test_duplicate_keys_name_both_rows(tmp_path: Path) -> None:
    rows = [*three_bars(), bar(ticker="aapl", date="2024-01-03")]  # same key as line 3, other case
    with pytest.raises(IngestError) as excinfo:
        load_prices(write_csv(tmp_path / "p.csv", PRICE_HEADER, rows))
    problems = problems_of(excinfo)
    assert located(problems) == {(3, "date"), (5, "date")}
    messages = {p.row: p.message for p in problems}
    assert "also on row 5" in messages[3]
    assert "also on row 3" in messages[5]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    rows = [
        bar(date="2024-01-02", close="abc"),  # line 2
        bar(date="2024-01-03"),  # line 3: valid
        bar(date="03/01/2024", volume="-1"),  # line 4
        bar(date="2024-01-05", ticker=""),  # line 5
        bar(date="2024-01-06", high="1"),  # line 6: high below low
    ]
    with pytest.raises(IngestError) as excinfo:
        load_prices(write_csv(tmp_path / "p.csv", PRICE_HEADER, rows))
    problems = problems_of(excinfo)
    assert located(problems) == {(2, "close"), (4, "date"), (4, "volume"), (5, "ticker"), (6, "high")}
    assert [p.row for p in problems] == sorted(p.row or 0 for p in problems)


def test_blank_lines_do_not_shift_row_numbers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", PRICE_HEADER, three_bars())
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2:2] = ["", ",,,,,,,"]  # lines 3 and 4 carry nothing; the 2nd bar moves to line 5
    lines[5] = lines[5].replace(",11,", ",abc,")  # the 3rd bar, now on line 6
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(6, "close")}


def test_problem_list_is_capped_but_counts_everything(tmp_path: Path) -> None:
    rows = [bar(date=str(day.date()), close="x") for day in pd.date_range("2000-01-01", periods=500)]
    with pytest.raises(IngestError) as excinfo:
        load_prices(write_csv(tmp_path / "p.csv", PRICE_HEADER, rows))
    problems = problems_of(excinfo)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[0].row == 2
    assert problems[MAX_PROBLEMS - 1].row == MAX_PROBLEMS + 1
    assert problems[-1].row is None
    assert "500 problems" in problems[-1].message


def test_parquet_problems_use_record_numbers(tmp_path: Path) -> None:
    raw = pd.DataFrame([bar(), bar(date="2024-01-03"), bar(date="2024-01-04", close="abc")])
    raw["volume"] = [1.0, -1.0, 1.0]
    path = tmp_path / "prices.parquet"
    raw.to_parquet(path)
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(3, "close"), (2, "volume")}


def test_parquet_timestamp_with_time_of_day_is_rejected(tmp_path: Path) -> None:
    raw = pd.DataFrame([bar(), bar()])
    raw["date"] = [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03 15:30")]
    path = tmp_path / "prices.parquet"
    raw.to_parquet(path)
    with pytest.raises(IngestError) as excinfo:
        load_prices(path)
    assert located(problems_of(excinfo)) == {(2, "date")}


# --- fundamentals -------------------------------------------------------------------------------


def test_valid_fundamentals_load_into_the_contract(tmp_path: Path) -> None:
    header = ["Symbol", "period_end", "Report Date", *FUNDAMENTAL_VALUE_COLUMNS]
    rows = [quarter(revenue="", total_debt="NA"), quarter(period_end="2023-12-31", report_date="2024-02-01")]
    for row in rows:
        row["Symbol"], row["Report Date"] = row.pop("ticker"), row.pop("report_date")
    frame = load_fundamentals(write_csv(tmp_path / "f.csv", header, rows))

    assert list(frame.columns) == list(FUNDAMENTAL_COLUMNS)
    assert frame["period_end"].tolist() == [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-03-31")]
    assert frame["report_date"].dtype == np.dtype("datetime64[ns]")
    for column in FUNDAMENTAL_VALUE_COLUMNS:
        assert frame[column].dtype == np.float64
    assert np.isnan(frame["revenue"].iloc[1])
    assert np.isnan(frame["total_debt"].iloc[1])
    assert frame["source"].tolist() == ["file:f.csv"] * 2
    assert not frame["synthetic"].any()


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"report_date": "2024-03-30"}, "report_date"),
        ({"revenue": "lots"}, "revenue"),
        ({"shares_outstanding": "0"}, "shares_outstanding"),
        ({"period_end": "31/03/2024"}, "period_end"),
        ({"ticker": ""}, "ticker"),
    ],
)
def test_bad_fundamentals_cell_is_located(tmp_path: Path, cells: dict[str, str], column: str) -> None:
    rows = [quarter(period_end="2023-12-31", report_date="2024-02-01"), quarter(**cells)]
    with pytest.raises(IngestError) as excinfo:
        load_fundamentals(write_csv(tmp_path / "f.csv", FUNDAMENTAL_HEADER, rows))
    assert located(problems_of(excinfo)) == {(3, column)}


def test_duplicate_fundamentals_periods_name_both_rows(tmp_path: Path) -> None:
    rows = [quarter(), quarter(period_end="2023-12-31", report_date="2024-02-01"), quarter()]
    with pytest.raises(IngestError) as excinfo:
        load_fundamentals(write_csv(tmp_path / "f.csv", FUNDAMENTAL_HEADER, rows))
    problems = problems_of(excinfo)
    assert located(problems) == {(2, "period_end"), (4, "period_end")}
    assert "also on row 4" in next(p.message for p in problems if p.row == 2)


def test_fundamentals_missing_value_column_is_named(tmp_path: Path) -> None:
    header = [c for c in FUNDAMENTAL_HEADER if c != "total_debt"]
    with pytest.raises(IngestError) as excinfo:
        load_fundamentals(write_csv(tmp_path / "f.csv", header, [quarter()]))
    assert located(problems_of(excinfo)) == {(None, "total_debt")}


# --- less common but valid spellings ------------------------------------------------------------


def test_unpadded_and_midnight_dates_are_accepted(tmp_path: Path) -> None:
    rows = [bar(date="2024-1-8"), bar(date="2024-01-05T00:00:00"), bar(date=" 2024-01-04 00:00 ")]
    frame = load_prices(write_csv(tmp_path / "p.csv", PRICE_HEADER, rows))
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-04", "2024-01-05", "2024-01-08"]


def test_parquet_with_ticker_and_date_as_index(tmp_path: Path) -> None:
    raw = pd.DataFrame([bar(), bar(date="2024-01-03")]).astype({"close": float})
    raw["date"] = pd.to_datetime(raw["date"])
    path = tmp_path / "prices.parquet"
    raw.set_index(["ticker", "date"]).to_parquet(path)
    frame = load_prices(path)
    assert frame["ticker"].tolist() == ["AAPL", "AAPL"]
    assert frame["close"].tolist() == [11.0, 11.0]


def test_fundamentals_parquet_problems_use_record_numbers(tmp_path: Path) -> None:
    raw = pd.DataFrame([quarter(period_end="2023-12-31", report_date="2024-02-01"), quarter()])
    raw["period_end"] = pd.to_datetime(raw["period_end"])
    raw["report_date"] = pd.to_datetime(raw["report_date"])
    raw["shares_outstanding"] = [1e9, -1.0]
    path = tmp_path / "fundamentals.parquet"
    raw.to_parquet(path)
    with pytest.raises(IngestError) as excinfo:
        load_fundamentals(path)
    assert located(problems_of(excinfo)) == {(2, "shares_outstanding")}
