"""The kubelet's view of the rendered chart, translated to ``docker run``: no Docker engine needed.

The end-to-end tests (tests/test_containers_e2e.py) run these translations; here each rule is
checked on the real render (dev values + ci/container-values.yaml): what is kept exactly and the
few values that move (ports to free loopback ports, ``--host 0.0.0.0`` to 127.0.0.1).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from tests.containers import chart
from tests.containers.kube import SpecError, expand
from tests.containers.stack import REDIS, Release, plan
from tests.containers.translate import LOOPBACK, DockerRun

SERVERS = ("gateway", "feature-server", "mlflow", "technical", "ensemble", "allocator", "sentiment-text")
JOBS = ("materialize", "retraining")


@pytest.fixture(scope="module")
def objects():
    return chart.render(None)


@pytest.fixture
def release(objects, tmp_path: Path) -> Release:
    return plan(objects, tmp_path, "pos-ct-unit", stand_ins={REDIS: 16379})


def _option(run: DockerRun, flag: str) -> list[str]:
    return [run.options[i + 1] for i, o in enumerate(run.options[:-1]) if o == flag]


def test_every_workload_the_issue_names_is_rendered(release: Release) -> None:
    assert set(SERVERS + JOBS) <= set(release.workloads), sorted(release.workloads)


@pytest.mark.parametrize("key", SERVERS + JOBS)
def test_command_and_args_are_the_rendered_ones_but_for_ports_and_the_bind_address(release: Release, key) -> None:
    workload = release.workloads[key]
    run = release.run(key)
    rendered = [*workload.container.get("command", []), *workload.container.get("args", [])]
    assert [run.entrypoint, *run.args] == [
        LOOPBACK if t == "0.0.0.0" else str(run.ports.get(int(t), t)) if t.isdigit() else t for t in rendered
    ]
    assert "0.0.0.0" not in run.args  # every server binds loopback only
    if run.ports:  # a server: its every port moved to the free loopback port planned for it
        assert set(run.ports.values()).isdisjoint(run.ports) or run.ports == {p: p for p in run.ports}
        assert all(str(port) in run.args for port in run.ports.values()), (run.args, run.ports)


@pytest.mark.parametrize("key", SERVERS + JOBS)
def test_user_read_only_root_network_and_security_follow_the_security_context(release: Release, key) -> None:
    run = release.run(key)
    ctx = {**release.workloads[key].pod["securityContext"], **release.workloads[key].container["securityContext"]}
    assert _option(run, "--user") == [f"{ctx['runAsUser']}:{ctx['runAsGroup']}"]
    fs_group = release.workloads[key].pod["securityContext"].get("fsGroup")  # predictors carry none
    assert _option(run, "--group-add") == ([str(fs_group)] if fs_group is not None else [])
    assert ("--read-only" in run.options) is bool(ctx["readOnlyRootFilesystem"])
    assert _option(run, "--network") == ["host"] and "--no-healthcheck" in run.options
    assert _option(run, "--cap-drop") == ["ALL"] and _option(run, "--security-opt") == ["no-new-privileges"]


@pytest.mark.parametrize("key", SERVERS + JOBS)
def test_empty_dirs_are_tmpfs_and_claims_are_volumes(release: Release, key) -> None:
    workload = release.workloads[key]
    run = release.run(key)
    volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
    mounts = _option(run, "--mount")
    for mount in workload.container["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = f"destination={mount['mountPath']}"
        (spec,) = [m for m in mounts if target in m.split(",")]
        if "emptyDir" in volume:
            assert spec.startswith("type=tmpfs,")
        elif "persistentVolumeClaim" in volume:
            name = release.cluster.volume(volume["persistentVolumeClaim"]["claimName"])
            assert spec == f"type=volume,source={name},{target},volume-nocopy" and name in run.volumes
        else:
            assert spec.startswith("type=bind,") and spec.endswith(",readonly")


def test_gateway_env_resolves_the_secret_expands_variables_and_routes_services(release: Release) -> None:
    run = release.run("gateway")
    ports = release.cluster.host_ports
    assert run.env["PORTFOLIO_OS_API_KEY_PEPPER"] == release.cluster.secrets[chart.TEST_SECRET]["api-key-pepper"]
    # $(PORTFOLIO_OS_REDIS_URL) expanded, and the Redis Service's port moved to the stand-in's.
    assert run.env["PORTFOLIO_OS_RATE_LIMIT_STORAGE"] == run.env["PORTFOLIO_OS_REDIS_URL"]
    assert run.env["PORTFOLIO_OS_REDIS_URL"] == "redis://pos-portfolio-os-redis:16379/0"
    urls = json.loads(run.env["PORTFOLIO_OS_MODEL_URLS"])
    technical = ports[("technical", 8080)]
    assert (
        urls["technical"] == f"http://pos-portfolio-os-technical-predictor.portfolio-os.svc.cluster.local:{technical}"
    )
    assert run.env["PORTFOLIO_OS_MLFLOW_URL"] == f"http://pos-portfolio-os-mlflow:{ports[('mlflow', 5000)]}"
    hosts = _option(run, "--add-host") + [o.split("=", 1)[1] for o in run.options if o.startswith("--add-host=")]
    assert "pos-portfolio-os-mlflow:127.0.0.1" in hosts
    assert "pos-portfolio-os-technical-predictor.portfolio-os.svc.cluster.local:127.0.0.1" in hosts
    # Every other value is exactly the rendered one.
    rendered = {e["name"]: e.get("value") for e in release.workloads["gateway"].container["env"]}
    moved = {"PORTFOLIO_OS_REDIS_URL", "PORTFOLIO_OS_RATE_LIMIT_STORAGE", "PORTFOLIO_OS_MODEL_URLS"}
    moved |= {"PORTFOLIO_OS_MLFLOW_URL", "PORTFOLIO_OS_TRACKING_URI", "PORTFOLIO_OS_API_KEY_PEPPER"}
    assert {k: v for k, v in run.env.items() if k not in moved} == {k: v for k, v in rendered.items() if k not in moved}


def test_secrets_never_appear_on_the_docker_command_line(release: Release) -> None:
    run = release.run("gateway")
    pepper = run.env["PORTFOLIO_OS_API_KEY_PEPPER"]
    assert pepper not in " ".join(run.argv()) and run.process_env()["PORTFOLIO_OS_API_KEY_PEPPER"] == pepper


def test_readiness_probes_keep_their_path_and_move_their_port(release: Release) -> None:
    gateway = release.run("gateway").probe
    assert gateway is not None and gateway.kind == "http" and gateway.path == "/readyz"
    assert gateway.port == release.cluster.host_ports[("gateway", 8000)]  # `port: http` resolved by name
    ensemble = release.run("ensemble").probe
    assert ensemble is not None and ensemble.path == "/v2/models/ensemble/ready"
    assert ensemble.url == f"http://127.0.0.1:{release.cluster.host_ports[('ensemble', 8080)]}/v2/models/ensemble/ready"


def test_omp_threads_come_from_the_cpu_limit_rounded_up(release: Release) -> None:
    limits = {k: release.workloads[k].container["resources"]["limits"]["cpu"] for k in ("ensemble", "allocator")}
    assert limits == {"ensemble": "500m", "allocator": "2"}
    assert release.run("ensemble").env["OMP_NUM_THREADS"] == "1"
    assert release.run("allocator").env["OMP_NUM_THREADS"] == "2"


def test_the_run_config_map_is_a_read_only_file_with_the_registry_service_routed(release: Release, tmp_path) -> None:
    run = release.run("retraining")
    (spec,) = [m for m in _option(run, "--mount") if "destination=/config" in m]
    folder = Path(spec.split("source=")[1].split(",")[0])
    assert folder.is_relative_to(tmp_path)
    written = folder / "run.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    rendered = release.cluster.configmaps["pos-portfolio-os-run-config"]["run.yaml"]
    mlflow = release.cluster.host_ports[("mlflow", 5000)]
    assert written.read_text() == rendered.replace("pos-portfolio-os-mlflow:5000", f"pos-portfolio-os-mlflow:{mlflow}")
    config = yaml.safe_load(written.read_text())
    assert config["registry"]["tracking_uri"] == f"http://pos-portfolio-os-mlflow:{mlflow}"
    assert f"--add-host=pos-portfolio-os-mlflow:{LOOPBACK}" in run.options


def test_a_missing_secret_names_the_workload_and_container(objects, tmp_path) -> None:
    release = plan(objects, tmp_path, "pos-ct-unit", stand_ins={REDIS: 16379})
    release.cluster.secrets = {}
    with pytest.raises(SpecError, match=r"Deployment/pos-portfolio-os-gateway container gateway: Secret"):
        release.run("gateway")


def test_an_unknown_probe_port_name_names_the_workload(objects, tmp_path) -> None:
    release = plan(objects, tmp_path, "pos-ct-unit", stand_ins={REDIS: 16379})
    workload = release.workloads["gateway"]
    container = {**workload.container, "readinessProbe": {"httpGet": {"path": "/readyz", "port": "nope"}}}
    release.workloads["gateway"] = type(workload)(**{**workload.__dict__, "container": container})
    with pytest.raises(SpecError, match=r"gateway container gateway: no container port named 'nope'"):
        release.run("gateway")


def test_kubelet_variable_expansion() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$(MISSING)", env) == "$(MISSING)"  # undefined references stay as written
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes


def test_the_image_manifest_becomes_chart_image_values(tmp_path) -> None:
    manifest = {"gateway": "portfolio-os/gateway:abc", "model-server": "portfolio-os/model-server:def"}
    assert chart.image_values(manifest) == {
        "images": {
            "gateway": {"repository": "portfolio-os/gateway", "tag": "abc"},
            "modelServer": {"repository": "portfolio-os/model-server", "tag": "def"},
        }
    }
    declared = chart.chart_image_keys()
    with pytest.raises(chart.ManifestError, match=r"lacks .*run `make images`"):
        chart.write_image_values({"gateway": "portfolio-os/gateway:abc"}, tmp_path / "images.yaml")
    full = {name: f"local/{name}:t" for name in declared}
    written = yaml.safe_load(chart.write_image_values(full, tmp_path / "images.yaml").read_text())
    assert set(written["images"]) == declared
    with pytest.raises(chart.ManifestError, match="no repository:tag"):
        chart.image_values({"gateway": "no-tag"})
