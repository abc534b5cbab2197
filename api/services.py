"""The long-lived objects of one app: DB engine, feature reader, model client, limiter, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.audit import AuditLog, utc_now
from api.backtest_dispatch import BacktestDispatcher, build_backtests
from api.briefing import BriefingStore
from api.circuit import CircuitBreaker
from api.compose import Compositions
from api.data_quality import DataQualityFlags
from api.db import make_engine
from api.features import OnlineFeatures
from api.idempotency import IdempotencyStore
from api.inference import InferenceClient
from api.maintenance import Maintenance
from api.market_data import MarketData
from api.metrics import GatewayMetrics
from api.ratelimit import RateLimiter
from api.scored import ScoredUniverse
from api.settings import GatewaySettings
from api.tenants import KeyAuthenticator, UsageCounter


@dataclass
class Services:
    """Built once per app by :func:`build_services`; closed by the app's lifespan."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    engine: Engine
    features: OnlineFeatures
    auth: KeyAuthenticator
    limiter: RateLimiter
    usage: UsageCounter
    audit: AuditLog
    breakers: dict[str, CircuitBreaker]
    idempotency: IdempotencyStore
    maintenance: Maintenance
    compositions: Compositions  # undegraded signal compositions, reused by key (api/compose.py)
    inference: InferenceClient | None = None
    # Built right after the rest (it calls back into :meth:`client`).
    scored: ScoredUniverse = field(init=False)
    backtests: BacktestDispatcher = field(init=False)
    market: MarketData = field(init=False)  # the market views (regime, return windows)
    data_quality: DataQualityFlags = field(init=False)  # the sentinel's per-ticker flags
    briefing: BriefingStore = field(init=False)  # the daily briefing's stored facts

    def client(self) -> InferenceClient:
        """The shared model client, created on the running event loop on first use."""
        if self.inference is None:
            settings = self.settings
            self.inference = InferenceClient(
                settings.model_urls,
                settings.model_timeout_s,
                self.breakers,
                self.metrics,
                cache_seconds=settings.score_cache_seconds,
                grpc_addresses=settings.grpc_addresses(),
            )
        return self.inference

    async def aclose(self) -> None:
        # The writer commits the rows already queued before it stops (a blocking join).
        await run_in_threadpool(self.audit.close)
        if self.inference is not None:
            await self.inference.aclose()
            self.inference = None


def build_services(settings: GatewaySettings) -> Services:
    """Wire the services (cheap: no connection is opened here)."""
    metrics = GatewayMetrics()
    engine = make_engine(settings.resolved_database_url, settings.audit_sqlite_synchronous)
    idempotency = IdempotencyStore(
        engine,
        ttl=timedelta(hours=settings.idempotency.ttl_hours),
        lease=timedelta(seconds=settings.idempotency.lease_seconds),
        clock=utc_now,
    )
    features = OnlineFeatures(settings.feature_store(), metrics, settings.feature_cache_seconds)
    services = Services(
        settings=settings,
        metrics=metrics,
        engine=engine,
        features=features,
        auth=KeyAuthenticator(engine, settings.pepper, settings.auth_cache_seconds, metrics=metrics),
        limiter=RateLimiter(settings.rate_limit_storage, metrics),
        usage=UsageCounter(engine, metrics),
        audit=AuditLog(
            engine,
            metrics,
            queue_rows=settings.audit.queue_rows,
            queue_bytes=int(settings.audit.queue_mb * 2**20),
            batch_rows=settings.audit.batch_rows,
            batch_bytes=int(settings.audit.batch_mb * 2**20),
            writers=settings.audit.writers or (2 if engine.dialect.name == "postgresql" else 1),
            commit_interval_s=settings.audit.commit_interval_ms / 1000,
            enqueue_timeout_s=settings.audit.enqueue_timeout_s,
            retries=settings.audit.retries,
            clock=utc_now,
        ),
        idempotency=idempotency,
        maintenance=Maintenance(engine, settings.audit, idempotency, clock=utc_now),
        compositions=Compositions(metrics, settings.score_cache_seconds),
        # One breaker per model server, exported from the start so dashboards see every circuit.
        breakers={
            name: CircuitBreaker(
                name, settings.circuit_failure_threshold, settings.circuit_reset_s, metrics.circuit_state
            )
            for name in settings.model_urls
        },
    )
    services.scored = ScoredUniverse(features, services.client, settings.scored, metrics)
    services.backtests = build_backtests(settings, engine, metrics, utc_now)
    services.market = MarketData(features, settings.feature_cache_seconds, metrics=metrics)
    services.data_quality = DataQualityFlags(features, settings.data_quality_cache_seconds, metrics=metrics)
    services.briefing = BriefingStore(settings.data_dir)
    return services
