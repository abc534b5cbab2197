"""``GET /v1/models``' registry lookup against a real ``mlflow server``: a missing alias is no version.

MLflow 3 answers a known model without the asked alias with 400 ``INVALID_PARAMETER_VALUE``
("Registered model alias challenger not found."), not 404: the gateway must read that as "no
challenger", not as an unreachable registry. Versions are registered by hand (no model files: the
gateway reads the registry's REST API only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from api.inference import InferenceClient
from api.metrics import GatewayMetrics
from api.registry import _version, registry_info
from api.schemas import RegistryPublic
from feature_repo.contract import CHALLENGER, CHAMPION
from tests.serving_fixtures import Registry, mlflow_uris_restored, tracking_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server whose registry holds ``solo`` (champion only) and ``pair`` (both aliases)."""
    folder = tmp_path_factory.mktemp("mlflow-aliases")
    with mlflow_uris_restored():
        registry = Registry.create(folder / "registry", folder)
        client = registry.client
        for name, aliases in (("solo", [CHAMPION]), ("pair", [CHAMPION, CHALLENGER])):
            client.create_registered_model(name)
            for alias in aliases:
                version = client.create_model_version(name, source="s3://never-read/model")
                client.set_registered_model_alias(name, alias, version.version)
        with tracking_server(registry, folder) as server:
            yield server.url


def _info(url: str, model: str) -> RegistryPublic:
    async def run() -> RegistryPublic:
        client = InferenceClient({}, 10.0, {}, GatewayMetrics())
        try:
            return await registry_info(client, url, model)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_mlflow_answers_a_missing_alias_with_400_invalid_parameter_value(mlflow_url: str) -> None:
    """The server behaviour the gateway must read (if MLflow moves to 404, the tests below still hold)."""
    answer = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/registered-models/alias", params={"name": "solo", "alias": CHALLENGER}
    )
    assert answer.status_code in (400, 404)
    if answer.status_code == 400:
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "not found" in answer.json()["message"]


def test_a_model_without_a_challenger_reports_its_champion_and_no_error(mlflow_url: str) -> None:
    info = _info(mlflow_url, "solo")
    assert info.error is None and info.challenger is None
    assert info.champion is not None and info.champion.version == "1"


def test_both_aliases_and_an_unknown_model(mlflow_url: str) -> None:
    pair = _info(mlflow_url, "pair")
    assert pair.error is None and pair.champion is not None and pair.challenger is not None
    assert (pair.champion.version, pair.challenger.version) == ("1", "2")
    unknown = _info(mlflow_url, "never-registered")
    assert unknown.error is None and unknown.champion is None and unknown.challenger is None


def test_any_other_refusal_is_still_an_error(mlflow_url: str) -> None:
    """A 400 that is not "alias not found" (here: no alias given) stays an error, never 'no version'."""

    async def run() -> None:
        client = InferenceClient({}, 10.0, {}, GatewayMetrics())
        try:
            with pytest.raises(RuntimeError, match="MLflow answered 400"):
                await _version(client, mlflow_url, "solo", "")
        finally:
            await client.aclose()

    asyncio.run(run())
