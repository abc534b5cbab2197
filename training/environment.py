"""Process environment every Portfolio OS entry point sets before the heavy libraries load."""

from __future__ import annotations

import os
from typing import Final

# Telemetry off and model hubs offline: nothing a job, test or benchmark runs may phone home,
# and no library may try to download weights at run time.
TELEMETRY_OFF: Final[dict[str, str]] = {
    "FEAST_USAGE": "False",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def quiet_third_parties() -> None:
    """Apply :data:`TELEMETRY_OFF`, keeping any value the caller's environment already set."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
