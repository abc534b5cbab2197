"""REST against v2 gRPC through the gateway (``python -m bench.transport --gateway DATA_DIR``).

The embedded stack of ``make serve`` (serving/launcher.py) from a throwaway copy of ``make
demo``'s registry and feature store: one KServe server per champion serving REST and v2 gRPC on
127.0.0.1, and two gateways over the same servers, one with ``PORTFOLIO_OS_MODEL_TRANSPORT=rest``
and one with ``grpc`` (each its own SQLite DB and key). Both run the calls that stay per request:

* ``allocations``: ``POST /v1/allocations`` for the demo's real tickers (concurrency 8);
* ``signals_per_request``: ``GET /v1/signals`` with the scored universe off, i.e. the per-request
  fallback (three component calls and the ensemble's);
* ``sentiment``: ``POST /v1/sentiment`` with ``--texts`` sentences of the project's own labelled
  set per request (``BYTES`` tensors), where the data folder has a ``sentiment_text`` champion.

Model answers are not cached (``SCORE_CACHE_SECONDS=0``) and every request names the tickers in
another order (another body for the model servers), so each request calls its models; feature
rows are cached as in production. Rounds alternate between the gateways so load drift hits both
alike; the medians of the rounds are reported with the CPU per request of each gateway and of the
model servers (all on the same 2 cores as the load generator). Data: the demo's REAL bundled
prices for its 20 tickers, padded with SYNTHETIC tickers to ``--tickers`` (scale only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench import common
from feature_repo.contract import SENTIMENT_TEXT

TRANSPORTS = ("rest", "grpc")
ORDERINGS = 500


def _gateways(models: list[str], data_dir: Path) -> tuple[list[Any], dict[str, Any]]:
    from serving.launcher import free_ports, plan

    n = len(models)
    ports = free_ports(2 * n + 2)
    env = {"PORTFOLIO_OS_DATA_DIR": str(data_dir), "PORTFOLIO_OS_MAX_TICKERS": "5000"}
    services = plan(models, [*ports[:n], ports[2 * n]], env, grpc_ports=ports[n : 2 * n])
    rest = services[-1]
    per_request = {"PORTFOLIO_OS_SCORED__ENABLED": "false", "PORTFOLIO_OS_SCORE_CACHE_SECONDS": "0"}
    rest.env = rest.env | per_request | {"PORTFOLIO_OS_MODEL_TRANSPORT": "rest"}
    grpc_port = ports[2 * n + 1]
    grpc = replace(
        rest,
        name="gateway-grpc",
        command=[*rest.command[:-1], str(grpc_port)],
        port=grpc_port,
        env=rest.env
        | {
            "PORTFOLIO_OS_MODEL_TRANSPORT": "grpc",
            "PORTFOLIO_OS_DATABASE_URL": f"sqlite:///{data_dir / 'gateway-grpc.db'}",
        },
        process=None,
    )
    return [*services, grpc], {"rest": rest, "grpc": grpc}


async def _round(
    url: str, key: str, requests: list[tuple[str, str, Any]], concurrency: int, pids: dict[str, int]
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    methods: dict[str, int] = {}
    todo = iter(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            for method, path, body in todo:
                started = time.perf_counter()
                response = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - started)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 200:
                    kind = _kind(response.json())
                    methods[kind] = methods.get(kind, 0) + 1

        cpu_before = _cpu(pids)
        wall = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
        cpu_after = _cpu(pids)
    n = len(latencies)
    return {
        "requests_per_s": n / wall,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        **{f"cpu_ms_per_request[{k}]": 1000 * (cpu_after[k] - cpu_before[k]) / n for k in pids},
        "statuses": statuses,
        "answers": methods,
    }


def _kind(answer: dict[str, Any]) -> str:
    """What answered: the allocation method or full/degraded signals, with the first degraded reason's code."""
    kind = str(answer.get("method") or ("degraded" if answer.get("degraded") else "full"))
    reasons = [r["code"] for r in answer.get("reasons", []) if r.get("code") not in ("max_weight_cap", "fallback_note")]
    return f"{kind} ({reasons[0]})" if answer.get("degraded") and reasons else kind


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    numeric = {
        k: common.rounded(statistics.median(r[k] for r in rounds), 3)
        for k, v in rounds[0].items()
        if isinstance(v, float)
    }
    totals: dict[str, dict[str, int]] = {"statuses": {}, "answers": {}}
    for r in rounds:
        for part, total in totals.items():
            for k, v in r[part].items():
                total[k] = total.get(k, 0) + v
    return {**numeric, **totals}


def _workloads(
    tickers: list[str], real: list[str], texts: list[str], texts_per_request: int
) -> dict[str, list[tuple[str, str, Any]]]:
    """Per workload, one request per ordering; allocations name the REAL tickers only (the demo's
    allocator refuses a ticker outside its trained universe, which a synthetic one always is).
    Sentiment requests each take another draw of ``texts_per_request`` sentences (none when ``texts``
    is empty: no text model is served)."""
    rng = np.random.default_rng(0)
    orders = [[str(t) for t in rng.permutation(tickers)] for _ in range(ORDERINGS)]
    books = [[str(t) for t in rng.permutation(real)] for _ in range(ORDERINGS)]
    workloads: dict[str, list[tuple[str, str, Any]]] = {
        "allocations": [("POST", "/v1/allocations", {"universe": o, "capital": 1_000_000}) for o in books],
        "signals_per_request": [("GET", f"/v1/signals?tickers={','.join(o)}", None) for o in orders],
    }
    if texts:
        draws = [rng.choice(len(texts), size=texts_per_request, replace=False) for _ in range(ORDERINGS)]
        workloads["sentiment"] = [("POST", "/v1/sentiment", {"texts": [texts[i] for i in d]}) for d in draws]
    return workloads


def _own_sentences(models: list[str]) -> list[str]:
    """The project's labelled sentences (written for it, no corpus) when a text model is served."""
    if SENTIMENT_TEXT not in models:
        return []
    from training.sentiment.corpus import load_project_corpus

    return [str(t) for t in load_project_corpus().frame["sentence"]]


def through_gateway(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison; the result document (see the module docstring)."""
    from bench.gateway import bench_key, throwaway_data_dir
    from serving.launcher import champions, running
    from training.ingest.bundled import load_sp500

    source = args.gateway.resolve()
    models = champions(f"sqlite:///{source / 'mlflow.db'}")
    if "allocator" not in models or "technical" not in models:
        raise SystemExit(f"no allocator/technical champion under {source}: run `make demo` first")
    real = sorted(load_sp500(start="2022-01-01").prices["ticker"].unique())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        data_dir = Path(tmp)
        tickers = throwaway_data_dir(source, data_dir, real, args.tickers)[: args.tickers]
        services, gateways = _gateways(models, data_dir)
        load_before = os.getloadavg()[0]
        with common.stdout_to_stderr(), running(services, data_dir / "logs"):
            keys = {t: bench_key(g.env) for t, g in gateways.items()}
            pids = {s.name: s.process.pid for s in services if s.process is not None}
            texts = _own_sentences(models)
            for name, requests in _workloads(tickers, real, texts, args.texts).items():
                per = max(50, min(args.requests, len(requests)))
                rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in TRANSPORTS}
                for t in TRANSPORTS:  # warm-up: connections, caches, code paths
                    asyncio.run(_round(gateways[t].url, keys[t], requests[:40], args.concurrency, pids))
                for r in range(args.rounds):
                    for t in TRANSPORTS if r % 2 == 0 else TRANSPORTS[::-1]:
                        batch = requests[(r * per) % len(requests) :][:per]
                        rounds[t].append(asyncio.run(_round(gateways[t].url, keys[t], batch, args.concurrency, pids)))
                results[name] = {t: _median(rounds[t]) for t in TRANSPORTS}
                results[name]["grpc_vs_rest_p50"] = common.ratio(
                    results[name]["grpc"]["p50_ms"] or 0.0, results[name]["rest"]["p50_ms"] or 0.0
                )
                common.log(f"{name}: {results[name]}")
        load_after = os.getloadavg()[0]
    return {
        "benchmark": "transport_gateway",
        "description": "the gateway's per-request model calls over REST vs v2 gRPC, two gateways on the same servers",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": f"{len(real)} REAL tickers (bundled S&P 500 sample) + {max(0, len(tickers) - len(real))} SYNTHETIC "
        f"(scale only): signals name {len(tickers)} tickers, allocations the {len(real)} real ones, "
        f"a new ordering per request; sentiment: {args.texts} of the project's own labelled sentences per request",
        "models_served": models,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "requests_per_round": max(50, min(args.requests, ORDERINGS)),
        "gateway_settings": "scored universe off, model answer cache off (each request calls its models)",
        **results,
        "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "environment": common.environment(),
    }
