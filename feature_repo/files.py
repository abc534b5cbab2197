"""Writing transform output as the Parquet files the Feast views read.

Files are replaced atomically (write beside, then rename), so a reader or a crashed writer never
sees half a file, and timestamps are stored as ``timestamp[us, UTC]`` because DuckDB's offline
store cannot cast pandas' default nanosecond timestamps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_repo.data_quality import DATA_QUALITY_FEATURES, DATA_QUALITY_VIEW
from feature_repo.definitions import CREATED_TIMESTAMP, EVENT_TIMESTAMP, feature_file
from feature_repo.market import MARKET_VIEWS
from feature_repo.schema import FEATURES_BY_VIEW
from feature_repo.tables import DATE, TICKER


def to_feast_frame(features: pd.DataFrame, view: str, created_at: datetime | None = None) -> pd.DataFrame:
    """Turn a transform's (ticker, date, features...) frame into a view's source rows.

    Raises:
        ValueError: the frame's feature columns are not exactly the view's, in order.
    """
    specs = DATA_QUALITY_FEATURES if view == DATA_QUALITY_VIEW else FEATURES_BY_VIEW[view]
    expected = [s.name for s in specs]
    got = [c for c in features.columns if c not in (TICKER, DATE)]
    if got != expected:
        raise ValueError(f"columns of the {view} frame {got} differ from the schema {expected}")
    created = created_at or datetime.now(UTC)
    frame = features.rename(columns={DATE: EVENT_TIMESTAMP})
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    frame[CREATED_TIMESTAMP] = pd.Series(pd.Timestamp(created), index=frame.index).astype("datetime64[us, UTC]")
    return frame[[TICKER, EVENT_TIMESTAMP, CREATED_TIMESTAMP, *expected]]


def write_feature_file(data_dir: Path, view: str, features: pd.DataFrame) -> Path:
    """Atomically replace the Parquet file behind ``view``; returns its path."""
    target = Path(feature_file(str(data_dir), view))
    target.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(to_feast_frame(features, view), preserve_index=False)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    pq.write_table(table, partial, compression="zstd")
    partial.replace(target)
    return target


def write_market_file(data_dir: Path, view: str, frame: pd.DataFrame) -> Path:
    """Atomically replace the Parquet file behind a market view (feature_repo.market) with ``frame``.

    ``frame`` holds the view's key column, ``date`` and its fields in declaration order.
    """
    key, specs = MARKET_VIEWS[view]
    fields = [s.name for s in specs]
    created = pd.Timestamp(datetime.now(UTC))
    out = frame[[key, *fields]].copy()
    out.insert(1, EVENT_TIMESTAMP, pd.to_datetime(frame[DATE]).dt.tz_localize("UTC").astype("datetime64[us, UTC]"))
    out.insert(2, CREATED_TIMESTAMP, pd.Series(created, index=out.index).astype("datetime64[us, UTC]"))
    target = Path(feature_file(str(data_dir), view))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    pq.write_table(pa.Table.from_pandas(out, preserve_index=False), partial, compression="zstd")
    partial.replace(target)
    return target


def write_feature_chunks(data_dir: Path, view: str, chunks: Iterable[pd.DataFrame]) -> tuple[Path, int]:
    """Atomically replace the Parquet file behind ``view`` with ``chunks``, one row group each.

    For a wide view over a whole exchange (the alpha view: 163 features x millions of rows), whose
    transform yields groups of tickers so that only one group is ever in memory. Every chunk gets
    the same ``created_timestamp``. Returns the path and the number of rows written.
    """
    target = Path(feature_file(str(data_dir), view))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    created, rows = datetime.now(UTC), 0
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(to_feast_frame(chunk, view, created), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table)
            rows += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"no chunk of the {view} view to write")
    partial.replace(target)
    return target, rows


def read_feature_file(data_dir: Path, view: str) -> pd.DataFrame:
    """Read a view's source rows back (for checks and parity tests)."""
    return pd.read_parquet(feature_file(str(data_dir), view))
