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
import sys
import time
from pathlib import Path
from typing import Any

from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from training.config import load_config
from training.horizons import horizon_report
from training.models.signal import SignalModelParams
from training.signals import load_inputs, model_frame


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
    inputs = load_inputs(base, args.data_dir / "offline.duckdb", repo, exchange=config.calendar.exchange)
    frame = model_frame(inputs, spec)  # the features once: only the labels differ between variants
    results["rows"] = len(frame)
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
        rows = horizon_report(frame, inputs.report_outcomes, params, cfg)
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


if __name__ == "__main__":
    main()
