"""What the model-training stages share: quiet library logs and the run's checked model registry."""

from __future__ import annotations

from typing import Final

from feature_repo.telemetry import QUIET_PROGRESS, set_defaults
from training.audit import AuditLog
from training.context import RunContext
from training.registry.model_registry import ModelRegistry

AUDIT_LOG: Final = "registry_audit.jsonl"


def quiet_libraries() -> None:
    """MLflow's and Optuna's INFO lines and SQLAlchemy's deprecation notes are noise in a job log."""
    import logging
    import warnings

    set_defaults(QUIET_PROGRESS)  # MLflow's artifact progress bars (one per input-example check)
    for name in ("mlflow", "optuna", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*noload.*")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # optuna is part of the training extra; without it tuning fails later, clearly
        pass


def open_registry(ctx: RunContext) -> ModelRegistry:
    """The run's model registry (the top-level ``registry`` settings), checked before any training.

    Raises:
        RegistryUnreachable: the tracking store cannot be reached (in seconds, not after training).
    """
    config = ctx.config.registry
    registry = ModelRegistry(config.resolve_tracking_uri(ctx.data_dir), config, AuditLog(ctx.data_dir / AUDIT_LOG))
    registry.check_reachable()
    return registry
