"""The scored universe: lookups equal per-request answers; builds, staleness and faults on an injected clock."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from api.db import audit_log
from feature_repo.schema import FEATURES_BY_VIEW, names
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo
from tests.clocks import Clock
from tests.gateway_fixtures.feast_repo import build_feature_repo
from tests.gateway_fixtures.fixtures import auth, make_gateway, new_key, shared_env  # noqa: F401
from tests.gateway_fixtures.servers import ModelServerProcess
from tests.servers import free_port

pytestmark = pytest.mark.slow
SCORED = {"enabled": True, "background": False, "max_age_seconds": 60.0}
# No row or answer cache: what a request reads must not depend on the wall clock.
NO_CACHES = {"feature_cache_seconds": 0, "score_cache_seconds": 0}


def _scored(client: TestClient, clock: Clock | None = None) -> Any:
    scored = client.app.state.services.scored  # type: ignore[attr-defined]
    if clock is not None:
        scored.clock = clock
    return scored


def _refresh(client: TestClient) -> bool:
    """One poll of the scored universe, run on the app's event loop."""
    return bool(client.portal.call(_scored(client).refresh))  # type: ignore[union-attr]


def _metric(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not exported")


def _signals(client: TestClient, key: str, tickers: list[str]) -> dict[str, Any]:
    response = client.get("/v1/signals", params={"tickers": ",".join(tickers)}, headers=auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _audit_row(client: TestClient, request_id: str) -> Any:
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.audit.flush()
    with services.engine.connect() as conn:
        return conn.execute(select(audit_log).where(audit_log.c.request_id == request_id)).one()


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def test_a_lookup_answers_exactly_what_the_models_answer_per_request(make_gateway, shared_env) -> None:
    per_request = make_gateway()
    scored = make_gateway(scored=SCORED)
    assert _refresh(scored)
    snapshot = _scored(scored).current
    assert sorted(snapshot.index) == shared_env.tickers  # the whole online universe, scored
    calls_before = _metric(scored, "portfolio_os_gateway_model_call_duration_seconds_count", model="technical")
    key_a, key_b = new_key(per_request), new_key(scored)
    # Any subset, in any order: ranks are within the request. The first set comes again at the end:
    # the scored gateway answers it from its memo of bodies, the same bytes but for the request id.
    sets = (shared_env.tickers[::-1], shared_env.tickers[1:4], [shared_env.tickers[2]], shared_env.tickers[::-1])
    for tickers in sets:
        expected, looked_up = _signals(per_request, key_a, tickers), _signals(scored, key_b, tickers)
        assert _without_request_id(looked_up) == _without_request_id(expected)
        assert looked_up["request_id"] != expected["request_id"]
        assert sorted(s["rank"] for s in looked_up["signals"]) == list(range(1, len(tickers) + 1))
        row_a, row_b = _audit_row(per_request, expected["request_id"]), _audit_row(scored, looked_up["request_id"])
        assert row_b.feature_snapshot_hash == row_a.feature_snapshot_hash
        assert row_b.model_versions == row_a.model_versions == looked_up["model_versions"]
        assert row_b.answer == looked_up  # the audit row holds the body as sent, its own request id included
    # Answered from the snapshot: no model was called for those requests.
    assert _metric(scored, "portfolio_os_gateway_model_call_duration_seconds_count", model="technical") == calls_before
    assert _metric(scored, "portfolio_os_gateway_scored_universe_lookups_total", outcome="hit") == len(sets)
    # Every score served is counted, per model, as the per-request path counts it (the repeat too).
    for model in ("technical", "ensemble"):
        for series in ("portfolio_os_gateway_signal_score_count", "portfolio_os_gateway_signal_score_sum"):
            assert _metric(scored, series, model=model) == pytest.approx(_metric(per_request, series, model=model))
    assert _metric(scored, "portfolio_os_gateway_scored_universe_tickers") == len(shared_env.tickers)


def test_allocations_read_their_features_from_the_snapshot(make_gateway, shared_env) -> None:
    per_request, scored = make_gateway(), make_gateway(scored=SCORED)
    assert _refresh(scored)
    body = {"universe": shared_env.tickers[:4], "capital": 1000.0}
    answers = []
    for client in (per_request, scored):
        response = client.post("/v1/allocations", json=body, headers=auth(new_key(client)))
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert _without_request_id(answers[1]) == _without_request_id(answers[0])
    reads = _metric(scored, "portfolio_os_gateway_feature_read_duration_seconds_count")
    scored.post("/v1/allocations", json=body, headers=auth(new_key(scored)))
    # The snapshot's rows were used: no further online read.
    assert _metric(scored, "portfolio_os_gateway_feature_read_duration_seconds_count") == reads
    # The same universe again is the same rows object (its digest and as_of computed once).
    universe, views = body["universe"], ("technical_features",)
    assert _scored(scored).features_for(universe, views) is _scored(scored).features_for(universe, views)


def test_an_unchanged_store_confirms_and_a_new_version_rebuilds(make_gateway, shared_env, tmp_path: Path) -> None:
    clock = Clock()
    client = make_gateway(scored=SCORED)
    scored = _scored(client, clock)
    assert _refresh(client)
    first = scored.current
    clock.now += 30
    assert _refresh(client) and scored.current is first and scored.age() == 0.0  # confirmed, not rebuilt
    newer = ModelServerProcess(["technical"], version="8", log_dir=tmp_path).start()
    try:
        newer.wait_ready()
        client.app.state.services.client().urls["technical"] = newer.url  # type: ignore[attr-defined]
        assert _refresh(client)
        assert scored.current is not first and scored.current.model_versions["technical"] == "8"
        body = _signals(client, new_key(client), shared_env.tickers[:2])
        assert body["model_versions"]["technical"] == "8"
    finally:
        newer.stop()


def _push_rows(data_dir: Path, ticker: str, event_time: pd.Timestamp, source: str) -> None:
    """Write ``ticker``'s rows into the online store at ``event_time`` (copies of ``source``'s values)."""
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    for view, features in FEATURES_BY_VIEW.items():
        refs = [f"{view}:{n}" for n in names(features)]
        row = repo.store.get_online_features(features=refs, entity_rows=[{"ticker": source}]).to_dict()
        values = {n: [math.nan if (v := row[n][0]) is None else float(v)] for n in names(features)}
        stamps = {"ticker": [ticker], "event_timestamp": [event_time], "created_timestamp": [event_time]}
        frame = pd.DataFrame({**stamps, **values})
        repo.store.write_to_online_store(feature_view_name=view, df=frame)


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A feature store of this module's own: its tests write new rows into it."""
    data_dir = tmp_path_factory.mktemp("scored") / "data"
    data_dir.mkdir()
    return data_dir, build_feature_repo(data_dir)


def test_a_model_down_during_a_build_keeps_the_previous_snapshot_until_it_is_stale(
    make_gateway, shared_env, own_store
) -> None:
    data_dir, tickers = own_store
    clock = Clock()
    client = make_gateway(data_dir=str(data_dir), scored=SCORED, **NO_CACHES)
    _scored(client, clock)
    key = new_key(client)
    assert _refresh(client)
    before = _signals(client, key, tickers[:3])
    # A materialisation: newer rows for a ticker; then the technical server goes away mid-build.
    _push_rows(data_dir, tickers[0], pd.Timestamp("2030-01-02", tz="UTC"), tickers[1])
    urls = client.app.state.services.client().urls  # type: ignore[attr-defined]
    live, urls["technical"] = urls["technical"], f"http://127.0.0.1:{free_port()}"
    clock.now += 10
    assert not _refresh(client)
    served = _signals(client, key, tickers[:3])
    assert _without_request_id(served) == _without_request_id(before)  # the previous snapshot, no 5xx
    assert served["as_of"] < "2030" and not served["degraded"]
    assert _metric(client, "portfolio_os_gateway_scored_universe_age_seconds") == 10.0
    assert _metric(client, "portfolio_os_gateway_scored_universe_build_seconds_count", outcome="failed") == 1
    # Past the age limit, each request calls the models itself and degrades as it always did.
    clock.now += 60
    stale = _signals(client, key, tickers[:3])
    assert stale["degraded"] and [(r["model"], r["code"]) for r in stale["reasons"]] == [
        ("technical", "connection_error")
    ]
    assert stale["as_of"].startswith("2030-01-02")  # the newer rows, read per request
    assert _metric(client, "portfolio_os_gateway_scored_universe_lookups_total", outcome="stale") == 1
    # The server back: the next poll builds from the new rows.
    urls["technical"] = live
    client.app.state.services.breakers["technical"].record_success()  # type: ignore[attr-defined]
    assert _refresh(client)
    fresh = _signals(client, key, tickers[:3])
    assert fresh["as_of"].startswith("2030-01-02") and not fresh["degraded"]


def test_a_ticker_missing_from_the_snapshot_is_scored_per_request(make_gateway, shared_env, own_store) -> None:
    data_dir, tickers = own_store
    client = make_gateway(data_dir=str(data_dir), scored=SCORED, **NO_CACHES)
    key = new_key(client)
    assert _refresh(client)
    _push_rows(data_dir, "NEWCO", pd.Timestamp("2031-03-04", tz="UTC"), tickers[2])
    body = _signals(client, key, [tickers[0], "NEWCO"])
    assert [s["ticker"] for s in body["signals"]] == [tickers[0], "NEWCO"] and not body["degraded"]
    assert _metric(client, "portfolio_os_gateway_scored_universe_lookups_total", outcome="missing") == 1
    assert _refresh(client)  # the new row changed the store's marker: rebuilt with NEWCO
    assert "NEWCO" in _scored(client).current.index
