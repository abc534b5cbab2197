"""Security of the rendered chart: restricted pods, Secret references only, NetworkPolicies, checkov."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.chart_tools import (
    CHART,
    CI_VALUES,
    RELEASE,
    checkov_bin,
    object_id,
    pod_specs,
    render,
    rendered_objects,
)

SECRET_ENV: Final = re.compile(r"(PEPPER|PASSWORD|TOKEN|API_KEY|DATABASE_URL|REGISTRY_URL|FEAST_REDIS|SECRET)")
SKIPS_FILE: Final = CHART / "checkov-skips.yaml"


def all_pods(values: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template rendered with ``values``."""
    return [(f"{object_id(o)} {where}", spec) for o in rendered_objects(values) for where, spec in pod_specs(o)]


def container_problems(name: str, c: dict[str, Any], empty_dirs: set[str]) -> list[str]:
    """What keeps one container from the restricted profile (empty when it complies)."""
    problems: list[str] = []
    sc = c.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{name}: root filesystem is writable")
    if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
        problems.append(f"{name}: capabilities are not dropped")
    if sc.get("privileged"):
        problems.append(f"{name}: privileged")
    if sc.get("runAsNonRoot") is not True or sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: container context is not restricted")
    tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not tmp or tmp[0]["name"] not in empty_dirs:
        problems.append(f"{name}: /tmp is not an emptyDir")
    resources = c.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind, {})):
            problems.append(f"{name}: {kind} lack cpu or memory")
    return problems


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_pods_are_restricted(values: Path) -> None:
    """Pod Security "restricted" everywhere, read-only root with an emptyDir /tmp, requests and limits."""
    problems: list[str] = []
    for where, pod in all_pods(values):
        ctx = pod.get("securityContext", {})
        if ctx.get("runAsNonRoot") is not True or not isinstance(ctx.get("runAsUser"), int) or ctx["runAsUser"] < 1:
            problems.append(f"{where}: pod must run as a numeric non-root user")
        if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: the service account token is mounted")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{where}: host namespaces")
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"]:
            problems += container_problems(f"{where}/{c['name']}", c, empty_dirs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_one_service_account_per_component(values: Path) -> None:
    """Every pod names a ServiceAccount of the release that does not automount a token."""
    objs = rendered_objects(values)
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    used: dict[str, set[str]] = {}
    for obj in objs:
        for where, pod in pod_specs(obj):
            if obj["kind"] == "Pod":  # the helm test pod runs without API access on the default account
                continue
            account = pod.get("serviceAccountName")
            assert account in accounts, f"{object_id(obj)} {where}: service account {account!r} not rendered"
            used.setdefault(account, set()).add(obj["metadata"]["labels"]["app.kubernetes.io/component"])
    for account, components in used.items():
        assert len(components) == 1, f"{account} is shared by {components}"
        assert accounts[account]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_no_secret_values_in_the_chart(values: Path) -> None:
    """No Secret object is rendered and secret settings come only from secretKeyRef."""
    objs = rendered_objects(values)
    assert not [o for o in objs if o["kind"] == "Secret"], "the chart must not create Secrets"
    in_chart_redis = f"{RELEASE}-portfolio-os-redis:6379"
    for obj in objs:
        for where, pod in pod_specs(obj):
            for c in pod["containers"]:
                for env in c.get("env", []):
                    if not SECRET_ENV.search(env["name"]):
                        continue
                    if "value" in env:  # only the dev in-chart Redis, which has no password
                        assert in_chart_redis in env["value"] and "password" not in env["value"], env
                        continue
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{object_id(obj)} {where}: {env['name']} is not a Secret reference"


def test_secret_references_follow_values() -> None:
    """A Secret name set in values appears only as a reference; an empty one leaves the variable out."""
    objs = rendered_objects(
        None,
        "--set",
        "secrets.apiKeyPepper.existingSecret=pepper-sentinel",
        "--set",
        "secrets.databaseUrl.existingSecret=",
    )
    text = render(
        None,
        "--set",
        "secrets.apiKeyPepper.existingSecret=pepper-sentinel",
        "--set",
        "secrets.databaseUrl.existingSecret=",
    )
    assert text.count("pepper-sentinel") == 1
    gateway = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway"))
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PORTFOLIO_OS_API_KEY_PEPPER"]["valueFrom"]["secretKeyRef"] == {
        "name": "pepper-sentinel",
        "key": "api-key-pepper",
    }
    assert "PORTFOLIO_OS_DATABASE_URL" not in env


def test_network_policies_default_deny_and_allow_the_paths() -> None:
    """Default deny in the namespace; gateway port in; DNS, model servers, Feast, stores out."""
    default_values = next(v for v in CI_VALUES if v.name == "default-values.yaml")
    objs = [o for o in rendered_objects(default_values) if o["kind"] == "NetworkPolicy"]
    policies = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objs}
    deny = next(o for o in objs if o["metadata"]["name"].endswith("-default-deny"))
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = next(o for o in objs if o["metadata"]["name"].endswith("-allow-dns"))
    assert {p["port"] for p in dns["spec"]["egress"][0]["ports"]} == {53}
    gateway = policies["gateway"]["spec"]
    assert gateway["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    egress_ports = {p["port"] for rule in gateway["egress"] for p in rule.get("ports", [])}
    assert {8080, 6566, 5432, 6379} <= egress_ports
    targets = {
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for rule in gateway["egress"]
        for peer in rule.get("to", [])
    }
    assert {"model-server", "feature-server"} <= targets
    model_ingress = policies["model-server"]["spec"]["ingress"][0]["from"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "gateway"
        for p in model_ingress
    )
    assert {"gateway", "model-server", "feature-server", "jobs"} <= set(policies)


# --- checkov --------------------------------------------------------------------------------------


def load_skips() -> dict[str, str]:
    """The chart's checkov skip list: check id -> reason."""
    entries = yaml.safe_load(SKIPS_FILE.read_text())["skips"]
    return {e["id"]: e["reason"] for e in entries}


def test_every_checkov_skip_has_a_reason() -> None:
    """Each skipped check names a real checkov Kubernetes id and says why it does not apply."""
    skips = load_skips()
    assert skips
    for check, reason in skips.items():
        assert re.fullmatch(r"CKV2?_K8S_\d+", check), check
        assert isinstance(reason, str) and len(reason.split()) >= 8, f"{check}: give a real reason"


def test_checkov_passes_on_every_scenario(tmp_path: Path) -> None:
    """checkov (offline) finds no failed check outside the justified skip list, and no skip is stale."""
    for values in CI_VALUES:
        (tmp_path / values.name).write_text(render(values))
    result = subprocess.run(
        [
            str(checkov_bin()),
            "--framework",
            "kubernetes",
            "--directory",
            str(tmp_path),
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"},
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert sum(r["summary"]["passed"] for r in reports) > 0, "checkov checked nothing"
    assert not any(r["summary"]["parsing_errors"] for r in reports)
    failed = {(f["check_id"], f["resource"], f["file_path"]) for r in reports for f in r["results"]["failed_checks"]}
    skips = load_skips()
    unexplained = sorted(f for f in failed if f[0] not in skips)
    assert not unexplained, "checkov failures without a justified skip:\n" + "\n".join(map(str, unexplained))
    stale = set(skips) - {f[0] for f in failed}
    assert not stale, f"skips that no longer fail (remove them from checkov-skips.yaml): {sorted(stale)}"
