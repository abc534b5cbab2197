"""Benchmark: Feast materialisation and raw online writes, SQLite (baseline) vs Redis.

What is measured, per backend (see :mod:`bench.stores` for how the stores are built):

* ``materialize``: ``FeatureRepo.materialize(start, end, [view])`` for each of the three views
  (technical, fundamental, sentiment) over a window covering every row of its source file.
  Feast's DuckDB offline store scans every source row in the window (~1.8M at full size) and
  writes only the NEWEST row per ticker (~2,400) to the online store, so both rates are given:
  ``source_rows_scanned_per_s`` and ``online_rows_written_per_s``. ``online_rows_found`` checks
  afterwards (untimed) that every ticker has a row online.
* ``bulk_write``: ``FeatureStore.write_to_online_store("technical_features", df)`` of the last
  ``--bulk-sessions`` sessions of every ticker (~48k rows at full size) into a freshly applied
  store (a new SQLite file; Redis database 1 with its own registry): a rows/s figure for raw
  online writes. Redis compares each row's event time with the stored one before writing (Feast's
  default de-duplication), hence the fresh store: every row is newer, every row is written.

Registry: the embedded default uses the file registry; the production configuration the SQL
registry, here on a SQLite URL (``sqlite:///<tmp>/registry.db``) in place of PostgreSQL.

Each of ``--repeats`` rounds starts from empty stores; within a round the backends alternate view
by view and the one going first swaps every round (this machine's CPU speed shifts by up to 2x
for seconds at a time, so back-to-back blocks would not be comparable). Seconds are medians over
rounds, throughputs are derived from them, and every round's seconds are listed. Before each
round, every view is materialised once, untimed, into a throwaway SQLite store: the first large
materialisation after other work is up to 2x slower on this VM and would otherwise always
penalise the backend that goes first. An even number of rounds balances the order exactly.

Ratios are Redis throughput over SQLite throughput (= SQLite seconds / Redis seconds): above 1,
Redis is faster. Data: the SYNTHETIC universe; all files in a temporary folder; Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Final

import pandas as pd

from bench import common, stores
from feature_repo.files import to_feast_frame
from feature_repo.settings import FeatureStoreSettings
from feature_repo.tables import DATE, TICKER

NAME: Final = "materialize"
BULK_VIEW: Final = "technical_features"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.synthetic_parser(
        NAME,
        "Feast materialisation (3 views) and bulk online writes on the SYNTHETIC universe, "
        "SQLite online store vs Redis; one JSON document on stdout.",
    )
    parser.add_argument(
        "--bulk-sessions",
        type=int,
        default=20,
        help="sessions per ticker written by the bulk write_to_online_store (default 20)",
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="rounds, each on fresh stores; medians reported (default 4)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = common.universe_size(args)
    with common.Stopwatch() as total, common.scratch_folder() as folder:
        views = stores.compute_views(size)
        stores.write_sources(views, folder / "sources")
        bulk = bulk_frame(views, args.bulk_sessions)
        with stores.redis_running(folder / "redis-server") as url:
            warm = stores.fresh_settings("sqlite", folder / "warm-up", url, sources=folder / "sources")
            warm_repo, _ = stores.open_applied(warm)
            rounds = []
            for r in range(max(args.repeats, 1)):
                stores.warm_up(warm_repo, views)
                rounds.append(run_round(r, folder / f"round-{r}", url, views, bulk, sources=folder / "sources"))
    results = {b: summarise(views, bulk, [r[b] for r in rounds]) for b in stores.BACKENDS}
    doc = build_document(size, args, views, results)
    common.emit(NAME, doc, args.results_dir, total_seconds=total.seconds)


def bulk_frame(views: stores.Views, sessions: int) -> pd.DataFrame:
    """The last ``sessions`` rows of every ticker, as the view's source rows (Feast columns)."""
    frame = views.frames[BULK_VIEW].sort_values([TICKER, DATE]).groupby(TICKER).tail(sessions)
    return to_feast_frame(frame.reset_index(drop=True), BULK_VIEW)


def run_round(
    index: int, folder: Path, redis_url: str, views: stores.Views, bulk: pd.DataFrame, *, sources: Path
) -> dict[str, dict[str, Any]]:
    """One round on fresh stores: apply, materialise every view, then a bulk write into new stores.

    Backends alternate view by view (and swap who goes first every round), so both see the same
    machine conditions.
    """
    order = stores.backend_order(index)
    out: dict[str, dict[str, Any]] = {b: {"views": {}} for b in order}
    repos = {}
    for b in order:
        settings = stores.fresh_settings(b, folder / b, redis_url, sources=sources)
        repos[b], out[b]["apply_seconds"] = stores.open_applied(settings)
    for view in views.frames:
        for b in order:
            out[b]["views"][view] = stores.materialize_view(repos[b], views, view)
            common.log(f"round {index}: {b} {view} materialised in {out[b]['views'][view]:.2f} s")
    for b in order:
        out[b]["online_rows_found"] = {v: stores.online_rows_found(repos[b], v, views.tickers()) for v in views.frames}
        settings = stores.fresh_settings(b, folder / f"bulk-{b}", redis_url, db=1)
        out[b]["bulk_seconds"] = time_bulk_write(settings, bulk)
        common.log(f"round {index}: {b} bulk write of {len(bulk)} rows in {out[b]['bulk_seconds']:.2f} s")
    return out


def time_bulk_write(settings: FeatureStoreSettings, frame: pd.DataFrame) -> float:
    """Seconds of one ``write_to_online_store`` of every row of ``frame`` into a freshly applied store."""
    repo, _ = stores.open_applied(settings)
    with common.stdout_to_stderr(), common.Stopwatch() as sw:
        repo.store.write_to_online_store(feature_view_name=BULK_VIEW, df=frame)
    return sw.seconds


def summarise(views: stores.Views, bulk: pd.DataFrame, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each timing, with throughputs derived from the medians."""
    per_view = {}
    for view, frame in views.frames.items():
        runs = [r["views"][view] for r in rounds]
        per_view[view] = {
            **_rates(statistics.median(runs), len(frame), int(frame[TICKER].nunique())),
            "seconds_all_rounds": [common.rounded(s) for s in runs],
            "features_per_row": frame.shape[1] - 2,
            "online_rows_found": min(r["online_rows_found"][view] for r in rounds),
        }
    totals = [sum(r["views"].values()) for r in rounds]
    scanned = sum(len(f) for f in views.frames.values())
    written = sum(int(f[TICKER].nunique()) for f in views.frames.values())
    return {
        "apply_seconds": common.rounded(statistics.median(r["apply_seconds"] for r in rounds)),
        "views": per_view,
        "all_views": {
            **_rates(statistics.median(totals), scanned, written),
            "seconds_all_rounds": [common.rounded(s) for s in totals],
        },
        "bulk_write": _bulk_rates([r["bulk_seconds"] for r in rounds], bulk),
    }


def _rates(seconds: float, scanned: int, written: int) -> dict[str, Any]:
    return {
        "seconds": common.rounded(seconds),
        "source_rows_scanned": scanned,
        "online_rows_written": written,
        "source_rows_scanned_per_s": round(scanned / seconds),
        "online_rows_written_per_s": round(written / seconds),
    }


def _bulk_rates(runs: list[float], bulk: pd.DataFrame) -> dict[str, Any]:
    seconds = statistics.median(runs)
    features = len(bulk.columns) - 3  # ticker, event_timestamp, created_timestamp
    return {
        "view": BULK_VIEW,
        "rows": len(bulk),
        "tickers": int(bulk[TICKER].nunique()),
        "seconds": common.rounded(seconds),
        "seconds_all_rounds": [common.rounded(s) for s in runs],
        "rows_per_s": round(len(bulk) / seconds),
        "feature_values_per_s": round(len(bulk) * features / seconds),
    }


def build_document(
    size: common.UniverseSize, args: argparse.Namespace, views: stores.Views, results: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: per-backend results and Redis-over-SQLite throughput ratios."""
    sqlite, redis = results["sqlite"], results["redis"]
    ratios = {
        f"materialize_{view}": common.ratio(sqlite["views"][view]["seconds"], redis["views"][view]["seconds"])
        for view in views.frames
    }
    ratios["materialize_all_views"] = common.ratio(sqlite["all_views"]["seconds"], redis["all_views"]["seconds"])
    ratios["bulk_write"] = common.ratio(sqlite["bulk_write"]["seconds"], redis["bulk_write"]["seconds"])
    return common.document(
        NAME,
        "Feast materialize per view (newest row per ticker over the full window) and one bulk "
        "write_to_online_store, into the SQLite online store (embedded default) and Redis (production).",
        size,
        parameters={
            "bulk_sessions": args.bulk_sessions,
            "repeats": args.repeats,
            "order": "backends alternate view by view; the first backend swaps every round",
            "views": {v: len(f) for v, f in views.frames.items()},
            "view_compute_seconds": {v: common.rounded(s) for v, s in views.compute_seconds.items()},
            "warm_up": "before each round, every view materialised over its full window into a "
            "throwaway SQLite store (untimed)",
            "registry": {"sqlite": "file registry", "redis": "SQL registry on sqlite:///<tmp>/registry.db"},
        },
        baseline="sqlite (FeatureStoreSettings(data_dir=tmp): SQLite online store, file registry)",
        candidate="redis (environment=production: redis-server on 127.0.0.1, SQL registry)",
        results=results,
        ratio={"redis_over_sqlite_throughput": ratios},
    )


if __name__ == "__main__":
    main()
