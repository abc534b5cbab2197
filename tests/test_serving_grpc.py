"""A model server's v2 gRPC service (``--grpc_port``): the same models and answers as REST, on loopback.

A real ``python -m serving.ensemble`` on a real MLflow registry (SQLite), called through KServe's
generated v2 stubs with raw little-endian tensors (the fast path ``bench.transport`` measures).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pandas as pd
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from tests.servers import free_port, listening_addresses
from tests.serving_fixtures import (
    ENSEMBLE_WEIGHTS,
    Registry,
    ServerProcess,
    infer,
    model_server,
    outputs_by_name,
)

pytestmark = pytest.mark.usefixtures("module_mlflow_uris")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    registry = Registry.create(tmp_path_factory.mktemp("grpc") / "registry", tmp_path_factory.getbasetemp())
    registry.register_ensemble(ENSEMBLE_WEIGHTS)
    grpc_port = free_port()
    logs = tmp_path_factory.mktemp("logs")
    with model_server("ensemble", registry.uri, logs, "--reload_seconds", "0", "--grpc_port", str(grpc_port)) as server:
        yield server, grpc_port


def _request(frame: pd.DataFrame) -> pb.ModelInferRequest:
    n = len(frame)
    return pb.ModelInferRequest(
        model_name="ensemble",
        inputs=[pb.ModelInferRequest.InferInputTensor(name=c, datatype="FP64", shape=[n]) for c in frame.columns],
        raw_input_contents=[np.ascontiguousarray(frame[c], dtype="<f8").tobytes() for c in frame.columns],
    )


def _outputs(answer: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    if answer.raw_output_contents:
        return {
            o.name: np.frombuffer(raw, dtype="<f8")
            for o, raw in zip(answer.outputs, answer.raw_output_contents, strict=True)
        }
    return {o.name: np.array(o.contents.fp64_contents) for o in answer.outputs}


@pytest.mark.slow
def test_grpc_answers_what_rest_answers(served: tuple[ServerProcess, int]) -> None:
    server, grpc_port = served
    frame = pd.DataFrame({"technical": [0.6, 0.2, np.nan], "fundamental": [0.4, np.nan, np.nan]})
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelReady(pb.ModelReadyRequest(name="ensemble"), timeout=10).ready
        answer = stub.ModelInfer(_request(frame), timeout=10)
    assert answer.model_version == "1"
    by_grpc = _outputs(answer)
    by_rest = outputs_by_name(infer(server, "ensemble", frame).json())
    assert list(by_grpc) == list(by_rest) == ["score", "coverage"]
    for name in by_rest:
        np.testing.assert_allclose(by_grpc[name], np.asarray(by_rest[name], dtype=float), atol=1e-12)
    np.testing.assert_allclose(by_grpc["score"][:2], [(0.5 * 0.6 + 0.3 * 0.4) / 0.8, 0.2], atol=1e-12)


@pytest.mark.slow
def test_a_bad_request_is_invalid_argument_naming_the_problem(served: tuple[ServerProcess, int]) -> None:
    _, grpc_port = served
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(_request(pd.DataFrame({"momentum": [0.1]})), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "momentum" in (refused.value.details() or "")


@pytest.mark.slow
def test_grpc_binds_loopback_only_and_stops_with_the_server(served: tuple[ServerProcess, int]) -> None:
    server, grpc_port = served
    # 127.0.0.1 in /proc's hex, as an IPv4 socket or IPv4-mapped on an IPv6 one (gRPC's choice);
    # nothing on a wildcard or any other address
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    listening = listening_addresses(grpc_port)
    assert listening and listening <= loopback, listening
    assert server.stop() == 0
    assert listening_addresses(grpc_port) == set()
