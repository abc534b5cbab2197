"""Benchmark: signal-model tuning throughput and LightGBM inference, on the bundled REAL prices.

What is measured:

* **Ray Tune throughput**: the demo's search (ASHA + Optuna over the technical model, five purged
  walk-forward folds inside 1996-2014) with ``--trials`` trials, once with one trial at a time
  (baseline) and once with as many concurrent trials as cores; trials per minute and the ratio.
* **LightGBM inference for 2,400 rows** (the synthetic scale universe's size; the rows are real
  feature vectors of the test segment, drawn with replacement): one batched ``Booster.predict``
  call, against a row-at-a-time loop (what a naive server does per ticker) as the baseline; p50
  over ``--repeats`` calls; and the same booster compiled to machine code by lleaves (LLVM), with
  its compile time and whether its outputs equal native predict's (to 1e-9; LLVM may reorder
  floating-point sums).

The features are computed in-process by the same transform the pipeline runs (no Feast: this
measures the models, not the store).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from feature_repo.schema import FEATURES_BY_VIEW, names
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import forward_outcomes
from feature_repo.transforms.technical import technical_features
from training.ingest.bundled import load_sp500
from training.models.signal import SignalModel
from training.ray_runtime import ray_session
from training.signals.config import TuningConfig
from training.signals.tuning import TuningData, run_search
from training.validation import WalkForwardConfig, walk_forward_folds

NAME: Final = "signals"
DATA: Final = "real: skfolio S&P 500 sample (20 US large caps, adjusted closes), technical features"
INFERENCE_ROWS: Final = 2400


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="trials per search (default 4)")
    parser.add_argument("--repeats", type=int, default=200, help="timed inference calls (default 200)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def real_frame() -> pd.DataFrame:
    """Technical features joined to 21-session outcomes, one row per (ticker, date)."""
    data = load_sp500(start="1995-01-01")
    bench = data.benchmark.set_index(DATE)["close"]
    features = technical_features(data.prices, bench)
    outcomes = forward_outcomes(data.prices, bench, horizon=21)
    frame = features.merge(outcomes, on=[TICKER, DATE], how="inner")
    return frame.dropna(subset=["label_21d"]).sort_values([DATE, TICKER], ignore_index=True)


def tuning_data(frame: pd.DataFrame) -> TuningData:
    train = frame[(frame[DATE] >= "1996-01-01") & (frame[DATE] <= "2014-12-31")].reset_index(drop=True)
    wf = WalkForwardConfig(n_folds=5, min_train_sessions=756, test_sessions=252, embargo_sessions=5)
    folds = walk_forward_folds(train[DATE], train["known_at"], wf)
    cols = names(FEATURES_BY_VIEW["technical_features"])
    return TuningData(
        train[cols].astype("float64"), train["label_21d"].astype("int64"), train["fwd_excess_21d"], train[DATE], folds
    )


def measure_tuning(data: TuningData, trials: int, storage: Path) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {}
    per_minute: dict[str, float] = {}
    with ray_session() as session:
        for label, concurrent in (("one_at_a_time", 1), ("all_cores", cores)):
            common.log(f"tuning: {trials} trials, {concurrent} concurrent")
            config = TuningConfig(num_samples=trials, max_concurrent_trials=concurrent, seed=0, max_t=5)
            result = run_search(data, config, name=f"bench-{label}", storage_dir=storage)
            per_minute[label] = result.trials_per_minute
            results[label] = {
                "concurrent_trials": concurrent,
                "seconds": common.rounded(result.seconds, 2),
                "trials_per_minute": common.rounded(result.trials_per_minute, 2),
                "stopped_early_by_asha": result.stopped_early,
                "best_rank_ic_mean": common.rounded(result.rank_ic_mean),
            }
        results["ray_cpus"] = session.cpus
    results["speedup_all_cores_over_one"] = common.ratio(per_minute["all_cores"], per_minute["one_at_a_time"])
    return results


def measure_inference(frame: pd.DataFrame, data: TuningData, repeats: int) -> dict[str, Any]:
    model = SignalModel().fit(data.X, data.y)
    cols = list(data.X.columns)
    test = frame[frame[DATE] >= "2019-01-01"][cols].astype("float64").to_numpy()
    rows = test[np.random.default_rng(0).integers(0, len(test), INFERENCE_ROWS)]
    booster = model.booster
    batch = _median_ms(lambda: booster.predict(rows, num_threads=1), repeats)
    per_row = _median_ms(lambda: [booster.predict(rows[i : i + 1]) for i in range(len(rows))], max(3, repeats // 50))
    looped = np.concatenate([booster.predict(rows[i : i + 1]) for i in range(len(rows))])
    same = np.array_equal(booster.predict(rows), looped)
    compiled, compile_seconds = _lleaves(booster)
    lleaves_ms = _median_ms(lambda: compiled.predict(rows, n_jobs=1), repeats)
    lleaves_same = bool(np.allclose(compiled.predict(rows, n_jobs=1), booster.predict(rows), rtol=0, atol=1e-9))
    return {
        "rows": INFERENCE_ROWS,
        "trees": model.num_trees,
        "features": len(cols),
        "batch_predict_ms_p50": common.rounded(batch, 3),
        "row_loop_ms_p50": common.rounded(per_row, 3),
        "speedup_batch_over_row_loop": common.ratio(per_row, batch),
        "rows_per_second_batch": common.rounded(INFERENCE_ROWS / (batch / 1000), 0),
        "outputs_identical": bool(same),
        "lleaves_compile_seconds": common.rounded(compile_seconds, 2),
        "lleaves_predict_ms_p50": common.rounded(lleaves_ms, 3),
        "speedup_lleaves_over_native_batch": common.ratio(batch, lleaves_ms),
        "lleaves_outputs_match_native_1e-9": lleaves_same,
    }


def _lleaves(booster: Any) -> tuple[Any, float]:
    """The booster compiled by lleaves (from LightGBM's text model file), and the compile time."""
    import tempfile

    import lleaves

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.txt"
        booster.save_model(str(path))
        model = lleaves.Model(model_file=str(path))
        started = time.perf_counter()
        model.compile()
        return model, time.perf_counter() - started


def _median_ms(fn: Any, repeats: int) -> float:
    return common.median_seconds(fn, repeats, warm_up=True)[0] * 1000


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    with common.stdout_to_stderr():
        frame = real_frame()
        data = tuning_data(frame)
        inference = measure_inference(frame, data, args.repeats)
        tuning = measure_tuning(data, args.trials, Path(args.results_dir) / "ray")
    doc = {
        "benchmark": NAME,
        "description": "Ray Tune trials/min (one at a time vs all cores) and LightGBM inference for 2,400 rows",
        "data": DATA,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_rows": len(data.X),
        "folds": len(data.folds),
        "tuning": tuning,
        "inference": inference,
        "total_seconds": common.rounded(time.perf_counter() - started, 1),
        "environment": common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)


if __name__ == "__main__":
    main()
