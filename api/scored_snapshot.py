"""One scored snapshot of the online universe, and the answers looked up in it.

Built by :mod:`api.scored` from one batched call per model over every ticker, it keeps each
ticker's signal as the JSON the per-request path would produce (rank left out), so a request for
any subset, in any order, is a lookup plus a rank within the request: no model call, no pydantic
validation per ticker. An answer from it equals the per-request answer for the same features and
versions (``tests/test_gateway_scored.py`` proves it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter

from api.compose import ComposedSignals, ranks_of
from api.features import SERVED_VIEWS, FeatureSnapshot
from api.metrics import GatewayMetrics
from feature_repo.contract import ENSEMBLE

_AS_OF: Final = TypeAdapter(datetime | None)
MAX_SUBSETS: Final = 128


@dataclass(frozen=True)
class ScoredSnapshot:
    """Every online ticker's scores, components and signal JSON from one build.

    Attributes:
        features: the rows scored, for the whole universe (allocations read subsets of it).
        index: ticker -> row.
        rows: per ticker, ``SignalPublic`` as JSON with ``rank`` ``None``.
        blended: the ensemble score per ticker (ranks are taken over a request's tickers).
        scores: the component scores per model, per ticker (for the served-score histograms).
        model_versions, reasons, degraded: as the per-request composition reports them.
        marker: the online store's state scored (:class:`api.universe.UniverseScan`).
        served_versions: the model versions the servers reported when the build started.
        digest: sha256 of every row scored (:meth:`FeatureSnapshot.digest`).
        built_at: the scored universe's clock when the build finished.
        build_seconds: how long the build took.
    """

    features: FeatureSnapshot
    index: dict[str, int]
    rows: list[dict[str, Any]]
    blended: list[float | None]
    scores: dict[str, list[float | None]]
    model_versions: dict[str, str]
    reasons: list[dict[str, Any]]
    degraded: bool
    marker: str
    served_versions: dict[str, str | None]
    digest: str
    built_at: float
    build_seconds: float
    _as_of: list[datetime | None] = field(default_factory=list, repr=False)
    # Row subsets already cut (allocations): the same universe asked again gets the same object, so
    # what a FeatureSnapshot memoises (its digest, its as_of) is computed once, as from the row cache.
    _subsets: dict[tuple[tuple[str, ...], tuple[str, ...]], FeatureSnapshot] = field(default_factory=dict, repr=False)

    @classmethod
    def from_composition(
        cls, composed: ComposedSignals, features: FeatureSnapshot, scores: dict[str, list[float | None]], **meta: Any
    ) -> ScoredSnapshot:
        """Freeze a composition of the whole universe (its universe-wide ranks dropped)."""
        rows = []
        for signal in composed.signals:
            row = signal.model_dump(mode="json")
            row["rank"] = None
            rows.append(row)
        return cls(
            features=features,
            index={t: i for i, t in enumerate(features.tickers)},
            rows=rows,
            blended=[s.score for s in composed.signals],
            scores=scores,
            model_versions=dict(composed.model_versions),
            reasons=[r.model_dump(mode="json") for r in composed.reasons],
            degraded=composed.degraded,
            digest=features.digest(),
            _as_of=features.tickers_as_of(),
            **meta,
        )

    def subset(self, tickers: list[str], views: tuple[str, ...]) -> FeatureSnapshot | None:
        """The rows of ``tickers`` in ``views`` (reused per ticker list), or ``None`` when any is missing."""
        key = (tuple(tickers), views)
        found = self._subsets.get(key)
        if found is not None:
            return found
        positions = self.positions(tickers)
        if positions is None:
            return None
        if len(self._subsets) >= MAX_SUBSETS:
            self._subsets.clear()  # distinct universes are few; a flood of new ones restarts it
        found = self._subsets[key] = self.features.subset(positions, views)
        return found

    def positions(self, tickers: list[str]) -> list[int] | None:
        """The rows of ``tickers``, or ``None`` when any is not in the snapshot."""
        index = self.index
        try:
            return [index[t] for t in tickers]
        except KeyError:
            return None


@dataclass(frozen=True)
class Lookup:
    """The answer to one request from a snapshot: the rows of its tickers, in its order."""

    snapshot: ScoredSnapshot
    positions: list[int]

    @property
    def model_versions(self) -> dict[str, str]:
        return self.snapshot.model_versions

    @property
    def degraded(self) -> bool:
        return self.snapshot.degraded

    def public(self, request_id: str) -> dict[str, Any]:
        """The ``SignalsPublic`` JSON, ranked within the request."""
        snap, positions = self.snapshot, self.positions
        ranks = ranks_of([snap.blended[i] for i in positions])
        signals = [{**snap.rows[i], "rank": rank} for i, rank in zip(positions, ranks, strict=True)]
        stamps = [t for i in positions if (t := snap._as_of[i]) is not None]
        return {
            "signals": signals,
            "model_versions": dict(snap.model_versions),
            "as_of": _AS_OF.dump_python(max(stamps) if stamps else None, mode="json"),
            "degraded": snap.degraded,
            "reasons": list(snap.reasons),
            "request_id": request_id,
        }

    def digest(self) -> str:
        """The feature digest the audit records: that of a read of the same tickers' rows."""
        return self.snapshot.features.subset(self.positions, SERVED_VIEWS, with_values=False).digest()

    def observe(self, metrics: GatewayMetrics) -> None:
        """Count the scores served, per model, as the per-request path does."""
        snap, positions = self.snapshot, self.positions
        for model, values in snap.scores.items():
            metrics.signal_score.observe_many(model, [v for i in positions if (v := values[i]) is not None])
        metrics.signal_score.observe_many(ENSEMBLE, [v for i in positions if (v := snap.blended[i]) is not None])
