"""Champion/challenger versions and key metrics from the MLflow REST API (httpx only, no mlflow import)."""

from __future__ import annotations

import re
from typing import Any, Final

from api.inference import InferenceClient
from api.schemas import RegistryPublic, RegistryVersion
from feature_repo.contract import CHALLENGER, CHAMPION

MAX_METRICS: Final = 12
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _no_such_version(status: int, body: Any) -> bool:
    """MLflow's answers for "no version under this alias".

    An unknown model is 404 ``RESOURCE_DOES_NOT_EXIST``; a known model without the alias is, in
    MLflow 3, 400 ``INVALID_PARAMETER_VALUE`` "Registered model alias <alias> not found." (seen on
    ``mlflow server`` 3.17.2). Any other 400 stays an error.
    """
    if status == 404 or (status == 400 and "RESOURCE_DOES_NOT_EXIST" in str(body)):
        return True
    if status != 400 or not isinstance(body, dict) or body.get("error_code") != "INVALID_PARAMETER_VALUE":
        return False
    message = str(body.get("message", "")).lower()
    return "alias" in message and "not found" in message


async def _version(client: InferenceClient, base: str, model: str, alias: str) -> RegistryVersion | None:
    status, body = await client.get_json(f"{base}/api/2.0/mlflow/registered-models/alias?name={model}&alias={alias}")
    if _no_such_version(status, body):
        return None
    if status != 200 or not isinstance(body, dict) or "model_version" not in body:
        raise RuntimeError(f"MLflow answered {status or 'nothing'} for {model}@{alias}")
    version: dict[str, Any] = body["model_version"]
    run_id = version.get("run_id")
    metrics: dict[str, float] = {}
    if run_id:
        run_status, run = await client.get_json(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")
        if run_status == 200 and isinstance(run, dict):
            for item in run.get("run", {}).get("data", {}).get("metrics", [])[:MAX_METRICS]:
                metrics[str(item["key"])] = float(item["value"])
    return RegistryVersion(version=str(version.get("version")), run_id=run_id, metrics=metrics)


async def registry_info(client: InferenceClient, mlflow_url: str, model: str) -> RegistryPublic:
    """Both aliases of ``model``; an unreachable MLflow becomes ``error``, never an exception."""
    base = mlflow_url.rstrip("/")
    try:
        champion = await _version(client, base, model, CHAMPION)
        challenger = await _version(client, base, model, CHALLENGER)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        return RegistryPublic(error=str(e))
    return RegistryPublic(champion=champion, challenger=challenger)


def info_version(metrics_text: str, model: str) -> str | None:
    """The ``version`` label of ``portfolio_os_model_info{model="<model>"}`` in a Prometheus text page."""
    for line in metrics_text.splitlines():
        if not line.startswith("portfolio_os_model_info{"):
            continue
        labels: dict[str, str] = dict(_LABEL.findall(line[line.index("{") + 1 : line.rindex("}")]))
        if labels.get("model") == model and labels.get("version"):
            return labels["version"]
    return None
