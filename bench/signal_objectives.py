"""Benchmark: what the signal models learn, compared out of fold (issue 18 item 1).

On an already ingested data folder (ingest, features and apply stages run), for one feature
service, this compares on the SAME walk-forward folds of the train segment (never valid or test):

* objectives: binary (P(excess > 0), the first models' baseline), regression on the cross-sectional
  label, lambdarank with one query per date (grades from within-date quintiles);
* labels for regression: the per-date rank among the universe's members, the per-date z-score,
  and the raw excess return;
* horizons 5, 21 and 63 sessions.

Every variant trains with the same fixed parameters (the model defaults, or ``--trees``), one
seed, so the comparison is of the objective and the label, not of a search's luck. Figures: the
pooled per-date out-of-fold rank IC against the raw excess return, its Newey-West t (h - 1 lags)
and the per-fold means. Prints JSON.

    .venv/bin/python -m bench.signal_objectives --config /tmp/dev.yaml --data-dir /tmp/data
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from feature_repo.tables import DATE
from training.config import load_config
from training.models.signal import SignalModelParams
from training.signals.datasets import TrainingFrame
from training.signals.fit import model_frame
from training.signals.horizons import horizon_report
from training.signals.inputs import load_inputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="run configuration (its train segment is used)")
    parser.add_argument("--data-dir", type=Path, required=True, help="an ingested data folder")
    parser.add_argument("--model", default="technical", help="model entry of signals.models (default technical)")
    parser.add_argument("--service", default=None, help="feature service in place of the model's own")
    parser.add_argument("--horizons", default="5,21,63")
    parser.add_argument("--variants", default="binary,regression:rank,regression:zscore,regression:raw,lambdarank")
    parser.add_argument("--trees", type=int, default=200, help="boosting rounds of every variant (default 200)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--date-stride",
        type=int,
        default=1,
        help="keep every k-th sample date (train and test alike) to cut the cost on a busy machine (default 1)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the loaded frame, reused when present")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = load_config(args.config)
    signals = config.signals
    assert signals is not None, f"{args.config} has no signals section"
    horizons = tuple(int(h) for h in args.horizons.split(","))
    spec = signals.models[args.model]
    if args.service:
        spec = spec.model_copy(update={"feature_service": args.service, "features": None})
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(args.data_dir.resolve())))
    started = time.perf_counter()
    results: dict[str, Any] = {
        "data": f"{config.name}: {args.config}, train segment {signals.segments.train} only",
        "service": spec.feature_service,
        "trees": args.trees,
        "variants": {},
    }
    base = signals.model_copy(update={"learning": signals.learning.model_copy(update={"report_horizons": horizons})})
    frame, outcomes = _load(args, config, base, spec, repo)
    frame, outcomes = _stride(frame, outcomes, args.date_stride)
    if args.date_stride > 1:  # the folds count sessions: the same years hold k times fewer
        k = args.date_stride
        wf = base.walk_forward
        scaled = wf.model_copy(
            update={
                "min_train_sessions": max(1, wf.min_train_sessions // k),
                "test_sessions": None if wf.test_sessions is None else max(1, wf.test_sessions // k),
                "embargo_sessions": -(-wf.embargo_sessions // k),
            }
        )
        base = base.model_copy(update={"walk_forward": scaled})
    results["rows"] = len(frame)
    results["date_stride"] = args.date_stride
    results["load_seconds"] = round(time.perf_counter() - started, 1)
    for variant in args.variants.split(","):
        objective, _, label = variant.partition(":")
        cfg = base.model_copy(update={"learning": base.learning.model_copy(update={"label": label or "rank"})})
        params = SignalModelParams(
            objective=objective,  # type: ignore[arg-type]
            n_estimators=args.trees,
            num_threads=args.threads,
        )
        t0 = time.perf_counter()
        rows = horizon_report(frame, outcomes, params, cfg)
        results["variants"][variant] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "horizons": {
                r.horizon: {**r.to_dict(), "fold_rank_ics": [round(v, 4) for v in r.fold_rank_ics]} for r in rows
            },
        }
        print(json.dumps({variant: results["variants"][variant]}), file=sys.stderr, flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results, indent=2))
    return results


def _load(
    args: argparse.Namespace, config: Any, signals: Any, spec: Any, repo: FeatureRepo
) -> tuple[TrainingFrame, dict[int, pd.DataFrame]]:
    """The model's frame and the members' outcomes per horizon (from ``--cache`` when it exists)."""
    if args.cache is not None and args.cache.exists():
        with args.cache.open("rb") as f:
            cached: tuple[TrainingFrame, dict[int, pd.DataFrame]] = pickle.load(f)
        return cached
    inputs = load_inputs(signals, args.data_dir / "offline.duckdb", repo, exchange=config.calendar.exchange)
    frame = model_frame(inputs, spec)  # the features once: only the labels differ between variants
    if args.cache is not None:
        with args.cache.open("wb") as f:
            pickle.dump((frame, inputs.report_outcomes), f)
    return frame, inputs.report_outcomes


def _stride(
    frame: TrainingFrame, outcomes: dict[int, pd.DataFrame], stride: int
) -> tuple[TrainingFrame, dict[int, pd.DataFrame]]:
    """Every ``stride``-th session of the frame, and the outcomes of those sessions."""
    if stride <= 1:
        return frame, outcomes
    sessions = pd.DatetimeIndex(frame.dates.unique()).sort_values()[::stride]
    keep = frame.dates.isin(sessions).to_numpy()
    return frame.subset(keep), {h: o[pd.to_datetime(o[DATE]).isin(sessions)] for h, o in outcomes.items()}


if __name__ == "__main__":
    main()
