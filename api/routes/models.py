"""``GET /v1/models``: readiness and versions of every model the gateway knows."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request

from api.circuit import CircuitState
from api.deps import InferenceClientDep, ModelsReader, ServicesDep
from api.handlers import ERROR_RESPONSES
from api.inference import InferenceClient
from api.registry import info_version, registry_info
from api.schemas import ModelPublic, ModelsPublic
from feature_repo.contract import SERVED_MODELS

router = APIRouter(prefix="/v1", tags=["models"])
STATE_NAMES: dict[CircuitState, Literal["closed", "half_open", "open"]] = {
    CircuitState.CLOSED: "closed",
    CircuitState.HALF_OPEN: "half_open",
    CircuitState.OPEN: "open",
}


async def _serving(client: InferenceClient, name: str) -> tuple[bool | None, str | None]:
    if not client.deployed(name):
        return None, None
    base = f"{client.urls[name]}/v2/models/{name}"
    (ready_status, ready), (meta_status, meta) = await asyncio.gather(
        client.get_json(f"{base}/ready"), client.get_json(base)
    )
    is_ready = ready_status == 200 and isinstance(ready, dict) and bool(ready.get("ready"))
    versions = meta.get("versions") if meta_status == 200 and isinstance(meta, dict) else None
    # KServe 0.21 leaves metadata.versions empty; fall back to the version seen in answers, and
    # before any answer to the version the server reports in portfolio_os_model_info.
    version = str(versions[-1]) if isinstance(versions, list) and versions else client.last_versions.get(name)
    if version is None and is_ready:
        status, text = await client.get_text(f"{client.urls[name]}/metrics")
        version = info_version(text, name) if status == 200 else None
    return is_ready, version


async def _one(services: ServicesDep, client: InferenceClient, name: str) -> ModelPublic:
    mlflow_url = services.settings.mlflow_url
    if mlflow_url:
        (ready, version), info = await asyncio.gather(_serving(client, name), registry_info(client, mlflow_url, name))
    else:
        (ready, version), info = await _serving(client, name), None
    breaker = client.breakers.get(name)
    return ModelPublic(
        name=name,
        deployed=client.deployed(name),
        ready=ready,
        serving_version=version,
        circuit_state=STATE_NAMES[breaker.state] if breaker else None,
        registry=info,
    )


@router.get("/models", response_model=ModelsPublic, responses=ERROR_RESPONSES)
async def list_models(
    request: Request, services: ServicesDep, client: InferenceClientDep, _principal: ModelsReader
) -> ModelsPublic:
    """Serving readiness, versions and (with MLflow) champion/challenger per model."""
    names = list(dict.fromkeys([*SERVED_MODELS, *client.urls]))
    models = await asyncio.gather(*(_one(services, client, n) for n in names))
    return ModelsPublic(models=list(models), request_id=request.state.request_id)
