"""The ``portfolio_os_model_*`` Prometheus metrics of the contract.

They live in prometheus_client's default registry, which is the one KServe's ``/metrics`` route
renders, so they appear next to KServe's own per-stage latency histograms on the HTTP port.
Declaring them here registers them once per process, when the first server module is imported.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MODEL_READY: Final = Gauge(
    "portfolio_os_model_ready", "1 while the model has a loaded version whose signature matches.", ["model"]
)
MODEL_INFO: Final = Gauge(
    "portfolio_os_model_info",
    "Always 1; the labels name the version being served.",
    ["model", "version", "feature_service"],
)
MODEL_RELOADS: Final = Counter(
    "portfolio_os_model_reloads", "Attempts to swap in the version an alias moved to.", ["model", "outcome"]
)
MODEL_REGISTRY_ERRORS: Final = Counter(
    "portfolio_os_model_registry_errors",
    "Registry look-ups that failed while a loaded version kept serving.",
    ["model"],
)
MODEL_PREDICTIONS: Final = Counter(
    "portfolio_os_model_predictions", "Rows scored (one per ticker).", ["model", "version"]
)
# Buckets from 0.5 ms: a small LightGBM answers 50 rows in about a millisecond.
MODEL_PREDICT_DURATION: Final = Histogram(
    "portfolio_os_model_predict_duration_seconds",
    "Time spent inside predict, per request.",
    ["model", "version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

RELOAD_OUTCOMES: Final[tuple[str, ...]] = ("success", "failed")


def declare(model: str) -> None:
    """Create every zero-valued series of ``model`` so alerts on ``increase()`` see them from the start."""
    MODEL_READY.labels(model=model).set(0)
    for outcome in RELOAD_OUTCOMES:
        MODEL_RELOADS.labels(model=model, outcome=outcome)
    MODEL_REGISTRY_ERRORS.labels(model=model)


def serving_version(model: str, version: str, feature_service: str, previous: tuple[str, str] | None) -> None:
    """Record that ``model`` now serves ``version`` (replacing ``previous``: (version, feature_service))."""
    if previous is not None and previous != (version, feature_service):
        MODEL_INFO.remove(model, *previous)
    MODEL_INFO.labels(model=model, version=version, feature_service=feature_service).set(1)
    MODEL_READY.labels(model=model).set(1)


def not_ready(model: str) -> None:
    """Record that ``model`` stopped serving (shutdown)."""
    MODEL_READY.labels(model=model).set(0)
