"""The Helm chart renders, lints and validates offline for every CI scenario, and keeps the contract.

Real helm (``helm lint --strict``, ``helm template``), ``kubernetes-validate`` for built-in kinds and
the upstream CRD schemas in ``../shared/crds`` for InferenceService, RayJob, ServiceMonitor,
PodMonitor and PrometheusRule.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

import kubernetes_validate
import pytest
import yaml

from tests.chart_tools import (
    CHART,
    CI_VALUES,
    KUBERNETES_VERSION,
    NAMESPACE,
    ROOT,
    helm,
    is_custom_resource,
    object_id,
    pod_specs,
    rendered_objects,
    template_args,
    validate_custom_resource,
)
from training.__main__ import build_parser
from training.pipeline import STAGES

CONTRACT: Final = (ROOT / "docs" / "serving-contract.md").read_text()
SCENARIOS: Final = {p.name.removesuffix("-values.yaml"): p for p in CI_VALUES}
# The model server entry points the chart may start, one per InferenceService key; an entry point
# listed as future has no module yet and must stay disabled in every scenario (none at present).
FUTURE_ENTRY_POINTS: Final[frozenset[str]] = frozenset()
SERVING_ENTRY_POINTS: Final = frozenset(
    {"technical", "fundamental", "sentiment_signal", "ensemble", "allocator", "sentiment_text"}
)
GATEWAY_MODULE: Final = "api"
GATEWAY_PORT: Final = 8000
MODEL_PORT: Final = 8080


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objs if o["kind"] == kind]


def containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object id, container) of every container of every pod template."""
    return [
        (f"{object_id(o)} {where}", c)
        for o in objs
        for where, spec in pod_specs(o)
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    ]


# --- scenarios, lint, schema validation -----------------------------------------------------------


def test_ci_scenarios_cover_the_documented_installs() -> None:
    """default, production, dev and minimal scenarios exist under ci/."""
    assert {"default", "production", "dev", "minimal"} <= set(SCENARIOS)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(values: Path) -> None:
    """`helm lint --strict` passes with every scenario."""
    result = helm("lint", "--strict", CHART, "--values", values, "--kube-version", KUBERNETES_VERSION)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_builtin_objects_validate_against_kubernetes(values: Path) -> None:
    """Every built-in object validates strictly against the Kubernetes 1.31 OpenAPI schemas."""
    objs = rendered_objects(values)
    builtin = [o for o in objs if not is_custom_resource(o)]
    assert builtin, "nothing rendered"
    errors = []
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{object_id(obj)}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{object_id(obj)}: {obj['apiVersion']} {obj['kind']} is neither built in nor a known CRD")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_custom_resources_validate_against_crds(values: Path) -> None:
    """Every custom resource validates against its CRD's openAPIV3Schema (unknown fields rejected)."""
    errors = [
        f"{object_id(o)}: {line}"
        for o in rendered_objects(values)
        if is_custom_resource(o)
        for line in validate_custom_resource(o)
    ]
    assert not errors, "\n".join(errors)


def test_crd_validation_catches_a_wrong_field() -> None:
    """The CRD check is not vacuous: a typo and a wrong type in an InferenceService are reported."""
    isvc = by_kind(rendered_objects(SCENARIOS["default"]), "InferenceService")[0]
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["minReplica"] = 1
    broken["spec"]["predictor"]["maxReplicas"] = "three"
    text = "\n".join(validate_custom_resource(broken))
    assert "'minReplica' was unexpected" in text
    assert "spec/predictor/maxReplicas" in text


def test_scenarios_render_what_they_promise() -> None:
    """Add-ons are off by default, production turns monitoring and ingress on, minimal is the gateway only."""
    kinds = {name: {o["kind"] for o in rendered_objects(path)} for name, path in SCENARIOS.items()}
    addons = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Ingress", "RayJob"}
    assert not addons & kinds["default"]
    assert {"InferenceService", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds["default"]
    assert addons <= kinds["production"]
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds["minimal"]
    assert not {"InferenceService", "CronJob", "NetworkPolicy"} & kinds["minimal"]
    dev = rendered_objects(SCENARIOS["dev"])
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in by_kind(dev, "Deployment")}
    assert {"redis", "mlflow"} <= components
    dashboards = [o for o in rendered_objects(SCENARIOS["production"]) if o["kind"] == "ConfigMap"]
    assert any(o["metadata"]["labels"].get("grafana_dashboard") == "1" for o in dashboards)


def test_every_model_is_on_by_default() -> None:
    """technical, fundamental, sentiment_signal, ensemble, allocator and sentiment_text are all served."""
    isvcs = by_kind(rendered_objects(SCENARIOS["default"]), "InferenceService")
    models = {o["metadata"]["labels"]["portfolio-os.io/model"] for o in isvcs}
    assert models == {"technical", "fundamental", "sentiment-signal", "ensemble", "allocator", "sentiment-text"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["inferenceServices"]["models"]) == SERVING_ENTRY_POINTS
    assert all(values["inferenceServices"]["models"][name]["enabled"] for name in SERVING_ENTRY_POINTS)
    text = next(o for o in isvcs if o["metadata"]["labels"]["portfolio-os.io/model"] == "sentiment-text")
    (container,) = text["spec"]["predictor"]["containers"]
    # A 22.7M-parameter transformer on CPU: a whole core and a gibibyte at least, threads sized to its limit.
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    threads = next(e for e in container["env"] if e["name"] == "OMP_NUM_THREADS")
    assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"


# --- values.schema.json rejects bad values --------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gateway.replicas=two", "at '/gateway/replicas': got string, want integer"),
        ("gateway.bogus=1", "additional properties 'bogus' not allowed"),
        ("images.gateway.tag=latest", "/images/gateway/tag"),
        ("inferenceServices.models.technical.canaryTrafficPercent=150", "/canaryTrafficPercent"),
        ("environment=staging", "/environment"),
        ("gateway.extraEnv.PORTFOLIO_OS_API_KEY_PEPPER=oops", "invalid propertyName 'PORTFOLIO_OS_API_KEY_PEPPER'"),
    ],
)
def test_values_schema_rejects_wrong_values(override: str, message: str) -> None:
    """A wrong type, an unknown key, a `latest` tag or a secret in plain env fails with a clear message."""
    result = helm(*template_args(None, "--set", override), check=False)
    assert result.returncode != 0, f"--set {override} rendered"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_values_schema_is_closed_at_every_level() -> None:
    """Every object with properties forbids unknown keys and requires all of them (draft-07)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    problems: list[str] = []

    def walk(node: dict[str, Any], path: str, in_items: bool = False) -> None:
        # List items (Kubernetes tolerations) keep Kubernetes' own optional fields; maps elsewhere are closed.
        if "properties" in node:
            if node.get("additionalProperties") is not False:
                problems.append(f"{path or '/'}: additionalProperties is not false")
            if "required" not in node or (not in_items and sorted(node["required"]) != sorted(node["properties"])):
                problems.append(f"{path or '/'}: required does not list every property")
            for key, child in node["properties"].items():
                walk(child, f"{path}/{key}", in_items)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]", True)

    walk(schema, "")
    assert not problems, "\n".join(problems)


def test_values_file_is_documented() -> None:
    """values.yaml starts with the schema modeline and every key carries a comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=values.schema.json"
    undocumented, block_indent = [], None
    for number, line in enumerate(lines, start=1):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:  # inside a block scalar (runConfig): its text, not keys
            if not line.strip() or indent > block_indent:
                continue
            block_indent = None
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(\s|$)", line)
        if not match:
            continue
        if line.rstrip().endswith(("|", ">")):
            block_indent = indent
        previous = lines[number - 2].strip() if number > 1 else ""
        if not (previous.startswith("#") or "#" in line.split(":", 1)[1]):
            undocumented.append(f"line {number}: {line.strip()}")
    assert not undocumented, "keys without a comment:\n" + "\n".join(undocumented)


# --- chart metadata and conventions ---------------------------------------------------------------


def test_chart_metadata() -> None:
    """apiVersion v2 and appVersion equal to the project version in pyproject.toml."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_labels_selectors_and_names(values: Path) -> None:
    """helm.sh/chart never in selectors, selectors match pod labels, names fit 63 characters."""
    for obj in rendered_objects(values):
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert obj["metadata"].get("namespace") in (None, NAMESPACE), object_id(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", object_id(obj)
        spec = obj.get("spec", {})
        selector = spec.get("selector", {})
        match = selector.get("matchLabels", selector if obj["kind"] == "Service" else {})
        assert "helm.sh/chart" not in match, object_id(obj)
        assert "app.kubernetes.io/version" not in match, object_id(obj)
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            pod_labels = spec["template"]["metadata"]["labels"]
            assert match.items() <= pod_labels.items(), object_id(obj)
        if obj["kind"] == "Service":
            pods = [
                d
                for d in by_kind(rendered_objects(values), "Deployment")
                if match.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert pods, f"{object_id(obj)} selects no Deployment"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_images_are_pinned(values: Path) -> None:
    """Every image has an explicit tag or digest, never `latest`."""
    for where, container in containers(rendered_objects(values)):
        image = container["image"]
        ref = image.rsplit("/", 1)[-1]
        assert ":" in ref or "@sha256:" in image, f"{where}: {image} has no tag"
        assert not ref.endswith(":latest"), f"{where}: {image}"


# --- the serving contract -------------------------------------------------------------------------


def test_contract_entry_points_match_the_chart() -> None:
    """The model names of the chart are exactly the `python -m serving.<name>` entry points of the contract."""
    documented = set(re.findall(r"serving\.([a-z_]+)", CONTRACT))
    assert documented == SERVING_ENTRY_POINTS
    assert f"python -m {GATEWAY_MODULE} --host 127.0.0.1 --port {GATEWAY_PORT}" in CONTRACT
    assert f"--http_port` (default {MODEL_PORT})" in CONTRACT


def test_entry_point_modules() -> None:
    """Every model the chart can enable has its module; the ones still to come are off everywhere."""
    for name in SERVING_ENTRY_POINTS - FUTURE_ENTRY_POINTS:
        assert (ROOT / "serving" / f"{name}.py").is_file(), name
    assert (ROOT / GATEWAY_MODULE / "__main__.py").is_file()
    for values in CI_VALUES:
        served = {
            o["spec"]["predictor"]["containers"][0]["command"][2]
            for o in by_kind(rendered_objects(values), "InferenceService")
        }
        for name in FUTURE_ENTRY_POINTS:
            assert f"serving.{name}" not in served, f"{values.name} enables serving.{name}, which does not exist yet"


def _accepted_flags(module: str) -> set[str]:
    """The long options ``python -m <module> --help`` documents (the real parser, run as the chart runs it)."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(re.findall(r"--[a-z_][a-z0-9_-]*", result.stdout))


def test_chart_arguments_are_accepted_by_the_entry_points() -> None:
    """Each flag the chart passes to a container is one its entry point parses."""
    objs = rendered_objects(SCENARIOS["production"])
    model_flags = {
        a for o in by_kind(objs, "InferenceService") for a in o["spec"]["predictor"]["containers"][0]["command"]
        if a.startswith("--")
    }  # fmt: skip
    assert model_flags and model_flags <= _accepted_flags("serving.technical")
    gateway = next(d for d in by_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-gateway"))
    gateway_flags = {a for a in gateway["spec"]["template"]["spec"]["containers"][0]["command"] if a.startswith("--")}
    assert gateway_flags and gateway_flags <= _accepted_flags(GATEWAY_MODULE)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_gateway_matches_the_contract(values: Path) -> None:
    """python -m api --host 0.0.0.0 --port 8000, probes on /healthz and /readyz, model URLs of the ISVCs."""
    objs = rendered_objects(values)
    gateway = next(d for d in by_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-gateway"))
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", GATEWAY_MODULE, "--host", "0.0.0.0", "--port", str(GATEWAY_PORT)]
    assert [p["containerPort"] for p in container["ports"]] == [GATEWAY_PORT]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    for name in ("MODEL_URLS", "TRACKING_URI", "MLFLOW_URL", "ENVIRONMENT", "DATA_DIR"):
        assert f"PORTFOLIO_OS_{name}" in env
    urls = json.loads(env["PORTFOLIO_OS_MODEL_URLS"]["value"])
    isvcs = {o["metadata"]["name"]: o for o in by_kind(objs, "InferenceService")}
    assert len(urls) == len(isvcs)
    for model, url in urls.items():
        host = re.fullmatch(r"http://([a-z0-9-]+)-predictor\.[a-z0-9-]+\.svc\.cluster\.local", url)
        assert host and host.group(1) in isvcs, url
        assert isvcs[host.group(1)]["metadata"]["annotations"]["portfolio-os.io/model-uri"].startswith(
            f"models:/{model}@"
        )


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_model_servers_match_the_contract(values: Path) -> None:
    """python -m serving.<name> --host 0.0.0.0 --http_port 8080, the champion reference, tracking URI."""
    for isvc in by_kind(rendered_objects(values), "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        (container,) = predictor["containers"]
        command = container["command"]
        assert command[:3] == ["python", "-m", command[2]] and command[2].startswith("serving.")
        model = command[2].removeprefix("serving.")
        assert model in SERVING_ENTRY_POINTS
        assert command[3:7] == ["--host", "0.0.0.0", "--http_port", str(MODEL_PORT)]
        assert [p["containerPort"] for p in container["ports"]] == [MODEL_PORT]
        alias = command[command.index("--alias") + 1]
        reference = f"models:/{model}@{alias}"
        assert isvc["metadata"]["annotations"]["portfolio-os.io/model-uri"] == reference
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PORTFOLIO_OS_MODEL_URI"] == reference
        assert env["PORTFOLIO_OS_TRACKING_URI"].startswith("http")
        assert predictor["maxReplicas"] >= 1 and predictor["minReplicas"] <= predictor["maxReplicas"]
        assert container["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{model}/ready"


def test_canary_traffic_reaches_the_inference_service() -> None:
    """canaryTrafficPercent below 100 is rendered; 100 (no canary) leaves the field out."""
    isvcs = {o["metadata"]["name"]: o for o in by_kind(rendered_objects(SCENARIOS["production"]), "InferenceService")}
    assert isvcs["pos-portfolio-os-technical"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in isvcs["pos-portfolio-os-ensemble"]["spec"]["predictor"]


def _training_commands(objs: list[dict[str, Any]]) -> list[list[str]]:
    commands = [c["command"] for _, c in containers(objs) if c.get("command", [])[:3] == ["python", "-m", "training"]]
    commands += [shlex.split(o["spec"]["entrypoint"]) for o in by_kind(objs, "RayJob")]
    return commands


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_job_commands_parse_with_the_real_cli(values: Path) -> None:
    """Every `python -m training ...` command the chart runs parses with training's own parser."""
    parser = build_parser()
    for command in _training_commands(rendered_objects(values)):
        assert command[:3] == ["python", "-m", "training"], command
        args = parser.parse_args(command[3:])
        assert str(args.config) == "/config/run.yaml"
        if args.command == "run":
            unknown = set(args.stages.split(",")) - set(STAGES)
            assert not unknown, f"{command}: unknown stages {unknown}"


def test_production_runs_materialisation_retraining_and_ray() -> None:
    """The production scenario carries the materialisation, retraining and RayJob entry points."""
    commands = _training_commands(rendered_objects(SCENARIOS["production"]))
    subcommands = {c[3] for c in commands}
    assert {"materialize", "run"} <= subcommands
    ray = by_kind(rendered_objects(SCENARIOS["production"]), "RayJob")
    assert ray and ray[0]["spec"]["entrypoint"].startswith("python -m training run --config /config/run.yaml --stages ")
    # The post-promotion guard: its own CronJob running the guard stage alone.
    assert any(c[3] == "run" and c[c.index("--stages") + 1] == "guard" for c in commands if "--stages" in c)


def test_gated_retraining_runs_the_monitoring_trigger_with_the_run_config() -> None:
    """retraining.gated: the CronJob asks monitoring whether to train, with a command its parser accepts."""
    from monitoring.__main__ import build_parser as monitoring_parser

    objs = rendered_objects(None, "--set", "retraining.enabled=true", "--set", "retraining.gated=true")
    (command,) = [
        c["command"]
        for _, c in containers(objs)
        if c.get("command", [])[:4] == ["python", "-m", "monitoring", "retrain"]
    ]
    args = monitoring_parser().parse_args(command[3:])
    assert args.launch and str(args.config) == "/config/run.yaml" and args.stages == "train"


def test_drift_job_is_off_by_default_and_runs_the_monitoring_entry_point() -> None:
    """`python -m monitoring drift` renders only when asked (the package has no drift command yet)."""
    default = containers(rendered_objects(SCENARIOS["default"]))
    assert not any(c.get("command", [])[2:3] == ["monitoring"] for _, c in default)
    objs = rendered_objects(None, "--set", "drift.enabled=true")
    drift = [c for _, c in containers(objs) if c.get("command", [])[:4] == ["python", "-m", "monitoring", "drift"]]
    assert len(drift) == 1


def test_prometheus_rules_use_contract_metric_names() -> None:
    """Every metric an alert rule queries is named in the serving contract."""
    (rule,) = by_kind(rendered_objects(SCENARIOS["production"]), "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"portfolio_os_[a-z_]+", e)}
    assert used, "no rule queries a Portfolio OS metric"
    for metric in used:
        assert f"`{metric}" in CONTRACT, f"{metric} is not in docs/serving-contract.md"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert len(alerts) >= 5
    assert any("circuit_state" in e for e in exprs) and any("model_ready" in e for e in exprs)


def test_skaffold_builds_every_image_and_wires_it_into_the_chart() -> None:
    """skaffold.yaml: an artifact per Dockerfile, Helm deploy, set values that exist, kind and production."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert config["apiVersion"].startswith("skaffold/v4beta")
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in config["build"]["artifacts"]}
    assert sorted(artifacts.values()) == sorted(f"docker/{p.name}" for p in (ROOT / "docker").glob("*.Dockerfile"))
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = release["setValueTemplates"]
    for key, template in templates.items():
        node = values
        for part in key.split("."):
            assert part in node, f"skaffold sets {key}, which values.yaml does not have"
            node = node[part]
        image = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_([a-z_]+)\}\}", template)
        assert image and image.group(2) in {re.sub(r"[^A-Za-z0-9]", "_", a) for a in artifacts}, template
    assert len(templates) == 2 * len(artifacts)
    profiles = {p["name"]: p for p in config["profiles"]}
    assert {"kind", "production"} <= set(profiles)
    assert profiles["kind"]["build"]["local"]["push"] is False
    for profile in profiles.values():
        for patch in profile.get("patches", []):
            for path in patch["value"] if patch["path"].endswith("valuesFiles") else []:
                assert (ROOT / path).is_file(), path
