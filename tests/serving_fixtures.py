"""Helpers for the model-server tests: tiny SYNTHETIC LightGBM models, a throwaway MLflow registry
on SQLite, and real ``python -m serving.<name>`` processes on a free 127.0.0.1 port.

Models are registered exactly the way the training pipeline does it (docs/serving-contract.md):
``mlflow.lightgbm.log_model(booster, name="model", signature=..., registered_model_name=...)``,
then the version tags and the ``champion`` alias. The data is synthetic (seeded Gaussian noise);
no quality figure may be read from these models.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from feature_repo import telemetry
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE_ASSET = Path(__file__).resolve().parent / "assets" / "ensemble_model.py"
EXPERIMENT = "serving-tests"
# Per-test-session cache of an empty, migrated MLflow database: creating one runs MLflow's
# migrations (about 7 s on two cores); copying the file takes milliseconds.
_TEMPLATE_DB: list[Path] = []
# The environment every server a test starts runs with (server tests import it from here).
TELEMETRY_OFF = telemetry.TELEMETRY_OFF
# The test ensemble's blend of the three signal models (register_ensemble), the same in every module.
ENSEMBLE_WEIGHTS = {"technical": 0.5, "fundamental": 0.3, "sentiment_signal": 0.2}


# --- synthetic data and models -------------------------------------------------------------------


def synthetic_frame(features: Sequence[str], rows: int, seed: int, nan_share: float = 0.1) -> pd.DataFrame:
    """SYNTHETIC features: seeded standard normals with ``nan_share`` of the cells missing."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, len(features)))
    values[rng.random(values.shape) < nan_share] = np.nan
    return pd.DataFrame(values, columns=list(features))


def train_booster(features: Sequence[str], seed: int = 0, rounds: int = 15) -> lgb.Booster:
    """A tiny binary LightGBM booster on a SYNTHETIC frame whose label depends on the first features."""
    X = synthetic_frame(features, rows=400, seed=seed)
    rng = np.random.default_rng(seed + 1)
    signal_ = X.iloc[:, 0].fillna(0.0) + 0.5 * X.iloc[:, min(1, X.shape[1] - 1)].fillna(-1.0)
    y = (signal_ + rng.normal(scale=0.5, size=len(X)) > 0).astype(np.float64)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "min_data_in_leaf": 10,
        "learning_rate": 0.2,
        "num_threads": 1,
        "deterministic": True,
        "seed": seed,
        "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(X, label=y, feature_name=list(features)), num_boost_round=rounds)


# --- registry ------------------------------------------------------------------------------------


@contextmanager
def mlflow_uris_restored() -> Iterator[None]:
    """Put MLflow's process-wide tracking/registry URIs (module globals and env vars) back afterwards.

    ``mlflow.set_tracking_uri`` (used by the helpers below and by ``serving.registry.Registry``)
    also exports ``MLFLOW_TRACKING_URI``; without this, later tests in the session would talk to a
    deleted temporary registry.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _template_db(root: Path) -> Path:
    if not _TEMPLATE_DB:
        path = root / "template.db"
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # runs the migrations
        _TEMPLATE_DB.append(path)
    return _TEMPLATE_DB[0]


@dataclass
class Registry:
    """A throwaway MLflow tracking store + registry on SQLite, with its artifacts beside it."""

    folder: Path
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        self.uri = f"sqlite:///{self.folder / 'mlflow.db'}"

    @classmethod
    def create(cls, folder: Path, template_root: Path) -> Registry:
        folder.mkdir(parents=True)
        shutil.copy(_template_db(template_root), folder / "mlflow.db")
        registry = cls(folder)
        registry.client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
        return registry

    @classmethod
    def in_temp(cls, tmp_path_factory: pytest.TempPathFactory, name: str) -> Registry:
        """A fresh registry in a new temporary folder named after ``name`` (a module's shared registry)."""
        return cls.create(tmp_path_factory.mktemp(name) / "registry", tmp_path_factory.getbasetemp())

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _activate(self) -> str:
        # mlflow.start_run/log_model use the process-wide URIs; point them here before each use.
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None
        return str(experiment.experiment_id)

    def register_signal(
        self,
        name: str,
        booster: lgb.Booster,
        *,
        feature_service: str,
        alias: str | None = "champion",
    ) -> str:
        """Log and register ``booster`` as training does; return the new version number."""
        features = booster.feature_name()
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", f) for f in features]),
            outputs=Schema([ColSpec("double", "score")]),
        )
        with mlflow.start_run(experiment_id=self._activate()):
            info = mlflow.lightgbm.log_model(
                booster,
                name="model",
                signature=signature,
                pip_requirements=["lightgbm==4.7.0"],
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        tags = {
            "feature_service": feature_service,
            "horizon": "21",
            "snapshot_hash": "synthetic",
            "code_version": "test",
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        if alias:
            self.client.set_registered_model_alias(name, alias, version)
        return version

    def register_ensemble(self, weights: dict[str, float], alias: str | None = "champion") -> str:
        """Register the test ensemble (models-from-code) with ``weights``; return the version."""
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", name, required=False) for name in weights]),
            outputs=Schema([ColSpec("double", "score"), ColSpec("double", "coverage")]),
        )
        with mlflow.start_run(experiment_id=self._activate()):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(ENSEMBLE_ASSET),
                model_config={"weights": weights},
                signature=signature,
                pip_requirements=["numpy"],
                registered_model_name="ensemble",
            )
        version = str(info.registered_model_version)
        if alias:
            self.client.set_registered_model_alias("ensemble", alias, version)
        return version


# --- server processes ----------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A running ``python -m serving.<module>`` and how to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def server_env(tracking_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        **TELEMETRY_OFF,
        "PORTFOLIO_OS_TRACKING_URI": tracking_uri,
        "PYTHONUNBUFFERED": "1",
        # Servers run in a scratch folder (anything written to the working directory lands there)
        # and import the project from the checkout.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _wait_ready(server: ServerProcess, model: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.logs()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready within {timeout}s:\n{server.logs()[-3000:]}")


@contextmanager
def model_server(
    module: str, tracking_uri: str, workdir: Path, *args: str, timeout: float = 60.0
) -> Iterator[ServerProcess]:
    """Start ``python -m serving.<module>`` on a free loopback port, wait until ready, always stop it."""
    port = free_port()
    log_path = workdir / f"{module}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"serving.{module}", "--http_port", str(port), *args],
            cwd=workdir,
            env=server_env(tracking_uri),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, port, log_path)
    try:
        _wait_ready(server, module, timeout)
        yield server
    finally:
        server.stop()


@contextmanager
def tracking_server(registry: Registry, workdir: Path, timeout: float = 240.0) -> Iterator[ServerProcess]:
    """A real ``mlflow server`` over ``registry`` on a free loopback port, healthy, always stopped.

    One worker and MLflow's job runner off (it would start more processes): the tests only read
    the registry's REST API.
    """
    port = free_port()
    log_path = workdir / "mlflow.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", registry.uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, **TELEMETRY_OFF, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    server = ServerProcess(proc, port, log_path)
    try:
        wait_for(lambda: _mlflow_healthy(server), timeout=timeout, what=f"mlflow server on {server.url}")
        yield server
    finally:
        server.stop()


def _mlflow_healthy(server: ServerProcess) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"mlflow server exited with {server.proc.returncode}: {server.logs()[-2000:]}")
    try:
        return httpx.get(f"{server.url}/health", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def run_to_exit(
    module: str, tracking_uri: str, workdir: Path, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a server expected to refuse to start; return its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", f"serving.{module}", "--http_port", str(free_port()), *args],
        cwd=workdir,
        env=server_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- requests ------------------------------------------------------------------------------------


def v2_request(frame: pd.DataFrame) -> dict[str, Any]:
    """One FP64 ``[n]`` input per column; NaN sent as JSON null."""
    return {
        "inputs": [
            {
                "name": str(column),
                "shape": [len(frame)],
                "datatype": "FP64",
                "data": [None if math.isnan(v) else float(v) for v in frame[column]],
            }
            for column in frame.columns
        ]
    }


def outputs_by_name(body: dict[str, Any]) -> dict[str, np.ndarray]:
    """The outputs of a v2 response as float64 arrays (JSON null back to NaN)."""
    return {o["name"]: np.array(o["data"], dtype=np.float64) for o in body["outputs"]}


def infer(server: ServerProcess, model: str, frame: pd.DataFrame) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=v2_request(frame), timeout=10.0)


def infer_binary_bytes(
    server: ServerProcess, model: str, name: str, values: Sequence[str], timeout: float = 10.0
) -> httpx.Response:
    """One BYTES input sent with the v2 binary extension: each value's UTF-8 length (4 bytes,
    little-endian) and bytes, after the JSON header."""
    raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    spec = {"name": name, "datatype": "BYTES", "shape": [len(values)], "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [spec]}).encode()
    return httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        content=header + raw,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        timeout=timeout,
    )


def metric_samples(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, parsed by prometheus_client: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=5.0).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate()`` every 0.2 s until it is truthy and return the seconds that took; fail
    naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
