"""TEST-ONLY: the contract stand-ins of tests/gateway_fixtures/v2_model.py, served over REST and v2 gRPC.

The models are v2_model's own (same scores, same refusals); each request is first read with the
servers' own tensor code (``serving.tensors.columns_from_v2``: JSON lists, raw gRPC tensors,
BYTES as text) and handed to them as plain lists, so one model answers both transports alike.
The server is the project's ``serving.server.LoopbackModelServer`` (REST and gRPC on
127.0.0.1). ``/metrics`` counts the calls per model and transport
(``stand_in_calls_total{model, transport}``), so a test can tell which transport a gateway used.

Run: ``python -m tests.gateway_fixtures.grpc_stand_in --http_port P --grpc_port G --models a,b [--delay_s S]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.gateway_fixtures.servers import ModelServerProcess
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TEXT_INPUTS = frozenset({"text"})


def _as_list(values: Any) -> list[Any]:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]


def serve(http_port: int, grpc_port: int, names: list[str], version: str, delay_s: float) -> None:
    from kserve import InferRequest, Model
    from kserve.protocol.infer_type import InferInput
    from prometheus_client import Counter

    from serving.metrics import serving_version
    from serving.server import LoopbackModelServer
    from serving.tensors import columns_from_v2
    from tests.gateway_fixtures.v2_model import build_models

    calls = Counter("stand_in_calls", "Inference calls per model and transport.", ["model", "transport"])

    class Transcoding(Model):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__(inner.name)
            self.inner = inner
            self.ready = True

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> Any:
            calls.labels(model=self.name, transport="grpc" if payload.from_grpc else "rest").inc()
            columns = columns_from_v2(payload, TEXT_INPUTS)
            inputs = [
                InferInput(
                    name=name,
                    shape=[len(values)],
                    datatype="BYTES" if name in TEXT_INPUTS else "FP64",
                    data=_as_list(values),
                )
                for name, values in columns.items()
            ]
            plain = InferRequest(model_name=payload.model_name, infer_inputs=inputs, request_id=payload.id)
            return await self.inner.predict(plain, headers)

    models = [Transcoding(m) for m in build_models(names, version, delay_s)]
    for model in models:
        model.inner.load()
    for name in names:  # portfolio_os_model_info, as the real servers export it (the gateway reads it)
        serving_version(name, version, "none", None)
    LoopbackModelServer("127.0.0.1", http_port, grpc_port).start(models)


class StandInServer(ModelServerProcess):
    """A ``python -m tests.gateway_fixtures.grpc_stand_in`` process on free 127.0.0.1 ports."""

    LOG_PREFIX = "stand-in"

    def __init__(self, models: list[str], version: str, log_dir: Path, delay_s: float = 0.0) -> None:
        super().__init__(models, version, delay_s, log_dir)
        self.grpc_port = free_port()

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "tests.gateway_fixtures.grpc_stand_in", "--http_port", str(self.port)]
        command += ["--grpc_port", str(self.grpc_port), "--models", ",".join(self.models), "--version", self.version]
        return [*command, "--delay_s", str(self.delay_s)]

    def calls(self) -> dict[tuple[str, str], float]:
        """``stand_in_calls_total`` by (model, transport), from the server's ``/metrics``."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        return {
            (s.labels["model"], s.labels["transport"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "stand_in_calls_total"
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--version", default="1")
    parser.add_argument("--delay_s", type=float, default=0.0, help="seconds each answer waits (a slow model)")
    args = parser.parse_args()
    serve(args.http_port, args.grpc_port, args.models.split(","), args.version, args.delay_s)


if __name__ == "__main__":
    main()
