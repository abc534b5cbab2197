"""Local Ray, as the train stage starts it, listens on 127.0.0.1 only and shuts down cleanly."""

from __future__ import annotations

import psutil
import pytest

from training.ray_runtime import ray_session

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_and_leaves_nothing_behind() -> None:
    # Other tests' session servers (Redis, model servers) may already be children of this process.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with ray_session(num_cpus=1) as session:
        assert session.address == "local" and session.cpus == 1
        children = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        listening = {
            (p.name(), c.laddr.ip) for p in children for c in p.connections("tcp") if c.status == psutil.CONN_LISTEN
        }
    assert any("gcs_server" in name or "raylet" in name for name, _ in listening), listening
    assert {ip for _, ip in listening} <= LOOPBACK, listening
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
