"""REST against v2 gRPC for the gateway's per-request model calls, against one real model server.

Issue 19 keeps per-request model calls for allocations, sentiment and the signals fallback, and
asks whether KServe's v2 gRPC beats the v2 REST (JSON) calls the gateway makes today. This starts
one real model server process (``serving.server.LoopbackModelServer``: KServe's REST app on
uvicorn and KServe's gRPC servicer, both on 127.0.0.1) serving a stand-in model that parses its
inputs with the servers' own code (``serving.tensors``) and answers an FP64 score, then drives it
with the same payloads over both transports at a fixed concurrency, alternating rounds so load
drift hits both alike. REST requests are built and read as the gateway does (orjson, httpx);
gRPC requests carry raw little-endian tensors (``raw_input_contents``), the protocol's fast path.

Reported per shape and transport: requests/s, p50/p99 latency, and CPU milliseconds per request
on the client (the gateway's side) and on the server. Shapes: ``signals`` (50 tickers x 30 FP64
features, the per-request fallback), ``allocation`` (50 tickers as BYTES + 7 FP64 inputs) and
``universe`` (2,400 x 30, one snapshot build call). Data: synthetic random tensors (timing only).

``--gateway DATA_DIR`` measures through the gateway instead (bench/transport_gateway.py): the
embedded stack of ``make serve`` from a copy of ``make demo``'s data, every model server serving
REST and gRPC, and two gateways over them, one per ``PORTFOLIO_OS_MODEL_TRANSPORT``, driven in
alternating rounds with the calls that stay per request.

    python -m bench.transport                 # about 1 minute
    python -m bench.transport --requests 200  # quicker
    python -m bench.transport --gateway data  # through the gateway (REST vs gRPC gateways)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common

HOST = "127.0.0.1"
MODEL = "transport-bench"


@dataclass(frozen=True)
class Shape:
    """One request shape: rows, FP64 feature columns, and whether tickers travel as BYTES."""

    name: str
    rows: int
    fp64_columns: int
    tickers: bool


SHAPES = (
    Shape("signals", 50, 30, tickers=False),
    Shape("allocation", 50, 7, tickers=True),
    Shape("universe", 2400, 30, tickers=False),
)


# ---------------------------------------------------------------------------------------------
# The server process: a stand-in model behind the project's own loopback model server.


def serve(http_port: int, grpc_port: int) -> None:
    """Run the model server (REST + gRPC on 127.0.0.1) until SIGTERM."""
    import numpy as np
    from kserve import Model
    from kserve.protocol.infer_type import InferRequest, InferResponse

    from serving.server import LoopbackModelServer
    from serving.tensors import columns_from_v2, fp64_output

    class StandIn(Model):  # type: ignore[misc]
        """Parses like the real servers, answers the row sums of its FP64 inputs as ``score``."""

        def __init__(self) -> None:
            super().__init__(MODEL)
            self.ready = True

        async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
            columns = columns_from_v2(payload, frozenset({"ticker"}))
            numeric = [v for k, v in columns.items() if k != "ticker"]
            score = np.nansum(np.column_stack(numeric), axis=1)
            return InferResponse(
                response_id=payload.id or "0", model_name=MODEL, infer_outputs=[fp64_output("score", score)]
            )

    LoopbackModelServer(HOST, http_port, grpc_port).start([StandIn()])


# ---------------------------------------------------------------------------------------------
# Payloads and the two clients.


@dataclass(frozen=True)
class Payload:
    """The same request, encoded for each transport."""

    rest_body: bytes
    grpc_request: Any
    rows: int


def make_payload(shape: Shape, seed: int) -> Payload:
    import numpy as np
    import orjson
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    rng = np.random.default_rng(seed)
    values = rng.standard_normal((shape.rows, shape.fp64_columns))
    values[rng.random(values.shape) < 0.05] = np.nan  # missing features travel as null / NaN
    tickers = [f"T{i:04d}" for i in range(shape.rows)]
    rest_inputs: list[dict[str, Any]] = []
    grpc_inputs = []
    raw: list[bytes] = []
    if shape.tickers:
        rest_inputs.append({"name": "ticker", "datatype": "BYTES", "shape": [shape.rows], "data": tickers})
        grpc_inputs.append(pb.ModelInferRequest.InferInputTensor(name="ticker", datatype="BYTES", shape=[shape.rows]))
        raw.append(b"".join(struct.pack("<I", len(t)) + t.encode() for t in tickers))
    for j in range(shape.fp64_columns):
        column = values[:, j]
        data = [None if np.isnan(x) else float(x) for x in column]
        rest_inputs.append({"name": f"f{j}", "datatype": "FP64", "shape": [shape.rows], "data": data})
        grpc_inputs.append(pb.ModelInferRequest.InferInputTensor(name=f"f{j}", datatype="FP64", shape=[shape.rows]))
        raw.append(np.ascontiguousarray(column, dtype="<f8").tobytes())
    request = pb.ModelInferRequest(model_name=MODEL, inputs=grpc_inputs, raw_input_contents=raw)
    return Payload(orjson.dumps({"inputs": rest_inputs}), request, shape.rows)


def rest_caller(http_port: int) -> tuple[Callable[[Payload], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import httpx
    import orjson

    client = httpx.AsyncClient(
        base_url=f"http://{HOST}:{http_port}", limits=httpx.Limits(max_connections=32), timeout=30.0
    )
    url = f"/v2/models/{MODEL}/infer"

    async def call(payload: Payload) -> None:
        response = await client.post(url, content=payload.rest_body, headers={"content-type": "application/json"})
        response.raise_for_status()
        outputs = orjson.loads(response.content)["outputs"]
        if len(outputs[0]["data"]) != payload.rows:
            raise RuntimeError("REST answer has the wrong length")

    return call, client.aclose


def grpc_caller(grpc_port: int) -> tuple[Callable[[Payload], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    channel = aio.insecure_channel(
        f"{HOST}:{grpc_port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    async def call(payload: Payload) -> None:
        answer = await stub.ModelInfer(payload.grpc_request, timeout=30.0)
        if answer.raw_output_contents:
            n = len(answer.raw_output_contents[0]) // 8
        else:
            n = len(answer.outputs[0].contents.fp64_contents)
        if n != payload.rows:
            raise RuntimeError("gRPC answer has the wrong length")

    async def close() -> None:
        await channel.close()

    return call, close


# ---------------------------------------------------------------------------------------------
# Measurement.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(
    call: Callable[[Payload], Awaitable[None]], payload: Payload, requests: int, concurrency: int, server_pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await call(payload)
            latencies.append(time.perf_counter() - started)

    for _ in range(min(20, requests)):  # warm connections and code paths
        await call(payload)
    client_cpu, server_cpu, wall = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    client_cpu = time.process_time() - client_cpu
    server_cpu = _cpu_seconds(server_pid) - server_cpu
    latencies.sort()
    return {
        "requests_per_s": requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "client_cpu_ms_per_request": 1000 * client_cpu / requests,
        "server_cpu_ms_per_request": 1000 * server_cpu / requests,
    }


def _median_of(rounds: list[dict[str, float]]) -> dict[str, float | None]:
    return {k: common.rounded(statistics.median(r[k] for r in rounds)) for k in rounds[0]}


async def measure(args: argparse.Namespace, http_port: int, grpc_port: int, server_pid: int) -> dict[str, Any]:
    rest, close_rest = rest_caller(http_port)
    grpc, close_grpc = grpc_caller(grpc_port)
    results: dict[str, Any] = {}
    try:
        for shape in SHAPES:
            payload = make_payload(shape, args.seed)
            requests = max(20, args.requests // (20 if shape.rows > 1000 else 1))
            rounds: dict[str, list[dict[str, float]]] = {"rest": [], "grpc": []}
            for r in range(args.rounds):
                order = ("rest", "grpc") if r % 2 == 0 else ("grpc", "rest")
                for transport in order:
                    call = rest if transport == "rest" else grpc
                    rounds[transport].append(await _round(call, payload, requests, args.concurrency, server_pid))
            rest_fig, grpc_fig = _median_of(rounds["rest"]), _median_of(rounds["grpc"])
            results[shape.name] = {
                "rows": shape.rows,
                "fp64_columns": shape.fp64_columns,
                "tickers_as_bytes": shape.tickers,
                "requests_per_round": requests,
                "rest": rest_fig,
                "grpc": grpc_fig,
                "grpc_vs_rest_p50": common.ratio(grpc_fig["p50_ms"] or 0.0, rest_fig["p50_ms"] or 0.0),
                "grpc_vs_rest_client_cpu": common.ratio(
                    grpc_fig["client_cpu_ms_per_request"] or 0.0, rest_fig["client_cpu_ms_per_request"] or 0.0
                ),
            }
            common.log(f"{shape.name}: REST {rest_fig} | gRPC {grpc_fig}")
    finally:
        await close_rest()
        await close_grpc()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round (universe shape: /20)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per transport (median kept)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (the gateway's bench uses 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument(
        "--gateway",
        type=Path,
        metavar="DATA_DIR",
        help="measure through the gateway: the stack of `make serve` from a copy of this `make demo` data folder",
    )
    parser.add_argument("--tickers", type=int, default=50, help="--gateway: tickers per request")
    parser.add_argument(
        "--texts", type=int, default=8, help="--gateway: sentences per POST /v1/sentiment (with a text model)"
    )
    parser.add_argument("--serve", nargs=2, type=int, metavar=("HTTP_PORT", "GRPC_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    if args.gateway is not None:
        from bench.transport_gateway import through_gateway

        common.emit("transport_gateway", through_gateway(args), args.results_dir)
        return 0
    http_port, grpc_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.transport", "--serve", str(http_port), str(grpc_port)],
        stdout=sys.stderr,
        stderr=sys.stderr,
    )
    try:
        common.wait_http_ok(
            f"http://{HOST}:{http_port}/v2/models/{MODEL}/ready", server, "the model server", timeout_s=120.0
        )
        results = asyncio.run(measure(args, http_port, grpc_port, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    doc = {
        "benchmark": "transport",
        "description": "v2 REST (JSON, as the gateway calls today) against v2 gRPC (raw tensors), one model server",
        "data": "synthetic random tensors (timing only, no market data)",
        "baseline": "rest",
        "candidate": "grpc",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "load_average_1m_at_end": os.getloadavg()[0],
        "shapes": results,
        "environment": common.environment(),
    }
    common.emit("transport", doc, args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
