"""Benchmark: the v2 feature family (Alpha158-style ``alpha_features``) against the v1 family.

What is measured: wall time and peak resident memory of one call of
:func:`feature_repo.transforms.alpha.alpha_features` (the 163 features the ``technical_model_v2``
service adds) and of :func:`feature_repo.transforms.technical.technical_features` (the 30 features
of ``technical_model_v1``, which v2 also serves), on the same SYNTHETIC universe (2,400 tickers x
36 months, about 756 sessions, by default), in the same run.

How: as ``bench.features`` does. The parent generates the universe once and writes prices and
benchmark to Parquet; each family runs in its own child process (``--child``), so each has its own
peak RSS (``ru_maxrss``); the child times ONE transform call (no import, no I/O). Rounds alternate
which family goes first (this machine's CPU speed drifts); seconds are medians over rounds, peak
RSS the largest. ``v2_service`` is what materialising ``technical_model_v2`` costs: v1 + alpha
seconds (two views, computed one after the other; the peak is the larger of the two).

The machine is shared, so each child also reports its CPU seconds (``process_time``: all its
threads), which load from other processes inflates far less than wall time.

Ratios: ``alpha_over_v1_seconds``, ``alpha_over_v1_cpu_seconds`` and ``alpha_over_v1_peak_rss``;
``per_feature_ms`` divides each family's seconds by its feature count.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any, Final

import pandas as pd

from bench import common
from bench.features import write_inputs
from feature_repo.schema import ALPHA_FEATURES, TECHNICAL_FEATURES
from feature_repo.tables import DATE

NAME: Final = "features_v2"
FAMILIES: Final = ("v1_technical", "v2_alpha")
FEATURE_COUNTS: Final = {"v1_technical": len(TECHNICAL_FEATURES), "v2_alpha": len(ALPHA_FEATURES)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.synthetic_parser(
        NAME,
        "Time and peak memory of the Alpha158-style (v2) features vs the v1 technical features, "
        "on the SYNTHETIC universe; one JSON document on stdout.",
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds, each runs both families (default 2)")
    parser.add_argument("--child", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument("--input-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.input_dir)
        return
    size = common.universe_size(args)
    with common.Stopwatch() as total, common.scratch_folder() as folder:
        generation = write_inputs(size, folder)
        runs = common.child_rounds(NAME, FAMILIES, args.repeats, lambda _r, _family: ["--input-dir", str(folder)])
    summary = {family: summarise(family, rounds) for family, rounds in runs.items()}
    v1, alpha = summary["v1_technical"], summary["v2_alpha"]
    doc = common.document(
        NAME,
        "alpha_features (Alpha158-style, technical_model_v2) vs technical_features (v1): one transform call each",
        size,
        generation=generation,
        repeats=args.repeats,
        families=summary,
        v2_service={
            "features": v1["features"] + alpha["features"],
            "median_seconds": common.rounded(v1["median_seconds"] + alpha["median_seconds"]),
            "peak_rss_mb": max(v1["peak_rss_mb"], alpha["peak_rss_mb"]),
        },
        alpha_over_v1_seconds=common.ratio(alpha["median_seconds"], v1["median_seconds"]),
        alpha_over_v1_cpu_seconds=common.ratio(alpha["median_cpu_seconds"], v1["median_cpu_seconds"]),
        alpha_over_v1_peak_rss=common.ratio(alpha["peak_rss_mb"], v1["peak_rss_mb"]),
    )
    common.emit(NAME, doc, args.results_dir, total_seconds=total.seconds)


def summarise(family: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds, the largest peak RSS, per-feature cost and every round's figures."""
    seconds = statistics.median(r["seconds"] for r in rounds)
    features = FEATURE_COUNTS[family]
    return {
        "features": features,
        "rows": rounds[0]["rows"],
        "median_seconds": common.rounded(seconds),
        "median_cpu_seconds": common.rounded(statistics.median(r["cpu_seconds"] for r in rounds)),
        "per_feature_ms": common.rounded(1000 * seconds / features, 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "rss_increment_mb": max(r["rss_increment_mb"] for r in rounds),
        "output_mb": rounds[0]["output_mb"],
        "rounds": rounds,
    }


def run_child(family: str, folder: Path) -> None:
    """Load the input, time one transform call, measure memory; print one JSON line."""
    prices = pd.read_parquet(folder / "prices.parquet")
    benchmark = pd.read_parquet(folder / "benchmark.parquet").set_index(DATE)["close"]
    if family == "v2_alpha":
        from feature_repo.transforms.alpha import alpha_features

        def compute() -> pd.DataFrame:
            return alpha_features(prices)
    else:
        from feature_repo.transforms.technical import technical_features

        def compute() -> pd.DataFrame:
            return technical_features(prices, benchmark)

    gc.collect()
    input_rss = common.current_rss_mb()
    cpu_before = time.process_time()
    with common.Stopwatch() as sw:
        features = compute()
    cpu_seconds = time.process_time() - cpu_before
    peak = common.peak_rss_mb()
    result = {
        "seconds": sw.seconds,
        "cpu_seconds": cpu_seconds,
        "rows": len(features),
        "input_rss_mb": round(input_rss, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_increment_mb": round(peak - input_rss, 1),
        "output_mb": round(features.memory_usage(deep=False).sum() / common.MIB, 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
