"""What the kubelet and the cluster would read from the rendered chart: workloads, Services, env values.

Everything here is pure (no docker): it turns rendered objects into the facts a ``docker run``
needs, and raises :class:`SpecError` naming the workload and container on anything it cannot
honour, so an unsupported spec fails loudly instead of running differently than on a cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

NAMESPACE_SUFFIXES: Final = ("", ".{ns}", ".{ns}.svc", ".{ns}.svc.cluster.local")
# KServe's RawDeployment Service in front of a predictor: port 80 to the container's first port.
PREDICTOR_SERVICE_PORT: Final = 80
_VAR_REF: Final = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class SpecError(ValueError):
    """A rendered container spec the translation cannot honour; the message names the workload."""


@dataclass(frozen=True)
class Workload:
    """One container of a rendered pod template, with the object that carries it."""

    key: str  # short name: the object name without the release prefix (gateway, technical, materialize)
    kind: str
    name: str
    namespace: str
    pod: Mapping[str, Any]
    container: Mapping[str, Any]
    labels: Mapping[str, str]

    @property
    def label(self) -> str:
        """How messages name it: ``Deployment/pos-portfolio-os-gateway container gateway``."""
        return f"{self.kind}/{self.name} container {self.container['name']}"

    def error(self, message: str) -> SpecError:
        return SpecError(f"{self.label}: {message}")

    def port(self, ref: int | str) -> int:
        """A container port by number or by name (a probe's ``port: http``)."""
        for port in self.container.get("ports", []):
            if ref in (port["containerPort"], port.get("name")):
                return int(port["containerPort"])
        if isinstance(ref, int):
            return ref
        raise self.error(f"no container port named {ref!r}")

    @property
    def container_ports(self) -> list[int]:
        return [int(p["containerPort"]) for p in self.container.get("ports", [])]


def _pod_template(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, str]] | None:
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        template = spec["template"]
        return template["spec"], template.get("metadata", {}).get("labels", {})
    if kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        return template["spec"], template.get("metadata", {}).get("labels", {})
    if kind == "InferenceService":
        return spec["predictor"], spec["predictor"].get("labels", {})
    return None


def short_name(name: str, release_prefix: str) -> str:
    return name.removeprefix(release_prefix)


def workloads(objects: Iterable[Mapping[str, Any]], release_prefix: str) -> dict[str, Workload]:
    """Every single-container workload of the render, keyed by its short name."""
    found: dict[str, Workload] = {}
    for obj in objects:
        template = _pod_template(obj)
        if template is None:
            continue
        pod, labels = template
        meta = obj["metadata"]
        containers = pod.get("containers", [])
        if len(containers) != 1 or pod.get("initContainers"):
            raise SpecError(f"{obj['kind']}/{meta['name']}: one container and no init containers expected")
        key = short_name(meta["name"], release_prefix)
        found[key] = Workload(key, obj["kind"], meta["name"], meta.get("namespace", ""), pod, containers[0], labels)
    return found


@dataclass(frozen=True)
class Route:
    """A Service address (every DNS form of it) and the workload port behind it."""

    hosts: tuple[str, ...]
    port: int
    workload: str
    container_port: int


def _hosts(name: str, namespace: str) -> tuple[str, ...]:
    return tuple(name + suffix.format(ns=namespace) for suffix in NAMESPACE_SUFFIXES)


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def routes(objects: Iterable[Mapping[str, Any]], found: Mapping[str, Workload]) -> list[Route]:
    """The Services of the render (and KServe's predictor Services) as routes to workload ports."""
    out: list[Route] = []
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Service":
            selector = obj["spec"].get("selector", {})
            for workload in (w for w in found.values() if w.kind != "CronJob" and _selects(selector, w.labels)):
                for port in obj["spec"]["ports"]:
                    target = workload.port(port.get("targetPort", port["port"]))
                    out.append(Route(_hosts(meta["name"], meta["namespace"]), port["port"], workload.key, target))
        elif obj["kind"] == "InferenceService":
            workload = next(w for w in found.values() if w.kind == "InferenceService" and w.name == meta["name"])
            if not workload.container_ports:
                raise workload.error("a predictor without a container port")
            hosts = _hosts(f"{meta['name']}-predictor", meta["namespace"])
            out.append(Route(hosts, PREDICTOR_SERVICE_PORT, workload.key, workload.container_ports[0]))
    return out


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(one, text)


def _cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1Gi``, ``1000000``) in bytes."""
    text = str(quantity)
    for unit, factor in _MEMORY_UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def _resource_field(workload: Workload, ref: Mapping[str, Any]) -> str:
    resource, divisor = ref["resource"], ref.get("divisor", "1")
    section, _, name = resource.partition(".")
    value = workload.container.get("resources", {}).get(section, {}).get(name)
    if value is None:
        raise workload.error(f"resourceFieldRef {resource} is not set on the container")
    if name == "cpu":
        return str(math.ceil(_cpu(value) / _cpu(divisor)))  # the kubelet rounds cpu up
    return str(math.ceil(memory_bytes(value) / memory_bytes(divisor)))


Stores = Mapping[str, Mapping[str, Mapping[str, str]]]


def _value_from(workload: Workload, source: Mapping[str, Any], objects: Stores) -> str | None:
    for kind, store in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if kind in source:
            ref = source[kind]
            value = objects[store].get(ref["name"], {}).get(ref["key"])
            if value is None and not ref.get("optional", False):
                raise workload.error(f"{store} {ref['name']!r} key {ref['key']!r} is not provided")
            return value
    if "resourceFieldRef" in source:
        return _resource_field(workload, source["resourceFieldRef"])
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        fields = {"metadata.namespace": workload.namespace, "metadata.name": workload.name, "status.podIP": "127.0.0.1"}
        if path not in fields:
            raise workload.error(f"fieldRef {path} is not supported here")
        return fields[path]
    raise workload.error(f"unsupported valueFrom {sorted(source)}")


def container_env(
    workload: Workload, secrets: Mapping[str, Mapping[str, str]], configmaps: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: in order, ``$(VAR)`` expanded, refs resolved."""
    stores = {"Secret": secrets, "ConfigMap": configmaps}
    if workload.container.get("envFrom"):
        raise workload.error("envFrom is not supported here")
    env: dict[str, str] = {}
    for item in workload.container.get("env", []):
        if "valueFrom" in item:
            value = _value_from(workload, item["valueFrom"], stores)
            if value is None:
                continue
            env[item["name"]] = value
        else:
            env[item["name"]] = expand(str(item.get("value", "")), env)
    return env


def configmaps(objects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Rendered ConfigMaps: name -> data."""
    return {o["metadata"]["name"]: dict(o.get("data", {})) for o in objects if o["kind"] == "ConfigMap"}


def secret_refs(found: Iterable[Workload]) -> set[tuple[str, str]]:
    """Every (Secret, key) the workloads read: what the test values must provide."""
    refs: set[tuple[str, str]] = set()
    for workload in found:
        for item in workload.container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional", False):
                refs.add((ref["name"], ref["key"]))
    return refs
