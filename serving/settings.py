"""Typed settings of the model servers: the environment (``PORTFOLIO_OS_*``) and the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_repo.contract import CHAMPION, MAX_TEXTS
from feature_repo.telemetry import QUIET_PROGRESS, TELEMETRY_OFF, set_defaults

# Telemetry off and hubs offline (the set every entry point applies), plus MLflow client limits:
# by default an unreachable http registry is retried for minutes, which would stall a server
# start and every reload poll; a short timeout and no retries make it fail fast instead.
PROCESS_DEFAULTS: Final[dict[str, str]] = {
    **TELEMETRY_OFF,
    **QUIET_PROGRESS,
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def apply_process_defaults() -> None:
    """Set :data:`PROCESS_DEFAULTS`, keeping any value the environment already has."""
    set_defaults(PROCESS_DEFAULTS)


class ServingSettings(BaseSettings):
    """Where the registry is, and request limits.

    Credentials (an http registry's token) come only from the environment.
    """

    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_OS_", extra="ignore")

    tracking_uri: str | None = Field(
        None, min_length=1, description="MLflow tracking/registry URI; unset means SQLite under the data folder."
    )
    data_dir: Path = Field(Path("data"), description="Local data folder holding mlflow.db by default.")
    sentiment_max_texts: int = Field(
        MAX_TEXTS, ge=1, description="Most texts one sentiment_text request may carry (a larger one is a 400)."
    )

    def resolve_tracking_uri(self) -> str:
        """The configured URI, or ``sqlite:///<data_dir>/mlflow.db`` (the same default as training)."""
        if self.tracking_uri is not None:
            return self.tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> ServingSettings:
    """The process-wide settings, built on first use (never at import time)."""
    return ServingSettings()


@dataclass(frozen=True)
class ServerOptions:
    """The command line of one model server (see ``docs/serving-contract.md``)."""

    registered_name: str
    model_name: str
    http_port: int
    host: str
    alias: str
    reload_seconds: float
    # A signal model's Feast feature service version; None: the contract's default (v1).
    feature_service: str | None = None
    # The v2 gRPC port beside REST (same host, same models); None: REST only.
    grpc_port: int | None = None


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser(registered_name: str) -> argparse.ArgumentParser:
    """The argument parser shared by every ``python -m serving.<name>`` entry point."""
    parser = argparse.ArgumentParser(
        prog=f"python -m serving.{registered_name}",
        description=f"Serve the MLflow model '{registered_name}' over the Open Inference Protocol v2 (KServe).",
    )
    parser.add_argument("--http_port", type=int, default=8080, help="HTTP port (v1, v2, /metrics).")
    parser.add_argument(
        "--grpc_port",
        type=int,
        default=None,
        help="Also serve the v2 gRPC inference service on this port (same host and models); default REST only.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind; the chart passes 0.0.0.0.")
    parser.add_argument("--model_name", default=registered_name, help="KServe model name (URL path).")
    parser.add_argument("--alias", default=CHAMPION, help="Registry alias to serve and follow.")
    parser.add_argument(
        "--reload_seconds",
        type=_non_negative,
        default=30.0,
        help="Seconds between registry polls for a moved alias; 0 never polls.",
    )
    parser.add_argument(
        "--feature_service",
        default=None,
        help="Signal models: the feature service version served (e.g. technical_model_v2); default v1.",
    )
    return parser


def parse_options(registered_name: str, argv: list[str] | None = None) -> ServerOptions:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into :class:`ServerOptions`."""
    args = build_parser(registered_name).parse_args(argv)
    return ServerOptions(
        registered_name=registered_name,
        model_name=args.model_name,
        http_port=args.http_port,
        host=args.host,
        alias=args.alias,
        reload_seconds=args.reload_seconds,
        feature_service=args.feature_service,
        grpc_port=args.grpc_port,
    )
