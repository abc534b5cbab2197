"""Benchmark: import of the real ASX per-day archives, eod_files loader vs a plain pandas loop.

What is measured: wall time and peak resident memory of importing the 18 yearly zips of
``../shared/data/asx-eod`` (ASX end-of-day prices 1997-01-02..2014-12-31, one headerless file per
trading day, about 5.3M rows):

* ``eod_files``: :func:`training.ingest.eod_files.load_eod_files` as the ingest stage calls it
  (pyarrow parsing on a thread pool, every row validated, codes sorted into shares, indices and
  skipped rows, halts and zero prices handled, frames in the store's contracts);
* ``eod_files_serial``: the same with one thread, to show what the pool gains;
* ``pandas_loop``: the baseline a user would write: for every member of every zip one
  ``pandas.read_csv``, a filter on three-character codes, one ``concat``. It validates nothing,
  so it does less work than the loader.

How: each variant runs in its own child process (``python -m bench.eod_import --child NAME``), so
each has its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``); the time covers the call only
(imports excluded). ``--repeats`` rounds run every variant once, the first swapping each round;
seconds are medians, peak RSS the largest. The goal (<= 30 s and <= 4 GiB for ``eod_files`` on
the 2-core machine) is reported as ``meets_goal`` booleans, never enforced.

The data folder is optional and never used by the tests: without it the benchmark stops with a
message saying where it looked.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench import common

NAME: Final = "eod_import"
VARIANTS: Final = ("pandas_loop", "eod_files", "eod_files_serial")  # baseline first
DEFAULT_DATA: Final = common.REPO_ROOT.parent / "shared" / "data" / "asx-eod"
GOAL_SECONDS: Final = 30.0
GOAL_PEAK_RSS_MB: Final = 4096.0
DATA_LABEL: Final = (
    "real: ASX end-of-day prices 1997-01-02..2014-12-31, raw vendor per-day files in 18 yearly zips "
    "(../shared/data/asx-eod, development data; see its README)"
)
_COLUMNS: Final = ["code", "date", "open", "high", "low", "close", "volume"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eod_import",
        description="Time and peak memory of importing the real ASX per-day archives with the eod_files "
        "loader vs a plain pandas.read_csv loop; one JSON document on stdout.",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"the archives (default {DEFAULT_DATA})")
    parser.add_argument("--repeats", type=int, default=1, help="rounds, each running every variant once (default 1)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help="where eod_import.json goes")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    archives = sorted(args.data_dir.glob("*.zip")) if args.data_dir.is_dir() else []
    if not archives:
        sys.exit(
            f"bench.eod_import: no .zip archives in {args.data_dir}. This benchmark needs the optional ASX "
            "development data (../shared/data/asx-eod); pass --data-dir to point elsewhere."
        )
    if args.child:
        run_child(args.child, args.data_dir)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"bench.eod_import: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    with common.Stopwatch() as total:
        runs = common.child_rounds(
            NAME, variants, args.repeats, lambda _r, _variant: ["--data-dir", str(args.data_dir)]
        )
    results = {v: summarise(rounds) for v, rounds in runs.items()}
    doc = build_document(args, archives, results)
    common.emit(NAME, doc, args.results_dir, total_seconds=total.seconds)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in rounds)
    first = rounds[0]
    return {
        "seconds": common.rounded(seconds),
        "seconds_all_rounds": [common.rounded(r["seconds"]) for r in rounds],
        "cpu_seconds": common.rounded(statistics.median(r["cpu_seconds"] for r in rounds)),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "rss_before_mb": max(r["rss_before_mb"] for r in rounds),
        "rss_increment_mb": max(r["rss_increment_mb"] for r in rounds),
        "rows_per_s": round(first["rows_read"] / seconds) if seconds else None,
        **{
            k: v
            for k, v in first.items()
            if k not in {"seconds", "cpu_seconds", "peak_rss_mb", "rss_before_mb", "rss_increment_mb"}
        },
    }


def build_document(args: argparse.Namespace, archives: list[Path], results: dict[str, Any]) -> dict[str, Any]:
    loader, baseline = results.get("eod_files"), results.get("pandas_loop")
    serial = results.get("eod_files_serial")
    ratio: dict[str, Any] = {}
    if loader and baseline:
        ratio["speed_pandas_loop_over_eod_files"] = common.ratio(baseline["seconds"], loader["seconds"])
        ratio["peak_rss_pandas_loop_over_eod_files"] = common.ratio(baseline["peak_rss_mb"], loader["peak_rss_mb"])
    if loader and serial:
        ratio["speed_serial_over_parallel"] = common.ratio(serial["seconds"], loader["seconds"])
    goal: dict[str, Any] = {"eod_files_seconds_max": GOAL_SECONDS, "eod_files_peak_rss_mb_max": GOAL_PEAK_RSS_MB}
    if loader:
        goal["meets_goal_seconds"] = loader["seconds"] <= GOAL_SECONDS
        goal["meets_goal_memory"] = loader["peak_rss_mb"] <= GOAL_PEAK_RSS_MB
    return {
        "benchmark": NAME,
        "description": "Wall time and peak RSS of importing the ASX per-day archives: the eod_files loader "
        "(parallel and serial) vs a plain per-file pandas.read_csv loop, each in its own process.",
        "data": DATA_LABEL,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {
            "data_dir": str(args.data_dir),
            "archives": len(archives),
            "archive_mb": round(sum(a.stat().st_size for a in archives) / common.MIB, 1),
            "repeats": args.repeats,
            "order": "each round runs every variant, one process each; the first swaps every round",
        },
        "baseline": "per member: pandas.read_csv(header=None), keep 3-character codes, one concat (no validation)",
        "candidate": "training.ingest.eod_files.load_eod_files (validates, routes indices, handles halts)",
        "results": results,
        "ratio": ratio,
        "goal": goal,
        "environment": common.environment(),
    }


# --- child ---------------------------------------------------------------------------------------


def run_child(variant: str, data_dir: Path) -> None:
    """Import once, print one JSON line: seconds, peak RSS and what was read."""
    rss_before = common.current_rss_mb()
    cpu_before = _cpu_seconds()
    with common.Stopwatch() as sw:
        figures = _pandas_loop(data_dir) if variant == "pandas_loop" else _eod_files(data_dir, variant)
    peak = common.peak_rss_mb()
    result = {
        "seconds": sw.seconds,
        # CPU time (all threads) says what the work costs when other processes share the cores.
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 2),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_increment_mb": round(peak - rss_before, 1),
        **figures,
    }
    print(json.dumps(result), flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _eod_files(data_dir: Path, variant: str) -> dict[str, Any]:
    from training.ingest.eod_files import load_eod_files

    loaded = load_eod_files([data_dir], workers=1 if variant == "eod_files_serial" else None)
    report = loaded.report
    return {
        "files_read": report.files_read,
        "rows_read": report.rows_kept + report.index_rows + report.no_close_rows + report.rows_skipped_by_code_rule,
        "three_character_rows": report.rows_kept + report.index_rows + report.no_close_rows,
        "price_rows": len(loaded.prices),
        "benchmark_rows": len(loaded.benchmark),
        "report": report.lines()[0],
    }


def _pandas_loop(data_dir: Path) -> dict[str, Any]:
    import pandas as pd

    frames = []
    files = rows = 0
    for path in sorted(data_dir.glob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            for name in sorted(n for n in archive.namelist() if n.endswith((".txt", ".csv"))):
                files += 1
                data = archive.read(name)
                if not data.strip():
                    continue
                frame = pd.read_csv(io.BytesIO(data), header=None, names=_COLUMNS, dtype={"code": str, "date": str})
                rows += len(frame)
                frames.append(frame[frame["code"].str.len() == 3])
    kept = pd.concat(frames, ignore_index=True)
    kept["date"] = pd.to_datetime(kept["date"], format="%Y%m%d")
    return {"files_read": files, "rows_read": rows, "three_character_rows": len(kept)}


if __name__ == "__main__":
    main()
