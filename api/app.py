"""``create_app()``: the gateway's FastAPI application factory (no work at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.backtests import init_backtest_tables
from api.db import init_db
from api.handlers import install_error_handlers
from api.idempotency_http import install_idempotency
from api.middleware import GatewayMiddleware
from api.openapi import RATE_LIMIT, install_openapi
from api.routes import (
    allocations,
    backtests,
    briefing,
    explanations,
    forecast,
    health,
    models,
    regime,
    sentiment,
    signals,
)
from api.services import Services, build_services
from api.settings import GatewaySettings, get_settings

log = logging.getLogger(__name__)
USAGE_FLUSH_S: Final = 10.0


async def _maintain_forever(services: Services) -> None:
    """Audit retention and partitions, expired idempotency keys: at start, then every interval."""
    while True:
        await run_in_threadpool(services.maintenance.run_once)
        await asyncio.sleep(services.settings.maintenance_interval_s)


async def _flush_usage_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(USAGE_FLUSH_S)
        await run_in_threadpool(services.usage.flush)


def _settle_heap(services: Services) -> None:
    """Open the feature store, then move every object alive so far out of the garbage collector's sight.

    The gateway imports Feast, pandas, pyarrow, SQLAlchemy and pydantic: some million long-lived
    objects, which every full collection walked again (measured: 130-180 ms pauses, dozens a
    minute under load, the whole latency tail). ``gc.freeze()`` keeps them out of later
    collections; objects made by requests are still collected as usual.
    """
    try:
        services.features.open()
    except Exception:  # an unreachable store at start is /readyz's business, not startup's
        log.warning("feature store not reachable at start; it is opened on first use")
    gc.collect()
    gc.freeze()


def _lifespan(services: Services):  # type: ignore[no-untyped-def]  # FastAPI's lifespan type is a union
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(
                partial(init_db, services.engine, partitions_ahead=services.settings.audit.partitions_ahead)
            )
            await run_in_threadpool(init_backtest_tables, services.engine)
        except SQLAlchemyError:
            # Start anyway: /readyz reports the DB and keyed routes answer 503 until it is back.
            log.exception("could not initialise the gateway database")
        services.client()
        if services.settings.gc_freeze:
            await run_in_threadpool(_settle_heap, services)
        flusher = asyncio.create_task(_flush_usage_forever(services))
        maintainer = asyncio.create_task(_maintain_forever(services))
        tasks = [flusher, maintainer]
        if services.settings.scored.enabled and services.settings.scored.background:
            tasks.append(asyncio.create_task(services.scored.run_forever()))
        if services.settings.backtests.background:
            tasks.append(asyncio.create_task(services.backtests.run_forever(services.settings.backtests.poll_seconds)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(services.usage.flush)
            await services.aclose()
            services.engine.dispose()

    return lifespan


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    services = build_services(settings)
    app = FastAPI(
        title="Portfolio OS gateway",
        version="0.1.0",
        description="B2B API for ranked equity signals, allocations and explanations.",
        lifespan=_lifespan(services),
    )
    app.state.services = services
    install_error_handlers(app)
    install_idempotency(app)  # its middleware sits inside the gateway middleware added below
    routers = (signals, allocations, explanations, sentiment, models, backtests, regime, forecast, briefing, health)
    for module in routers:
        app.include_router(module.router)
    install_openapi(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", *RATE_LIMIT],
        )
    # Added last, so it wraps everything (CORS included) and sees every response.
    app.add_middleware(GatewayMiddleware, services=services)
    return app
