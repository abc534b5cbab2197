"""Signals: fan out to the component models concurrently, blend with the ensemble, say what degraded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from api.errors import ModelCallError, NoModelAvailableError
from api.features import FeatureSnapshot
from api.inference import InferenceClient, InferResult, encode_inputs, fp64_inputs
from api.metrics import GatewayMetrics
from api.schemas import ComponentScores, DegradedReason, SignalPublic
from api.settings import COMPONENT_MODELS

ENSEMBLE = "ensemble"
REASON_TEXT = {
    "not_deployed": "not deployed (absent from MODEL_URLS)",
    "circuit_open": "circuit open after repeated failures; not called",
    "timeout": "timed out",
    "connection_error": "unreachable",
    "bad_response": "answered with a malformed v2 response",
}


@dataclass
class ComposedSignals:
    """Per-ticker signals plus what was used and what went wrong."""

    signals: list[SignalPublic]
    model_versions: dict[str, str]
    reasons: list[DegradedReason] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        # An undeployed component is a configuration choice, not a degradation.
        return any(r.code != "not_deployed" or r.model == ENSEMBLE for r in self.reasons)


def reason(error: ModelCallError) -> DegradedReason:
    """A client-facing reason for a failed model call."""
    text = REASON_TEXT.get(error.reason, f"failed ({error.reason})")
    return DegradedReason(model=error.model, code=error.reason, message=f"{error.model} {text}")


async def _call_components(
    client: InferenceClient, snapshot: FeatureSnapshot
) -> list[tuple[str, InferResult | BaseException]]:
    async def one(model: str) -> InferResult:
        service = f"{model}_model_v1"
        # Encoded once per snapshot: a snapshot served from the feature cache is reused by requests.
        body = snapshot.remember(f"v2:{service}", lambda: encode_inputs(fp64_inputs(snapshot.service_columns(service))))
        return await client.infer_encoded(model, body)

    results = await asyncio.gather(*(one(m) for m in COMPONENT_MODELS), return_exceptions=True)
    return list(zip(COMPONENT_MODELS, results, strict=True))


async def compose_signals(
    client: InferenceClient, snapshot: FeatureSnapshot, metrics: GatewayMetrics
) -> ComposedSignals:
    """Score ``snapshot``'s tickers with every deployed component, then blend.

    Raises:
        NoModelAvailableError: no component model returned scores.
    """
    n = len(snapshot.tickers)
    out = ComposedSignals(signals=[], model_versions={})
    scores: dict[str, list[float | None]] = {}
    for model, result in await _call_components(client, snapshot):
        try:
            if isinstance(result, BaseException):
                raise result
            scores[model] = result.floats("score", n)
            out.model_versions[model] = result.version
        except ModelCallError as e:
            out.reasons.append(reason(e))
            if e.reason != "not_deployed":
                metrics.fallbacks.labels(model=model, reason=e.reason).inc()
    if not scores:
        detail = "; ".join(r.message for r in out.reasons)
        raise NoModelAvailableError(f"no component model could score the request: {detail}")
    blended, coverage = await _blend(client, scores, n, out, metrics)
    _observe(metrics, scores, blended)
    ranks = _ranks(blended)
    for i, ticker in enumerate(snapshot.tickers):
        components = ComponentScores(**{m: s[i] for m, s in scores.items()})
        out.signals.append(
            SignalPublic(
                ticker=ticker,
                score=blended[i],
                coverage=coverage[i],
                rank=ranks[i],
                components=components,
                as_of=snapshot.ticker_as_of(i),
            )
        )
    return out


async def _blend(
    client: InferenceClient,
    scores: dict[str, list[float | None]],
    n: int,
    out: ComposedSignals,
    metrics: GatewayMetrics,
) -> tuple[list[float | None], list[float | None]]:
    try:
        result = await client.infer(ENSEMBLE, fp64_inputs(scores))
        blended, coverage = result.floats("score", n), result.floats("coverage", n)
        out.model_versions[ENSEMBLE] = result.version
        return blended, coverage
    except ModelCallError as e:
        base = reason(e)
        out.reasons.append(
            DegradedReason(
                model=ENSEMBLE,
                code=e.reason,
                message=f"{base.message}; used the equal-weight mean of the available components",
            )
        )
        metrics.fallbacks.labels(model=ENSEMBLE, reason=e.reason).inc()
    return equal_weight_blend(scores, n)


def equal_weight_blend(scores: dict[str, list[float | None]], n: int) -> tuple[list[float | None], list[float | None]]:
    """Mean of the components present per ticker, renormalised; coverage = share of components present."""
    blended: list[float | None] = []
    coverage: list[float | None] = []
    for i in range(n):
        present = [s[i] for s in scores.values() if s[i] is not None]
        blended.append(sum(present) / len(present) if present else None)  # type: ignore[arg-type]
        coverage.append(len(present) / len(COMPONENT_MODELS))
    return blended, coverage


def _ranks(scores: list[float | None]) -> list[int | None]:
    order = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: -scores[i])  # type: ignore[operator]
    ranks: list[int | None] = [None] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def _observe(metrics: GatewayMetrics, scores: dict[str, list[float | None]], blended: list[float | None]) -> None:
    for model, values in [*scores.items(), (ENSEMBLE, blended)]:
        histogram = metrics.signal_score.labels(model=model)
        for value in values:
            if value is not None:
                histogram.observe(value)
