"""The allocator model behind ``POST /v1/allocations``: its v2 request, the checks on its answer, the client's cap.

The gateway sends the universe's tickers (``ticker``, BYTES), their ``allocator_v1`` features as
read online (FP64, null when missing) and the client's book (``current_weight``, FP64); the model
answers one ``weight`` per ticker, cash being the rest (docs/serving-contract.md). A ticker outside
a fixed-universe model's trained universe is refused with the code ``outside_universe`` in the
error body; the gateway reads the code, never the wording. The request's
``max_weight`` is the client's hard limit, applied here after the model: a weight above it is cut
to it and the excess is held in cash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from api.errors import ModelCallError
from api.features import FeatureSnapshot
from api.inference import InferenceClient, fp64_inputs
from feature_repo.contract import ALLOCATOR, CURRENT_WEIGHT_INPUT, TICKER_INPUT, WEIGHT_OUTPUT, ErrorCode
from feature_repo.schema import ALLOCATOR_FEATURES

# The reason a refusal for a ticker outside the trained universe becomes (the server's code).
OUTSIDE_UNIVERSE: Final = ErrorCode.OUTSIDE_UNIVERSE.value
# How far the model's answer may stray from [0, 1] and a total of 1 (float arithmetic) before it
# is called malformed.
WEIGHT_TOLERANCE: Final = 1e-6


@dataclass(frozen=True)
class ModelAllocation:
    """The allocator's weights after the client's cap, and what the cap changed."""

    weights: list[float]
    version: str
    capped: list[str] = field(default_factory=list)
    excess: float = 0.0


def allocator_inputs(snapshot: FeatureSnapshot, current_weights: Mapping[str, float]) -> list[dict[str, Any]]:
    """The v2 inputs for ``snapshot``'s tickers: ``ticker``, the allocator features, ``current_weight``."""
    tickers = snapshot.tickers
    ticker = {"name": TICKER_INPUT, "datatype": "BYTES", "shape": [len(tickers)], "data": list(tickers)}
    features = {name: snapshot.values[name] for name in ALLOCATOR_FEATURES}
    book = {CURRENT_WEIGHT_INPUT: [float(current_weights.get(t, 0.0)) for t in tickers]}
    return [ticker, *fp64_inputs(features), *fp64_inputs(book)]


def _checked(weights: list[float | None], version: str) -> list[float]:
    """The model's weights, long-only and summing to at most 1 (within float tolerance)."""
    if any(w is None or w < -WEIGHT_TOLERANCE or w > 1.0 + WEIGHT_TOLERANCE for w in weights):
        raise ModelCallError(ALLOCATOR, "bad_response", f"version {version} answered weights outside [0, 1]")
    clean = [min(max(float(w or 0.0), 0.0), 1.0) for w in weights]
    if math.fsum(clean) > 1.0 + WEIGHT_TOLERANCE:
        raise ModelCallError(ALLOCATOR, "bad_response", f"version {version} answered weights summing above 1")
    return clean


def cap(weights: list[float], tickers: list[str], max_weight: float, version: str) -> ModelAllocation:
    """Cut every weight above ``max_weight`` to it; the excess goes to cash."""
    capped = [t for t, w in zip(tickers, weights, strict=True) if w > max_weight]
    excess = math.fsum(w - max_weight for w in weights if w > max_weight)
    return ModelAllocation(weights=[min(w, max_weight) for w in weights], version=version, capped=capped, excess=excess)


async def model_allocation(
    client: InferenceClient,
    snapshot: FeatureSnapshot,
    current_weights: Mapping[str, float],
    max_weight: float,
) -> ModelAllocation:
    """Weights for ``snapshot``'s tickers from the allocator server, capped at ``max_weight``.

    Raises:
        ModelCallError: not deployed, circuit open, timeout, unreachable, an error status, a
            malformed answer, or ``outside_universe`` when the universe names a ticker the model
            was not trained on (the detail names it).
    """
    try:
        result = await client.infer(ALLOCATOR, allocator_inputs(snapshot, current_weights))
    except ModelCallError as e:
        if e.reason == "http_400" and e.code == ErrorCode.OUTSIDE_UNIVERSE:
            raise ModelCallError(ALLOCATOR, OUTSIDE_UNIVERSE, e.detail) from e
        raise
    weights = _checked(result.floats(WEIGHT_OUTPUT, len(snapshot.tickers)), result.version)
    return cap(weights, snapshot.tickers, max_weight, result.version)
