"""Shared helpers of the chart tests: find helm and checkov, render the chart, validate custom resources.

Everything here runs offline: a real ``helm`` binary (installed by ``scripts/install_helm.py`` from
the Makefile's install step), the CRD schemas in ``../shared/crds`` and ``jsonschema``.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest
import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
CHART: Final = ROOT / "charts" / "portfolio-os"
CI_VALUES: Final = tuple(sorted((CHART / "ci").glob("*-values.yaml")))
RELEASE: Final = "pos"
NAMESPACE: Final = "portfolio-os"
KUBERNETES_VERSION: Final = "1.31.0"
INSTALL_HINT: Final = "run `make install` (the install step calls scripts/install_helm.py --dest .venv/bin)"
CHECKOV_HINT: Final = "run `make install` (the install step calls scripts/install_checkov.sh)"

# Custom resource kind -> (CRD file in the CRD folder, served version).
CRD_FILES: Final[dict[tuple[str, str], str]] = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve.serving.kserve.io_inferenceservices.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


def helm_bin() -> Path:
    """The helm binary: ``$HELM_BIN`` or ``.venv/bin/helm``; fails the test (never skips) when absent."""
    path = Path(os.environ.get("HELM_BIN") or ROOT / ".venv" / "bin" / "helm")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"helm not found at {path}: {INSTALL_HINT}, or point HELM_BIN at a helm binary")
    return path


def checkov_bin() -> Path:
    """checkov from its own venv (``.venv-checkov``); fails the test when absent."""
    path = Path(os.environ.get("CHECKOV_BIN") or ROOT / ".venv-checkov" / "bin" / "checkov")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"checkov not found at {path}: {CHECKOV_HINT}")
    return path


# Where the upstream CRD schemas are looked for, in order: the environment, beside this checkout
# (the project's workspace layout), and the workspace's fixed location for clones made elsewhere.
_CRD_PLACES = (ROOT.parent / "shared" / "crds", Path("/work/shared/crds"))


def crds_dir() -> Path:
    """The CRD folder: ``$PORTFOLIO_OS_CRDS_DIR``, else ``../shared/crds`` beside the repository."""
    explicit = os.environ.get("PORTFOLIO_OS_CRDS_DIR")
    if explicit:
        path = Path(explicit).resolve()
        if not path.is_dir():
            pytest.fail(f"PORTFOLIO_OS_CRDS_DIR={explicit} is not a folder of CRD schemas")
        return path
    for place in _CRD_PLACES:
        if place.is_dir():
            return place.resolve()
    # The schemas are not the project's to vendor: without them these checks cannot run here.
    pytest.skip(
        f"CRD schemas not found ({', '.join(map(str, _CRD_PLACES))}): set PORTFOLIO_OS_CRDS_DIR to validate "
        "InferenceService, RayJob, ServiceMonitor and PrometheusRule against their upstream CRDs"
    )


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm offline with the given arguments; on failure (with check) fail the test with its output."""
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent-cache", "HELM_CONFIG_HOME": "/nonexistent-config"}
    env.pop("KUBECONFIG", None)
    result = subprocess.run(
        [str(helm_bin()), *map(str, args)], capture_output=True, text=True, check=False, timeout=120, env=env
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def template_args(values: Path | None = None, *extra: str) -> list[str | Path]:
    """Arguments of ``helm template`` for the chart, with an optional values file."""
    args: list[str | Path] = [
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBERNETES_VERSION,
    ]
    if values is not None:
        args += ["--values", values]
    return [*args, *extra]


@functools.cache
def render(values: Path | None = None, *extra: str) -> str:
    """The rendered manifests of the chart with ``values`` (cached per arguments)."""
    return helm(*template_args(values, *extra)).stdout


def split_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a multi-document stream."""
    return [doc for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if doc]


def rendered_objects(values: Path | None = None, *extra: str) -> list[dict[str, Any]]:
    """The chart's objects rendered with ``values``, helm test hooks included."""
    return split_documents(render(values, *extra))


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template an object carries, custom resources included."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        yield "pod", spec
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield "template", spec["template"]["spec"]
    elif kind == "CronJob":
        yield "jobTemplate", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "InferenceService":
        yield "predictor", spec["predictor"]
    elif kind == "RayJob":
        yield "submitter", spec["submitterPodTemplate"]["spec"]
        yield "head", spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
            yield f"worker {group['groupName']}", group["template"]["spec"]


# --- custom resources against their CRD schemas -------------------------------------------------


def _to_json_schema(node: Any) -> Any:
    """An openAPIV3Schema as a strict JSON schema.

    - ``x-kubernetes-int-or-string`` becomes ``anyOf: [integer, string]``;
    - ``nullable: true`` admits null;
    - ``x-kubernetes-list-type: set`` requires unique items (``map`` keys are checked by the
      validator's ``x-kubernetes-list-map-keys`` keyword);
    - an object with ``properties`` and neither ``additionalProperties`` nor
      ``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false``: the API server
      would silently prune an unknown field, which hides typos, so the test rejects it;
    - ``x-kubernetes-validations`` (CEL) cannot be evaluated offline and are ignored.
    """
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if key != "x-kubernetes-validations"}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """``x-kubernetes-list-map-keys``: no two items share the same key tuple."""
    if not validator.is_type(instance, "array"):
        return
    seen: set[tuple[Any, ...]] = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(str(item.get(k)) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate list-map key {dict(zip(keys, key, strict=True))}")
            seen.add(key)


CrdValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys})


@dataclass(frozen=True)
class CrdSchema:
    """A served version of a CRD: its JSON schema and scope."""

    validator: Any
    namespaced: bool


@functools.cache
def crd_schema(api_version: str, kind: str) -> CrdSchema:
    """The validator of a custom resource kind, from the CRD file in the CRD folder."""
    file = crds_dir() / CRD_FILES[(api_version, kind)]
    if not file.is_file():
        pytest.fail(f"{file} is missing from the CRD folder (see ../shared/crds/README.md)")
    crd = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: the CRDs are MBs
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, file
    served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served", True)]
    assert served, f"{file.name} serves no version {version}"
    schema = _to_json_schema(copy.deepcopy(served[0]["schema"]["openAPIV3Schema"]))
    schema.setdefault("properties", {}).update(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _METADATA}
    )
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return CrdSchema(CrdValidator(schema), crd["spec"]["scope"] == "Namespaced")


_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_METADATA: Final = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 63, "pattern": _DNS_LABEL},
        "namespace": {"type": "string", "pattern": _DNS_LABEL},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def is_custom_resource(obj: dict[str, Any]) -> bool:
    """Whether the object is one of the custom resources the chart renders."""
    return (obj["apiVersion"], obj["kind"]) in CRD_FILES


def validate_custom_resource(obj: dict[str, Any]) -> list[str]:
    """Every schema error of a custom resource, as ``path: message`` lines (empty when valid)."""
    schema = crd_schema(obj["apiVersion"], obj["kind"])
    errors = sorted(schema.validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    if schema.namespaced and not obj["metadata"].get("namespace"):
        lines.append("metadata/namespace: a namespaced resource without a namespace")
    return lines


def object_id(obj: dict[str, Any]) -> str:
    """``Kind/name`` of an object, for messages."""
    return f"{obj['kind']}/{obj['metadata']['name']}"
