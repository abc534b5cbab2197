"""Benchmark: technical features on the synthetic ASX-scale universe, vectorised vs per-ticker loop.

What is measured: wall time and peak resident memory of
:func:`feature_repo.transforms.technical.technical_features` (sessions x tickers grids, one call
for all tickers) against the baseline :func:`feature_repo.transforms.reference.
technical_features_per_ticker` (a Python loop over tickers plus ``groupby('date')``), both
computing the same 30 features for every (ticker, date) bar.

How: the parent generates the SYNTHETIC universe once (``generate_universe``, ~1.8M price rows
at full size) and writes its prices and benchmark to Parquet in a temporary folder. Each
implementation then runs in its own child process (``python -m bench.features --child ...``), so
each has its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). The child records its RSS
after imports, reads the Parquet input, records the RSS with the input loaded, times ONE call
of the transform (no import, no I/O), records the peak RSS, then (first round only) writes its
output to Parquet. ``--repeats`` rounds each run both implementations, the one going first
swapping every round (this machine's CPU speed shifts by up to 2x for seconds at a time);
seconds are medians over rounds, peak RSS the largest. The parent compares the two outputs
feature by feature (max absolute and relative difference, NaN pattern) with the tolerance the
oracle test uses (rtol 1e-9, atol 1e-12).

Ratios: ``speed`` = baseline median seconds / vectorised median seconds (above 1: the vectorised
transform is faster); ``memory`` = baseline peak RSS / vectorised peak RSS (above 1: it uses less).
The goal (<= 10 s, <= 4 GiB peak for the vectorised transform on the 2-core machine) is reported
as ``meets_goal`` booleans, never enforced.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from feature_repo.schema import TECHNICAL_FEATURES, names
from feature_repo.tables import DATE, TICKER

NAME: Final = "features"
IMPLEMENTATIONS: Final = ("per_ticker", "vectorised")  # baseline first
GOAL_SECONDS: Final = 10.0
GOAL_PEAK_RSS_MB: Final = 4096.0  # 4 GiB
RTOL: Final = 1e-9  # the tolerance of tests/test_features_technical.py
ATOL: Final = 1e-12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.synthetic_parser(
        NAME,
        "Time and peak memory of the vectorised technical features vs the per-ticker "
        "pandas loop, on the SYNTHETIC universe; one JSON document on stdout.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds; each runs both implementations once, each in a fresh process (default 3)",
    )
    # Internal: one implementation, one timed run, in a child process.
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--input-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.input_dir, args.output)
        return
    size = common.universe_size(args)
    with common.Stopwatch() as total, common.scratch_folder() as folder:
        generation = write_inputs(size, folder)

        def child_args(r: int, impl: str) -> list[str]:
            output = ["--output", str(folder / f"{impl}.parquet")] if r == 0 else []  # compared below
            return ["--input-dir", str(folder), *output]

        runs = common.child_rounds(NAME, IMPLEMENTATIONS, args.repeats, child_args)
        agreement = compare_outputs(folder / "per_ticker.parquet", folder / "vectorised.parquet")
    summary = {impl: summarise(rounds) for impl, rounds in runs.items()}
    doc = build_document(size, args, generation, summary, agreement)
    common.emit(NAME, doc, args.results_dir, total_seconds=total.seconds)


# --- parent --------------------------------------------------------------------------------------


def write_inputs(size: common.UniverseSize, folder: Path) -> dict[str, Any]:
    """Generate the synthetic universe and write prices and the benchmark series to Parquet."""
    from training.ingest.synthetic import generate_universe

    common.log(f"generating the synthetic universe {size}")
    with common.Stopwatch() as sw:
        universe = generate_universe(n_tickers=size.n_tickers, n_months=size.n_months, seed=size.seed)
    universe.prices.to_parquet(folder / "prices.parquet", index=False)
    universe.benchmark[[DATE, "close"]].to_parquet(folder / "benchmark.parquet", index=False)
    return {
        "generate_seconds": common.rounded(sw.seconds),
        "price_rows": len(universe.prices),
        "tickers": int(universe.prices[TICKER].nunique()),
        "sessions": int(universe.prices[DATE].nunique()),
    }


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds (and rows/s from it), the largest peak RSS, every round's figures."""
    seconds = statistics.median(r["seconds"] for r in rounds)
    rows = rounds[0]["rows"]
    return {
        "seconds": common.rounded(seconds),
        "seconds_all_rounds": [common.rounded(r["seconds"]) for r in rounds],
        "rows": rows,
        "rows_per_s": round(rows / seconds),
        "rss_before_load_mb": max(r["rss_before_load_mb"] for r in rounds),
        "input_rss_mb": max(r["input_rss_mb"] for r in rounds),
        "input_data_mb": max(r["input_data_mb"] for r in rounds),
        "peak_rss_after_load_mb": max(r["peak_rss_after_load_mb"] for r in rounds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "rss_increment_mb": max(r["rss_increment_mb"] for r in rounds),
        "peak_rss_mb_all_rounds": [r["peak_rss_mb"] for r in rounds],
    }


def compare_outputs(baseline_path: Path, candidate_path: Path) -> dict[str, Any]:
    """Feature-by-feature agreement of the two outputs (same rows, same order expected)."""
    base = pd.read_parquet(baseline_path)
    cand = pd.read_parquet(candidate_path)
    same_keys = len(base) == len(cand) and bool(
        (base[TICKER].to_numpy() == cand[TICKER].to_numpy()).all()
        and (base[DATE].to_numpy() == cand[DATE].to_numpy()).all()
    )
    per_feature = {n: _feature_diff(base[n], cand[n]) for n in names(TECHNICAL_FEATURES)} if same_keys else {}
    worst: tuple[str | None, dict[str, Any]] = max(
        per_feature.items(), key=lambda kv: kv[1]["max_abs_diff"], default=(None, {})
    )
    return {
        "same_rows_in_same_order": same_keys,
        "rows_compared": len(base),
        "max_abs_diff": worst[1].get("max_abs_diff"),
        "max_abs_diff_feature": worst[0],
        "max_rel_diff": max((d["max_rel_diff"] for d in per_feature.values()), default=None),
        "nan_pattern_mismatches": sum(d["nan_mismatches"] for d in per_feature.values()),
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "agree_within_tolerance": same_keys and all(d["agree"] for d in per_feature.values()),
        "per_feature_max_abs_diff": {n: d["max_abs_diff"] for n, d in per_feature.items()},
    }


def _feature_diff(left: pd.Series, right: pd.Series) -> dict[str, Any]:
    a, b = left.to_numpy(dtype="float64"), right.to_numpy(dtype="float64")
    both = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a[both] - b[both])
    scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float(rel.max()) if rel.size else 0.0,
        "nan_mismatches": int((np.isnan(a) != np.isnan(b)).sum()),
        "agree": bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)),
    }


def build_document(
    size: common.UniverseSize,
    args: argparse.Namespace,
    generation: dict[str, Any],
    runs: dict[str, dict[str, Any]],
    agreement: dict[str, Any],
) -> dict[str, Any]:
    """The benchmark's JSON document: per-implementation results, ratios, goal and agreement."""
    base, vec = runs["per_ticker"], runs["vectorised"]
    return common.document(
        NAME,
        "Wall time and peak RSS of the vectorised technical features vs the per-ticker pandas loop, "
        "each call in its own process; seconds are medians over rounds, peak RSS the largest.",
        size,
        parameters={
            "repeats": args.repeats,
            "order": "each round runs both, one process each; the first swaps every round",
            **generation,
        },
        baseline="feature_repo.transforms.reference.technical_features_per_ticker (per-ticker loop)",
        candidate="feature_repo.transforms.technical.technical_features (vectorised)",
        results={"per_ticker": base, "vectorised": vec},
        ratio={
            "speed_baseline_over_vectorised": common.ratio(base["seconds"], vec["seconds"]),
            "peak_rss_baseline_over_vectorised": common.ratio(base["peak_rss_mb"], vec["peak_rss_mb"]),
            "rss_increment_baseline_over_vectorised": common.ratio(base["rss_increment_mb"], vec["rss_increment_mb"]),
        },
        goal={
            "vectorised_seconds_max": GOAL_SECONDS,
            "vectorised_peak_rss_mb_max": GOAL_PEAK_RSS_MB,
            "meets_goal_seconds": vec["seconds"] <= GOAL_SECONDS,
            "meets_goal_memory": vec["peak_rss_mb"] <= GOAL_PEAK_RSS_MB,
        },
        agreement=agreement,
    )


# --- child ---------------------------------------------------------------------------------------


def run_child(implementation: str, folder: Path, output: Path | None) -> None:
    """Load the input, time one transform call, measure memory, maybe write the output.

    Prints one JSON line (the parent reads the last line of stdout).
    """
    compute = _implementation(implementation)
    rss_before_load = common.current_rss_mb()
    prices = pd.read_parquet(folder / "prices.parquet")
    benchmark = pd.read_parquet(folder / "benchmark.parquet").set_index(DATE)["close"]
    gc.collect()
    input_rss, peak_after_load = common.current_rss_mb(), common.peak_rss_mb()
    with common.Stopwatch() as sw:
        features = compute(prices, benchmark)
    peak = common.peak_rss_mb()
    if output is not None:
        features.to_parquet(output, index=False)
    result = {
        "seconds": sw.seconds,
        "rows": len(features),
        "rss_before_load_mb": round(rss_before_load, 1),
        "input_rss_mb": round(input_rss, 1),
        "input_data_mb": round(input_rss - rss_before_load, 1),
        "peak_rss_after_load_mb": round(peak_after_load, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_increment_mb": round(peak - input_rss, 1),
    }
    print(json.dumps(result), flush=True)


def _implementation(name: str) -> Any:
    if name == "vectorised":
        from feature_repo.transforms.technical import technical_features

        return technical_features
    from feature_repo.transforms.reference import technical_features_per_ticker

    return technical_features_per_ticker


if __name__ == "__main__":
    main()
