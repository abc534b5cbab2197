"""The gateway's OpenAPI document: FastAPI's, plus the limits settings decide and the headers every answer carries.

Pydantic and FastAPI declare what is fixed in code. Two limits come from settings
(``max_tickers``): the ``tickers`` query parameter's pattern and the ``universe``'s ``maxItems``;
they are filled in here from the same functions the routes enforce them with. Headers are
declared on every response: ``X-Request-ID`` always, and the ``RateLimit-*`` fields on operations
behind an API key (present once the key is known and counted, which every 2xx, 403 and 429 implies).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.settings import GatewaySettings
from api.tickers import tickers_query_max_length, tickers_query_pattern

REQUEST_ID: Final = {
    "X-Request-ID": {
        "description": "The request's id (the caller's own when it sent a valid one); also in error bodies and logs.",
        "required": True,
        "schema": {"type": "string"},
    }
}
_INTEGER: Final = {"type": "integer", "minimum": 0}
RATE_LIMIT: Final = {
    "RateLimit-Limit": {"description": "The key's quota: requests per window.", "schema": _INTEGER},
    "RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": _INTEGER},
    "RateLimit-Reset": {
        "description": "Seconds until the oldest request counted leaves the (moving) window and one more is allowed.",
        "schema": _INTEGER,
    },
    "RateLimit-Policy": {
        "description": "The quota and its window in seconds, e.g. `600;w=60`.",
        "schema": {"type": "string", "pattern": r"^[0-9]+;w=[0-9]+$"},
    },
}
RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True, "schema": _INTEGER}
}
# Answers that always come after the quota was counted (a 404 may be an unmatched path instead).
COUNTED: Final = ("200", "202", "403", "429")


def _declare_limits(document: dict[str, Any], max_tickers: int) -> None:
    for parameter in document["paths"]["/v1/signals"]["get"]["parameters"]:
        if parameter["name"] == "tickers":
            parameter["schema"]["pattern"] = tickers_query_pattern(max_tickers)
            parameter["schema"]["maxLength"] = tickers_query_max_length(max_tickers)
            parameter["description"] += f" 1 to {max_tickers} tickers (max_tickers); duplicates are answered once."
    universe = document["components"]["schemas"]["AllocationRequest"]["properties"]["universe"]
    universe["maxItems"] = max_tickers
    forecast = document["components"]["schemas"].get("ForecastRequest", {}).get("properties", {})
    if forecast:
        forecast["universe"]["maxItems"] = max_tickers
        forecast["weights"]["maxProperties"] = max_tickers


def _declare_headers(document: dict[str, Any]) -> None:
    for path_item in document["paths"].values():
        for operation in path_item.values():
            keyed = bool(operation.get("security"))
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                headers.update(REQUEST_ID)
                if keyed:
                    headers.update({name: {**h, "required": status in COUNTED} for name, h in RATE_LIMIT.items()})
                if status == "429":
                    headers.update(RETRY_AFTER)


def gateway_openapi(app: FastAPI, settings: GatewaySettings) -> dict[str, Any]:
    """The document served at ``/openapi.json`` (built once per app)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _declare_limits(document, settings.max_tickers)
        _declare_headers(document)
        app.openapi_schema = document
    return app.openapi_schema


def install_openapi(app: FastAPI, settings: GatewaySettings) -> None:
    """Serve :func:`gateway_openapi` instead of FastAPI's plain document."""
    app.openapi = partial(gateway_openapi, app, settings)  # type: ignore[method-assign]  # FastAPI's documented hook
