"""Real KServe model server subprocesses on 127.0.0.1 for the gateway tests (stopped by their owners)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class ModelServerProcess:
    """``python -m tests.gateway_fixtures.v2_model`` serving ``models`` on a fixed free port."""

    LOG_PREFIX = "model"

    def __init__(self, models: list[str], version: str = "1", delay_s: float = 0.0, log_dir: Path | None = None):
        self.models = models
        self.version = version
        self.delay_s = delay_s
        self.port = free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "tests.gateway_fixtures.v2_model", "--http_port", str(self.port)]
        return [*cmd, "--models", ",".join(self.models), "--version", self.version, "--delay_s", str(self.delay_s)]

    @property
    def log_path(self) -> Path | None:
        return self.log_dir / f"{self.LOG_PREFIX}-{self.port}.log" if self.log_dir else None

    def start(self) -> Self:
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Self:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
                raise RuntimeError(f"{self.LOG_PREFIX} exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.LOG_PREFIX} on {self.port} not ready within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, as a crashed pod: no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
