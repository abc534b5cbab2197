"""Grafana dashboards: schema, datasource variable, generated == committed, and every expr's series exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from monitoring import contract, dashboards
from monitoring.contract import exposed_series_names
from monitoring.promql import metric_names
from monitoring.rules import check_rules, load_rules

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "serving-contract.md"
FILES = sorted(dashboards.DASHBOARDS_DIR.glob("*.json"))


def _boards() -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())) for p in FILES]


def test_the_contract_list_matches_docs_serving_contract():
    section = CONTRACT.read_text().split("## Prometheus metric names", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(portfolio_os_[a-z_]+)", section))
    histograms = set(re.findall(r"`(portfolio_os_[a-z_]+)(?:\{[^`]*\})?`\s*\(histogram\)", section))
    assert documented == contract.GATEWAY_METRICS | contract.MODEL_SERVER_METRICS
    assert histograms == contract.HISTOGRAMS


def test_committed_dashboards_are_the_generated_ones_and_the_chart_has_copies():
    rendered = dashboards.render_all()
    assert {p.name for p in FILES} == set(rendered), "run: python -m monitoring dashboards write"
    for path in FILES:
        assert path.read_text() == rendered[path.name], f"{path.name} is stale"
        assert (dashboards.CHART_DASHBOARDS_DIR / path.name).read_text() == rendered[path.name]
    assert {p.name for p in dashboards.CHART_DASHBOARDS_DIR.glob("*.json")} == set(rendered)


@pytest.mark.parametrize(("name", "board"), _boards())
def test_dashboard_schema_and_datasource(name, board):
    assert board["schemaVersion"] >= 36 and board["uid"] and board["panels"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    text = json.dumps(board)
    for uid in re.findall(r'"uid": "([^"]*)"', text):
        assert uid in ("${datasource}", board["uid"]), f"{name}: hard-coded datasource uid {uid}"
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_every_expr_selects_only_exported_series():
    recorded = {r["record"] for g in load_rules()["groups"] for r in g["rules"] if "record" in r}
    allowed = exposed_series_names() | recorded
    used: set[str] = set()
    for name, board in _boards():
        for expr in dashboards.exprs(board):
            names = metric_names(expr)
            assert names, f"{name}: no metric in {expr!r}"
            assert names <= allowed, f"{name}: unknown series {names - allowed} in {expr!r}"
            used |= names
    # The dashboards cover every concern: gateway, models, monitoring's own series.
    assert {
        "portfolio_os_drift_share",
        "portfolio_os_model_rolling_rank_ic",
        "portfolio_os_gateway_tenant_requests_total",
    } <= used


def test_the_checker_catches_a_typo():
    typo = "sum(rate(portfolio_os_gateway_request_total[5m]))"
    assert metric_names(typo) - exposed_series_names() == {"portfolio_os_gateway_request_total"}


def test_every_expr_parses_with_promtool(tmp_path):
    """Each dashboard expr becomes a recording rule; promtool's parser rejects invalid PromQL."""
    exprs = [e.replace("$__rate_interval", "5m") for _, b in _boards() for e in dashboards.exprs(b)]
    rules = [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = check_rules(path)
    assert result.returncode == 0, result.stdout + result.stderr
