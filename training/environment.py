"""Process environment every Portfolio OS entry point sets before the heavy libraries load."""

from __future__ import annotations

from feature_repo.import_costs import skip_typeguard_instrumentation
from feature_repo.telemetry import TELEMETRY_OFF, telemetry_off

__all__ = ["TELEMETRY_OFF", "quiet_third_parties"]


def quiet_third_parties() -> None:
    """Apply :data:`~feature_repo.telemetry.TELEMETRY_OFF` (keeping values already set), and skip typeguard's
    import-time instrumentation of Feast (:mod:`feature_repo.import_costs`)."""
    telemetry_off()
    skip_typeguard_instrumentation()
