"""Typed settings of the monitoring jobs and exporter, read from ``PORTFOLIO_OS_*`` lazily."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitoringSettings(BaseSettings):
    """Where monitoring reads data and writes reports, and the thresholds its decisions use.

    Thresholds here are the code's; the alert rules in ``rules/portfolio-os.rules.yaml`` repeat
    the same numbers (a test keeps them equal).
    """

    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_OS_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Feature files under features/, reports under reports/.")
    metrics_host: str = Field("127.0.0.1", description="Bind address of serve-metrics (0.0.0.0 only in a pod).")
    metrics_port: int = Field(9108, ge=1, le=65535, description="Port of serve-metrics.")
    drift_share_threshold: float = Field(0.5, gt=0, le=1, description="Share of drifted features = view drift.")
    decay_window: int = Field(63, ge=5, description="Dates in the rolling IC window.")
    decay_tstat_min: float = Field(2.0, description="Rolling rank-IC Newey-West t-stat below this = decayed.")
    volatility_spike_z: float = Field(
        2.0, gt=0, description="Benchmark volatility this many std above its trailing year = volatility spike."
    )
    sentiment_spike_share: float = Field(
        0.1, gt=0, le=1, description="Share of scored tickers with a sentiment spike on a session = spike alert."
    )
    sentiment_spike_min_tickers: int = Field(3, ge=1, description="...and at least this many tickers spiked.")

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"


@lru_cache(maxsize=1)
def get_settings() -> MonitoringSettings:
    """The process-wide settings, built on first use (never at import time)."""
    return MonitoringSettings()
