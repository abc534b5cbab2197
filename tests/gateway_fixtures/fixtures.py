"""Fixtures shared by the tests/test_gateway_*.py modules.

pytest makes one copy of a session fixture per module that imports it, so the expensive parts (the
Feast repo, the model server processes) live in a process-wide cache with a reference count: built
once, stopped when the last module's copy is torn down.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import ALL_SCOPES, create_key
from api.settings import GatewaySettings
from tests.gateway_fixtures.feast_repo import build_feature_repo
from tests.gateway_fixtures.servers import ModelServerProcess

PEPPER = "test-pepper-0123456789abcdef"


@dataclass
class SharedEnv:
    """A materialised feature repo and running model servers."""

    data_dir: Path
    tickers: list[str]
    servers: dict[str, ModelServerProcess] = field(default_factory=dict)
    users: int = 0

    def model_urls(self) -> dict[str, str]:
        urls = {}
        for group, server in self.servers.items():
            if group == "slow":  # only tests that want a slow model use it
                continue
            for model in server.models:
                if not model.endswith("-explain"):
                    urls[model] = server.url
        return urls


_SHARED: dict[str, SharedEnv] = {}


def _start_shared() -> SharedEnv:
    root = Path(tempfile.mkdtemp(prefix="gateway-tests-"))
    data_dir = root / "data"
    data_dir.mkdir()
    env = SharedEnv(data_dir=data_dir, tickers=[])
    # technical has a process of its own so a test can kill and restart it; "slow" answers after 1 s.
    env.servers = {
        "technical": ModelServerProcess(["technical", "technical-explain"], version="7", log_dir=root),
        "others": ModelServerProcess(
            ["fundamental", "sentiment_signal", "ensemble", "sentiment_text"], version="7", log_dir=root
        ),
        "slow": ModelServerProcess(["fundamental"], version="7", delay_s=1.0, log_dir=root),
    }
    # Start the processes first: they boot while the feature repo is materialised.
    for server in env.servers.values():
        server.start()
    try:
        env.tickers = build_feature_repo(data_dir)
        for server in env.servers.values():
            server.wait_ready()
    except BaseException:
        for server in env.servers.values():
            server.stop()
        raise
    return env


@pytest.fixture(scope="session")
def shared_env() -> Iterator[SharedEnv]:
    """The session's feature repo and model servers (see the module docstring)."""
    env = _SHARED.get("env")
    if env is None:
        env = _SHARED["env"] = _start_shared()
    env.users += 1
    yield env
    env.users -= 1
    if env.users == 0:
        for server in env.servers.values():
            server.stop()
        _SHARED.pop("env", None)


def settings_for(env: SharedEnv, tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "data_dir": str(env.data_dir),
        "database_url": f"sqlite:///{tmp_path / 'gateway.db'}",
        "model_urls": env.model_urls(),
        "api_key_pepper": PEPPER,
        "model_timeout_s": 1.0,
        # The per-request path unless a test asks for the scored universe (tests/test_gateway_scored.py).
        "scored": {"enabled": False},
        # Backtest jobs stay queued: no gateway test (the fuzzer least of all) starts real work.
        "backtests": {"executor": "off"},
    }
    values.update(overrides)
    return GatewaySettings(**values)


@contextmanager
def gateway(settings: GatewaySettings) -> Iterator[TestClient]:
    """A TestClient over a fresh app (lifespan run: DB initialised, model client open)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def new_key(
    client: TestClient, scopes: tuple[str, ...] = ALL_SCOPES, rate_limit: str = "10000/minute", tenant: str = "acme"
) -> str:
    services = client.app.state.services  # type: ignore[attr-defined]
    return create_key(services.engine, tenant, scopes, rate_limit, services.settings.pepper).plaintext


@pytest.fixture
def make_gateway(shared_env: SharedEnv, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Factory: ``make_gateway(**settings_overrides)`` -> an open TestClient, closed after the test."""
    stack: list[Any] = []

    def factory(**overrides: Any) -> TestClient:
        cm = gateway(settings_for(shared_env, tmp_path, **overrides))
        stack.append(cm)
        return cm.__enter__()

    yield factory
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error_body(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the gateway's error body and a matching X-Request-ID."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def technical_breaker_opens(client: TestClient, params: dict[str, str], headers: dict[str, str]) -> list[Any]:
    """Four ``/v1/signals`` calls with the technical server down, on a breaker of threshold 2.

    Every answer is a degraded 200 without the technical component; the first names the connection
    error, the last was never sent (circuit open), and the gauge reads open. Returns the bodies.
    """
    answers = [client.get("/v1/signals", params=params, headers=headers) for _ in range(4)]
    assert all(r.status_code == 200 for r in answers)
    bodies = [r.json() for r in answers]
    assert all(b["degraded"] and b["signals"][0]["components"]["technical"] is None for b in bodies)
    assert bodies[0]["reasons"][0]["code"] == "connection_error"
    assert bodies[-1]["reasons"][0]["code"] == "circuit_open"  # threshold 2: calls 3 and 4 are not sent
    assert 'portfolio_os_gateway_circuit_state{model="technical"} 2.0' in client.get("/metrics").text
    return bodies


def technical_breaker_closes(client: TestClient, params: dict[str, str], headers: dict[str, str]) -> None:
    """The next call (the half-open probe) reaches the technical server again and the gauge reads closed."""
    recovered = client.get("/v1/signals", params=params, headers=headers).json()
    assert recovered["degraded"] is False and recovered["signals"][0]["components"]["technical"] is not None
    assert 'portfolio_os_gateway_circuit_state{model="technical"} 0.0' in client.get("/metrics").text


@contextmanager
def running_gateway(settings: GatewaySettings) -> Iterator[tuple[str, Any]]:
    """A real uvicorn serving a fresh app on a free 127.0.0.1 port, in a thread; yields (url, app)."""
    import threading
    import time

    import uvicorn

    from tests.servers import free_port

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
