"""A bar outside its own range: a counted warning for a benchmark, a choice for price files.

The files are SYNTHETIC, written into ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config import FilesSource
from training.errors import IngestError
from training.ingest.bars import bracket_violations
from training.ingest.files import load_price_file, load_prices
from training.ingest.sources import load_source

HEADER = "ticker,date,open,high,low,close,volume\n"
GOOD = "AAA,2024-01-02,10,11,9,10.5,100\nAAA,2024-01-03,10.5,12,10,11,120\n"
# An index whose open (5012) lies above the day's high (5010): normal for an index.
INDEX = HEADER + "XJO,2024-01-02,5000,5010,4990,5005,0\nXJO,2024-01-03,5012,5010,4995,5001,0\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_masks_flag_each_kind_of_violation_once_and_ignore_missing_values() -> None:
    open_ = np.array([10.0, 12.0, 10.0, 10.0, np.nan])
    high = np.array([11.0, 11.0, 11.0, 9.0, np.nan])
    low = np.array([9.0, 9.0, 9.0, 10.0, np.nan])
    close = np.array([10.5, 10.5, 8.0, 9.5, 3.0])
    found = bracket_violations(open_, high, low, close)
    assert found.open_outside.tolist() == [False, True, False, False, False]
    assert found.close_outside.tolist() == [False, False, True, False, False]
    assert found.inverted.tolist() == [False, False, False, True, False]
    assert found.any.tolist() == [False, True, True, True, False]
    assert found.describe(3, open_, high, low, close) == "high 9 is below low 10"


def test_a_price_file_refuses_a_bar_outside_its_range_unless_told_to_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", HEADER + GOOD + "BBB,2024-01-02,10,11,9,11.5,100\n")
    with pytest.raises(IngestError, match=r"row 4, column 'close': close 11.5 is outside"):
        load_prices(path)
    loaded = load_price_file(path, bracket="warn")
    assert len(loaded.frame) == 3 and loaded.frame.loc[loaded.frame["ticker"] == "BBB", "close"].item() == 11.5
    assert loaded.bracket_violations == 1
    [warning] = loaded.bracket_warnings
    assert (warning.row, warning.column) == (4, "close")


def test_the_benchmark_file_of_a_files_source_accepts_an_index_open_outside_its_range(tmp_path: Path) -> None:
    prices = write(tmp_path / "p.csv", HEADER + GOOD)
    index = write(tmp_path / "xjo.csv", INDEX)
    with pytest.raises(IngestError):
        load_prices(index)  # as a price file it is still refused by default
    loaded = load_source(FilesSource(prices=[prices], benchmark=index))
    benchmark = loaded.tables["benchmark"]
    assert benchmark["symbol"].tolist() == ["XJO", "XJO"] and benchmark["close"].tolist() == [5005.0, 5001.0]
    [note] = loaded.notes
    assert f"{index}: 1 bar value(s) outside the bar's own range" in note and "row 3: open 5012" in note


def test_a_files_source_set_to_warn_keeps_the_price_bars_and_names_them(tmp_path: Path) -> None:
    prices = write(tmp_path / "p.csv", HEADER + GOOD + "BBB,2024-01-02,12,11,9,10,100\n")
    with pytest.raises(IngestError, match="open 12 is outside"):
        load_source(FilesSource(prices=[prices]))
    loaded = load_source(FilesSource(prices=[prices], bracket_violations="warn"))
    assert len(loaded.tables["prices"]) == 3
    [note] = loaded.notes
    assert "row 4: open 12 is outside the bar's range [low 9, high 11]" in note
