"""``python -m serving.launcher`` keeps the stack serving through crashes, as a kubelet would.

A real launcher process on free 127.0.0.1 ports over a throwaway MLflow registry (tiny LightGBM
champions of technical and fundamental trained on SYNTHETIC data, and the test ensemble) and a
SYNTHETIC Feast repo. Under 8 concurrent clients on ``/v1/signals`` the technical server's process
group is SIGKILLed: every answer is a 200 (no connection error), degraded while it is down, and
full answers come back within 5 s of the launcher reporting it ready again. Then the gateway is
SIGKILLed: the launcher restarts it and the typed client's retries carry a caller through. Last,
SIGTERM to the launcher leaves no process behind.

Every moment is taken from the launcher's own log lines (the exit it noticed, the restart, the
readiness it probed) and from the requests themselves, never from a sleep. The gateway's score
cache is off so an answer during the outage cannot legitimately carry the killed model's score,
and its circuit cool-down is 1 s so recovery is measured in the launcher's terms, not the breaker's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from api.client import PortfolioOSClient
from feature_repo.contract import service_features
from tests.gateway_fixtures.feast_repo import build_feature_repo
from tests.gateway_fixtures.load import Load
from tests.servers import stop_launcher
from tests.serving_fixtures import ENSEMBLE_WEIGHTS, Registry, mlflow_uris_restored, server_env, train_booster

pytestmark = pytest.mark.slow  # the suite-wide 600 s timeout only stops a hung run

RECOVERY_BUDGET_S = 5.0
# Deadlines that only stop a hung test; nothing asserts on them.
BOOT_DEADLINE_S = 180.0
EVENT_DEADLINE_S = 90.0


@dataclass
class LauncherOutput:
    """The launcher's stdout+stderr, read line by line in a thread, each line with the moment it was read."""

    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    ended: bool = False

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_line(self, pattern: str, after: int = 0) -> tuple[int, float, re.Match[str]]:
        """The first line from index ``after`` on that matches ``pattern``: (index, read at, match)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + EVENT_DEADLINE_S if after else time.monotonic() + BOOT_DEADLINE_S
        with self.changed:
            while True:
                for index in range(after, len(self.lines)):
                    found = regex.search(self.lines[index][1])
                    if found:
                        return index, self.lines[index][0], found
                after = max(after, len(self.lines))
                if self.ended:
                    break
                if not self.changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    break
        raise AssertionError(f"no launcher line matching {pattern!r}; output:\n{self.text()[-4000:]}")

    def text(self) -> str:
        with self.changed:
            return "\n".join(line for _, line in self.lines)


def _registry(folder: Path) -> str:
    """Champions of technical, fundamental (SYNTHETIC boosters) and the test ensemble; the registry URI."""
    with mlflow_uris_restored():
        registry = Registry.create(folder / "registry", folder)
        for seed, model in enumerate(("technical", "fundamental"), start=11):
            service = f"{model}_model_v1"
            registry.register_signal(
                model, train_booster(service_features(service), seed=seed), feature_service=service
            )
        registry.register_ensemble(ENSEMBLE_WEIGHTS)
    return registry.uri


def _child(launcher: psutil.Process, *module: str) -> psutil.Process:
    """The launcher's child started as ``python -m <module>`` (the supervisor replaces them on restart)."""
    for child in launcher.children():
        cmdline = child.cmdline()
        if cmdline[1 : 1 + len(module)] == list(module):
            return child
    raise AssertionError(f"no child {module} of the launcher: {[c.cmdline() for c in launcher.children()]}")


@contextlib.contextmanager
def _launcher(tmp_path: Path, tracking_uri: str) -> Iterator[tuple[subprocess.Popen[str], LauncherOutput]]:
    data_dir = tmp_path / "data"
    env = server_env(tracking_uri) | {
        "PORTFOLIO_OS_DATA_DIR": str(data_dir),
        "PORTFOLIO_OS_SCORE_CACHE_SECONDS": "0",
        # Per-request model calls, so a crashed server shows as degraded answers: a valid scored
        # snapshot would keep answering in full without it (tests/test_gateway_scored.py).
        "PORTFOLIO_OS_SCORED__ENABLED": "false",
        "PORTFOLIO_OS_CIRCUIT_RESET_S": "1.0",
        # The launcher's demo key is the one the load uses: room for 8 clients flat out.
        "PORTFOLIO_OS_DEFAULT_RATE_LIMIT": "1000000/minute",
        # Two busy cores run four Python servers and the load: a healthy call must not time out.
        "PORTFOLIO_OS_MODEL_TIMEOUT_S": "5.0",
    }
    command = [sys.executable, "-m", "serving.launcher", "--free-ports", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = LauncherOutput(process)
    reader = threading.Thread(target=output.read, name="launcher-output", daemon=True)
    reader.start()
    try:
        yield process, output
    finally:
        stop_launcher(process, timeout=60)
        reader.join(timeout=30)


def test_launcher_restarts_crashed_servers_and_gateway_and_stops_without_orphans(tmp_path: Path) -> None:
    began = time.monotonic()
    tickers = build_feature_repo(tmp_path / "data")
    tracking_uri = _registry(tmp_path)
    built = time.monotonic()
    with _launcher(tmp_path, tracking_uri) as (launcher, output):
        serving_at, serving_read_at, _ = output.wait_line(r"^Serving;")
        print(f"\nfixtures {built - began:.1f}s, launcher up {serving_read_at - built:.1f}s")
        text = output.text()
        key_match = re.search(r"Bearer (\S+)'", text)
        url_match = re.search(r"^\s+gateway\s+(http://127\.0\.0\.1:\d+)", text, re.MULTILINE)
        assert key_match and url_match, text[-3000:]
        key, url = key_match.group(1), url_match.group(1)
        parent = psutil.Process(launcher.pid)

        load = Load(url, key, ",".join(tickers))
        with load.running():
            load.wait(lambda answers: len(answers) >= 40, "40 answers from the healthy stack")
            technical = _child(parent, "-m", "serving.technical")
            os.killpg(technical.pid, signal.SIGKILL)  # a crashed pod: the whole group at once
            exited, exited_at, _ = output.wait_line(
                rf"technical \(pid {technical.pid}, .*killed by SIGKILL", serving_at
            )
            restarted, restarted_at, _ = output.wait_line(r"technical restarted \(pid \d+, restart 1\)", exited)
            ready, ready_at, _ = output.wait_line(r"technical ready again", restarted)
            load.wait(lambda answers: any(a.sent > ready_at and a.technical_present for a in answers), "a full answer")
        answers = list(load.answers)
        assert load.errors == [] and {a.status for a in answers} == {200}, (
            load.errors[:5],
            {a.status for a in answers},
        )
        # Every answer is either full or degraded without the technical score: nothing half-made.
        assert all(a.technical_present or a.degraded for a in answers)
        # Sent after the launcher saw the crash, answered before it started the new process: degraded.
        outage = [a for a in answers if a.sent > exited_at and a.done < restarted_at]
        assert outage and all(a.degraded and not a.technical_present for a in outage), outage[:5]
        recovered = min(a.sent for a in answers if a.sent > ready_at and a.technical_present)
        print(
            f"\nanswers={len(answers)} outage_answers={len(outage)}"
            f" exit->restart={restarted_at - exited_at:.1f}s restart->ready={ready_at - restarted_at:.1f}s"
            f" ready->full answer={recovered - ready_at:.2f}s"
        )
        assert recovered - ready_at <= RECOVERY_BUDGET_S

        gateway = _child(parent, "-m", "api")
        # As in its image, the gateway runs without torch even though this venv has it (Feast would load it).
        mapped = {Path(m.path).name for m in gateway.memory_maps()}
        assert not {name for name in mapped if name.startswith("libtorch")}, sorted(mapped)
        os.killpg(gateway.pid, signal.SIGKILL)
        gone, _, _ = output.wait_line(rf"gateway \(pid {gateway.pid}, .*killed by SIGKILL", ready)
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            # The client's back-off, paced by the launcher's readiness instead of the wall clock.
            waits.append(seconds)
            output.wait_line(r"gateway ready again", gone)

        with PortfolioOSClient(url, key, timeout_s=30.0, max_retries=3, sleep=sleep) as client:
            carried = client.signals(tickers[:2])  # sent while the gateway is down
        assert waits, "the call met no connection error: the gateway was not down"
        assert [s.ticker for s in carried.signals] == tickers[:2]
        _, gateway_ready_at, _ = output.wait_line(r"gateway ready again", gone)
        print(f"gateway exit->ready {gateway_ready_at - output.lines[gone][0]:.1f}s, retries {len(waits)}")

        children = parent.children(recursive=True)
        assert len(children) >= 4  # three model servers and the gateway
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
