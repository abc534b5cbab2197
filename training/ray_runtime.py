"""Starting and stopping Ray: local on 127.0.0.1 by default, a cluster when ``RAY_ADDRESS`` is set.

Locally Ray must never listen beyond loopback. Ray 2.60 picks the node's address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before ray is imported (``_node_ip_address`` is
silently replaced), and it turns on token auth, writing ``~/.ray/auth_token``; the local session
disables auth instead of leaving a token in the user's home. On a KubeRay cluster (``RAY_ADDRESS``
set, e.g. inside a ``RayJob``) none of that applies: the cluster's own settings rule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from feature_repo.telemetry import set_defaults, telemetry_off

LOCAL_ENV: Final[dict[str, str]] = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "1",
    # Tune's console reporter prints a table per trial update; the pipeline prints its own summary.
    "RAY_AIR_NEW_OUTPUT": "0",
}


@dataclass(frozen=True)
class RaySession:
    """Where tuning runs: the address (``local`` or the cluster's) and the CPUs Ray reports."""

    address: str
    cpus: int


def cluster_address() -> str | None:
    """The Ray cluster to join, from ``RAY_ADDRESS``; None for a local Ray."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    return address or None


@contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[RaySession]:
    """Start (or join) Ray for the duration of the block and shut it down afterwards.

    Args:
        num_cpus: CPUs for a local Ray; None uses every core. Ignored when joining a cluster.

    Yields:
        The session's address and total CPUs.
    """
    address = cluster_address()
    telemetry_off()  # Ray's usage stats among them, local or on a cluster
    if address is None:
        set_defaults(LOCAL_ENV)
    import ray

    if ray.is_initialized():
        # A caller (a test, a notebook) already owns a Ray session: use it, leave it running.
        yield RaySession("existing", ray_cpus())
        return
    if address is None:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield RaySession(address or "local", ray_cpus())
    finally:
        ray.shutdown()


def ray_cpus() -> int:
    """CPUs of the running Ray session."""
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return int(resources.get("CPU", 1))
