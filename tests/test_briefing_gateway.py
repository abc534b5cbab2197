"""``GET /v1/briefing`` on the shared SYNTHETIC repo: bounds named, non-sessions resolved, scope, audit, client."""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import datetime as dt
import itertools
import shutil
from pathlib import Path

import httpx
from sqlalchemy import select

from api.client import PortfolioOSClient
from api.db import audit_log
from feature_repo.briefing import BriefingIndex, briefing_dir, index_file
from tests.gateway_fixtures.fixtures import (  # noqa: F401
    assert_error_body,
    auth,
    gateway,
    make_gateway,
    new_key,
    settings_for,
    shared_env,
)

SECTIONS = ["signals", "regime", "drift", "decay", "sentiment", "anomalies"]


def _index(shared_env) -> BriefingIndex:
    return BriefingIndex.model_validate_json(index_file(shared_env.data_dir).read_text())


def test_the_last_session_by_default_with_every_section_and_the_regime(make_gateway, shared_env) -> None:
    client = make_gateway()
    answer = client.get("/v1/briefing", headers=auth(new_key(client)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    index = _index(shared_env)
    assert body["session"] == body["facts"]["session"] == index.last.isoformat() and body["date"] is None
    assert [s["name"] for s in body["sections"]] == SECTIONS
    assert body["regime"]["benchmark"] == "SYNTH-INDEX"  # the market view the regime route reads
    regime = next(s for s in body["sections"] if s["name"] == "regime")["sentences"][0]
    assert regime.startswith(f"The SYNTH-INDEX regime on {body['regime']['state']['date']}")
    anomalies = next(s for s in body["sections"] if s["name"] == "anomalies")["sentences"][0]
    assert f"of {body['facts']['anomalies']['tickers_scored']} tickers" in anomalies
    for section in body["sections"]:
        assert all(f"- {s}" in body["markdown"] for s in section["sentences"])


def test_a_date_outside_the_data_names_the_bound_and_a_holiday_gets_the_session_before(
    make_gateway, shared_env
) -> None:
    client = make_gateway()
    key = new_key(client)
    index = _index(shared_env)
    before = client.get("/v1/briefing", params={"date": "1990-01-01"}, headers=auth(key))
    assert index.first.isoformat() in assert_error_body(before, 422, "validation_error")["message"]
    after = client.get("/v1/briefing", params={"date": "2999-12-31"}, headers=auth(key))
    assert index.last.isoformat() in assert_error_body(after, 422, "validation_error")["message"]
    # The day after the first session, if not a session itself, is described by the first session.
    sessions = sorted(index.sessions)
    gap = next((a + dt.timedelta(days=1), a) for a, b in itertools.pairwise(sessions) if (b - a).days > 1)
    weekend = client.get("/v1/briefing", params={"date": gap[0].isoformat()}, headers=auth(key))
    assert weekend.status_code == 200 and weekend.json()["session"] == gap[1].isoformat()
    assert "is not a session" in weekend.json()["markdown"]
    bad = client.get("/v1/briefing", params={"date": "2023-02-30"}, headers=auth(key))
    assert_error_body(bad, 422, "validation_error")


def test_the_scope_is_required_and_the_answer_is_audited(make_gateway) -> None:
    client = make_gateway()
    narrow = new_key(client, scopes=("signals:read",))
    assert_error_body(client.get("/v1/briefing", headers=auth(narrow)), 403, "forbidden")
    key = new_key(client, tenant="briefed")
    answer = client.get("/v1/briefing", headers=auth(key))
    assert answer.status_code == 200
    services = client.app.state.services  # type: ignore[attr-defined]
    services.audit.close()  # flushes the queued rows
    with services.engine.connect() as connection:
        rows = connection.execute(select(audit_log).where(audit_log.c.tenant == "briefed")).mappings().all()
    assert [r["route"] for r in rows] == ["/v1/briefing"]
    assert rows[0]["request_id"] == answer.json()["request_id"]


def test_no_stored_facts_is_a_503_that_says_which_job_to_run(shared_env, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(shared_env.data_dir, data_dir)
    shutil.rmtree(briefing_dir(data_dir))
    env = type(shared_env)(data_dir=data_dir, tickers=shared_env.tickers, servers=shared_env.servers)
    with gateway(settings_for(env, tmp_path)) as client:
        answer = client.get("/v1/briefing", headers=auth(new_key(client)))
    assert "briefing-facts" in assert_error_body(answer, 503, "briefing_unavailable")["message"]


def test_the_typed_client_reads_the_briefing(make_gateway, shared_env) -> None:
    client = make_gateway()
    key = new_key(client)

    def forward(request: httpx.Request) -> httpx.Response:
        answer = client.get(request.url.path, params=dict(request.url.params), headers=dict(request.headers))
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    with PortfolioOSClient("http://gateway", key, transport=httpx.MockTransport(forward)) as typed:
        briefing = typed.briefing(_index(shared_env).last)
    assert briefing.session == _index(shared_env).last and briefing.sections[0].name == "signals"
