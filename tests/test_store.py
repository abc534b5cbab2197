"""The offline store: idempotent upserts, refused batches that change nothing, kill-safety."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.errors import StoreError
from training.store import OfflineStore


def price_rows(tickers: list[str], days: int, start: str = "2024-01-01", base: float = 100.0) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=days)
    frame = pd.DataFrame([(t, d) for t in tickers for d in dates], columns=["ticker", "date"])
    steps = np.arange(len(frame), dtype=float)
    frame["open"] = base + steps
    frame["high"] = base + steps + 1
    frame["low"] = base + steps - 1
    frame["close"] = base + steps
    frame["adj_close"] = base + steps
    frame["volume"] = 1000.0
    frame["source"] = "test"
    frame["synthetic"] = True
    return frame


def test_loading_the_same_batch_twice_changes_nothing(tmp_path: Path) -> None:
    batch = price_rows(["AAA", "BBB"], 30)
    with OfflineStore(tmp_path / "s.duckdb") as store:
        first = store.upsert("prices", batch)
        before = store.read("prices")
        second = store.upsert("prices", batch)
        after = store.read("prices")
    assert (first.inserted, first.updated) == (60, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 60)
    pd.testing.assert_frame_equal(before, after)
    assert len(after) == 60


def test_upsert_updates_changed_rows_and_inserts_new_keys(tmp_path: Path) -> None:
    batch = price_rows(["AAA"], 10)
    with OfflineStore(tmp_path / "s.duckdb") as store:
        store.upsert("prices", batch)
        changed = pd.concat([batch.iloc[:9], price_rows(["AAA"], 11).iloc[9:]], ignore_index=True)
        changed.loc[0, "close"] = 1.5
        result = store.upsert("prices", changed)
        stored = store.read("prices")
    assert (result.inserted, result.updated) == (1, 1)
    assert len(stored) == 11
    assert stored.loc[0, "close"] == 1.5


def test_store_round_trips_the_price_contract(tmp_path: Path) -> None:
    batch = price_rows(["AAA"], 3)
    batch.loc[1, ["open", "high", "low", "volume"]] = np.nan
    with OfflineStore(tmp_path / "s.duckdb") as store:
        store.upsert("prices", batch)
        stored = store.read("prices")
    assert list(stored.columns) == list(batch.columns)
    assert stored["date"].dtype == "datetime64[ns]"
    pd.testing.assert_frame_equal(stored, batch, check_dtype=False)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["volume"]), "missing ['volume']"),
        (lambda f: f.assign(extra=1), "extra ['extra']"),
        (lambda f: pd.concat([f, f.iloc[:2]]), "repeats"),
        (lambda f: f.assign(ticker=[None, *f["ticker"].iloc[1:]]), "empty key"),
    ],
)
def test_refused_batches_leave_the_store_as_it_was(tmp_path: Path, mutate, message: str) -> None:
    with OfflineStore(tmp_path / "s.duckdb") as store:
        store.upsert("prices", price_rows(["AAA"], 5))
        before = store.read("prices")
        bad = mutate(price_rows(["AAA", "BBB"], 5, base=500.0))
        with pytest.raises(StoreError, match=message.replace("[", r"\[").replace("]", r"\]")):
            store.upsert("prices", bad)
        pd.testing.assert_frame_equal(store.read("prices"), before)


def test_unknown_table_is_named(tmp_path: Path) -> None:
    with (
        OfflineStore(tmp_path / "s.duckdb") as store,
        pytest.raises(StoreError, match="unknown table 'nope'"),
    ):
        store.upsert("nope", price_rows(["AAA"], 1))


def test_every_batch_is_logged(tmp_path: Path) -> None:
    with OfflineStore(tmp_path / "s.duckdb") as store:
        store.upsert("prices", price_rows(["AAA"], 5))
        store.upsert("prices", price_rows(["AAA"], 5))
        log = store.ingest_log()
    assert list(log["inserted"]) == [5, 0]
    assert list(log["unchanged"]) == [0, 5]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.test_store import price_rows
    from training.store import OfflineStore

    store = OfflineStore({path!r})
    batch = price_rows([f"T{{i:03d}}" for i in range(200)], 250, base=900.0)  # 50,000 rows

    def halfway(done, total):
        if done >= total // 2:
            print("HALFWAY", flush=True)
            time.sleep(60)  # the parent kills us here, mid-transaction

    store.upsert("prices", batch, chunk_rows=5_000, on_chunk=halfway)
    """
)


@pytest.mark.slow
def test_a_writer_killed_mid_batch_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with OfflineStore(path) as store:
        store.upsert("prices", price_rows(["AAA", "BBB"], 20))
        before = store.read("prices")
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER.format(root=root, path=str(path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "HALFWAY", proc.stderr.read() if proc.stderr else line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with OfflineStore(path) as store:
        after = store.read("prices")
        log = store.ingest_log()
    pd.testing.assert_frame_equal(after, before)
    assert len(log) == 1  # only the first, committed batch
