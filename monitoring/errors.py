"""The one exception root of the monitoring package."""

from __future__ import annotations


class MonitoringError(Exception):
    """A monitoring job cannot do what it was asked (missing data, a bad window, a missing tool)."""
