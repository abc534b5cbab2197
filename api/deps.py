"""FastAPI dependencies as ``Annotated`` aliases: services, the model client, and auth + scope + quota."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import PermissionDeniedError, RateLimitedError
from api.inference import InferenceClient
from api.services import Services
from api.settings import GatewaySettings
from api.tenants import Principal
from feature_repo.contract import Scope

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key in X-API-Key.")


def services_of(request: Request) -> Services:
    """The gateway's services (set on the app by :func:`api.app.create_app`)."""
    services: Services = request.app.state.services
    return services


# The lookups below are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker
# thread, a thread hop per request and per dependency for what is an attribute read. They take the
# request, not ``ServicesDep``: FastAPI solves a sub-dependency's own tree again wherever it appears
# (before its per-request cache is consulted), so every ``ServicesDep`` inside another dependency
# was one more pass of its resolver on every request.
async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_app_settings(request: Request) -> GatewaySettings:
    return services_of(request).settings


SettingsDep = Annotated[GatewaySettings, Depends(get_app_settings)]


async def get_inference(request: Request) -> InferenceClient:
    return services_of(request).client()


InferenceClientDep = Annotated[InferenceClient, Depends(get_inference)]


async def authenticated(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    """The caller behind the presented key: a cached key row inline, else a DB read in a thread."""
    services = services_of(request)
    presented = bearer.credentials if bearer else header_key
    principal = services.auth.cached(presented)
    if principal is None:
        principal = await run_in_threadpool(services.auth.authenticate, presented)
    # Read by the middleware after the response: per-tenant usage counters.
    request.state.principal = principal
    return principal


async def _count(request: Request, services: Services, principal: Principal) -> None:
    """Count the request against the key's quota; the state goes out as ``RateLimit-*`` headers.

    The middleware adds the headers to whatever answer follows (a 2xx, a 4xx, the 429 itself).
    """
    try:
        # In-memory windows are a dict update; only a networked storage (Redis) needs a thread.
        if services.limiter.blocking:
            quota = await run_in_threadpool(services.limiter.hit, principal)
        else:
            quota = services.limiter.hit(principal)
    except RateLimitedError as e:
        request.state.quota = e.quota
        raise
    request.state.quota = quota


def require(scope: Scope) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency that admits callers within their quota and holding ``scope``.

    Every authenticated request counts, a 403 too, so every answer to a known key can carry the
    quota it leaves.
    """

    async def dependency(request: Request, principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        await _count(request, services_of(request), principal)
        if scope not in principal.scopes:
            raise PermissionDeniedError(f"this API key lacks the {scope} scope")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


SignalsReader = Annotated[Principal, Security(require(Scope.SIGNALS_READ))]
AllocationsWriter = Annotated[Principal, Security(require(Scope.ALLOCATIONS_WRITE))]
ExplanationsReader = Annotated[Principal, Security(require(Scope.EXPLANATIONS_READ))]
SentimentReader = Annotated[Principal, Security(require(Scope.SENTIMENT_READ))]
ModelsReader = Annotated[Principal, Security(require(Scope.MODELS_READ))]
BacktestsWriter = Annotated[Principal, Security(require(Scope.BACKTESTS_WRITE))]
BacktestsReader = Annotated[Principal, Security(require(Scope.BACKTESTS_READ))]
RegimeReader = Annotated[Principal, Security(require(Scope.REGIME_READ))]
ForecastsReader = Annotated[Principal, Security(require(Scope.FORECASTS_READ))]
BriefingReader = Annotated[Principal, Security(require(Scope.BRIEFING_READ))]
