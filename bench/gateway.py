"""Benchmark: ``GET /v1/signals`` over HTTP against the running local stack, vs the same answer in-process.

What is measured: the embedded stack as ``make serve`` runs it (one KServe server per champion,
the gateway under uvicorn, all on 127.0.0.1, Feast SQLite online store), started on free ports
from a throwaway copy of the registry and feature store of ``make demo`` (REAL bundled prices for
the universe's 20 tickers; ``--tickers`` (default 50, the issue's size) pads each request with
SYNTHETIC tickers written into the copy's online store; a fresh gateway DB takes the audit rows).
Each concurrency level (1, 8, 32) runs for
``--seconds`` after a warm-up, long enough to span several renewals of the gateway's feature
(5 s) and score (2 s) caches, so the tail includes them:

* latency p50/p95/p99 and requests/s per concurrency level, with the count per HTTP status;
* the breakdown per request from the gateway's own Prometheus histograms (mean feature read and
  mean model call per model) and the CPU milliseconds each process spent per request (gateway,
  each model server, the load generator): on 2 cores, 2,000 ms of CPU per second is all there is;
* the baseline, in the same run: the same answer computed in-process (Feast online read, the
  champion boosters' predict, the ensemble blend) without HTTP; the ratio gateway p50 / in-process
  p50 is the serving overhead.

The load generator (``bench/http_load.py`` by default, ``--client httpx`` for httpx's async
client) shares the 2 cores with the servers; its own CPU per request is reported beside theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import psutil

from bench import common
from bench.http_load import LoadResult, run_load
from serving.launcher import champions, free_ports, plan, running

NAME: Final = "gateway"
ROUTE: Final = "/v1/signals"
NO_CACHES: Final = {f"PORTFOLIO_OS_{name}_CACHE_SECONDS": "0" for name in ("FEATURE", "SCORE", "AUTH")}
LEVELS: Final = (1, 8, 32)


# Long on purpose (tests/test_architecture.py LONG_FUNCTIONS): a flat list of options, each with its help.
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PORTFOLIO_OS_DATA_DIR", "data")))
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="timed seconds per concurrency level; long enough to span several feature-cache (5 s) "
        "and score-cache (2 s) renewals, so the tail includes them",
    )
    parser.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default="lean",
        help="load generator: a minimal keep-alive client (default) or httpx's async client",
    )
    parser.add_argument(
        "--no-caches",
        action="store_true",
        help="run the gateway with its feature, score and auth caches off: every request reads Feast "
        "and calls the model servers (the cost the caches hide)",
    )
    parser.add_argument(
        "--tickers",
        type=int,
        default=50,
        help="tickers per request; beyond the demo's 20 real ones, synthetic tickers are added to a "
        "throwaway copy of the online store (default 50, the issue's request size)",
    )
    parser.add_argument(
        "--distinct-sets",
        type=int,
        default=0,
        help="also run concurrency 8 with requests cycling through this many random orderings of the tickers "
        "(e.g. 3000: an ordering recurs only after its cached model answers expired, so every request calls "
        "the model servers, while feature rows stay cached per ticker); 0 skips it",
    )
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="also run POST /v1/allocations at concurrency 8 without Idempotency-Key, with a new key per "
        "request and replaying keys (bench/idempotency.py's modes, httpx client)",
    )
    parser.add_argument(
        "--universe",
        type=int,
        default=0,
        help="tickers in the throwaway online store (SYNTHETIC beyond the real ones; default: --tickers); when "
        "above --tickers, also run one request naming all of them at concurrency 1, and report the gateway's "
        "memory with all of them scored",
    )
    parser.add_argument(
        "--allocations", action="store_true", help="also run POST /v1/allocations (--tickers names) at concurrency 8"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the gateway with py-spy during the distinct-sets level (or the --profile-level): collapsed "
        "stacks into this folder, the top frames by own samples into the result",
    )
    parser.add_argument(
        "--profile-level",
        choices=["distinct", "repeated"],
        default="distinct",
        help="which level --profile records: the distinct-sets level (default) or the repeated set at concurrency 8",
    )
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def bench_key(env: dict[str, str]) -> str:
    """A key with a rate limit the benchmark cannot reach (the default would answer 429)."""
    out = subprocess.run(
        [sys.executable, "-m", "api.keys", "create", "--tenant", "bench", "--rate-limit", "1000000/minute"],
        env=os.environ | env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return str(json.loads(out.strip().splitlines()[-1])["api_key"])


async def _load_httpx(url: str, key: str, concurrency: int, seconds: float) -> LoadResult:
    """The same load from httpx's async client (``--client httpx``): costlier per request on the client."""
    result = LoadResult()
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while (started := time.perf_counter()) < deadline:
                response = await client.get(url)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def load(client: str, url: str | list[str], key: str, concurrency: int, seconds: float) -> LoadResult:
    if client == "httpx":
        if not isinstance(url, str):
            raise SystemExit("--distinct-sets runs with the lean client only")
        return asyncio.run(_load_httpx(url, key, concurrency, seconds))
    return asyncio.run(run_load(url, {"Authorization": f"Bearer {key}"}, concurrency, seconds=seconds))


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds so far of each process, by name.

    A server's worker children count with it; this process (the load generator) counts alone,
    since the servers it launched are its children.
    """
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            children = process.children(recursive=True) if pid != os.getpid() else []
            out[name] = sum(t.user + t.system for t in [process.cpu_times(), *(c.cpu_times() for c in children)])
    return out


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float | None]:
    """CPU milliseconds each process spent per request over one level (the 2 cores' budget is 2 x wall)."""
    return {name: common.rounded((after[name] - before.get(name, 0.0)) * 1000 / requests, 3) for name in after}


def metric_sums(gateway: str) -> dict[str, float]:
    """``_sum`` and ``_count`` of the gateway's feature-read and model-call histograms."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(gateway + "/metrics", timeout=10).text):
        if family.name not in ("portfolio_os_gateway_feature_read_duration_seconds",
                               "portfolio_os_gateway_model_call_duration_seconds",
                               "portfolio_os_gateway_request_duration_seconds"):  # fmt: skip
            continue
        for sample in family.samples:
            if family.name.endswith("request_duration_seconds") and sample.labels.get("route") != ROUTE:
                continue
            if sample.name.endswith(("_sum", "_count")):
                key = sample.name + ":" + sample.labels.get("model", "")
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


def breakdown(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float | None]:
    """Mean milliseconds per request spent in each part, from the histogram deltas.

    ``gateway_side`` is the gateway's own request duration (from its middleware, so without the
    client and the socket); ``composition_and_framework`` is what remains of it after the feature
    read and the model calls. Model calls run concurrently, so their sum may exceed their wall
    time and the remainder is then a lower bound.
    """
    parts: dict[str, float | None] = {}
    spent: dict[str, float] = {}
    for key, value in after.items():
        if key.split(":")[0].endswith("_sum"):
            name = key.split(":")[0].removesuffix("_sum").removeprefix("portfolio_os_gateway_")
            model = key.split(":")[1]
            label = f"{name}[{model}]" if model else name
            spent[label] = (value - before.get(key, 0.0)) * 1000 / requests
    gateway_side = spent.pop("request_duration_seconds", 0.0)
    for label, ms in spent.items():
        parts[label + "_ms_per_request"] = common.rounded(ms, 3)
    parts["gateway_side_ms_per_request"] = common.rounded(gateway_side, 3)
    parts["composition_and_framework_ms_per_request"] = common.rounded(max(0.0, gateway_side - sum(spent.values())), 3)
    return parts


def throwaway_data_dir(source: Path, target: Path, real: list[str], n_tickers: int) -> list[str]:
    """A data folder for one run: the demo's registry and feature store copied, a fresh gateway DB.

    The benchmark's audit rows (thousands a second) and its API key stay out of the demo's own
    gateway database. Model artefacts are not copied: the registry names them by absolute path.
    When ``n_tickers`` exceeds the real universe, SYNTHETIC tickers (``SYN001``...) are added to the
    copied online store, each a real ticker's latest row with its values jittered by up to 1%:
    they exist to make the request as large as the issue's 50 names, and are scale only.

    Returns:
        The tickers a request names: the real ones, then the synthetic ones.
    """
    shutil.copy2(source / "mlflow.db", target / "mlflow.db")
    shutil.copytree(source / "feast", target / "feast")
    count = n_tickers - len(real)
    extra = [f"SYN{i:0{max(3, len(str(count)))}d}" for i in range(1, count + 1)]
    if extra:
        _add_synthetic_rows(target, real, extra)
    return [*real, *extra]


def _add_synthetic_rows(data_dir: Path, real: list[str], extra: list[str]) -> None:
    import pandas as pd

    from feature_repo.schema import FEATURES_BY_VIEW, names
    from feature_repo.settings import FeatureStoreSettings
    from feature_repo.store import FeatureRepo

    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    rng = np.random.default_rng(0)
    for view, features in FEATURES_BY_VIEW.items():
        feature_names = names(features)
        refs = [f"{view}:{name}" for name in feature_names]
        rows = repo.store.get_online_features(features=refs, entity_rows=[{"ticker": t} for t in real])
        data = rows.to_dict(include_event_timestamps=True)
        stamps = data[f"{feature_names[0]}__ts"]
        present = [i for i, stamp in enumerate(stamps) if stamp]
        if not present:
            continue  # no real ticker has this view (the demo has prices only)
        picks = [present[i % len(present)] for i in range(len(extra))]
        frame = pd.DataFrame(
            {"ticker": extra, "event_timestamp": pd.to_datetime([stamps[i] for i in picks], unit="s", utc=True)}
        )
        frame["created_timestamp"] = frame["event_timestamp"]
        for name in feature_names:
            values = np.array([data[name][i] for i in picks], dtype="float64")
            frame[name] = values * (1.0 + rng.uniform(-0.01, 0.01, len(extra)))
        repo.store.write_to_online_store(feature_view_name=view, df=frame)


def in_process(data_dir: Path, tickers: list[str], models: list[str], repeats: int) -> float:
    """p50 ms of the same answer without HTTP: online read, boosters' predict, ensemble blend."""
    import mlflow

    from feature_repo.schema import FEATURES_BY_VIEW, names
    from feature_repo.settings import FeatureStoreSettings
    from feature_repo.store import FeatureRepo

    mlflow.set_tracking_uri(f"sqlite:///{data_dir / 'mlflow.db'}")
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    booster = mlflow.lightgbm.load_model("models:/technical@champion")
    ensemble = mlflow.pyfunc.load_model("models:/ensemble@champion") if "ensemble" in models else None
    cols = names(FEATURES_BY_VIEW["technical_features"])
    import pandas as pd

    def answer() -> None:
        frame = repo.online("technical_model_v1", tickers)
        score = booster.predict(frame[cols].astype("float64"))
        if ensemble is not None:
            ensemble.predict(pd.DataFrame({"technical": score}))

    return common.median_seconds(answer, repeats, warm_up=True)[0] * 1000


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source = args.data_dir.resolve()
    models = champions(f"sqlite:///{source / 'mlflow.db'}")
    if "technical" not in models:
        raise SystemExit(f"no technical champion under {source}: run `make demo` first")
    from training.ingest.bundled import load_sp500

    real = sorted(load_sp500(start="2022-01-01").prices["ticker"].unique())
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        data_dir = Path(tmp)
        universe = throwaway_data_dir(source, data_dir, real, max(args.tickers, args.universe))
        doc = _run(args, data_dir, models, universe)
    tickers = universe[: args.tickers]
    doc["data"] = (
        f"{len(real)} real tickers (bundled S&P 500 sample, the whole demo universe)"
        + (f" + {len(tickers) - len(real)} SYNTHETIC tickers (jittered copies of real rows; scale only)"
           if len(tickers) > len(real) else "")
        + f": {len(tickers)} tickers per request"
        + (f"; {len(universe)} tickers online ({len(universe) - len(real)} SYNTHETIC)" if len(universe) > len(tickers)
           else "")
    )  # fmt: skip
    common.emit(NAME, doc, args.results_dir)


def _level(
    args: argparse.Namespace, url: str | list[str], key: str, level: int, *, gateway: str, pids: dict[str, int]
) -> dict[str, Any]:
    """One timed level: latency percentiles, throughput, statuses, breakdown and CPU per request."""
    before, cpu_before = metric_sums(gateway), cpu_seconds(pids)
    run = load(args.client, url, key, level, args.seconds)
    cpu_after, after = cpu_seconds(pids), metric_sums(gateway)
    latencies = run.latencies_ms
    return {
        "p50_ms": common.rounded(float(np.percentile(latencies, 50)), 3),
        "p95_ms": common.rounded(float(np.percentile(latencies, 95)), 3),
        "p99_ms": common.rounded(float(np.percentile(latencies, 99)), 3),
        "requests": len(latencies),
        "requests_per_second": common.rounded(len(latencies) / run.wall_s, 4),
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "breakdown": breakdown(before, after, len(latencies)),
        "cpu_ms_per_request": cpu_ms_per_request(cpu_before, cpu_after, len(latencies)),
    }


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident-memory high-water mark (Linux ``VmHWM``), or None where /proc lacks it."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _run(args: argparse.Namespace, data_dir: Path, models: list[str], universe: list[str]) -> dict[str, Any]:
    tickers = universe[: args.tickers]
    env = {"PORTFOLIO_OS_DATA_DIR": str(data_dir), "PORTFOLIO_OS_MAX_TICKERS": str(max(200, len(universe)))}
    services = plan(models, free_ports(len(models) + 1), env)
    if args.no_caches:
        services[-1].env |= NO_CACHES
    results: dict[str, Any] = {}
    # The 2 cores are shared: the 1-minute load average says how busy they were around the run.
    load_before = os.getloadavg()[0]
    with common.stdout_to_stderr(), running(services, data_dir / "logs"):
        gateway = services[-1].url
        url = f"{gateway}/v1/signals?tickers={','.join(tickers)}"
        key = bench_key(env)
        results["scored_universe"] = wait_for_scored(gateway, len(universe))
        load(args.client, url, key, 4, 2.0)  # warm-up: connections, caches, cold paths
        pids = {s.name: s.process.pid for s in services if s.process is not None} | {"load_generator": os.getpid()}
        results |= _repeated_levels(args, url, key, gateway=gateway, pids=pids)
        if args.distinct_sets:
            results["distinct_sets_concurrency_8"] = _distinct(args, tickers, key, gateway=gateway, pids=pids)
        if args.allocations:
            from bench.idempotency import post_load

            body = {"universe": tickers, "capital": 1_000_000}
            asyncio.run(post_load(gateway + "/v1/allocations", key, body, "no_key", concurrency=8, seconds=2.0))
            results["allocations_concurrency_8"] = asyncio.run(
                post_load(gateway + "/v1/allocations", key, body, "no_key", concurrency=8, seconds=args.seconds)
            )
            common.log(f"allocations, concurrency 8: {results['allocations_concurrency_8']}")
        if args.idempotency_keys:
            from bench.idempotency import modes

            body = {"universe": tickers, "capital": 1_000_000}
            results["allocations_concurrency_8"] = modes(gateway + "/v1/allocations", key, body, 8, args.seconds)
        if len(universe) > len(tickers):
            every = f"{gateway}/v1/signals?tickers={','.join(universe)}"
            every_level = _level(args, every, key, 1, gateway=gateway, pids=pids)
            results[f"all_{len(universe)}_tickers_concurrency_1"] = every_level
            common.log(f"all {len(universe)} tickers, concurrency 1: {every_level}")
        gateway_pid = pids["gateway"]
        results["gateway_rss_mb"] = round(psutil.Process(gateway_pid).memory_info().rss / 2**20, 1)
        # The resident high-water mark over the whole run: the RSS above is one moment after the last level.
        results["gateway_peak_rss_mb"] = peak_rss_mb(gateway_pid)
    load_after = os.getloadavg()[0]
    baseline = in_process(data_dir, tickers, models, 200)
    return {
        "benchmark": NAME,
        "description": "GET /v1/signals over HTTP on 127.0.0.1 against the local stack, vs in-process",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models_served": models,
        "seconds_per_level": args.seconds,
        "load_generator": args.client,
        "gateway_caches": "off" if args.no_caches else "on (defaults: features 5 s, scores 2 s, keys 5 s)",
        **results,
        "in_process_p50_ms": common.rounded(baseline, 3),
        "overhead_ratio_p50_c1": common.ratio(results["concurrency_1"]["p50_ms"], baseline),
        "load_average_1m": {"before": round(load_before, 2), "after_http_levels": round(load_after, 2)},
        "environment": common.environment(),
    }


def _repeated_levels(
    args: argparse.Namespace, url: str, key: str, *, gateway: str, pids: dict[str, int]
) -> dict[str, Any]:
    """The same set at each of LEVELS (concurrency 8 optionally profiled with py-spy)."""
    results: dict[str, Any] = {}
    for level in LEVELS:
        spied = args.profile if args.profile_level == "repeated" and level == 8 else None
        with profiled(spied, pids["gateway"], args.seconds) as profile:
            results[f"concurrency_{level}"] = _level(args, url, key, level, gateway=gateway, pids=pids)
        if profile:
            results[f"concurrency_{level}"]["profile_top_own_samples"] = profile
        common.log(f"concurrency {level}: {results[f'concurrency_{level}']}")
    return results


def _distinct(
    args: argparse.Namespace, tickers: list[str], key: str, *, gateway: str, pids: dict[str, int]
) -> dict[str, Any]:
    """Concurrency 8 over random orderings of the tickers (optionally profiled with py-spy)."""
    # Orderings of the same tickers: each is another request body for the model servers, so no
    # cached model answer fits, while every feature row is still cached per ticker.
    rng = np.random.default_rng(0)
    orders = [[str(t) for t in rng.permutation(tickers)] for _ in range(args.distinct_sets)]
    urls = [f"{gateway}/v1/signals?tickers={','.join(order)}" for order in orders]
    spied = args.profile if args.profile_level == "distinct" else None
    with profiled(spied, pids["gateway"], args.seconds) as profile:
        result = _level(args, urls, key, 8, gateway=gateway, pids=pids)
    result["distinct_orderings"] = args.distinct_sets
    if profile:
        result["profile_top_own_samples"] = profile
    common.log(f"distinct sets, concurrency 8: {result}")
    return result


def wait_for_scored(gateway: str, universe: int, timeout_s: float = 180.0) -> dict[str, Any]:
    """Wait until the gateway's scored universe holds ``universe`` tickers (a gateway without one: at once)."""
    from prometheus_client.parser import text_string_to_metric_families

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        values = {
            sample.name: sample.value
            for family in text_string_to_metric_families(httpx.get(gateway + "/metrics", timeout=10).text)
            for sample in family.samples
            if sample.name.startswith("portfolio_os_gateway_scored_universe_")
        }
        if not values:
            return {"present": False}
        if values.get("portfolio_os_gateway_scored_universe_tickers", 0) >= universe:
            builds = values.get("portfolio_os_gateway_scored_universe_build_seconds_sum", 0.0)
            count = values.get("portfolio_os_gateway_scored_universe_build_seconds_count", 0.0)
            return {
                "present": True,
                "tickers": universe,
                "mean_build_seconds": common.rounded(builds / count, 3) if count else None,
            }
        time.sleep(0.5)
    raise SystemExit(f"the scored universe did not reach {universe} tickers in {timeout_s:.0f} s")


@contextlib.contextmanager
def profiled(folder: Path | None, pid: int, seconds: float) -> Iterator[list[dict[str, Any]]]:
    """py-spy on ``pid`` for ``seconds`` (collapsed stacks under ``folder``); yields the top frames when done."""
    top: list[dict[str, Any]] = []
    if folder is None:
        yield top
        return
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"gateway-{pid}.collapsed"
    spy = subprocess.Popen(  # our own py-spy on our own child
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield top
    finally:
        spy.wait(timeout=seconds + 60)
    top.extend(top_frames(out))


def top_frames(collapsed: Path, n: int = 20) -> list[dict[str, Any]]:
    """The frames with the most samples on top of the stack (own time), and their share of all samples."""
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # py-spy stopped mid-line (a stack of a thread it could not read)
            continue
        frame = stack.split(";")[-1]
        own[frame] = own.get(frame, 0) + int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:n]
    return [{"frame": frame, "share": common.rounded(count / total, 4)} for frame, count in ranked]


if __name__ == "__main__":
    main()
