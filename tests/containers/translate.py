"""One rendered container spec as a ``docker run`` command line, the way the kubelet would start it.

Kept exactly: image, command (the entrypoint), args, env (secrets and ConfigMaps resolved,
``$(VAR)`` expanded), working directory, ``runAsUser:runAsGroup`` with fsGroup as a supplementary
group, ``--read-only`` for ``readOnlyRootFilesystem``, dropped capabilities, no privilege
escalation, memory limits, a tmpfs per ``emptyDir``, a docker volume per PVC, ConfigMap volumes
as read-only bind mounts.

Changed, and only these values (the pod network is the host's loopback here, shared by every pod):
- each container port becomes a free 127.0.0.1 port, wherever the spec names it (args, probes);
- a Service address in an env value keeps its host name (mapped to 127.0.0.1 with ``--add-host``,
  as cluster DNS would map it to the Service) and gets the port of the workload behind it;
- ``--host 0.0.0.0`` becomes ``--host 127.0.0.1``: on a cluster 0.0.0.0 is the pod's own network
  namespace, here it would be every interface of the machine, and the project binds loopback only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.containers.kube import Route, Workload, container_env, expand, memory_bytes

LOOPBACK: Final = "127.0.0.1"
HOST_FLAGS: Final = frozenset({"--host", "--bind", "-h"})
ALL_INTERFACES: Final = "0.0.0.0"
TEST_LABEL: Final = "io.portfolio-os.test-run"


@dataclass(frozen=True)
class Probe:
    """A readiness probe with its port already moved: an HTTP GET, a command, or a TCP connect."""

    kind: str  # "http", "exec" or "tcp"
    path: str = ""
    port: int = 0
    command: tuple[str, ...] = ()
    period_s: float = 10.0
    timeout_s: float = 1.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"


@dataclass
class Cluster:
    """What the pods share: names of this run, host ports, Services, Secrets, ConfigMaps, a files folder."""

    prefix: str
    files_dir: Path
    host_ports: dict[tuple[str, int], int]  # (workload key, container port) -> 127.0.0.1 port
    routes: list[Route]
    secrets: Mapping[str, Mapping[str, str]]
    configmaps: Mapping[str, Mapping[str, str]]
    cpus: float = float(os.cpu_count() or 1)

    def volume(self, claim: str) -> str:
        return f"{self.prefix}-pvc-{claim}"

    def container(self, key: str) -> str:
        return f"{self.prefix}-{key}"


@dataclass
class DockerRun:
    """A translated container: its ``docker run`` arguments, readiness probe and the volumes it needs."""

    workload: Workload
    name: str
    image: str
    options: list[str]
    entrypoint: str | None
    args: list[str]
    env: dict[str, str]
    probe: Probe | None
    volumes: list[str] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port

    def argv(self, *, detach: bool = True) -> list[str]:
        """``docker run ...`` for this container (env passed by name only, values from :meth:`process_env`)."""
        argv = ["docker", "run", *(["--detach"] if detach else []), "--name", self.name, *self.options]
        for name in self.env:
            argv += ["--env", name]  # the value comes from the docker client's environment: never in argv
        if self.entrypoint is not None:
            argv += ["--entrypoint", self.entrypoint]
        return [*argv, self.image, *self.args]

    def process_env(self) -> dict[str, str]:
        """The docker client's environment: this process's plus the container's values."""
        return {**os.environ, **self.env}


def _security(workload: Workload) -> list[str]:
    pod_ctx: Mapping[str, Any] = workload.pod.get("securityContext", {})
    ctx: dict[str, Any] = {**pod_ctx, **workload.container.get("securityContext", {})}
    if "runAsUser" not in ctx:
        raise workload.error("no runAsUser: the image's user would decide who runs it")
    if ctx.get("runAsNonRoot") and int(ctx["runAsUser"]) == 0:
        raise workload.error("runAsNonRoot with runAsUser 0")
    options = ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
    if "fsGroup" in pod_ctx:
        options += ["--group-add", str(pod_ctx["fsGroup"])]
    if ctx.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if ctx.get("privileged"):
        options.append("--privileged")
    for cap in ctx.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", cap]
    for cap in ctx.get("capabilities", {}).get("add", []):
        options += ["--cap-add", cap]
    if ctx.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    return options


def _limits(workload: Workload, cpus: float) -> list[str]:
    limits = workload.container.get("resources", {}).get("limits", {})
    options = []
    if "memory" in limits:
        options += ["--memory", str(memory_bytes(limits["memory"]))]
    if "cpu" in limits:
        # docker refuses a CPU quota above the machine's cores; a cluster node would have them.
        text = str(limits["cpu"])
        value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        options += ["--cpus", f"{min(value, cpus):g}"]
    return options


def _write_configmap(cluster: Cluster, workload: Workload, volume: Mapping[str, Any]) -> tuple[Path, set[str]]:
    """The ConfigMap's files in a folder of their own; a Service address in them is moved as in env."""
    source = volume["configMap"]
    data = cluster.configmaps.get(source["name"])
    if data is None:
        raise workload.error(f"ConfigMap {source['name']!r} (volume {volume['name']!r}) is not rendered")
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    folder = cluster.files_dir / workload.key / volume["name"]
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    hosts: set[str] = set()
    for item in items:
        path = folder / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        text, named = _route_env(data[item["key"]], cluster)
        hosts |= named
        path.write_text(text)
        path.chmod(int(item.get("mode", source.get("defaultMode", 0o644))))
    return folder, hosts


def _mounts(cluster: Cluster, workload: Workload) -> tuple[list[str], list[str], set[str]]:
    """(docker options, PVC volume names, Service hosts named in files) for every volumeMount."""
    volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
    options: list[str] = []
    claims: list[str] = []
    hosts: set[str] = set()
    for mount in workload.container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            raise workload.error(f"volumeMount {mount['name']!r} names no pod volume")
        if mount.get("subPath"):
            raise workload.error(f"volumeMount {mount['name']!r}: subPath is not supported here")
        target, read_only = mount["mountPath"], bool(mount.get("readOnly"))
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            spec = f"type=tmpfs,destination={target},tmpfs-mode=1777"
            options += ["--mount", spec + (f",tmpfs-size={memory_bytes(size)}" if size else "")]
        elif "persistentVolumeClaim" in volume:
            name = cluster.volume(volume["persistentVolumeClaim"]["claimName"])
            claims.append(name)
            # volume-nocopy: a PVC never receives the image's files at its mount path (docker's copy-up).
            spec = f"type=volume,source={name},destination={target},volume-nocopy"
            options += ["--mount", spec + (",readonly" if read_only else "")]
        elif "configMap" in volume:
            folder, named = _write_configmap(cluster, workload, volume)
            hosts |= named
            options += ["--mount", f"type=bind,source={folder},destination={target},readonly"]
        else:
            raise workload.error(f"volume {mount['name']!r}: only emptyDir, persistentVolumeClaim and configMap here")
    return options, claims, hosts


def _move_ports(tokens: Sequence[str], ports: Mapping[int, int]) -> list[str]:
    """Rewrite port values (a token that is exactly a container port) and ``--host 0.0.0.0``."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else ""
        if token == ALL_INTERFACES and previous in HOST_FLAGS:
            out.append(LOOPBACK)
        elif token.isdigit() and int(token) in ports:
            out.append(str(ports[int(token)]))
        else:
            out.append(token)
    return out


def _route_env(value: str, cluster: Cluster) -> tuple[str, set[str]]:
    """Give every Service address in an env value the host port of its workload; the hosts it names."""
    named: set[str] = set()
    for route in cluster.routes:
        port = cluster.host_ports.get((route.workload, route.container_port))
        if port is None:
            continue  # a Service whose workload this run does not start: left as rendered
        for host in sorted(route.hosts, key=len, reverse=True):
            # host[:port] not inside a longer name; an implicit port counts only for port 80 (http).
            pattern = rf"(?<![\w.-]){re.escape(host)}(?::(\d+))?(?![\w.-]|:\d)"

            def move(match: re.Match[str], route: Route = route, host: str = host, port: int = port) -> str:
                explicit = match.group(1)
                if (int(explicit) if explicit else 80) != route.port:
                    return match.group(0)
                named.add(host)
                return f"{host}:{port}"

            value = re.sub(pattern, move, value)
    return value, named


def _probe(workload: Workload, ports: Mapping[int, int]) -> Probe | None:
    spec = workload.container.get("readinessProbe")
    if spec is None:
        return None
    period, timeout = float(spec.get("periodSeconds", 10)), float(spec.get("timeoutSeconds", 1))
    if "httpGet" in spec:
        port = workload.port(spec["httpGet"]["port"])
        return Probe(
            "http",
            path=spec["httpGet"].get("path", "/"),
            port=ports.get(port, port),
            period_s=period,
            timeout_s=timeout,
        )
    if "exec" in spec:
        return Probe("exec", command=tuple(spec["exec"]["command"]), period_s=period, timeout_s=timeout)
    if "tcpSocket" in spec:
        port = workload.port(spec["tcpSocket"]["port"])
        return Probe("tcp", port=ports.get(port, port), period_s=period, timeout_s=timeout)
    raise workload.error(f"unsupported readiness probe {sorted(spec)}")


def translate(workload: Workload, cluster: Cluster) -> DockerRun:
    """The ``docker run`` of ``workload`` in ``cluster`` (host ports must be allocated for its ports)."""
    ports = {p: cluster.host_ports[(workload.key, p)] for p in workload.container_ports}
    env = container_env(workload, cluster.secrets, cluster.configmaps)
    hosts: set[str] = set()
    for name, value in env.items():
        env[name], named = _route_env(value, cluster)
        hosts |= named
    command = [expand(t, env) for t in workload.container.get("command", [])]
    args = [expand(t, env) for t in workload.container.get("args", [])]
    command, args = _move_ports(command, ports), _move_ports(args, ports)
    mounts, claims, file_hosts = _mounts(cluster, workload)
    hosts |= file_hosts
    # The kubelet ignores an image's HEALTHCHECK (the rendered probes decide): so does the test.
    options = ["--network", "host", "--no-healthcheck", "--label", f"{TEST_LABEL}={cluster.prefix}"]
    options += [f"--add-host={host}:{LOOPBACK}" for host in sorted(hosts)]
    options += _security(workload) + _limits(workload, cluster.cpus) + mounts
    if workload.container.get("workingDir"):
        options += ["--workdir", workload.container["workingDir"]]
    return DockerRun(
        workload=workload,
        name=cluster.container(workload.key),
        image=workload.container["image"],
        options=options,
        entrypoint=command[0] if command else None,
        args=[*command[1:], *args],
        env=env,
        probe=_probe(workload, ports),
        volumes=claims,
        ports=ports,
    )
