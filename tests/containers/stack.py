"""The rendered release laid out for one test run: workloads, free loopback ports, Services, Secrets."""

from __future__ import annotations

import secrets as token_source
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tests.containers.chart import RELEASE_PREFIX, TEST_SECRET
from tests.containers.kube import SpecError, Workload, configmaps, routes, secret_refs, workloads
from tests.containers.translate import Cluster, DockerRun, translate
from tests.servers import free_port

# The in-chart Redis runs docker.io/library/redis, which cannot be pulled here: a real redis-server
# on the host stands in for its Service (tests.servers.redis_server), on its own free port.
REDIS: Final = "redis"


def run_prefix() -> str:
    """A unique name prefix for this run's containers and volumes."""
    return f"pos-ct-{uuid.uuid4().hex[:8]}"


def fill_secrets(refs: set[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """A value for every key the workloads read from the test Secret; a ref to another Secret is an error."""
    data: dict[str, dict[str, str]] = {}
    for name, key in sorted(refs):
        if name != TEST_SECRET:
            raise SpecError(f"Secret {name!r} (key {key!r}) is read but only {TEST_SECRET!r} is provided by the test")
        data.setdefault(name, {})[key] = token_source.token_hex(32)
    return data


@dataclass
class Release:
    """The workloads of a render and the cluster they run in."""

    workloads: dict[str, Workload]
    cluster: Cluster

    def run(self, key: str) -> DockerRun:
        if key not in self.workloads:
            raise SpecError(f"no rendered workload {key!r} (have {sorted(self.workloads)})")
        return translate(self.workloads[key], self.cluster)


def plan(
    objects: Sequence[Mapping[str, Any]],
    files_dir: Path,
    prefix: str,
    *,
    stand_ins: Mapping[str, int] | None = None,
) -> Release:
    """Free loopback ports for every container port, Services routed to them; ``stand_ins`` pin a
    workload's ports to a process the test runs on the host instead (its only container port)."""
    found = workloads(objects, RELEASE_PREFIX)
    host_ports: dict[tuple[str, int], int] = {}
    for key, workload in found.items():
        for port in workload.container_ports:
            pinned = (stand_ins or {}).get(key)
            host_ports[(key, port)] = pinned if pinned is not None else free_port()
    cluster = Cluster(
        prefix=prefix,
        files_dir=files_dir,
        host_ports=host_ports,
        routes=routes(objects, found),
        secrets=fill_secrets(secret_refs(found.values())),
        configmaps=configmaps(objects),
    )
    return Release(found, cluster)
