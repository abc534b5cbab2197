"""Named FP64 columns in and out of Open Inference Protocol requests (v2) and v1 instance lists.

JSON has no NaN, so a missing value arrives as ``null``. KServe 0.21 keeps JSON tensor data as a
Python list and ``InferInput.as_numpy`` builds it with ``np.array(data, dtype=float64)``, which
turns ``None`` into NaN: nulls need no handling here beyond choosing a float dtype, and LightGBM
treats the NaN as missing exactly as in training. Integer datatypes cannot carry nulls; a null in
one is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest

from serving.errors import BadRequest

Columns = dict[str, np.ndarray]
_NUMERIC_PREFIXES = ("FP", "INT", "UINT")
_V1_SHAPE = "a v1 payload is {'instances': [{<input name>: <number or null>, ...}, ...]}"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _fp64_vector(tensor: InferInput) -> np.ndarray:
    name = tensor.name
    if not str(tensor.datatype).startswith(_NUMERIC_PREFIXES):
        raise BadRequest(f"input '{name}' has datatype {tensor.datatype}; expected FP64")
    try:
        values = np.asarray(tensor.as_numpy(), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"input '{name}' is not a numeric tensor of its declared shape: {e}") from e
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise BadRequest(f"input '{name}' has shape {list(values.shape)}; expected [n], one element per row")
    return values


def check_columns(columns: Mapping[str, np.ndarray], allowed: Sequence[str], *, require_all: bool) -> int:
    """Check the names and lengths of request columns; return the number of rows.

    Args:
        columns: input name -> 1-D float64 values.
        allowed: the names the model takes.
        require_all: whether every allowed name must be present (signal models) or any non-empty
            subset may be (the ensemble).

    Raises:
        BadRequest: unknown or missing names (all of them named), no inputs, or unequal lengths.
    """
    unknown = [n for n in columns if n not in allowed]
    missing = [n for n in allowed if n not in columns] if require_all else []
    problems = []
    if unknown:
        problems.append(f"unknown inputs {_listed(unknown)}")
    if missing:
        problems.append(f"missing inputs {_listed(missing)}")
    if problems:
        raise BadRequest(f"{'; '.join(problems)} (the model takes {_listed(allowed)})")
    if not columns:
        raise BadRequest(f"no inputs; the model takes {_listed(allowed)}")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise BadRequest(f"inputs differ in length: {lengths}")
    return next(iter(lengths.values()))


def columns_from_v2(request: InferRequest) -> Columns:
    """One float64 vector per named input of a v2 request (nulls as NaN).

    Raises:
        BadRequest: a repeated name, a non-numeric datatype or a shape other than ``[n]``/``[n, 1]``.
    """
    columns: Columns = {}
    for tensor in request.inputs:
        if tensor.name in columns:
            raise BadRequest(f"input '{tensor.name}' appears more than once")
        columns[tensor.name] = _fp64_vector(tensor)
    return columns


def columns_from_v1(payload: Any) -> Columns:
    """One float64 vector per key of a v1 ``instances`` list (nulls as NaN).

    Raises:
        BadRequest: not an instance list, instances with different keys, or non-numeric values.
    """
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
        raise BadRequest(_V1_SHAPE)
    names = list(instances[0])
    if any(set(i) != set(names) for i in instances):
        raise BadRequest(f"every instance must carry the same inputs; {_V1_SHAPE}")
    try:
        return {n: np.array([i[n] for i in instances], dtype=np.float64) for n in names}
    except (TypeError, ValueError) as e:
        raise BadRequest(f"v1 instances must hold numbers or null: {e}") from e


def fp64_output(name: str, values: np.ndarray) -> InferOutput:
    """An FP64 ``[n]`` output carried in the JSON body (NaN is written as ``null``)."""
    data = np.ascontiguousarray(values, dtype=np.float64)
    output = InferOutput(name=name, shape=list(data.shape), datatype="FP64")
    output.set_data_from_numpy(data, binary_data=False)
    return output
