"""Benchmark: ``POST /v1/allocations`` p50/p95/p99 at concurrency 8, with and without ``Idempotency-Key``.

What is measured: the gateway (``python -m api`` under uvicorn on 127.0.0.1, its own process) on
a throwaway SYNTHETIC Feast repo (the gateway tests' ``tests.gateway_fixtures.feast_repo``: 6
made-up tickers from ``training.ingest.synthetic``; run from a checkout with ``tests/``) and a
fresh gateway database (SQLite, WAL, ``synchronous=FULL``, the embedded default; ``--database-url``
for another). No allocator model is deployed, so every answer is the gateway's own fallback
allocation: the figures are the gateway's cost, not a model's. Modes, in the same run, each for
``--seconds`` after a warm-up:

* ``no_key``: no header (the path every request took before);
* ``new_key_per_request``: a fresh key each time: a claim (INSERT) before the answer and the stored
  answer (UPDATE, committed before the last byte is sent) after it: the cost a retry-safe client pays;
* ``replay``: a few keys used over and over: every request after the first is a stored answer.

``bench.gateway --idempotency-keys`` runs the same modes against the demo stack (``make demo``).
The load generator is httpx's async client (it must POST bodies), on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np

from bench import common

NAME: Final = "idempotency"
MODES: Final = ("no_key", "new_key_per_request", "replay")
PEPPER: Final = "bench-pepper-0123456789abcdef"  # a throwaway gateway DB: not a secret


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per mode (default 10)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="gateway DB (default: a fresh SQLite file)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


async def post_load(
    url: str, key: str, body: dict[str, Any], mode: str, *, concurrency: int, seconds: float
) -> dict[str, Any]:
    """POST ``body`` from ``concurrency`` workers for ``seconds``; latency percentiles and statuses."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    replayed = 0
    fixed_keys = [f"replay-{uuid.uuid4().hex}-{w}" for w in range(concurrency)]
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30) as client:

        async def worker(w: int) -> None:
            nonlocal replayed
            while (started := time.perf_counter()) < deadline:
                headers = {}
                if mode == "new_key_per_request":
                    headers["Idempotency-Key"] = uuid.uuid4().hex
                elif mode == "replay":
                    headers["Idempotency-Key"] = fixed_keys[w]
                response = await client.post(url, json=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                replayed += response.headers.get("idempotent-replayed") == "true"

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "p50_ms": common.rounded(float(np.percentile(latencies, 50)), 3),
        "p95_ms": common.rounded(float(np.percentile(latencies, 95)), 3),
        "p99_ms": common.rounded(float(np.percentile(latencies, 99)), 3),
        "requests": len(latencies),
        "requests_per_second": common.rounded(len(latencies) / wall),
        "statuses": statuses,
        "replayed": replayed,
    }


def modes(url: str, key: str, body: dict[str, Any], concurrency: int, seconds: float) -> dict[str, Any]:
    """Every mode in turn (after a short warm-up), with the p99 ratios to ``no_key``."""
    asyncio.run(post_load(url, key, body, "no_key", concurrency=concurrency, seconds=2.0))
    results: dict[str, Any] = {
        mode: asyncio.run(post_load(url, key, body, mode, concurrency=concurrency, seconds=seconds)) for mode in MODES
    }
    for mode in MODES:
        common.log(f"{mode}: {results[mode]}")
    base = results["no_key"]["p99_ms"]
    results["p99_ratio_new_key_to_no_key"] = common.ratio(results["new_key_per_request"]["p99_ms"], base)
    results["p99_ratio_replay_to_no_key"] = common.ratio(results["replay"]["p99_ms"], base)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from bench.gateway import bench_key
    from serving.launcher import free_ports
    from tests.gateway_fixtures.feast_repo import build_feature_repo

    with tempfile.TemporaryDirectory(prefix="bench-idempotency-") as tmp:
        data_dir = Path(tmp)
        with common.stdout_to_stderr():
            tickers = build_feature_repo(data_dir)
        (port,) = free_ports(1)
        env = {
            "PORTFOLIO_OS_DATA_DIR": str(data_dir),
            "PORTFOLIO_OS_DATABASE_URL": args.database_url or f"sqlite:///{data_dir / 'gateway.db'}",
            "PORTFOLIO_OS_API_KEY_PEPPER": PEPPER,
            "PORTFOLIO_OS_LOG_LEVEL": "WARNING",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=os.environ | env,
            stdout=subprocess.DEVNULL,
            stderr=(data_dir / "gateway.log").open("wb"),  # closed with the process
        )
        try:
            base = f"http://127.0.0.1:{port}"
            common.wait_http_ok(f"{base}/healthz", process, "the gateway", timeout_s=60.0)
            key = bench_key(env)
            body = {"universe": tickers, "capital": 1_000_000}
            results = modes(base + "/v1/allocations", key, body, args.concurrency, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    size = common.UniverseSize(n_tickers=len(tickers), n_months=14, seed=11)
    doc = common.document(
        NAME,
        "POST /v1/allocations latency at concurrency 8 with and without Idempotency-Key (gateway fallback answers)",
        size,
        concurrency=args.concurrency,
        seconds_per_mode=args.seconds,
        gateway_database="custom" if args.database_url else "SQLite (WAL, synchronous=FULL)",
        load_generator="httpx.AsyncClient",
        load_average_1m=round(os.getloadavg()[0], 2),
        **results,
    )
    common.emit(NAME, doc, args.results_dir)


if __name__ == "__main__":
    main()
