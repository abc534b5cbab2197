"""The telemetry-off environment every Portfolio OS process runs with, defined once.

Feast, MLflow, Ray and the Hugging Face hub phone home, or try to download, unless the environment
tells them not to. Every entry point (the training job, the model servers, the gateway, the
monitoring jobs, the benchmarks and the tests) applies :data:`TELEMETRY_OFF` before those libraries
load; the images and the chart set the same variables (``tests/test_dockerfiles.py`` checks the
images against this mapping). This module imports nothing beyond the standard library, so an entry
point can call it first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Final

TELEMETRY_OFF: Final[Mapping[str, str]] = MappingProxyType(
    {
        "FEAST_USAGE": "False",
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
)
"""Nothing a job, server, test or benchmark runs may phone home, and no model hub is reached at run time."""

QUIET_PROGRESS: Final[Mapping[str, str]] = MappingProxyType({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
"""MLflow's artifact progress bars (one per logged or downloaded model) are noise in a job or server log."""


def set_defaults(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> None:
    """Set each of ``values`` in ``environ`` (default: the process environment) unless already set.

    A value the caller's environment already has wins, so an operator can still opt in.
    """
    target = os.environ if environ is None else environ
    for key, value in values.items():
        target.setdefault(key, value)


def telemetry_off(environ: MutableMapping[str, str] | None = None) -> None:
    """Apply :data:`TELEMETRY_OFF` (keeping values already set); call it before Feast, MLflow or Ray load."""
    set_defaults(TELEMETRY_OFF, environ)
