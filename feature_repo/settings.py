"""Typed settings of the feature store, read from the environment (``PORTFOLIO_OS_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeatureStoreSettings(BaseSettings):
    """Where features live and which store configuration to use.

    Secrets (a Redis password, a registry DSN with credentials) come only from the environment
    or a Kubernetes Secret mounted as environment variables; nothing here has a secret default.
    """

    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_OS_", extra="ignore")

    environment: Literal["local", "production"] = Field(
        "local", description="local: SQLite online + file registry; production: Redis + SQL registry."
    )
    data_dir: str = Field(
        str(Path("data").resolve()),
        description="Folder (or s3:// URI) holding the offline store, feature files and local registry.",
    )
    redis_url: str | None = Field(None, description="redis://[:password@]host:port[/db]; production only.")
    registry_url: str | None = Field(
        None, description="SQLAlchemy URL of the Feast registry database; production only."
    )

    @model_validator(mode="after")
    def _production_needs_endpoints(self) -> Self:
        if self.environment == "production" and not (self.redis_url and self.registry_url):
            raise ValueError("production needs PORTFOLIO_OS_REDIS_URL and PORTFOLIO_OS_REGISTRY_URL in the environment")
        return self


@lru_cache(maxsize=1)
def get_settings() -> FeatureStoreSettings:
    """The process-wide settings, built on first use (never at import time)."""
    return FeatureStoreSettings()
