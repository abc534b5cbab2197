"""Typed settings of the gateway, read from the environment (``PORTFOLIO_OS_*``), built lazily."""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_repo.settings import FeatureStoreSettings

# Used only in the local environment when no pepper is configured, so `make demo` works out of
# the box; production refuses to start without a real secret (see the validator below).
LOCAL_DEV_PEPPER: Final = "portfolio-os-local-development-pepper"  # not a secret by design
MAX_TICKERS_CAP: Final = 5000


class AuditSettings(BaseModel):
    """Audit trail storage: the background writer and retention (``PORTFOLIO_OS_AUDIT__<FIELD>``)."""

    retention_days: int = Field(
        400,
        ge=1,
        description="Rows older than this are removed: PostgreSQL drops whole monthly partitions, "
        "SQLite deletes in small batches; both off the request path.",
    )
    queue_rows: int = Field(
        10_000, ge=1, description="Rows waiting for the writer; beyond it requests wait for room (enqueue_timeout_s)."
    )
    queue_mb: float = Field(
        32.0,
        gt=0,
        le=4096,
        description="Answer megabytes queued or being committed; beyond it requests wait for room, as for "
        "queue_rows (a 2,400-ticker answer is ~700 KB: rows alone do not bound the gateway's memory).",
    )
    batch_rows: int = Field(256, ge=1, le=10_000, description="Most rows one transaction commits.")
    batch_mb: float = Field(
        8.0, gt=0, le=1024, description="Most answer megabytes one transaction commits (at least one row)."
    )
    commit_interval_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description="The writer commits the rows gathered over this long in one transaction (0: commit on each "
        "wake-up); a hard kill can lose at most this much of the latest rows besides the queue.",
    )
    enqueue_timeout_s: float = Field(
        5.0, ge=0, le=300, description="How long a request waits for room in a full queue before its row is dropped."
    )
    retries: int = Field(3, ge=0, le=10, description="Retries of a failed commit (back-off 0.1, 0.4, 1.6 s, ...).")
    writers: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Writer threads (connections); default 1 on SQLite (one writer at a time "
        "anyway), 2 on PostgreSQL (its per-row cost is in the server, one backend per connection).",
    )
    purge_batch_rows: int = Field(500, ge=1, description="Rows per SQLite retention DELETE (short locks).")
    partitions_ahead: int = Field(3, ge=1, le=24, description="PostgreSQL: monthly partitions created ahead of now.")


class IdempotencySettings(BaseModel):
    """Stored answers of ``Idempotency-Key`` requests (``PORTFOLIO_OS_IDEMPOTENCY__<FIELD>``)."""

    ttl_hours: float = Field(24.0, gt=0, le=24 * 30, description="How long a key's answer is replayed.")
    lease_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="A key whose first request has not finished in this long may be taken over "
        "(its gateway died); until then a duplicate gets 409 idempotency_in_progress.",
    )


class ScoredSettings(BaseModel):
    """Every model scores the whole online universe once per snapshot (``PORTFOLIO_OS_SCORED__<FIELD>``)."""

    enabled: bool = Field(True, description="Score the online universe in the background and answer signals from it.")
    poll_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often the online store and the served versions are checked for changes."
    )
    max_age_seconds: float = Field(
        60.0,
        gt=0,
        description="A snapshot not confirmed current for this long is stale: requests call the models themselves.",
    )
    build_timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of one batched model call of a build.")
    max_in_flight: int = Field(2, ge=1, le=16, description="Batched model calls of a build running at once.")
    background: bool = Field(
        True, description="Poll in a background task from start-up; off only where a test drives the polls itself."
    )


class BacktestSettings(BaseModel):
    """Backtest jobs (``PORTFOLIO_OS_BACKTESTS__<FIELD>``): where they run and how many at once."""

    executor: Literal["local", "ray", "off"] = Field(
        "local",
        description="local: a detached `python -m training.backtest_job` process per job on this machine, on a "
        "local Ray (127.0.0.1); ray: Ray's Job Submission API at ray_address (the cluster); off: jobs stay queued.",
    )
    ray_address: str | None = Field(None, description="Ray dashboard URL for executor=ray, e.g. http://ray-head:8265.")
    python: str = Field(
        sys.executable,
        description="The training environment's interpreter that runs a job (local: this venv's; ray: the "
        "cluster image's `python`).",
    )
    max_jobs_per_tenant: int = Field(
        2, ge=1, le=100, description="Queued + running jobs a tenant may have (429 above)."
    )
    max_running: int = Field(1, ge=1, le=64, description="Jobs this gateway runs at once; the rest wait queued.")
    retry_after_s: int = Field(30, ge=1, le=3600, description="Retry-After of a 429 over the tenant's job limit.")
    poll_seconds: float = Field(2.0, gt=0, le=600, description="How often queued jobs are started and ended ones seen.")
    job_cpus: int = Field(
        1, ge=1, le=64, description="CPUs of a job's local Ray, or its entrypoint_num_cpus on a cluster."
    )
    ray_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of one call to the Ray dashboard.")
    background: bool = Field(True, description="Run the dispatcher loop from start-up; off where a test drives it.")

    @model_validator(mode="after")
    def _ray_needs_an_address(self) -> Self:
        if self.executor == "ray" and not self.ray_address:
            raise ValueError("backtests.executor=ray needs backtests.ray_address (the Ray dashboard URL)")
        return self


class GatewaySettings(BaseSettings):
    """Everything the gateway deployable needs; secrets only from the environment."""

    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_OS_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["local", "production"] = Field("local", description="Selects the feature store config.")
    data_dir: str = Field(str(Path("data").resolve()), description="Data folder (feature store, local DB).")
    redis_url: str | None = Field(None, description="Feast online store in production (redis://...).")
    registry_url: str | None = Field(None, description="Feast SQL registry in production.")
    model_urls: dict[str, str] = Field(
        default_factory=dict, description="JSON object: model name -> model server base URL (v2 protocol)."
    )
    model_transport: Literal["rest", "grpc"] = Field(
        "rest",
        description="How inference calls reach the model servers: rest (v2 JSON) or grpc (v2 gRPC, needs the "
        "portfolio-os[gateway-grpc] extra and an address in model_grpc_urls); metadata, readiness and /metrics "
        "stay REST.",
    )
    model_transports: dict[str, Literal["rest", "grpc"]] = Field(
        default_factory=dict, description="JSON object: model server name -> rest or grpc, overriding model_transport."
    )
    model_grpc_urls: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: model server name -> host:port of its v2 gRPC service (its --grpc_port).",
    )
    database_url: str | None = Field(None, description="Tenants, keys, usage and audit DB (SQLAlchemy URL).")
    rate_limit_storage: str = Field("memory://", description="`limits` storage URI (memory:// or redis://...).")
    api_key_pepper: SecretStr | None = Field(None, description="HMAC secret for API key hashes.")
    mlflow_url: str | None = Field(None, description="MLflow tracking server for champion/challenger info.")
    model_timeout_s: float = Field(0.5, gt=0, le=30, description="Per-call timeout to a model server.")
    circuit_failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open a circuit.")
    circuit_reset_s: float = Field(5.0, gt=0, description="Cool-down before a half-open probe.")
    max_tickers: int = Field(200, ge=1, le=MAX_TICKERS_CAP, description="Most tickers one request may name.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Request bodies above this get 413.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; none by default.")
    default_rate_limit: str = Field("600/minute", description="Rate limit of new keys (`limits` notation).")
    assumed_correlation: float = Field(
        0.3, ge=0.0, le=1.0, description="Constant pairwise correlation assumed for expected portfolio volatility."
    )
    log_level: str = Field("INFO", description="Python logging level of the gateway.")
    feature_cache_seconds: float = Field(
        5.0, ge=0, le=300, description="How long an online feature vector is reused per (view, ticker); 0 disables."
    )
    data_quality_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long a ticker's data_quality row (the sentinel's daily flag) is reused; 0 reads every time.",
    )
    auth_cache_seconds: float = Field(
        5.0, ge=0, le=60, description="How long a key's row is reused; a revocation takes effect within it. 0 disables."
    )
    score_cache_seconds: float = Field(
        2.0, ge=0, le=60, description="How long a model's answer to identical inputs is reused; 0 disables."
    )
    gc_freeze: bool = Field(
        True,
        description="Freeze the start-up heap (gc.freeze) once the DB and feature store are open, so full "
        "garbage collections skip the libraries' objects; off only where many apps share one process (tests).",
    )
    audit_sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite `synchronous` of the audit DB (WAL): FULL survives power loss, NORMAL only crashes."
    )
    audit: AuditSettings = Field(default_factory=AuditSettings, description="Audit writer and retention.")
    idempotency: IdempotencySettings = Field(
        default_factory=IdempotencySettings, description="Idempotency-Key answers of POST routes."
    )
    scored: ScoredSettings = Field(default_factory=ScoredSettings, description="The scored universe.")
    backtests: BacktestSettings = Field(default_factory=BacktestSettings, description="Backtest jobs.")
    maintenance_interval_s: float = Field(
        600.0, gt=0, description="How often audit retention, partitions ahead and expired idempotency keys are seen to."
    )

    @field_validator("model_urls")
    @classmethod
    def _strip_slashes(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: url.rstrip("/") for name, url in value.items()}

    @model_validator(mode="after")
    def _grpc_servers_have_addresses(self) -> Self:
        unknown = sorted((set(self.model_transports) | set(self.model_grpc_urls)) - set(self.model_urls))
        if unknown:
            raise ValueError(f"model_transports/model_grpc_urls name servers absent from model_urls: {unknown}")
        missing = sorted(s for s in self.model_urls if self.transport_of(s) == "grpc" and s not in self.model_grpc_urls)
        if missing:
            raise ValueError(f"model servers on grpc need an address in PORTFOLIO_OS_MODEL_GRPC_URLS: {missing}")
        if self.grpc_addresses() and importlib.util.find_spec("grpc") is None:
            raise ValueError("model_transport grpc needs grpcio: install portfolio-os[gateway-grpc]")
        return self

    def transport_of(self, server: str) -> Literal["rest", "grpc"]:
        """How inference calls reach ``server``: its entry in ``model_transports``, else ``model_transport``."""
        return self.model_transports.get(server, self.model_transport)

    def grpc_addresses(self) -> dict[str, str]:
        """Model server name -> gRPC address, for the servers whose calls go over gRPC."""
        return {s: self.model_grpc_urls[s] for s in self.model_urls if self.transport_of(s) == "grpc"}

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Self:
        if self.environment == "production":
            pepper = self.api_key_pepper.get_secret_value() if self.api_key_pepper else ""
            if len(pepper) < 16 or pepper == LOCAL_DEV_PEPPER:
                raise ValueError("production needs PORTFOLIO_OS_API_KEY_PEPPER (at least 16 characters)")
            if not self.database_url:
                raise ValueError("production needs PORTFOLIO_OS_DATABASE_URL")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured DB, or SQLite under the data folder."""
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'gateway.db'}"

    @property
    def pepper(self) -> bytes:
        """The HMAC key for API key hashes."""
        value = self.api_key_pepper.get_secret_value() if self.api_key_pepper else LOCAL_DEV_PEPPER
        return value.encode()

    def feature_store(self) -> FeatureStoreSettings:
        """The feature store settings of the same environment."""
        return FeatureStoreSettings(
            environment=self.environment,
            data_dir=self.data_dir,
            redis_url=self.redis_url,
            registry_url=self.registry_url,
        )


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    """The process-wide settings, built on first use (never at import time)."""
    return GatewaySettings()
