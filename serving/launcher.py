"""``python -m serving.launcher`` (``make serve``): the embedded stack as local processes on 127.0.0.1.

One KServe model server per registered champion, then the gateway wired to them; it waits until
each reports ready, prints the URLs and a sample ``curl``, sends a few real requests, then keeps
the stack up the way a kubelet would (:mod:`serving.supervisor`): a process that exits is
restarted with an exponential back-off and counts as up again once its readiness probe answers;
meanwhile the gateway answers degraded (a model server down) and clients retry (the gateway down).
Ctrl-C or SIGTERM stops every process it started (each child runs in its own process group, so
the servers' workers go too: no orphans). ``--once`` stops right after the sample requests (the
tail of ``make demo``), unsupervised. Processes are started by command line, never imported: the
launcher depends on the entry points of ``docs/serving-contract.md``, not on the gateway's code.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from feature_repo.contract import CHAMPION, SENTIMENT_TEXT, SERVED_MODELS
from serving.supervisor import Supervisor

# Entry points of docs/serving-contract.md started when their model has a champion (in this order).
MODELS: Final = SERVED_MODELS
READY_TIMEOUT_S: Final = 120.0
# How the gateway of `make serve` calls its model servers when they serve gRPC too: gRPC, measured
# faster through the gateway (`python -m bench.transport --gateway`: allocations and the per-request
# signals fallback), wherever grpcio is installed (the gateway-grpc extra; the chart stays on REST).
GATEWAY_TRANSPORT: Final = "grpc" if importlib.util.find_spec("grpc") is not None else "rest"
# The gRPC port of model server i is this far above its HTTP port (8081 -> 9081, ...).
GRPC_PORT_OFFSET: Final = 1000
STOP_GRACE_S: Final = 10.0
SAMPLE_TICKERS: Final = "AAPL,MSFT,JPM"
SAMPLE_TEXTS: Final = (
    "Quarterly profit beat estimates and the company raised its full-year guidance.",
    "The bank cut its dividend after loan losses doubled.",
)


@dataclass
class Service:
    """One child process and how to tell it is ready."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    grpc_port: int | None = None  # a model server's v2 gRPC port (127.0.0.1), if it serves one

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def champions(tracking_uri: str) -> list[str]:
    """The served models that have a champion in the registry, in :data:`MODELS` order."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = []
    for name in MODELS:
        with suppress(MlflowException):
            client.get_model_version_by_alias(name, CHAMPION)
            found.append(name)
    return found


def plan(
    models: list[str], ports: list[int], env: dict[str, str], grpc_ports: list[int] | None = None
) -> list[Service]:
    """A model server per model on ``ports[i]``, then the gateway on ``ports[-1]``.

    With ``grpc_ports``, model server ``i`` also serves v2 gRPC on 127.0.0.1:``grpc_ports[i]`` and
    the gateway is given those addresses (``PORTFOLIO_OS_MODEL_GRPC_URLS``); whether it calls
    them is ``PORTFOLIO_OS_MODEL_TRANSPORT`` (default :data:`GATEWAY_TRANSPORT`; the
    environment's value wins).
    """
    servers = []
    grpc_urls = {}
    for i, (m, p) in enumerate(zip(models, ports, strict=False)):
        command = [sys.executable, "-m", f"serving.{m}", "--http_port", str(p)]
        grpc_port = None if grpc_ports is None else grpc_ports[i]
        if grpc_port is not None:
            command += ["--grpc_port", str(grpc_port)]
            grpc_urls[m] = f"127.0.0.1:{grpc_port}"
        servers.append(Service(m, command, p, f"/v2/models/{m}/ready", env, grpc_port=grpc_port))
    urls = {s.name: s.url for s in servers}
    gateway_env = env | {"PORTFOLIO_OS_MODEL_URLS": json.dumps(urls)}
    if grpc_ports is not None:
        gateway_env |= {
            "PORTFOLIO_OS_MODEL_GRPC_URLS": json.dumps(grpc_urls),
            "PORTFOLIO_OS_MODEL_TRANSPORT": os.environ.get("PORTFOLIO_OS_MODEL_TRANSPORT", GATEWAY_TRANSPORT),
        }
    gateway = Service(
        "gateway", [sys.executable, "-m", "api", "--port", str(ports[-1])], ports[-1], "/readyz", gateway_env
    )
    return [*servers, gateway]


@contextmanager
def running(services: list[Service], logs: Path) -> Iterator[list[Service]]:
    """Start every service (logs under ``logs``), wait for readiness, stop them all on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for service in services:
            launch(service, logs, "wb")
        for service in services:
            wait_ready(service, logs)
        yield services
    finally:
        stop(services)


def launch(service: Service, logs: Path, mode: str = "ab") -> None:
    """Start the service's process in a session (process group) of its own, output to its log.

    A restart appends (``"ab"``) so the log keeps what the crashed process wrote.
    """
    with (logs / f"{service.name}.log").open(mode) as log, _deferred_interrupts():
        service.process = subprocess.Popen(
            service.command,
            env=child_env(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def is_ready(service: Service) -> bool:
    """One readiness probe: the ready path answers 200 within a second."""
    with suppress(httpx.HTTPError):
        return httpx.get(service.url + service.ready_path, timeout=1.0).status_code == 200
    return False


@dataclass
class ProcessDriver:
    """The :class:`serving.supervisor.Driver` of the launcher: real processes, logs under ``logs``."""

    logs: Path

    def start(self, service: Service) -> None:
        launch(service, self.logs)

    def ready(self, service: Service) -> bool:
        return is_ready(service)

    def kill(self, service: Service) -> None:
        process = service.process
        if process is None:
            return
        # The group outlives its leader when workers were left behind; its id is the leader's pid.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def child_env(service: Service) -> dict[str, str]:
    """This process's environment plus the service's, without what importing Feast left in it.

    Feast sets ``PROMETHEUS_MULTIPROC_DIR`` in the environment of any process that imports it (this
    one may have); inherited, it would switch each server's prometheus_client to mmap-file values:
    slower on every increment, and no server here aggregates across processes.
    """
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return inherited | service.env


def wait_ready(service: Service, logs: Path) -> None:
    """Poll the readiness path; fail with the tail of the log if the process dies or times out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    if service.process is None:
        raise RuntimeError(f"{service.name} was never started")
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            tail = (logs / f"{service.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{tail}")
        if is_ready(service):
            return
        time.sleep(0.25)
    raise RuntimeError(f"{service.name} not ready on {service.url} after {READY_TIMEOUT_S:.0f} s (see {logs})")


def stop(services: list[Service]) -> None:
    """SIGTERM every process group, then SIGKILL whatever is left after the grace period."""
    alive = [s.process for s in reversed(services) if s.process is not None and s.process.poll() is None]
    for process in alive:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in alive:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in alive:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def demo_key(env: dict[str, str]) -> str:
    """A local demo tenant's API key, created through the gateway's own CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "api.keys", "create", "--demo"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return str(json.loads(result.stdout.strip().splitlines()[-1])["api_key"])


def sample_requests(gateway: str, key: str, models: list[str]) -> None:
    """A few real requests, printed the way a client sees them (``/v1/sentiment`` when its model is served)."""
    headers = {"Authorization": f"Bearer {key}"}
    calls: list[tuple[str, str, dict[str, object] | None]] = [
        ("GET", f"/v1/signals?tickers={SAMPLE_TICKERS}", None),
        ("GET", "/v1/explanations/AAPL", None),
        ("POST", "/v1/allocations", {"universe": SAMPLE_TICKERS.split(","), "capital": 1_000_000}),
    ]
    if SENTIMENT_TEXT in models:
        calls.append(("POST", "/v1/sentiment", {"texts": list(SAMPLE_TEXTS)}))
    calls.append(("GET", "/v1/models", None))
    with httpx.Client(base_url=gateway, headers=headers, timeout=10.0) as client:
        for method, path, body in calls:
            response = client.request(method, path, json=body)
            text = json.dumps(response.json(), indent=2)
            lines = text.splitlines()
            shown = "\n".join(lines[:40]) + (f"\n  ... ({len(lines) - 40} more lines)" if len(lines) > 40 else "")
            print(f"\n{method} {path} -> {response.status_code}\n{shown}", flush=True)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


_critical = {"depth": 0, "pending": 0}


def _interrupt(signum: int, frame: object) -> None:
    if _critical["depth"]:
        _critical["pending"] = signum  # raised when the critical section ends
        return
    raise KeyboardInterrupt


@contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM back while a child is started and recorded.

    Raised between ``Popen`` and the assignment, the interrupt would leave a running child that
    :func:`stop` does not know about: an orphan. (Blocking the signals instead would hand the
    blocked mask to the child, which could then not be stopped gracefully.)
    """
    _critical["depth"] += 1
    try:
        yield
    finally:
        _critical["depth"] -= 1
        if not _critical["depth"] and _critical["pending"]:
            _critical["pending"] = 0
            raise KeyboardInterrupt


def _ports(args: argparse.Namespace, n: int) -> tuple[list[int], list[int]]:
    """The HTTP ports of ``n`` model servers then the gateway's, and the servers' gRPC ports."""
    if args.free_ports:
        ports = free_ports(2 * n + 1)
        return ports[: n + 1], ports[n + 1 :]
    http = [args.base_port + i for i in range(n)]
    return [*http, args.gateway_port], [p + GRPC_PORT_OFFSET for p in http]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the stack, show it working, keep it up until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m serving.launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PORTFOLIO_OS_DATA_DIR", "data")))
    parser.add_argument("--base-port", type=int, default=8081, help="first model server port (default 8081)")
    parser.add_argument("--gateway-port", type=int, default=8000, help="gateway port (default 8000)")
    parser.add_argument("--once", action="store_true", help="stop after the sample requests")
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    parser.add_argument(
        "--no-grpc",
        action="store_true",
        help="model servers serve REST only (default: v2 gRPC too, on 127.0.0.1, HTTP port + 1000)",
    )
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    env = {"PORTFOLIO_OS_DATA_DIR": str(data_dir)}
    tracking = os.environ.get("PORTFOLIO_OS_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow.db'}")
    if tracking.startswith("sqlite:///") and not Path(tracking.removeprefix("sqlite:///")).is_file():
        # Asking MLflow about a missing SQLite file would create an empty registry there.
        print(f"no registry at {tracking}: run `make demo` (the train stage) first", file=sys.stderr)
        return 2
    models = champions(tracking)
    if not models:
        print(f"no champion in {tracking}: run `make demo` (the train stage) first", file=sys.stderr)
        return 2
    skipped = [m for m in MODELS if m not in models]
    if skipped:
        print(f"not started (no champion registered): {', '.join(skipped)}")
    # SIGTERM ends the process the way Ctrl-C does, so the finally-block stops every child.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    ports, grpc_ports = _ports(args, len(models))
    services = plan(models, ports, env, None if args.no_grpc else grpc_ports)
    try:
        with running(services, data_dir / "logs"):
            for s in services:
                grpc = f"  gRPC 127.0.0.1:{s.grpc_port}" if s.grpc_port is not None else ""
                print(f"  {s.name:<18} {s.url}{grpc}  (log: {data_dir / 'logs' / s.name}.log)")
            key = demo_key(env)
            gateway = services[-1].url
            print(f"\n  curl -H 'Authorization: Bearer {key}' '{gateway}/v1/signals?tickers={SAMPLE_TICKERS}'")
            print(f"  API docs: {gateway}/docs   metrics: {gateway}/metrics")
            sample_requests(gateway, key, models)
            if not args.once:
                print("\nServing; a process that exits is restarted; Ctrl-C stops every process.", flush=True)
                Supervisor(services, ProcessDriver(data_dir / "logs")).run()
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
