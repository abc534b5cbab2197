"""Benchmark: online feature reads, SQLite online store (baseline) vs Redis.

What is measured: the latency of one online read of a feature service for ``--entities`` (50)
tickers, ``--calls`` (1,000) timed calls after ``--warmup`` (50) untimed ones, for the
``technical_model_v1`` service (30 features) and the ``allocator_v1`` service (6 features), in two
forms:

* ``get_online_features``: ``store.get_online_features(features=<FeatureService>,
  entity_rows=[{"ticker": ...}, ...]).to_dict()``, the Feast call itself;
* ``repo_online``: ``FeatureRepo.online(service, tickers)``, the project's path (service lookup
  in the cached registry, the same Feast call, ``to_df()`` and column ordering).

The stores are built as in :mod:`bench.materialize` (:mod:`bench.stores`): the SYNTHETIC universe's
three views materialised into SQLite (embedded default) and into Redis on 127.0.0.1 (production
configuration, SQL registry on a SQLite URL). The same tickers are read from both, and the
answers are checked to be identical. Calls run one after another on one thread (no concurrency),
interleaved round-robin across the four (backend, form) cases of a service so that all of them
see the same machine conditions.

Reported per backend, service and form: p50, p90, p99, mean, min and max in milliseconds and
calls/s (timed calls over their total time). Ratios are Redis over SQLite for p50 and p99:
below 1, Redis is faster.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import common, stores
from feature_repo.definitions import ALLOCATOR_SERVICE
from feature_repo.store import FeatureRepo, service_feature_names

NAME: Final = "online"
SERVICES: Final = ("technical_model_v1", ALLOCATOR_SERVICE)
FORMS: Final = ("get_online_features", "repo_online")
Case = tuple[str, str]  # (backend, form)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.synthetic_parser(
        NAME,
        "Online read latency of Feast feature services on the SYNTHETIC universe, "
        "SQLite online store vs Redis; one JSON document on stdout.",
    )
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per case (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls before each case (default 50)")
    parser.add_argument("--entities", type=int, default=50, help="tickers per call (default 50)")
    parser.add_argument(
        "--services", nargs="+", default=list(SERVICES), help=f"feature services (default {' '.join(SERVICES)})"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = common.universe_size(args)
    with (
        common.Stopwatch() as total,
        common.scratch_folder() as folder,
        stores.redis_running(folder / "redis-server") as url,
    ):
        repos, tickers = build_stores(size, folder, url, args.entities)
        consistent = same_answers(repos, args.services, tickers)
        results = {s: measure_service(repos, s, tickers, args) for s in args.services}
    doc = build_document(size, args, tickers, results, consistent)
    common.emit(NAME, doc, args.results_dir, total_seconds=total.seconds)


def build_stores(
    size: common.UniverseSize, folder: Path, redis_url: str, entities: int
) -> tuple[dict[str, FeatureRepo], list[str]]:
    """Both stores materialised, and the tickers to read; the feature frames are freed on return."""
    views = stores.compute_views(size)
    stores.write_sources(views, folder / "sources")
    repos = {
        b: materialized(b, stores.fresh_settings(b, folder / b, redis_url, sources=folder / "sources"), views)
        for b in stores.BACKENDS
    }
    return repos, sample_tickers(views.tickers(), entities, size.seed)


def sample_tickers(tickers: list[str], n: int, seed: int) -> list[str]:
    """``n`` distinct tickers drawn with ``seed`` (the same set for every call and backend)."""
    rng = np.random.default_rng(seed)
    return [str(t) for t in rng.choice(np.asarray(tickers, dtype=object), min(n, len(tickers)), replace=False)]


def materialized(backend: str, settings: Any, views: stores.Views) -> FeatureRepo:
    """Apply and materialise every view (as ``bench.materialize`` does); untimed here."""
    common.log(f"{backend}: apply and materialise {len(views.frames)} views")
    repo, _ = stores.open_applied(settings)
    for view in views.frames:
        stores.materialize_view(repo, views, view)
    return repo


def same_answers(repos: dict[str, FeatureRepo], services: list[str], tickers: list[str]) -> bool:
    """Both backends return exactly the same feature vectors for ``tickers``."""
    for service in services:
        frames = [repo.online(service, tickers).set_index("ticker") for repo in repos.values()]
        if not frames[0].equals(frames[1]):
            return False
    return True


def calls_for(repo: FeatureRepo, service: str, tickers: list[str]) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per measured form."""
    feature_service = repo.store.get_feature_service(service)
    rows = [{"ticker": t} for t in tickers]
    return {
        "get_online_features": lambda: repo.store.get_online_features(
            features=feature_service, entity_rows=rows
        ).to_dict(),
        "repo_online": lambda: repo.online(service, tickers),
    }


def measure_service(
    repos: dict[str, FeatureRepo], service: str, tickers: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Latency statistics per backend and form for one service, calls interleaved across cases."""
    cases = {
        (backend, form): call
        for backend, repo in repos.items()
        for form, call in calls_for(repo, service, tickers).items()
    }
    seconds = time_interleaved(cases, args.calls, args.warmup)
    out: dict[str, Any] = {}
    for backend, repo in repos.items():
        out[backend] = {"features": len(service_feature_names(repo.store.get_feature_service(service)))}
        for form in FORMS:
            out[backend][form] = latency_stats(seconds[(backend, form)])
            common.log(f"{service} {backend} {form}: p50 {out[backend][form]['p50_ms']} ms")
    return out


def time_interleaved(cases: dict[Case, Callable[[], object]], calls: int, warmup: int) -> dict[Case, np.ndarray]:
    """Seconds of each timed call per case, after ``warmup`` untimed calls of every case.

    Round ``i`` calls every case once, starting from case ``i mod n``, so all cases see the same
    machine conditions (this machine's CPU speed shifts by up to 2x for seconds at a time) and
    none is always first.
    """
    keys = list(cases)
    for _ in range(warmup):
        for key in keys:
            cases[key]()
    seconds = {key: np.empty(calls) for key in keys}
    for i in range(calls):
        for k in range(len(keys)):
            key = keys[(i + k) % len(keys)]
            start = time.perf_counter()
            cases[key]()
            seconds[key][i] = time.perf_counter() - start
    return seconds


def latency_stats(seconds: np.ndarray) -> dict[str, Any]:
    ms = seconds * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "calls": int(ms.size),
        "p50_ms": common.rounded(p50),
        "p90_ms": common.rounded(p90),
        "p99_ms": common.rounded(p99),
        "mean_ms": common.rounded(float(ms.mean())),
        "min_ms": common.rounded(float(ms.min())),
        "max_ms": common.rounded(float(ms.max())),
        "calls_per_s": common.rounded(ms.size / float(seconds.sum())),
    }


def build_document(
    size: common.UniverseSize,
    args: argparse.Namespace,
    tickers: list[str],
    results: dict[str, Any],
    consistent: bool,
) -> dict[str, Any]:
    """The JSON document: latency per service, backend and form, and Redis/SQLite ratios."""
    ratios = {
        service: {
            form: {q: common.ratio(by["redis"][form][f"{q}_ms"], by["sqlite"][form][f"{q}_ms"]) for q in ("p50", "p99")}
            for form in FORMS
        }
        for service, by in results.items()
    }
    return common.document(
        NAME,
        "Latency of one online read of a feature service for N tickers, sequential calls on one "
        "thread, SQLite online store (embedded default) vs Redis (production configuration).",
        size,
        parameters={
            "calls": args.calls,
            "warmup": args.warmup,
            "entities_per_call": len(tickers),
            "tickers": tickers,
            "services": list(results),
        },
        baseline="sqlite (FeatureStoreSettings(data_dir=tmp): SQLite online store, file registry)",
        candidate="redis (environment=production: redis-server on 127.0.0.1, SQL registry)",
        results=results,
        ratio={"redis_over_sqlite_latency": ratios},
        same_answers_from_both_backends=consistent,
    )


if __name__ == "__main__":
    main()
