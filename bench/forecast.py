"""Benchmark: the portfolio forecast (``POST /v1/portfolios/forecast``) at 50 names x 1,000 paths x 3 horizons.

What is measured, in one run, on a SYNTHETIC universe (``generate_universe``; latency only, no
quality figure):

* ``vectorised``: what the route computes after reading the return windows: the portfolio's
  point-in-time history (``api.forecast.portfolio_history``) and the bands by the shared
  stationary bootstrap (``api.forecast.simulate``), numpy throughout;
* ``naive_loop``: the baseline: the same bootstrap and statistics written as plain Python loops
  (a path at a time, a day at a time, a name at a time), as a first version would be;
* ``request``: the whole route in process (FastAPI ``TestClient``: auth, quota, the online read of
  ``return_window`` from a real Feast SQLite store, the simulation, audit, JSON), after one warm-up
  request; ``--no-request`` skips it.

The goal in the issue is <= 200 ms for the forecast at this size on the development machine.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import common

NAME: Final = "forecast"
HORIZONS: Final = [21, 63, 252]
PEPPER: Final = "bench-pepper-0123456789abcdef"  # a throwaway gateway DB: not a secret


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=50, help="tickers in the portfolio (default 50)")
    parser.add_argument("--paths", type=int, default=1000, help="simulated paths (default 1000)")
    parser.add_argument("--months", type=int, default=40, help="months of synthetic sessions (default 40)")
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats of the vectorised path (default 30)")
    parser.add_argument("--no-request", action="store_true", help="skip the in-process request measurement")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def naive_forecast(
    matrix: list[list[float]], weights: list[float], horizons: list[int], *, n_paths: int, block: int, seed: int
) -> dict[int, dict[str, list[float]]]:
    """The baseline: the common history, the stationary bootstrap and the statistics in plain Python loops."""
    start = 0
    for t, row in enumerate(matrix):
        if any(math.isnan(v) for v, w in zip(row, weights, strict=True) if w > 0):
            start = t + 1
    history = matrix[start:]
    rng = random.Random(seed)
    longest, n_obs = max(horizons), len(history)
    out: dict[int, dict[str, list[float]]] = {h: {"cum": [], "dd": [], "vol": []} for h in horizons}
    for _ in range(n_paths):
        equity, peak, worst, total, squares = 1.0, 1.0, 0.0, 0.0, 0.0
        t = rng.randrange(n_obs)
        for day in range(1, longest + 1):
            if day > 1:
                t = rng.randrange(n_obs) if rng.random() < 1.0 / block else (t + 1) % n_obs
            r = 0.0
            for value, weight in zip(history[t], weights, strict=True):
                r += value * weight
            equity *= 1.0 + r
            peak = max(peak, equity)
            worst = min(worst, equity / peak - 1.0)
            total, squares = total + r, squares + r * r
            if day in out:
                out[day]["cum"].append(equity - 1.0)
                out[day]["dd"].append(worst)
                out[day]["vol"].append(math.sqrt(max(squares - total * total / day, 0.0) / (day - 1) * 252))
    return {
        h: {k: statistics.quantiles(v, n=20, method="inclusive") for k, v in stats.items()} for h, stats in out.items()
    }


def _timed(fn: Any, repeats: int) -> dict[str, float | None]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    values = np.asarray(seconds) * 1000
    return {
        "repeats": repeats,
        "p50_ms": common.rounded(float(np.percentile(values, 50))),
        "p95_ms": common.rounded(float(np.percentile(values, 95))),
        "max_ms": common.rounded(float(values.max())),
    }


def _universe(size: common.UniverseSize) -> tuple[Any, Any]:
    from feature_repo.transforms.technical import technical_features
    from training.ingest.synthetic import generate_universe

    universe = generate_universe(n_tickers=size.n_tickers, n_months=size.n_months, seed=size.seed)
    benchmark = universe.benchmark.set_index("date")["close"]
    return technical_features(universe.prices, benchmark), benchmark


def _request(data_dir: Path, technical: Any, benchmark: Any, body: dict[str, Any], repeats: int) -> dict[str, Any]:
    """The route in process on a real Feast SQLite store holding the market views."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import ALL_SCOPES, create_key
    from api.settings import GatewaySettings
    from feature_repo.files import read_feature_file, write_market_file
    from feature_repo.market import REGIME_VIEW, RETURN_WINDOW_VIEW, regime_view_frame, return_window_frame
    from feature_repo.settings import FeatureStoreSettings
    from feature_repo.store import FeatureRepo, full_window

    write_market_file(data_dir, REGIME_VIEW, regime_view_frame(benchmark, "SYNTH-INDEX"))
    write_market_file(data_dir, RETURN_WINDOW_VIEW, return_window_frame(technical[["ticker", "date", "ret_1d"]]))
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    repo.apply()
    for view in (REGIME_VIEW, RETURN_WINDOW_VIEW):
        start, end = full_window(read_feature_file(data_dir, view)["event_timestamp"])
        repo.materialize(start, end, [view])
    settings = GatewaySettings(
        data_dir=str(data_dir),
        database_url=f"sqlite:///{data_dir / 'gateway.db'}",
        api_key_pepper=PEPPER,
        scored={"enabled": False},
    )
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        key = create_key(services.engine, "bench", ALL_SCOPES, "1000000/minute", services.settings.pepper).plaintext
        headers = {"Authorization": f"Bearer {key}"}

        def call() -> None:
            response = client.post("/v1/portfolios/forecast", json=body, headers=headers)
            assert response.status_code == 200, response.text

        call()  # warm-up: registry load and the first online read
        timings = _timed(call, repeats)
    return {**timings, "feature_cache_seconds": settings.feature_cache_seconds}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from api.forecast import portfolio_history, simulate
    from api.market_data import ReturnWindow
    from feature_repo.market import return_window_frame

    size = common.UniverseSize(n_tickers=args.names, n_months=args.months, seed=0)
    load_before = os.getloadavg()
    with common.stdout_to_stderr():
        common.log(f"synthetic universe {args.names} tickers x {args.months} months")
        technical, benchmark = _universe(size)
        frame = return_window_frame(technical[["ticker", "date", "ret_1d"]]).set_index("ticker")
        windows = {
            str(t): ReturnWindow(np.asarray(r, dtype=np.float64), np.asarray(s).astype("datetime64[D]"), None, "")  # type: ignore[arg-type]
            for t, r, s in zip(frame.index, frame["returns"], frame["sessions"], strict=True)
        }
        tickers = list(windows)[: args.names]
        weights = {t: 1.0 / len(tickers) for t in tickers}

        def vectorised() -> None:
            history = portfolio_history(windows, weights)
            simulate(history.returns, HORIZONS, n_paths=args.paths, block=21, seed=1, loss_threshold=0.1)

        history = portfolio_history(windows, weights)
        common.log(f"vectorised: {args.repeats} repeats")
        fast = _timed(vectorised, args.repeats)
        matrix = np.column_stack([windows[t].returns for t in tickers]).tolist()
        common.log("naive loop: 1 run")
        slow = _timed(
            lambda: naive_forecast(matrix, list(weights.values()), HORIZONS, n_paths=args.paths, block=21, seed=1), 1
        )
        request = None
        if not args.no_request:
            common.log("request in process (Feast SQLite online store)")
            body = {"weights": weights, "horizons": HORIZONS, "n_paths": args.paths, "seed": 1}
            with tempfile.TemporaryDirectory(prefix="bench-forecast-") as folder:
                request = _request(Path(folder), technical, benchmark, body, args.repeats)
    doc = common.document(
        NAME,
        "POST /v1/portfolios/forecast: stationary block bootstrap bands, vectorised vs a naive loop, and the route",
        size,
        names=len(tickers),
        paths=args.paths,
        horizons=HORIZONS,
        history_sessions=int(history.returns.size),
        vectorised=fast,
        naive_loop=slow,
        speedup_p50=common.ratio(float(slow["p50_ms"] or 0), float(fast["p50_ms"] or 0)),
        request=request,
        goal_ms=200,
        load_average_before=[round(v, 2) for v in load_before],
        load_average_after=[round(v, 2) for v in os.getloadavg()],
    )
    common.emit(NAME, doc, args.results_dir)


if __name__ == "__main__":
    main()
