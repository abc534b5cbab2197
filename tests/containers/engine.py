"""The docker CLI for the container tests: start a translated container, wait on its probe, clean up.

Failures name the workload and container and carry the container's last log lines, so a test
that fails says which rendered spec broke and why.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import httpx

from tests.containers.translate import TEST_LABEL, DockerRun, Probe

ENGINE_HINT = (
    "start a Docker engine with scripts/docker_engine.sh and build the images with `make images` "
    "(or set PORTFOLIO_OS_SKIP_CONTAINERS=1 to skip the container tests on purpose)"
)
LOG_LINES = 40


class ContainerError(AssertionError):
    """A container that did not start, exited, or never became ready; the message says which and why."""


def cli(
    argv: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)


def docker(*args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run ``docker ARGS``; on failure (with check) raise with its output."""
    result = cli(["docker", *args], timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise ContainerError(f"docker {' '.join(args[:3])} ... failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def engine_problem() -> str | None:
    """Why no Docker engine answers (None when one does)."""
    if shutil.which("docker") is None:
        return f"no docker client on PATH: {ENGINE_HINT}"
    result = cli(["docker", "info", "--format", "{{.ServerVersion}}"])
    if result.returncode != 0:
        return f"no Docker engine answers ({result.stderr.strip()[:200]}): {ENGINE_HINT}"
    return None


def image_exists(image: str) -> bool:
    return cli(["docker", "image", "inspect", image]).returncode == 0


def logs_tail(name: str, lines: int = LOG_LINES) -> str:
    result = cli(["docker", "logs", "--tail", str(lines), name])
    return (result.stdout + result.stderr).strip() or "(no output)"


@dataclass(frozen=True)
class State:
    running: bool
    exit_code: int
    oom_killed: bool


def state(name: str) -> State:
    raw = json.loads(docker("inspect", "--format", "{{json .State}}", name))
    return State(bool(raw["Running"]), int(raw["ExitCode"]), bool(raw.get("OOMKilled")))


def failure(run: DockerRun, what: str) -> ContainerError:
    """An error naming the workload and container, with the container's last log lines."""
    where = f"{run.workload.label} ({run.name}, image {run.image})"
    return ContainerError(f"{where}: {what}\n--- last log lines ---\n{logs_tail(run.name)}")


def ensure_volumes(volumes: Sequence[str], prefix: str, fs_group: int | None, init_image: str) -> None:
    """Create PVC volumes once, owned the way the kubelet's fsGroup leaves them (group fsGroup, setgid)."""
    for volume in volumes:
        if docker("volume", "ls", "--quiet", "--filter", f"name=^{volume}$").strip():
            continue
        docker("volume", "create", "--label", f"{TEST_LABEL}={prefix}", volume)
        if fs_group is not None:
            script = f"chgrp {fs_group} /v && chmod 2775 /v"
            docker("run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "sh",
                   "-v", f"{volume}:/v", init_image, "-c", script)  # fmt: skip


def start(run: DockerRun) -> None:
    """``docker run --detach`` the container; an image or command that does not exist fails naming the workload."""
    if not image_exists(run.image):
        raise ContainerError(f"{run.workload.label}: image {run.image} is not in the engine (run `make images`)")
    result = cli(run.argv(), env=run.process_env())
    if result.returncode != 0:
        raise ContainerError(f"{run.workload.label} ({run.name}): docker run failed: {result.stderr.strip()}")


def probe_once(run: DockerRun, probe: Probe) -> bool:
    if probe.kind == "http":
        with suppress(httpx.HTTPError):
            response = httpx.get(probe.url, timeout=max(probe.timeout_s, 1.0))
            return 200 <= response.status_code < 400
        return False
    if probe.kind == "tcp":
        with suppress(OSError), socket.create_connection(("127.0.0.1", probe.port), timeout=probe.timeout_s):
            return True
        return False
    result = cli(["docker", "exec", run.name, *probe.command], timeout=30)
    return result.returncode == 0


def wait_ready(run: DockerRun, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> float:
    """Poll the rendered readiness probe until it passes; seconds waited. Fails on exit or timeout.

    The kubelet probes every ``periodSeconds``; this polls every 0.2 s so the time measured is
    the container's, not the probe period's.
    """
    probe = run.probe
    if probe is None:
        raise ContainerError(f"{run.workload.label}: no readiness probe to wait on")
    described = f"{probe.kind} {probe.path or ' '.join(probe.command) or probe.port}"
    started = clock()
    while clock() - started < timeout_s:
        if probe_once(run, probe):
            return clock() - started
        current = state(run.name)
        if not current.running:
            why = "was killed for memory (OOMKilled)" if current.oom_killed else f"exited with {current.exit_code}"
            raise failure(run, f"{why} before its readiness probe ({described}) passed")
        time.sleep(0.2)
    raise failure(run, f"readiness probe ({described}) not passed in {timeout_s:.0f}s")


def run_to_completion(run: DockerRun, timeout_s: float) -> str:
    """Start a job container, wait for it, and return its output; non-zero exit fails with its last log lines."""
    start(run)
    try:
        code = int(docker("wait", run.name, timeout=timeout_s).strip())
    except subprocess.TimeoutExpired as e:
        docker("kill", run.name, check=False)
        raise failure(run, f"still running after {timeout_s:.0f}s") from e
    if code != 0:
        oom = " (OOMKilled)" if state(run.name).oom_killed else ""
        raise failure(run, f"exited with {code}{oom}")
    return docker("logs", run.name)


def remove(prefix: str) -> None:
    """Remove every container and volume this run labelled (``prefix``), whatever state they are in."""
    label = f"label={TEST_LABEL}={prefix}"
    containers = docker("ps", "--all", "--quiet", "--filter", label, check=False).split()
    if containers:
        docker("rm", "--force", "--volumes", *containers, check=False)
    volumes = docker("volume", "ls", "--quiet", "--filter", label, check=False).split()
    if volumes:
        docker("volume", "rm", "--force", *volumes, check=False)


def exec_in(name: str, command: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return cli(["docker", "exec", name, *command], timeout=timeout)


def wait_all_ready(
    runs: Sequence[DockerRun], timeout_s: float, clock: Callable[[], float] = time.monotonic
) -> dict[str, float]:
    """Poll every run's readiness probe in turn until all pass; seconds from this call to each one's first pass.

    Containers started together are measured together: one slow probe does not delay the others' times.
    """
    started = clock()
    ready: dict[str, float] = {}
    while len(ready) < len(runs):
        for run in (r for r in runs if r.name not in ready):
            if run.probe is None:
                raise ContainerError(f"{run.workload.label}: no readiness probe to wait on")
            if probe_once(run, run.probe):
                ready[run.name] = clock() - started
                continue
            current = state(run.name)
            if not current.running:
                why = "was killed for memory (OOMKilled)" if current.oom_killed else f"exited with {current.exit_code}"
                raise failure(run, f"{why} before its readiness probe passed")
        if clock() - started > timeout_s:
            late = [r for r in runs if r.name not in ready]
            raise failure(late[0], f"not ready in {timeout_s:.0f}s (also waiting: {[r.name for r in late[1:]]})")
        time.sleep(0.2)
    return ready
