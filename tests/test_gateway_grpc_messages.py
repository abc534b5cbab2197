"""The gateway's own v2 gRPC messages (api/grpc_v2.py) against KServe's generated ones.

The gateway builds its ``ModelInferRequest``/``ModelInferResponse`` in code (no kserve, no
generated module): every field it declares must be the field KServe's ``grpc_predict_v2.proto``
declares (name, number, type, label, message type), and bytes written by one must read the same
in the other.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import grpc
import orjson
import pytest
from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve_pb
from pydantic import ValidationError

from api.grpc_transport import call_error
from api.grpc_v2 import (
    DECLARED,
    MODEL_INFER_METHOD,
    PACKAGE,
    ModelInferRequest,
    ModelInferResponse,
    V2CodecError,
    outputs_from_response,
    request_from_json,
)
from api.inference import encode_inputs, fp64_inputs
from api.settings import GatewaySettings
from feature_repo.contract import ERROR_CODE_FIELD


@pytest.mark.parametrize("message", sorted(DECLARED))
def test_every_declared_field_is_kserves(message: str) -> None:
    theirs = kserve_pb.DESCRIPTOR.message_types_by_name[message.split(".", maxsplit=1)[0]]
    for nested in message.split(".")[1:]:
        theirs = theirs.nested_types_by_name[nested]
    ours = ModelInferRequest.DESCRIPTOR.file.pool.FindMessageTypeByName(f"{PACKAGE}.{message}")
    assert ours.full_name == theirs.full_name
    assert [f.name for f in ours.fields] == [n for n, *_ in DECLARED[message]]
    for field in ours.fields:
        their = theirs.fields_by_name[field.name]
        assert (field.number, field.type, field.label) == (their.number, their.type, their.label), field.name
        if field.message_type is not None:
            assert field.message_type.full_name == their.message_type.full_name


def test_the_method_is_kserves() -> None:
    service = kserve_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    method = service.methods_by_name["ModelInfer"]
    assert f"/{service.full_name}/{method.name}" == MODEL_INFER_METHOD
    assert method.input_type.full_name == f"{PACKAGE}.ModelInferRequest"


def test_a_json_body_becomes_raw_tensors_kserve_reads() -> None:
    inputs = [
        {"name": "ticker", "datatype": "BYTES", "shape": [3], "data": ["AAPL", "MSFT", "BRK.B"]},
        *fp64_inputs({"momentum": [0.5, None, -1.25], "current_weight": [0.1, 0.0, 0.2]}),
    ]
    wire = request_from_json("allocator", encode_inputs(inputs)).SerializeToString()
    theirs = kserve_pb.ModelInferRequest.FromString(wire)
    assert theirs.model_name == "allocator"
    assert [(t.name, t.datatype, list(t.shape)) for t in theirs.inputs] == [
        ("ticker", "BYTES", [3]),
        ("momentum", "FP64", [3]),
        ("current_weight", "FP64", [3]),
    ]
    tickers, momentum, weights = theirs.raw_input_contents
    assert tickers == b"".join(struct.pack("<I", len(t)) + t.encode() for t in ("AAPL", "MSFT", "BRK.B"))
    values = struct.unpack("<3d", momentum)
    assert values[0] == 0.5 and math.isnan(values[1]) and values[2] == -1.25  # null travels as NaN
    assert struct.unpack("<3d", weights) == (0.1, 0.0, 0.2)


def test_a_kserve_answer_reads_as_its_json_would() -> None:
    raw = kserve_pb.ModelInferResponse(
        model_name="ensemble",
        model_version="7",
        outputs=[
            kserve_pb.ModelInferResponse.InferOutputTensor(name="score", datatype="FP64", shape=[2]),
            kserve_pb.ModelInferResponse.InferOutputTensor(name="label", datatype="BYTES", shape=[2]),
        ],
        raw_output_contents=[struct.pack("<2d", 0.25, math.nan), b"\x02\x00\x00\x00up\x04\x00\x00\x00down"],
    )
    answer = ModelInferResponse.FromString(raw.SerializeToString())
    assert answer.model_version == "7"
    outputs = outputs_from_response(answer)
    assert outputs["score"][0] == 0.25 and math.isnan(outputs["score"][1])
    assert outputs["label"] == ["up", "down"]
    typed = kserve_pb.ModelInferResponse(
        outputs=[
            kserve_pb.ModelInferResponse.InferOutputTensor(
                name="weight", datatype="FP64", shape=[2], contents=kserve_pb.InferTensorContents(fp64_contents=[1, 2])
            )
        ]
    )
    assert outputs_from_response(ModelInferResponse.FromString(typed.SerializeToString())) == {"weight": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ([{"name": "n", "datatype": "INT64", "shape": [1], "data": [None]}], "null in a INT64"),
        ([{"name": "t", "datatype": "BYTES", "shape": [1], "data": [3]}], "must be a string"),
        ([{"name": "x", "datatype": "FP16", "shape": [1], "data": [1.0]}], "FP16 is not carried"),
    ],
)
def test_what_cannot_travel_is_named(inputs: list[dict[str, object]], problem: str) -> None:
    with pytest.raises(V2CodecError, match=problem):
        request_from_json("m", orjson.dumps({"inputs": inputs}))
    with pytest.raises(V2CodecError, match="not a v2 inference request"):
        request_from_json("m", b"[]")


def _rpc_error(code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(*trailing), details=details)


def test_statuses_become_the_reasons_rest_gives() -> None:
    refusal = call_error(
        "allocator", _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "XYZ", ((ERROR_CODE_FIELD, "outside_universe"),))
    )
    assert (refusal.reason, refusal.detail, refusal.code, refusal.refused) == (
        "http_400",
        "XYZ",
        "outside_universe",
        True,
    )
    assert call_error("m", _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "late")).reason == "timeout"
    down = call_error("m", _rpc_error(grpc.StatusCode.UNAVAILABLE, "connect failed"))
    assert down.reason == "connection_error" and not down.refused
    assert call_error("m", _rpc_error(grpc.StatusCode.NOT_FOUND, "no model")).reason == "http_404"
    broken = call_error("m", _rpc_error(grpc.StatusCode.INTERNAL, "boom"))
    assert broken.reason == "http_500" and not broken.refused


def test_settings_name_the_servers_that_go_over_grpc() -> None:
    urls = {"technical": "http://127.0.0.1:1", "allocator": "http://127.0.0.1:2"}
    addresses = {"technical": "127.0.0.1:3", "allocator": "127.0.0.1:4"}
    assert GatewaySettings(model_urls=urls, model_grpc_urls=addresses).grpc_addresses() == {}
    everything = GatewaySettings(model_urls=urls, model_grpc_urls=addresses, model_transport="grpc")
    assert everything.grpc_addresses() == addresses
    one = GatewaySettings(model_urls=urls, model_grpc_urls=addresses, model_transports={"allocator": "grpc"})
    assert one.grpc_addresses() == {"allocator": "127.0.0.1:4"}
    assert one.transport_of("technical") == "rest"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"model_transport": "grpc", "model_grpc_urls": {"technical": "127.0.0.1:3"}},
            r"MODEL_GRPC_URLS: \['allocator'\]",
        ),
        ({"model_transports": {"ensemble": "grpc"}}, r"absent from model_urls: \['ensemble'\]"),
        ({"model_transports": {"technical": "http2"}}, "rest"),
    ],
)
def test_settings_refuse_a_grpc_server_without_an_address(overrides: dict[str, Any], problem: str) -> None:
    urls = {"technical": "http://127.0.0.1:1", "allocator": "http://127.0.0.1:2"}
    with pytest.raises(ValidationError, match=problem):
        GatewaySettings(model_urls=urls, **overrides)
