"""Answers looked up in a scored snapshot: memoised per tickers and flags, digests as a read gives them.

A hand-built snapshot of three tickers (SYNTHETIC values): no store, no model server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.data_quality import Flag
from api.features import SERVED_VIEWS, FeatureSnapshot
from api.metrics import GatewayMetrics
from api.scored_snapshot import Lookup, ScoredSnapshot

TICKERS = ["AAA", "BBB", "CCC"]
SESSION = datetime(2024, 3, 1, tzinfo=UTC)


def _snapshot() -> ScoredSnapshot:
    features = FeatureSnapshot(
        tickers=list(TICKERS),
        values={},
        event_times={v: [SESSION] * 3 for v in SERVED_VIEWS},
        row_digests={v: [f"{v}-{t}" for t in TICKERS] for v in SERVED_VIEWS},
    )
    blended = [0.2, 0.7, None]
    rows = [
        {"ticker": t, "score": s, "rank": None, "as_of": SESSION.isoformat()}
        for t, s in zip(TICKERS, blended, strict=True)
    ]
    return ScoredSnapshot(
        features=features,
        index={t: i for i, t in enumerate(TICKERS)},
        rows=rows,
        blended=blended,
        scores={"technical": [0.3, 0.6, None]},
        model_versions={"technical": "4", "ensemble": "2"},
        reasons=[],
        degraded=False,
        marker="m",
        served_versions={},
        digest=features.digest(),
        built_at=0.0,
        build_seconds=0.0,
        _as_of=[SESSION] * 3,
        _digest_lines={
            v: [f"{v}\t{t}\t{d}\n".encode() for t, d in zip(TICKERS, features.row_digests[v], strict=True)]
            for v in SERVED_VIEWS
        },
    )


def _lookup(snapshot: ScoredSnapshot, tickers: list[str]) -> Lookup:
    positions = snapshot.positions(tickers)
    assert positions is not None
    return Lookup(snapshot, tuple(tickers), positions)


def _flags(anomaly_of_a: float) -> dict[str, Flag]:
    return {"AAA": Flag(anomaly_of_a, "2024-03-01"), "BBB": Flag(0.0, "2024-03-01"), "CCC": Flag(None, None)}


def _body(lookup: Lookup, flags: dict[str, Flag], request_id: str, metrics: GatewayMetrics) -> dict[str, Any]:
    return dict(orjson.loads(lookup.answer(flags, metrics).body(request_id)))


def test_a_memoised_body_differs_only_by_request_id_and_follows_the_flags() -> None:
    snapshot, metrics = _snapshot(), GatewayMetrics()
    lookup = _lookup(snapshot, ["CCC", "BBB", "AAA"])
    first = _body(lookup, _flags(0.0), "req-1", metrics)
    assert first["request_id"] == "req-1"
    assert [(s["ticker"], s["rank"], s["data_quality"]) for s in first["signals"]] == [
        ("CCC", None, "unchecked"),
        ("BBB", 1, "ok"),
        ("AAA", 2, "ok"),
    ]
    again = _body(_lookup(snapshot, ["CCC", "BBB", "AAA"]), _flags(0.0), "req-2", metrics)
    assert {**again, "request_id": "req-1"} == first
    assert len(snapshot._answers) == 1  # the second request was the memo's
    # A new sentinel flag is another answer, never the memoised one.
    flagged = _body(lookup, _flags(1.0), "req-3", metrics)
    assert flagged["signals"][2]["data_quality"] == "anomaly"
    assert len(snapshot._answers) == 2


def test_a_lookups_digest_is_that_of_a_read_of_its_tickers_in_order() -> None:
    snapshot = _snapshot()
    for tickers in (["AAA", "BBB", "CCC"], ["CCC", "AAA"], ["BBB"]):
        positions = snapshot.positions(tickers)
        assert positions is not None
        read = snapshot.features.subset(positions, SERVED_VIEWS)
        assert _lookup(snapshot, tickers).digest() == read.digest()
    assert _lookup(snapshot, ["AAA", "BBB"]).digest() != _lookup(snapshot, ["BBB", "AAA"]).digest()


def test_every_answer_counts_its_scores_even_from_the_memo() -> None:
    snapshot, metrics = _snapshot(), GatewayMetrics()
    lookup = _lookup(snapshot, ["AAA", "BBB", "CCC"])
    for _ in range(3):
        lookup.answer(_flags(0.0), metrics).observe(metrics)
    counted = {
        (s.name, s.labels["model"]): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
        if s.name in ("portfolio_os_gateway_signal_score_count", "portfolio_os_gateway_signal_score_sum")
    }
    assert counted[("portfolio_os_gateway_signal_score_count", "technical")] == 6  # two scores, three answers
    assert counted[("portfolio_os_gateway_signal_score_sum", "technical")] == pytest.approx(3 * (0.3 + 0.6))
    assert counted[("portfolio_os_gateway_signal_score_count", "ensemble")] == 6
