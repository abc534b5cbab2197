"""Named columns in and out of Open Inference Protocol requests (v2) and v1 instance lists.

Numeric inputs become float64 vectors. JSON has no NaN, so a missing value arrives as ``null``.
KServe 0.21 keeps JSON tensor data as a Python list and ``InferInput.as_numpy`` builds it with
``np.array(data, dtype=float64)``, which turns ``None`` into NaN: nulls need no handling here
beyond choosing a float dtype, and LightGBM treats the NaN as missing exactly as in training.
Integer datatypes cannot carry nulls; a null in one is a 400.

Text inputs (a model names them, e.g. the allocator's ``ticker``) must be ``BYTES`` tensors and
become object vectors of ``str``: JSON data is a list of strings, the binary extension delivers
bytes, decoded as UTF-8. A null or a number in a text input is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest

from serving.errors import BadRequest, ModelLoadError

Columns = dict[str, np.ndarray]
NO_TEXT: frozenset[str] = frozenset()
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
    return _flat(values, name)


def _flat(values: np.ndarray, name: str) -> np.ndarray:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise BadRequest(f"input '{name}' has shape {list(values.shape)}; expected [n], one element per row")
    return values


def _text(value: Any, name: str, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRequest(f"input '{name}' element {index} is not UTF-8 text: {e}") from e
    raise BadRequest(f"input '{name}' element {index} is {type(value).__name__}, not a string")


def text_vector(values: Any, name: str) -> np.ndarray:
    """``values`` (a sequence of str or UTF-8 bytes) as a 1-D object vector of ``str``.

    Raises:
        BadRequest: a null, a number or undecodable bytes among the values, or a shape other than ``[n]``.
    """
    try:
        array = np.asarray(values, dtype=object)
    except ValueError as e:  # ragged nesting
        raise BadRequest(f"input '{name}' is not a flat list of strings: {e}") from e
    flat = _flat(array, name)
    return np.array([_text(v, name, i) for i, v in enumerate(flat)], dtype=object)


def _bytes_vector(tensor: InferInput) -> np.ndarray:
    name = tensor.name
    if tensor.datatype != "BYTES":
        raise BadRequest(f"input '{name}' has datatype {tensor.datatype}; expected BYTES (strings)")
    try:
        values = tensor.as_numpy()
    except (TypeError, ValueError) as e:
        raise BadRequest(f"input '{name}' is not a BYTES tensor of its declared shape: {e}") from e
    return text_vector(values, name)


def check_columns(columns: Mapping[str, np.ndarray], allowed: Sequence[str], *, require_all: bool) -> int:
    """Check the names and lengths of request columns; return the number of rows.

    Args:
        columns: input name -> 1-D values (float64, or str for text inputs).
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


def columns_from_v2(request: InferRequest, text_inputs: frozenset[str] = NO_TEXT) -> Columns:
    """One vector per named input of a v2 request: str for ``text_inputs``, float64 (nulls as NaN) otherwise.

    Raises:
        BadRequest: a repeated name, a datatype other than BYTES for a text input or a numeric one
            for the rest, non-string text, or a shape other than ``[n]``/``[n, 1]``.
    """
    columns: Columns = {}
    for tensor in request.inputs:
        if tensor.name in columns:
            raise BadRequest(f"input '{tensor.name}' appears more than once")
        decode = _bytes_vector if tensor.name in text_inputs else _fp64_vector
        columns[tensor.name] = decode(tensor)
    return columns


def columns_from_v1(payload: Any, text_inputs: frozenset[str] = NO_TEXT) -> Columns:
    """One vector per key of a v1 ``instances`` list: str for ``text_inputs``, float64 (nulls as NaN) otherwise.

    Raises:
        BadRequest: not an instance list, instances with different keys, non-string text or non-numeric values.
    """
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
        raise BadRequest(_V1_SHAPE)
    names = list(instances[0])
    if any(set(i) != set(names) for i in instances):
        raise BadRequest(f"every instance must carry the same inputs; {_V1_SHAPE}")
    columns: Columns = {}
    for name in names:
        values = [i[name] for i in instances]
        if name in text_inputs:
            columns[name] = text_vector(values, name)
            continue
        try:
            columns[name] = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"v1 instances must hold numbers or null in '{name}': {e}") from e
    return columns


def pyfunc_outputs(result: Any, names: Sequence[str], rows: int, model: str, version: str) -> Columns:
    """The named float64 columns of a pyfunc's answer, refused unless it holds every name and ``rows`` rows.

    Raises:
        ModelLoadError: the registered model broke its contract, a server error (500), not the
            client's fault; the message names the version, what it returned and what was expected.
    """
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
    missing = [name for name in names if name not in frame.columns]
    if missing or len(frame) != rows:
        raise ModelLoadError(
            f"{model} version {version} returned columns {list(frame.columns)} x {len(frame)} rows; "
            f"expected {list(names)} x {rows}"
        )
    return {name: frame[name].to_numpy(dtype=np.float64) for name in names}


def fp64_output(name: str, values: np.ndarray) -> InferOutput:
    """An FP64 ``[n]`` output carried in the JSON body (NaN is written as ``null``)."""
    data = np.ascontiguousarray(values, dtype=np.float64)
    output = InferOutput(name=name, shape=list(data.shape), datatype="FP64")
    output.set_data_from_numpy(data, binary_data=False)
    return output
