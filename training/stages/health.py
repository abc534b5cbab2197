"""Stage ``health``: data health checks on the stored prices."""

from __future__ import annotations

from training.context import RunContext
from training.health import run_health_checks
from training.store import OfflineStore


def run(ctx: RunContext) -> dict[str, object]:
    """Print the health table; raise HealthCheckFailed (non-zero exit) past a threshold."""
    with OfflineStore(ctx.offline_store_path) as store:
        prices = store.read("prices")
    report = run_health_checks(prices, ctx.config.health)
    print(report.to_table(), file=ctx.out)
    report.raise_if_failed()
    failing = [c.name for c in report.checks if c.affected]
    return {"rows": len(prices), "checks": len(report.checks), "with_findings": len(failing)}
