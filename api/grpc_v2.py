"""The gateway's own Open Inference Protocol v2 gRPC messages, and the v2 JSON body in and out of them.

The messages are written here from the public Open Inference Protocol spec (KServe's "V2"
``grpc_predict_v2.proto``, package ``inference``), as a ``FileDescriptorProto`` built in code and
loaded into a private descriptor pool: no generated ``_pb2`` module, no ``grpcio-tools`` and no
``kserve`` import, only ``protobuf``, which the gateway already has through Feast. Only
``ModelInfer`` is described, and within it the fields the gateway sends or reads; protobuf
skips fields a message does not know, so what a server adds (``parameters``, say) passes unnoticed.
tests/test_gateway_grpc_messages.py proves each field's name, number, type and label equal to
KServe's own descriptor.

Tensors travel as ``raw_input_contents`` (little-endian numbers; ``BYTES`` as 4-byte
little-endian lengths followed by the bytes), the protocol's fast path; a server then answers
``raw_output_contents``, which :func:`outputs_from_response` reads back (typed ``contents`` too).
A JSON ``null`` in an FP64/FP32 input becomes NaN, which the model servers read exactly as they
read ``null`` (docs/serving-contract.md); NaN answers become ``None`` in
:meth:`api.inference.InferResult.floats` either way.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Final

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE: Final = "inference"
SERVICE: Final = "GRPCInferenceService"
MODEL_INFER_METHOD: Final = f"/{PACKAGE}.{SERVICE}/ModelInfer"

_F = descriptor_pb2.FieldDescriptorProto
# (name, number, type, repeated, message type name relative to the package)
_FieldSpec = tuple[str, int, int, bool, str]

_CONTENTS: Final[list[_FieldSpec]] = [
    ("bool_contents", 1, _F.TYPE_BOOL, True, ""),
    ("int_contents", 2, _F.TYPE_INT32, True, ""),
    ("int64_contents", 3, _F.TYPE_INT64, True, ""),
    ("uint_contents", 4, _F.TYPE_UINT32, True, ""),
    ("uint64_contents", 5, _F.TYPE_UINT64, True, ""),
    ("fp32_contents", 6, _F.TYPE_FLOAT, True, ""),
    ("fp64_contents", 7, _F.TYPE_DOUBLE, True, ""),
    ("bytes_contents", 8, _F.TYPE_BYTES, True, ""),
]
# A tensor's description: the same fields in a request's inputs and a response's outputs
# (field 4, ``parameters``, left out).
_TENSOR: Final[list[_FieldSpec]] = [
    ("name", 1, _F.TYPE_STRING, False, ""),
    ("datatype", 2, _F.TYPE_STRING, False, ""),
    ("shape", 3, _F.TYPE_INT64, True, ""),
    ("contents", 5, _F.TYPE_MESSAGE, False, "InferTensorContents"),
]
# Fields 1-3, the same in a request and its response (the response echoes them).
_ADDRESS: Final[list[_FieldSpec]] = [
    ("model_name", 1, _F.TYPE_STRING, False, ""),
    ("model_version", 2, _F.TYPE_STRING, False, ""),
    ("id", 3, _F.TYPE_STRING, False, ""),
]
_REQUEST: Final[list[_FieldSpec]] = [
    *_ADDRESS,
    ("inputs", 5, _F.TYPE_MESSAGE, True, "ModelInferRequest.InferInputTensor"),
    ("raw_input_contents", 7, _F.TYPE_BYTES, True, ""),
]
_RESPONSE: Final[list[_FieldSpec]] = [
    *_ADDRESS,
    ("outputs", 5, _F.TYPE_MESSAGE, True, "ModelInferResponse.InferOutputTensor"),
    ("raw_output_contents", 6, _F.TYPE_BYTES, True, ""),
]
# What each message declares, for the test that holds them to KServe's descriptor.
DECLARED: Final[dict[str, list[_FieldSpec]]] = {
    "InferTensorContents": _CONTENTS,
    "ModelInferRequest": _REQUEST,
    "ModelInferRequest.InferInputTensor": _TENSOR,
    "ModelInferResponse": _RESPONSE,
    "ModelInferResponse.InferOutputTensor": _TENSOR,
}

# Little-endian struct codes of the numeric datatypes the gateway sends and reads.
_NUMERIC: Final = {
    "FP64": "d",
    "FP32": "f",
    "INT64": "q",
    "INT32": "i",
    "INT16": "h",
    "INT8": "b",
    "UINT64": "Q",
    "UINT32": "I",
    "UINT16": "H",
    "UINT8": "B",
    "BOOL": "?",
}
_FLOATING: Final = frozenset({"FP64", "FP32"})
_CONTENTS_FIELD: Final = {
    "FP64": "fp64_contents",
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "INT16": "int_contents",
    "INT8": "int_contents",
    "UINT64": "uint64_contents",
    "UINT32": "uint_contents",
    "UINT16": "uint_contents",
    "UINT8": "uint_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


class V2CodecError(ValueError):
    """A v2 body or answer that cannot be carried over gRPC (an unknown datatype, a null in an integer)."""


def _message(name: str, fields: list[_FieldSpec], nested: Sequence[descriptor_pb2.DescriptorProto] = ()) -> Any:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, repeated, type_name in fields:
        field = message.field.add(
            name=field_name,
            number=number,
            type=kind,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )
        if type_name:
            field.type_name = f".{PACKAGE}.{type_name}"
    message.nested_type.extend(nested)
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="portfolio_os/grpc_predict_v2.proto", package=PACKAGE, syntax="proto3"
    )
    proto.message_type.extend(
        [
            _message("InferTensorContents", _CONTENTS),
            _message("ModelInferRequest", _REQUEST, [_message("InferInputTensor", _TENSOR)]),
            _message("ModelInferResponse", _RESPONSE, [_message("InferOutputTensor", _TENSOR)]),
        ]
    )
    return proto


def _classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()  # private: kserve's own messages may share the process
    pool.Add(_file())
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.ModelInferRequest"))
    response = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.ModelInferResponse"))
    return request, response


ModelInferRequest, ModelInferResponse = _classes()


def _raw_numbers(datatype: str, data: list[Any], name: str) -> bytes:
    code = _NUMERIC[datatype]
    if datatype in _FLOATING:
        values = [math.nan if v is None else v for v in data]
    elif any(v is None for v in data):
        raise V2CodecError(f"input {name!r}: a null in a {datatype} tensor cannot be sent")
    else:
        values = data
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error as e:
        raise V2CodecError(f"input {name!r} does not fit {datatype}: {e}") from e


def _raw_bytes(data: list[Any], name: str) -> bytes:
    parts = []
    for value in data:
        if not isinstance(value, str | bytes):
            raise V2CodecError(f"input {name!r}: a BYTES element must be a string, got {type(value).__name__}")
        item = value.encode() if isinstance(value, str) else value
        parts.append(struct.pack("<I", len(item)) + item)
    return b"".join(parts)


def request_from_json(model: str, body: bytes) -> Any:
    """The ``ModelInferRequest`` carrying the v2 JSON request ``body`` (:func:`api.inference.encode_inputs`).

    Raises:
        V2CodecError: the body is not a v2 request, or a tensor cannot travel as raw contents.
    """
    try:
        inputs = orjson.loads(body)["inputs"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise V2CodecError("not a v2 inference request body") from e
    request = ModelInferRequest(model_name=model)
    for tensor in inputs:
        try:
            name, datatype, data = str(tensor["name"]), str(tensor["datatype"]), list(tensor["data"])
        except (KeyError, TypeError) as e:
            raise V2CodecError("a v2 input needs a name, a datatype and a data list") from e
        if datatype == "BYTES":
            raw = _raw_bytes(data, name)
        elif datatype in _NUMERIC:
            raw = _raw_numbers(datatype, data, name)
        else:
            raise V2CodecError(f"input {name!r}: datatype {datatype} is not carried over gRPC")
        request.inputs.add(name=name, datatype=datatype, shape=tensor.get("shape") or [len(data)])
        request.raw_input_contents.append(raw)
    return request


def _from_raw(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        at = 0
        while at < len(raw):
            (size,) = struct.unpack_from("<I", raw, at)
            values.append(raw[at + 4 : at + 4 + size].decode("utf-8", errors="replace"))
            at += 4 + size
        return values
    code = _NUMERIC.get(datatype)
    if code is None:
        raise V2CodecError(f"output datatype {datatype} is not read over gRPC")
    width = struct.calcsize(code)
    if len(raw) % width:
        raise V2CodecError(f"a raw {datatype} output of {len(raw)} bytes")
    return list(struct.unpack(f"<{len(raw) // width}{code}", raw))


def _from_contents(tensor: Any) -> list[Any]:
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise V2CodecError(f"output datatype {tensor.datatype} is not read over gRPC")
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") for v in values]
    return values


def outputs_from_response(response: Any) -> dict[str, list[Any]]:
    """A ``ModelInferResponse``'s outputs by name, as flat lists (what a v2 JSON answer's ``data`` holds).

    Raises:
        V2CodecError: raw contents that do not match the outputs, or an unknown datatype.
    """
    raw = list(response.raw_output_contents)
    if raw and len(raw) != len(response.outputs):
        raise V2CodecError(f"{len(raw)} raw contents for {len(response.outputs)} outputs")
    if raw:
        return {o.name: _from_raw(o.datatype, r) for o, r in zip(response.outputs, raw, strict=True)}
    return {o.name: _from_contents(o) for o in response.outputs}
