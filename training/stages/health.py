"""Stage ``health``: data health checks on the stored prices."""

from __future__ import annotations

from feature_repo.tables import DATE
from training.calendar import run_sessions
from training.context import RunContext
from training.corporate_actions.policy import masked_suspects_note
from training.health import run_health_checks
from training.store import OfflineStore


def run(ctx: RunContext) -> dict[str, object]:
    """Print the health table; raise HealthCheckFailed (non-zero exit) past a threshold."""
    with OfflineStore(ctx.offline_store_path) as store:
        prices = store.read("prices")
        breaks = store.read("series_breaks")
    # Against the exchange's sessions when configured: a week missing for every ticker is then seen.
    sessions = run_sessions(ctx.config.calendar.exchange, prices[DATE])
    # Returns across series breaks are not returns: masked corporate actions and reused codes neither
    # fail nor hide here, they are listed below the table.
    report = run_health_checks(
        prices, ctx.config.health, sessions, breaks, tick_noise_below=ctx.config.corporate_actions.detection.min_price
    )
    print(report.to_table(), file=ctx.out)
    note = masked_suspects_note(breaks, ctx.data_dir)
    if note:
        print(note, file=ctx.out)
    report.raise_if_failed()
    failing = [c.name for c in report.checks if c.affected]
    return {"rows": len(prices), "checks": len(report.checks), "with_findings": len(failing)}
