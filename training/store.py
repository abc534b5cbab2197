"""The embedded offline store: one DuckDB file keyed like the contracts in :mod:`feature_repo.tables`.

Writes are idempotent upserts inside one transaction per batch: loading the same data twice
changes nothing, and a process killed part-way through a batch leaves the store exactly as it
was (DuckDB only replays committed transactions from its write-ahead log).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import pandas as pd

from feature_repo import tables as t
from training.errors import StoreError


@dataclass(frozen=True)
class TableSpec:
    """A stored table: its columns (in contract order), SQL types and primary key."""

    name: str
    columns: tuple[str, ...]
    sql_types: dict[str, str]
    key: tuple[str, ...]

    def ddl(self) -> str:
        cols = ", ".join(f'"{c}" {self.sql_types[c]}' for c in self.columns)
        key = ", ".join(f'"{c}"' for c in self.key)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, PRIMARY KEY ({key}))"

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key)


_D, _F, _S, _B = "DATE", "DOUBLE", "VARCHAR", "BOOLEAN"

TABLES: Final[dict[str, TableSpec]] = {
    "prices": TableSpec(
        "prices",
        t.PRICE_COLUMNS,
        {
            t.TICKER: _S,
            t.DATE: _D,
            "open": _F,
            "high": _F,
            "low": _F,
            "close": _F,
            "adj_close": _F,
            "volume": _F,
            t.SOURCE: _S,
            t.SYNTHETIC: _B,
        },
        t.PRICE_KEY,
    ),
    "benchmark": TableSpec(
        "benchmark",
        t.BENCHMARK_COLUMNS,
        {"symbol": _S, t.DATE: _D, "close": _F, t.SOURCE: _S, t.SYNTHETIC: _B},
        t.BENCHMARK_KEY,
    ),
    "fundamentals": TableSpec(
        "fundamentals",
        t.FUNDAMENTAL_COLUMNS,
        {t.TICKER: _S, "period_end": _D, "report_date": _D, t.SOURCE: _S, t.SYNTHETIC: _B}
        | dict.fromkeys(t.FUNDAMENTAL_VALUE_COLUMNS, _F),
        t.FUNDAMENTAL_KEY,
    ),
    "documents": TableSpec(
        "documents",
        t.DOCUMENT_COLUMNS,
        {
            "doc_id": _S,
            t.TICKER: _S,
            "published_at": "TIMESTAMPTZ",
            t.SOURCE: _S,
            "title": _S,
            "body": _S,
            t.SYNTHETIC: _B,
        },
        t.DOCUMENT_KEY,
    ),
    "scored_documents": TableSpec(
        "scored_documents",
        t.SCORED_DOCUMENT_COLUMNS,
        {
            "doc_id": _S,
            t.TICKER: _S,
            "published_at": "TIMESTAMPTZ",
            "p_negative": _F,
            "p_neutral": _F,
            "p_positive": _F,
            "score": _F,
            "model_version": _S,
        },
        ("doc_id", "model_version"),
    ),
    "series_breaks": TableSpec(
        "series_breaks",
        t.SERIES_BREAK_COLUMNS,
        {t.TICKER: _S, t.DATE: _D, "reason": _S, "detail": _S},
        t.SERIES_BREAK_KEY,
    ),
    "adjustment_factors": TableSpec(
        "adjustment_factors",
        t.ADJUSTMENT_FACTOR_COLUMNS,
        {t.TICKER: _S, t.DATE: _D, "kind": _S, "origin": _S}
        | dict.fromkeys(
            ("ratio", "amount", "price_factor", "volume_factor", "cum_price_factor", "cum_volume_factor"), _F
        ),
        t.ADJUSTMENT_FACTOR_KEY,
    ),
    "instruments": TableSpec(
        "instruments",
        t.INSTRUMENT_COLUMNS,
        {"instrument_id": _S, t.TICKER: _S, "first_date": _D, "last_date": _D},
        t.INSTRUMENT_KEY,
    ),
    "universe_membership": TableSpec(
        "universe_membership",
        t.UNIVERSE_MEMBERSHIP_COLUMNS,
        {"universe": _S, t.DATE: _D, t.TICKER: _S, "rank": "BIGINT", "traded_value": _F},
        t.UNIVERSE_MEMBERSHIP_KEY,
    ),
}

_LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS ingest_log (batch_id VARCHAR PRIMARY KEY, table_name VARCHAR, "
    "rows BIGINT, inserted BIGINT, updated BIGINT, unchanged BIGINT, source VARCHAR, "
    "written_at TIMESTAMPTZ DEFAULT current_timestamp)"
)


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did: new keys inserted, existing keys whose values changed, and the rest."""

    table: str
    rows: int
    inserted: int
    updated: int
    unchanged: int


ChunkCallback = Callable[[int, int], None]
"""Called after each chunk with (rows written so far, total rows); used for progress bars."""


class OfflineStore:
    """A DuckDB file holding prices, benchmark, fundamentals and documents.

    Args:
        path: the DuckDB database file; created with every table if it does not exist.
        read_only: open without write access (several readers may share a file).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path), read_only=read_only)
        self._con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            for spec in TABLES.values():
                self._con.execute(spec.ddl())
            self._con.execute(_LOG_DDL)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> OfflineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        chunk_rows: int = 250_000,
        on_chunk: ChunkCallback | None = None,
    ) -> UpsertResult:
        """Insert new keys and update changed rows of ``table``, all in one transaction.

        Args:
            table: one of :data:`TABLES`.
            frame: rows in the table's column contract (extra columns are refused).
            chunk_rows: rows per statement; chunks only bound memory and drive progress,
                the whole batch still commits (or not) as one.
            on_chunk: progress callback.

        Raises:
            StoreError: unknown table, columns not matching the contract, or duplicated keys
                in the batch; the store is left unchanged.
        """
        spec = _spec(table)
        batch = _conform(spec, frame)
        counts = self._count_changes(spec, batch)
        written = 0
        # Nothing new: skip the rewrite, but still log the batch so the audit trail is complete.
        todo = range(0, len(batch), chunk_rows) if counts.inserted + counts.updated else range(0)
        with self._transaction():
            for start in todo:
                chunk = batch.iloc[start : start + chunk_rows]
                self._upsert_chunk(spec, chunk)
                written += len(chunk)
                if on_chunk is not None:
                    on_chunk(written, len(batch))
            self._con.execute(
                "INSERT INTO ingest_log (batch_id, table_name, rows, inserted, updated, unchanged, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    uuid.uuid4().hex,
                    spec.name,
                    counts.rows,
                    counts.inserted,
                    counts.updated,
                    counts.unchanged,
                    _sources(batch),
                ],
            )
        return counts

    def replace(
        self, table: str, frame: pd.DataFrame, where: str | None = None, params: list[object] | None = None
    ) -> UpsertResult:
        """Replace the rows of a derived table (all, or those matching ``where``) with ``frame``.

        For tables that are recomputed from the raw ones (series breaks, adjustment factors, universe
        membership): rows that are no longer derived must disappear, which an upsert cannot do. One
        transaction: a failure leaves the table as it was. The counts compare the new rows with the
        replaced ones, so a re-run that derives the same rows reports ``0 new, 0 changed``.
        """
        spec = _spec(table)
        batch = _conform(spec, frame)
        counts = self._count_changes(spec, batch)
        clause = f" WHERE {where}" if where else ""
        with self._transaction():
            self._con.execute(f"DELETE FROM {spec.name}{clause}", params or [])
            if len(batch):
                self._upsert_chunk(spec, batch)
        return counts

    def read(
        self,
        table: str,
        where: str | None = None,
        params: list[object] | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Read a table (optionally filtered by a SQL ``where`` clause with ``?`` parameters).

        ``columns`` reads only those contract columns (in the order given): on millions of price rows,
        a derivation that needs two columns should not materialise ten.
        """
        spec = _spec(table)
        wanted = tuple(columns) if columns is not None else spec.columns
        unknown = [c for c in wanted if c not in spec.columns]
        if unknown:
            raise StoreError(f"table '{spec.name}' has no column(s) {unknown}")
        cols = ", ".join(f'"{c}"' for c in wanted)
        sql = f"SELECT {cols} FROM {spec.name}"
        if where:
            sql += f" WHERE {where}"
        sql += " ORDER BY " + ", ".join(f'"{c}"' for c in spec.key)
        frame = self._con.execute(sql, params or []).df()
        return _normalise_types(spec, frame, wanted)

    def count(self, table: str) -> int:
        rows = self._con.execute(f"SELECT count(*) FROM {_spec(table).name}").fetchall()
        return int(rows[0][0])

    def ingest_log(self) -> pd.DataFrame:
        return self._con.execute("SELECT * FROM ingest_log ORDER BY written_at").df()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def _upsert_chunk(self, spec: TableSpec, chunk: pd.DataFrame) -> None:
        cols = ", ".join(f'"{c}"' for c in spec.columns)
        key = ", ".join(f'"{c}"' for c in spec.key)
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in spec.value_columns)
        self._con.register("_incoming", chunk)
        try:
            self._con.execute(
                f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM _incoming "
                f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
            )
        except duckdb.Error as e:
            raise StoreError(f"writing {len(chunk)} rows to '{spec.name}' failed: {e}") from e
        finally:
            self._con.unregister("_incoming")

    def _count_changes(self, spec: TableSpec, batch: pd.DataFrame) -> UpsertResult:
        """Count new, changed and unchanged keys before writing (for the log and idempotence)."""
        self._con.register("_incoming", batch)
        try:
            on = " AND ".join(f'i."{c}" = s."{c}"' for c in spec.key)
            differs = " OR ".join(f'i."{c}" IS DISTINCT FROM s."{c}"' for c in spec.value_columns)
            row = self._con.execute(
                f'SELECT count(*) FILTER (WHERE s."{spec.key[0]}" IS NULL), '
                f'count(*) FILTER (WHERE s."{spec.key[0]}" IS NOT NULL AND ({differs})) '
                f"FROM _incoming i LEFT JOIN {spec.name} s ON {on}"
            ).fetchall()[0]
        finally:
            self._con.unregister("_incoming")
        inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
        return UpsertResult(spec.name, len(batch), inserted, updated, len(batch) - inserted - updated)


def _spec(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError as e:
        raise StoreError(f"unknown table '{table}'; known tables: {sorted(TABLES)}") from e


def _conform(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Check a batch against the contract before anything is written."""
    missing = [c for c in spec.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in spec.columns]
    if missing or extra:
        raise StoreError(f"batch for '{spec.name}' does not match its contract: missing {missing}, extra {extra}")
    batch = frame.loc[:, list(spec.columns)]
    null_keys = batch[list(spec.key)].isna().any(axis=1)
    if null_keys.any():
        raise StoreError(f"batch for '{spec.name}' has {int(null_keys.sum())} row(s) with an empty key {spec.key}")
    dup = batch.duplicated(subset=list(spec.key), keep=False)
    if dup.any():
        example = batch.loc[dup, list(spec.key)].head(3).to_dict("records")
        raise StoreError(
            f"batch for '{spec.name}' repeats {int(dup.sum())} key row(s) {spec.key}, e.g. {example}; "
            "de-duplicate it first"
        )
    return batch.reset_index(drop=True)


def _sources(batch: pd.DataFrame) -> str:
    if t.SOURCE not in batch.columns:
        return ""
    return ",".join(sorted(map(str, batch[t.SOURCE].dropna().unique()))[:10])


def _normalise_types(spec: TableSpec, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Give every reader the same dtypes, whatever DuckDB version returned."""
    for col, sql_type in spec.sql_types.items():
        if columns is not None and col not in columns:
            continue
        if sql_type == "DATE":
            frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
        elif sql_type == "TIMESTAMPTZ":
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[ns, UTC]")
        elif sql_type == "DOUBLE":
            frame[col] = frame[col].astype("float64")
        elif sql_type == "BOOLEAN":
            frame[col] = frame[col].astype(bool)
    return frame
