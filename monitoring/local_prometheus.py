"""A throwaway local Prometheus: scrape config builder, process lifecycle and HTTP API reads.

Used by the integration tests and by anyone who wants the embedded demo's metrics in a real
Prometheus. Targets are parameters (``job -> host:port list``), so the same builder points at
``serve-metrics``, a stand-in exporter, or the real gateway and model servers.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from monitoring.errors import MonitoringError
from monitoring.rules import find_binary


def scrape_config(
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path] = (),
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> dict[str, Any]:
    """A prometheus.yml mapping scraping ``targets`` (job name -> ``host:port`` list) on ``/metrics``."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }


class PrometheusAPI:
    """The few reads of Prometheus' HTTP API the tests and the demo need (loopback, short timeouts)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.base_url}{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise MonitoringError(f"Prometheus answered {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def series_names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values"))

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts

    def alert_state(self, name: str, **labels: str) -> str | None:
        """``firing``, ``pending`` or None for the named alert (the most advanced state wins).

        ``labels`` (e.g. ``model="technical"``) keep only the alerts carrying those label values.
        """
        wanted = {"alertname": name, **labels}
        states = {a["state"] for a in self.alerts() if wanted.items() <= a["labels"].items()}
        return "firing" if "firing" in states else ("pending" if "pending" in states else None)

    def target_health(self) -> dict[str, list[str]]:
        """``job -> [health, ...]`` of the active scrape targets (``up``, ``down`` or ``unknown``)."""
        health: dict[str, list[str]] = {}
        for target in self.get("/api/v1/targets", state="active")["activeTargets"]:
            health.setdefault(target["labels"]["job"], []).append(target["health"])
        return health

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


@contextmanager
def local_prometheus(
    config: Mapping[str, Any], workdir: Path, port: int, timeout: float = 30
) -> Iterator[PrometheusAPI]:
    """Run ``prometheus`` on 127.0.0.1:``port`` with ``config`` and a fresh TSDB in ``workdir``; stop it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            find_binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout
        while not api.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise MonitoringError(
                    f"prometheus did not become ready: {(workdir / 'prometheus.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
