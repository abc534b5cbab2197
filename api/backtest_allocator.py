"""Submit-time check of an ``allocator`` backtest against the registry, when the gateway can know.

The job itself refuses a universe its champion cannot allocate (training/backtest_allocator.py);
the gateway refuses earlier, by the same rule and words (:func:`feature_repo.backtests.allocator_refusal`),
with a 422, when it has an MLflow server to ask (``mlflow_url``, which the chart sets): the
``allocator`` model's ``champion`` alias (REST ``registered-models/alias``) and that version's
``MLmodel`` (``/model-versions/get-artifact``), whose ``model_config`` holds the trained tickers or
the policy's width. httpx only, no mlflow import. When MLflow cannot be asked (no ``mlflow_url``,
unreachable, an answer it cannot read) the job is queued and decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import yaml

from api.errors import InvalidRequestError
from api.inference import InferenceClient
from feature_repo.backtests import ALLOCATOR_ALIAS, ALLOCATOR_MODEL, BacktestSpec, allocator_refusal


@dataclass(frozen=True)
class Champion:
    """What the registry says the champion allocates: its version and trained tickers, or its width."""

    version: str
    tickers: frozenset[str]
    width: int | None


NO_CHAMPION: Final = "none"


async def _champion_version(client: InferenceClient, base: str) -> str | None:
    """The champion's version, :data:`NO_CHAMPION` when MLflow says there is none, None when unknown."""
    query = urlencode({"name": ALLOCATOR_MODEL, "alias": ALLOCATOR_ALIAS})
    status, body = await client.get_json(f"{base}/api/2.0/mlflow/registered-models/alias?{query}")
    if status == 200 and isinstance(body, dict) and isinstance(body.get("model_version"), dict):
        return str(body["model_version"].get("version"))
    # No such model: RESOURCE_DOES_NOT_EXIST; a model without that alias: "alias ... not found".
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    code = str(body.get("error_code", "")) if isinstance(body, dict) else ""
    if status in (400, 404) and (code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message):
        return NO_CHAMPION
    return None


def _config(text: str) -> dict[str, Any] | None:
    """The pyfunc's ``model_config`` from an MLmodel document, or None when it holds none."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    flavor = document.get("flavors", {}).get("python_function", {}) if isinstance(document, dict) else {}
    config = flavor.get("config") if isinstance(flavor, dict) else None
    return config if isinstance(config, dict) else None


async def registered_champion(client: InferenceClient, mlflow_url: str) -> Champion | str | None:
    """The champion's coverage, :data:`NO_CHAMPION`, or None when MLflow cannot tell (module docstring)."""
    base = mlflow_url.rstrip("/")
    version = await _champion_version(client, base)
    if version is None or version == NO_CHAMPION:
        return version
    query = urlencode({"path": "MLmodel", "name": ALLOCATOR_MODEL, "version": version})
    status, text = await client.get_text(f"{base}/model-versions/get-artifact?{query}")
    config = _config(text) if status == 200 else None
    if config is None or not isinstance(config.get("tickers"), list):
        return None
    width = config.get("max_assets")
    return Champion(version, frozenset(str(t) for t in config["tickers"]), None if width is None else int(width))


def check_allocator(spec: BacktestSpec, champion: Champion | str | None, mlflow_url: str) -> None:
    """Refuse (422) an ``allocator`` backtest the registered champion cannot run; accept when unknown.

    Raises:
        InvalidRequestError: no champion, a fixed width narrower than the universe, or tickers
            outside a fixed trained universe (named).
    """
    if champion is None:
        return
    if isinstance(champion, str):
        raise InvalidRequestError(
            f"strategy allocator: the registry at {mlflow_url} has no {ALLOCATOR_MODEL} model at its "
            f"{ALLOCATOR_ALIAS} alias (run the allocate stage first)"
        )
    refusal = allocator_refusal(champion.version, champion.width, champion.tickers, spec.universe)
    if refusal is not None:
        raise InvalidRequestError(f"strategy allocator: {refusal}")
