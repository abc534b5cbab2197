"""One scored snapshot of the online universe, and the answers looked up in it.

Built by :mod:`api.scored` from one batched call per model over every ticker, it keeps each
ticker's signal as the JSON the per-request path would produce (rank left out), so a request for
any subset, in any order, is a lookup plus a rank within the request: no model call, no pydantic
validation per ticker. An answer from it equals the per-request answer for the same features and
versions (``tests/test_gateway_scored.py`` proves it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson
from pydantic import TypeAdapter

from api.compose import ComposedSignals, ranks_of
from api.data_quality import Flag, flag_signals
from api.features import SERVED_VIEWS, FeatureSnapshot
from api.metrics import GatewayMetrics
from feature_repo.contract import ENSEMBLE

_AS_OF: Final = TypeAdapter(datetime | None)
MAX_SUBSETS: Final = 128
# Answers kept per snapshot, by (tickers in order, their data-quality flags): clients that poll the
# same portfolio get the same bytes but for the request id. A flood of new sets restarts it.
MAX_ANSWERS: Final = 256
# Stands for the request id in a memoised body. It holds a NUL, which JSON escapes and no valid
# request id (``[A-Za-z0-9._-]``), ticker or model version contains, so it is found exactly once.
_REQUEST_ID_MARK: Final = "\x00request_id\x00"
_MARK_BYTES: Final = orjson.dumps(_REQUEST_ID_MARK)[1:-1]


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
    # Per served view, each ticker's line of the feature digest (:meth:`FeatureSnapshot.digest`), so a
    # lookup's digest is one sha256 over the lines of its tickers, not a subset built per request.
    _digest_lines: dict[str, list[bytes]] = field(default_factory=dict, repr=False)
    _answers: dict[tuple[tuple[str, ...], tuple[Flag | None, ...]], Answer] = field(default_factory=dict, repr=False)
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
            _digest_lines={
                view: [f"{view}\t{t}\t{row}\n".encode() for t, row in zip(features.tickers, digests, strict=True)]
                for view in SERVED_VIEWS
                if (digests := features.row_digests.get(view)) is not None
            },
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
class Answer:
    """A lookup's response body around its request id, with what its audit row and metrics need."""

    head: bytes
    tail: bytes
    digest: str
    score_counts: tuple[tuple[str, np.ndarray, float], ...]

    def body(self, request_id: str) -> bytes:
        """The ``SignalsPublic`` JSON bytes with ``request_id`` (validated ``[A-Za-z0-9._-]``: no escaping)."""
        return b"".join((self.head, request_id.encode(), self.tail))

    def observe(self, metrics: GatewayMetrics) -> None:
        """Count the scores served, per model, as the per-request path does."""
        for model, counts, total in self.score_counts:
            metrics.signal_score.add_counts(model, counts, total)


@dataclass(frozen=True)
class Lookup:
    """The answer to one request from a snapshot: the rows of its tickers, in its order."""

    snapshot: ScoredSnapshot
    tickers: tuple[str, ...]
    positions: list[int]

    @property
    def model_versions(self) -> dict[str, str]:
        return self.snapshot.model_versions

    @property
    def degraded(self) -> bool:
        return self.snapshot.degraded

    def answer(self, flags: Mapping[str, Flag], metrics: GatewayMetrics) -> Answer:
        """The answer with each signal's ``data_quality`` from ``flags``, memoised on the snapshot."""
        answers = self.snapshot._answers
        key = (self.tickers, tuple(flags.get(t) for t in self.tickers))
        found = answers.get(key)
        if found is None:
            found = self._answer(flags, metrics)
            if len(answers) >= MAX_ANSWERS:
                answers.clear()
            answers[key] = found
        return found

    def _answer(self, flags: Mapping[str, Flag], metrics: GatewayMetrics) -> Answer:
        body = orjson.dumps(flag_signals(self.public(_REQUEST_ID_MARK), dict(flags)))
        head, mark, tail = body.partition(_MARK_BYTES)
        if not mark or _MARK_BYTES in tail:
            raise AssertionError("the request id mark must stand exactly once in a signals body")
        snap, positions = self.snapshot, self.positions
        served = [*snap.scores.items(), (ENSEMBLE, snap.blended)]
        counts = []
        for model, values in served:
            data = np.asarray([v for i in positions if (v := values[i]) is not None], dtype="float64")
            counts.append((model, metrics.signal_score.counts_of(data), float(data.sum())))
        return Answer(head=head, tail=tail, digest=self.digest(), score_counts=tuple(counts))

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
        """The feature digest the audit records: that of a read of the same tickers' rows, in order."""
        lines = self.snapshot._digest_lines
        return hashlib.sha256(b"".join(lines[view][i] for view in lines for i in self.positions)).hexdigest()
