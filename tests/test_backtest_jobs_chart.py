"""The chart's backtest jobs: a KubeRay RayCluster the gateway submits to, or nothing (jobs stay queued).

Rendered with the real ``helm`` and checked against the upstream RayCluster CRD (``../shared/crds``).
"""

from __future__ import annotations

import json
from typing import Any

from api.settings import BacktestSettings
from monitoring.contract import GATEWAY_METRICS
from monitoring.dashboards import CHART_DASHBOARDS_DIR as CHART_DASHBOARDS
from tests.chart_tools import CI_VALUES, is_custom_resource, rendered_objects, validate_custom_resource

SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in CI_VALUES}


def _gateway_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    gateway = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"))
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_production_renders_a_ray_cluster_the_gateway_submits_to() -> None:
    objs = rendered_objects(SCENARIOS["production"])
    (cluster,) = [o for o in objs if o["kind"] == "RayCluster"]
    assert validate_custom_resource(cluster) == []
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "dashboard", "containerPort": 8265, "protocol": "TCP"} in head["ports"]
    assert any(e["name"] == "PORTFOLIO_OS_DATABASE_URL" for e in head["env"])  # the job writes its result there
    # The allocator strategy loads the champion from MLflow and its features from Feast's registry.
    assert {"PORTFOLIO_OS_TRACKING_URI", "PORTFOLIO_OS_REGISTRY_URL"} <= {e["name"] for e in head["env"]}
    env = _gateway_env(objs)
    name = cluster["metadata"]["name"]
    assert env["PORTFOLIO_OS_BACKTESTS__EXECUTOR"] == "ray"
    assert env["PORTFOLIO_OS_BACKTESTS__RAY_ADDRESS"] == f"http://{name}-head-svc.portfolio-os.svc.cluster.local:8265"
    assert env["PORTFOLIO_OS_BACKTESTS__MAX_JOBS_PER_TENANT"] == "3"
    # The settings the gateway would build from that environment are valid.
    prefix = "PORTFOLIO_OS_BACKTESTS__"
    settings = BacktestSettings(**{k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)})
    assert settings.executor == "ray" and settings.python == "python"
    # Job Submission needs no Kubernetes API: no Role or binding, and no token in the gateway's pods.
    assert not [o for o in objs if o["kind"] in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}]
    gateway = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"))
    assert gateway["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    gateway_out = [r for r in policies["pos-portfolio-os-gateway"]["spec"]["egress"] if r.get("ports")]
    assert any(p["port"] == 8265 for r in gateway_out for p in r["ports"])
    # An allocator backtest is checked against MLflow at submit (api/backtest_allocator.py).
    assert env["PORTFOLIO_OS_MLFLOW_URL"].startswith("http") and any(
        p["port"] == 5000 for r in gateway_out for p in r["ports"]
    )
    ray_out = [r for r in policies["pos-portfolio-os-ray"]["spec"]["egress"] if r.get("ports")]
    assert any(p["port"] == 5000 for r in ray_out for p in r["ports"])  # MLflow, for the allocator champion
    ray_in = policies["pos-portfolio-os-ray"]["spec"]["ingress"]
    assert any(
        r.get("ports") == [{"protocol": "TCP", "port": 8265}]
        and r["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        for r in ray_in
    )


def test_by_default_no_cluster_is_rendered_and_jobs_stay_queued() -> None:
    objs = rendered_objects(SCENARIOS["default"])
    assert not [o for o in objs if o["kind"] == "RayCluster"]
    env = _gateway_env(objs)
    assert env["PORTFOLIO_OS_BACKTESTS__EXECUTOR"] == "off" and "PORTFOLIO_OS_BACKTESTS__RAY_ADDRESS" not in env


def test_an_existing_ray_cluster_is_used_instead_of_rendering_one() -> None:
    address = "http://ray.platform.svc:8265"
    objs = rendered_objects(SCENARIOS["production"], "--set", f"backtests.rayAddress={address}")
    assert not [o for o in objs if o["kind"] == "RayCluster"]
    assert _gateway_env(objs)["PORTFOLIO_OS_BACKTESTS__RAY_ADDRESS"] == address
    assert all(validate_custom_resource(o) == [] for o in objs if is_custom_resource(o))


def test_the_gateway_dashboard_shows_backtest_jobs_from_exported_series() -> None:
    board = json.loads((CHART_DASHBOARDS / "portfolio-os-gateway.json").read_text())
    (panel,) = [p for p in board["panels"] if p.get("title", "").startswith("Backtest jobs")]
    exprs = [t["expr"] for t in panel["targets"]]
    assert exprs == [
        "max by (state) (portfolio_os_gateway_backtest_jobs)",
        "sum by (outcome) (increase(portfolio_os_gateway_backtest_submissions_total[$__rate_interval]))",
    ]
    assert {"portfolio_os_gateway_backtest_jobs", "portfolio_os_gateway_backtest_submissions_total"} <= GATEWAY_METRICS
