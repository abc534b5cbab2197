"""Benchmark: the data-quality sentinel's fit and score time on 2,400 tickers x 756 sessions of SYNTHETIC data.

What is measured, each step timed separately (median of ``--repeats`` runs): the daily statistics
(:func:`monitoring.sentinel.statistics.daily_statistics`) over every row; the IsolationForest fit
on the reference window (the first ``--reference-sessions``); scoring the sessions after it. The
baseline in the same run is a z-score rule on the same statistics: the reference's median and
scaled MAD, a row flagged when any statistic is more than ``--z`` of them away (its "fit" is the
medians, its "score" the comparison).

The data are random numbers shaped like the sentinel's inputs
(:func:`monitoring.sentinel.synthetic.synthetic_inputs`) with faults planted in the scored window.
The counts of planted faults found are a wiring check of both detectors on synthetic data, not a
quality figure. scikit-learn is imported before timing. One JSON document on stdout, also written
to ``bench/results/sentinel.json``; the machine's load average is recorded at the start and end.
"""

from __future__ import annotations

import argparse
import os
import statistics as stats
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from feature_repo.data_quality import STATISTIC_NAMES
from feature_repo.tables import DATE, TICKER
from monitoring.sentinel.model import MAD_TO_SD, MIN_SCALE, SentinelParams, fit
from monitoring.sentinel.statistics import daily_statistics
from monitoring.sentinel.synthetic import Planted, plant, synthetic_inputs

NAME: Final = "sentinel"
FAULTS: Final = ("return", "range", "volume", "missing", "stale")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sentinel", description=__doc__.splitlines()[0])
    parser.add_argument("--n-tickers", type=int, default=2400)
    parser.add_argument("--n-sessions", type=int, default=756)
    parser.add_argument("--reference-sessions", type=int, default=504, help="fitting window: the first N sessions")
    parser.add_argument("--planted", type=int, default=10, help="faults of each kind planted in the scored window")
    parser.add_argument("--z", type=float, default=6.0, help="the baseline's threshold in robust z units")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="200 tickers x 300 sessions (smoke run)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.small:
        args.n_tickers, args.n_sessions, args.reference_sessions = 200, 300, 200
    return args


def _planted(inputs: pd.DataFrame, args: argparse.Namespace) -> list[Planted]:
    rng = np.random.default_rng(args.seed + 1)
    sessions = sorted(inputs[DATE].unique())[args.reference_sessions + 25 :]
    tickers = sorted(inputs[TICKER].unique())
    chosen = rng.choice(len(tickers), size=len(FAULTS) * args.planted, replace=False)
    return [
        Planted(tickers[t], pd.Timestamp(sessions[rng.integers(len(sessions))]), FAULTS[i % len(FAULTS)])
        for i, t in enumerate(chosen)
    ]


def _found(rows: pd.DataFrame, flags: np.ndarray, faults: list[Planted]) -> dict[str, int]:
    """Planted faults flagged, by kind."""
    keys = set(zip(rows.loc[flags, TICKER], rows.loc[flags, DATE], strict=True))
    return {kind: sum((f.ticker, f.date) in keys for f in faults if f.fault == kind) for kind in FAULTS}


def _zscore_rule(reference: pd.DataFrame, scored: pd.DataFrame, z: float) -> tuple[float, float, np.ndarray]:
    """The baseline: seconds to fit (medians, MADs), seconds to score, and its flags."""
    started = time.perf_counter()
    values = reference[list(STATISTIC_NAMES)].to_numpy(dtype="float64")
    center = np.nan_to_num(np.nanmedian(values, axis=0))
    floors = [MIN_SCALE[s] for s in STATISTIC_NAMES]
    scale = np.maximum(np.nan_to_num(np.nanmedian(np.abs(values - center), axis=0) * MAD_TO_SD), floors)
    fitted = time.perf_counter()
    deviations = np.abs(np.nan_to_num((scored[list(STATISTIC_NAMES)].to_numpy(dtype="float64") - center) / scale))
    flags = (deviations > z).any(axis=1)
    return fitted - started, time.perf_counter() - fitted, flags


def _one_run(inputs: pd.DataFrame, faults: list[Planted], args: argparse.Namespace) -> dict[str, Any]:
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    statistics = daily_statistics(inputs)
    timings["statistics_s"] = time.perf_counter() - started
    sessions = sorted(statistics[DATE].unique())
    cut = sessions[args.reference_sessions - 1]
    reference = statistics[statistics[DATE] <= cut]
    scored = statistics[statistics[DATE] > cut].reset_index(drop=True)
    started = time.perf_counter()
    model = fit(reference, SentinelParams(seed=args.seed))
    timings["fit_s"] = time.perf_counter() - started
    started = time.perf_counter()
    result = model.score(scored)
    timings["score_s"] = time.perf_counter() - started
    fit_s, score_s, baseline_flags = _zscore_rule(reference, scored, args.z)
    return {
        **timings,
        "baseline_fit_s": fit_s,
        "baseline_score_s": score_s,
        "reference_rows": len(reference),
        "scored_rows": len(scored),
        "sentinel_flagged": int(result.flags.sum()),
        "sentinel_flagged_by_forest": int(result.forest.sum()),
        "sentinel_flagged_by_envelope": int(result.envelope.sum()),
        "sentinel_planted_found": _found(scored, result.flags, faults),
        "baseline_flagged": int(baseline_flags.sum()),
        "baseline_planted_found": _found(scored, baseline_flags, faults),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    import sklearn.ensemble  # noqa: F401  # imported before timing: a one-off cost of the job, not of fit

    common.log(f"generating {args.n_tickers} x {args.n_sessions} synthetic rows")
    inputs = synthetic_inputs(args.n_tickers, args.n_sessions, seed=args.seed)
    faults = _planted(inputs, args)
    inputs = plant(inputs, faults)
    runs = []
    for i in range(args.repeats):
        common.log(f"run {i + 1}/{args.repeats}")
        runs.append(_one_run(inputs, faults, args))
    timed = ("statistics_s", "fit_s", "score_s", "baseline_fit_s", "baseline_score_s")
    medians = {k: stats.median(r[k] for r in runs) for k in timed}
    figures = {k: common.rounded(v) for k, v in medians.items()}
    doc = {
        "benchmark": NAME,
        "description": __doc__.splitlines()[0],
        "data": (
            "synthetic (randomly generated, no real market data): monitoring.sentinel.synthetic.synthetic_inputs("
            f"n_tickers={args.n_tickers}, n_sessions={args.n_sessions}, seed={args.seed}) with "
            f"{len(faults)} planted faults ({args.planted} of each of {', '.join(FAULTS)})"
        ),
        "measured_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "rows": len(inputs),
        "reference_sessions": args.reference_sessions,
        "repeats": args.repeats,
        "seconds_median": figures,
        "sentinel_total_s": common.rounded(medians["statistics_s"] + medians["fit_s"] + medians["score_s"]),
        "params": {**SentinelParams(seed=args.seed).__dict__, "baseline_z": args.z},
        "counts_last_run": {k: v for k, v in runs[-1].items() if not k.endswith("_s")},
        "planted": len(faults),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "environment": common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
