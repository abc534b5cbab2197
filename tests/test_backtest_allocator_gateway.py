"""An ``allocator`` backtest is refused at submit (422) when the gateway's MLflow server says it cannot run.

A real ``mlflow server`` on 127.0.0.1 over a real registry (SQLite); the champion is a hand-made
policy registered as training registers one (tests/test_serving_allocator.py). The gateway asks
MLflow's REST API only (no mlflow import); unreachable, it queues the job, which decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backtest_fixtures import body, gateway, key, publish, settings
from tests.gateway_fixtures.fixtures import assert_error_body
from tests.servers import free_port
from tests.serving_fixtures import Registry, mlflow_uris_restored, tracking_server
from tests.test_serving_allocator import register_allocator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    """A registry and an MLflow tracking server over it (no allocator registered yet)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_uris_restored():
        registry = Registry.create(folder / "registry", folder)
        with tracking_server(registry, folder) as server:
            yield registry, server.url


def test_the_registry_decides_at_submit_and_an_unreachable_one_leaves_it_to_the_job(
    tmp_path: Path, mlflow_server: tuple[Registry, str]
) -> None:
    registry, url = mlflow_server
    allocator = body(strategy="allocator", universe=["AAA", "BBB", "DDD", "EEE"], params={})
    # MLflow is asked within the model timeout (0.5 s by default); a loaded test machine needs longer.
    config = settings(tmp_path, max_jobs_per_tenant=5).model_copy(update={"mlflow_url": url, "model_timeout_s": 30.0})
    with gateway(config) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        h = key(client)
        none = assert_error_body(client.post("/v1/backtests", json=allocator, headers=h), 422)
        assert f"the registry at {url} has no allocator model at its champion alias" in none["message"]
        with mlflow_uris_restored():
            register_allocator(registry, ["AAA", "BBB", "CCC"], seed=4, alias="challenger")
        unpromoted = assert_error_body(client.post("/v1/backtests", json=allocator, headers=h), 422)
        assert "has no allocator model at its champion alias" in unpromoted["message"]  # a model, no champion
        with mlflow_uris_restored():
            register_allocator(registry, ["AAA", "BBB", "CCC"], seed=4)
        uncovered = assert_error_body(client.post("/v1/backtests", json=allocator, headers=h), 422)
        assert (
            "champion v2 was trained on 3 tickers that do not cover the universe: DDD, EEE are outside it"
            in (uncovered["message"])
        )
        covered = client.post("/v1/backtests", json={**allocator, "universe": ["AAA", "CCC"]}, headers=h)
        assert covered.status_code == 202, covered.text
        with mlflow_uris_restored():
            register_allocator(registry, ["AAA", "BBB"], seed=5, max_assets=3)  # v3: fixed width 3, any names
        wide = assert_error_body(client.post("/v1/backtests", json=allocator, headers=h), 422)
        assert "champion v3 allocates at most 3 names (its policy's width); the universe has 4" in wide["message"]
        narrow = client.post("/v1/backtests", json={**allocator, "universe": ["DDD", "EEE"]}, headers=h)
        assert narrow.status_code == 202, narrow.text
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the gateway cannot know, the job decides
    other = tmp_path / "other"
    other.mkdir()
    with gateway(settings(other, max_jobs_per_tenant=5).model_copy(update={"mlflow_url": closed})) as client:
        publish(client.app.state.services.engine)  # type: ignore[attr-defined]
        queued = client.post("/v1/backtests", json=allocator, headers=key(client))
        assert queued.status_code == 202 and queued.json()["state"] == "queued", queued.text
