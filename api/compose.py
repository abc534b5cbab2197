"""Signals: fan out to the component models concurrently, blend with the ensemble, say what degraded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from api.cache import Cache
from api.errors import ModelCallError, NoModelAvailableError
from api.features import FeatureSnapshot
from api.inference import InferenceClient, InferResult, encode_inputs, fp64_inputs
from api.metrics import GatewayMetrics
from api.schemas import ComponentScores, DegradedReason, SignalPublic, SignalsPublic
from feature_repo.contract import COMPONENT_MODELS, COVERAGE_OUTPUT, ENSEMBLE, SCORE_OUTPUT, SIGNAL_FEATURE_SERVICES

# Distinct (rows, versions) compositions kept; small, since each holds 50 tickers' validated answers.
MAX_COMPOSITIONS: Final = 128
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
    _public: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def degraded(self) -> bool:
        # An undeployed component is a configuration choice, not a degradation.
        return any(r.code != "not_deployed" or r.model == ENSEMBLE for r in self.reasons)

    def public(self, as_of: datetime | None, request_id: str) -> dict[str, Any]:
        """The answer as JSON-ready data (:class:`SignalsPublic`), validated and dumped once per composition."""
        if self._public is None:
            answer = SignalsPublic(
                signals=self.signals,
                model_versions=self.model_versions,
                as_of=as_of,
                degraded=self.degraded,
                reasons=self.reasons,
                request_id="",
            )
            self._public = answer.model_dump(mode="json")
        return {**self._public, "request_id": request_id}


@dataclass(frozen=True)
class _Composition:
    """An undegraded composition, what it was blended from, and the ensemble version that blended it."""

    scores: dict[str, list[float | None]]
    blend_body: bytes
    blend_version: str
    composed: ComposedSignals


# What determines a composition: the feature rows scored (their digest covers the tickers, their
# order and every value) and, per component, the version that scored them (or "not_deployed").
CompositionKey = tuple[str, tuple[tuple[str, str], ...]]


class Compositions:
    """Undegraded compositions, reused by key (:data:`CompositionKey`), not by object identity.

    Served models are deterministic, so the same rows scored by the same versions give the same
    scores; the ensemble's version is checked on every reuse. A composition (50 tickers' worth of
    validated models and their JSON) is then built once per key rather than per request. Entries
    live as long as the model answers they were made from (``ttl``: the score cache's life); a
    component that reports no version is never reused (its key could not tell two models apart).
    """

    def __init__(self, metrics: GatewayMetrics, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.memo: Cache[CompositionKey, _Composition] = Cache(
            "compositions", metrics, ttl=ttl, max_entries=MAX_COMPOSITIONS, clock=clock
        )
        # The v2 request body of a component for some rows, keyed by (rows' digest, feature service).
        self.bodies: Cache[tuple[str, str], bytes] = Cache(
            "model_inputs", metrics, ttl=ttl, max_entries=2 * MAX_COMPOSITIONS, clock=clock
        )

    def body(self, snapshot: FeatureSnapshot, service: str) -> bytes:
        """The v2 body of ``service``'s features for ``snapshot`` (encoded once per digest and service)."""
        key = (snapshot.digest(), service)
        body = self.bodies.peek(key)
        if body is None:
            body = encode_inputs(fp64_inputs(snapshot.service_columns(service)))
            self.bodies.put(key, body)
        return body

    @staticmethod
    def key(
        snapshot: FeatureSnapshot, components: list[tuple[str, InferResult | BaseException]]
    ) -> CompositionKey | None:
        """The key of a composition of ``components``' answers for ``snapshot``; ``None``: not reusable."""
        versions = []
        for model, result in components:
            if isinstance(result, InferResult) and result.version:
                versions.append((model, result.version))
            elif isinstance(result, ModelCallError) and result.reason == "not_deployed":
                versions.append((model, "not_deployed"))
            else:
                return None  # a failed component (degraded) or an unversioned answer
        return snapshot.digest(), tuple(versions)


def reason(error: ModelCallError) -> DegradedReason:
    """A client-facing reason for a failed model call."""
    text = REASON_TEXT.get(error.reason, f"failed ({error.reason})")
    return DegradedReason(model=error.model, code=error.reason, message=f"{error.model} {text}")


async def _call_components(
    client: InferenceClient, snapshot: FeatureSnapshot, memo: Compositions | None
) -> list[tuple[str, InferResult | BaseException]]:
    async def one(model: str) -> InferResult:
        service = SIGNAL_FEATURE_SERVICES[model]
        if memo is not None:
            return await client.infer_encoded(model, memo.body(snapshot, service))
        return await client.infer_encoded(model, encode_inputs(fp64_inputs(snapshot.service_columns(service))))

    results = await asyncio.gather(*(one(m) for m in COMPONENT_MODELS), return_exceptions=True)
    return list(zip(COMPONENT_MODELS, results, strict=True))


async def compose_signals(
    client: InferenceClient, snapshot: FeatureSnapshot, metrics: GatewayMetrics, memo: Compositions | None = None
) -> ComposedSignals:
    """Score ``snapshot``'s tickers with every deployed component, then blend (reusing ``memo``'s composition).

    Raises:
        NoModelAvailableError: no component model returned scores.
    """
    n = len(snapshot.tickers)
    components = await _call_components(client, snapshot, memo)
    key = memo.key(snapshot, components) if memo is not None else None
    kept = memo.memo.peek(key) if memo is not None and key is not None else None
    out = ComposedSignals(signals=[], model_versions={})
    scores: dict[str, list[float | None]] = {}
    for model, result in components:
        try:
            if isinstance(result, BaseException):
                raise result
            scores[model] = kept.scores[model] if kept is not None else result.floats(SCORE_OUTPUT, n)
            out.model_versions[model] = result.version
        except ModelCallError as e:
            out.reasons.append(reason(e))
            if e.reason != "not_deployed":
                metrics.fallbacks.labels(model=model, reason=e.reason).inc()
    if not scores:
        detail = "; ".join(r.message for r in out.reasons)
        raise NoModelAvailableError(f"no component model could score the request: {detail}")
    blend_body = kept.blend_body if kept is not None else encode_inputs(fp64_inputs(scores))
    blend = await _blend(client, blend_body, out, metrics)
    if kept is not None and blend is not None and blend.version == kept.blend_version:
        observe_scores(metrics, scores, kept.composed.signals)
        return kept.composed
    blended, coverage = blended_scores(blend, scores, n, out, metrics)
    compose_into(
        out, snapshot.tickers, as_of=snapshot.tickers_as_of(), scores=scores, blended=blended, coverage=coverage
    )
    observe_scores(metrics, scores, out.signals)
    if memo is not None and key is not None and blend is not None and blend.version and not out.degraded:
        memo.memo.put(key, _Composition(scores, blend_body, blend.version, out))
    return out


def compose_into(
    out: ComposedSignals,
    tickers: list[str],
    *,
    as_of: list[datetime | None],
    scores: dict[str, list[float | None]],
    blended: list[float | None],
    coverage: list[float | None],
) -> None:
    """Append one ranked :class:`SignalPublic` per ticker to ``out``."""
    ranks = ranks_of(blended)
    for i, ticker in enumerate(tickers):
        components = ComponentScores(**{m: s[i] for m, s in scores.items()})
        out.signals.append(
            SignalPublic(
                ticker=ticker,
                score=blended[i],
                coverage=coverage[i],
                rank=ranks[i],
                components=components,
                as_of=as_of[i],
            )
        )


async def _blend(
    client: InferenceClient, body: bytes, out: ComposedSignals, metrics: GatewayMetrics
) -> InferResult | None:
    """The ensemble's answer, or ``None`` (with the reason recorded) when it failed."""
    try:
        return await client.infer_encoded(ENSEMBLE, body)
    except ModelCallError as e:
        out.reasons.append(_ensemble_reason(e))
        metrics.fallbacks.labels(model=ENSEMBLE, reason=e.reason).inc()
        return None


def blended_scores(
    blend: InferResult | None,
    scores: dict[str, list[float | None]],
    n: int,
    out: ComposedSignals,
    metrics: GatewayMetrics,
) -> tuple[list[float | None], list[float | None]]:
    if blend is not None:
        try:
            blended, coverage = blend.floats(SCORE_OUTPUT, n), blend.floats(COVERAGE_OUTPUT, n)
        except ModelCallError as e:
            out.reasons.append(_ensemble_reason(e))
            metrics.fallbacks.labels(model=ENSEMBLE, reason=e.reason).inc()
        else:
            out.model_versions[ENSEMBLE] = blend.version
            return blended, coverage
    return equal_weight_blend(scores, n)


def _ensemble_reason(e: ModelCallError) -> DegradedReason:
    return DegradedReason(
        model=ENSEMBLE,
        code=e.reason,
        message=f"{reason(e).message}; used the equal-weight mean of the available components",
    )


def equal_weight_blend(scores: dict[str, list[float | None]], n: int) -> tuple[list[float | None], list[float | None]]:
    """Mean of the components present per ticker, renormalised; coverage = share of components present."""
    blended: list[float | None] = []
    coverage: list[float | None] = []
    for i in range(n):
        present = [s[i] for s in scores.values() if s[i] is not None]
        blended.append(sum(present) / len(present) if present else None)  # type: ignore[arg-type]
        coverage.append(len(present) / len(COMPONENT_MODELS))
    return blended, coverage


def ranks_of(scores: list[float | None]) -> list[int | None]:
    order = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: -scores[i])  # type: ignore[operator]
    ranks: list[int | None] = [None] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def observe_scores(metrics: GatewayMetrics, scores: dict[str, list[float | None]], signals: list[SignalPublic]) -> None:
    """Every score served, per model (the ensemble's from the answer, whichever blend made it)."""
    for model, values in scores.items():
        metrics.signal_score.observe_many(model, [v for v in values if v is not None])
    metrics.signal_score.observe_many(ENSEMBLE, [s.score for s in signals if s.score is not None])
