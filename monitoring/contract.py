"""Metric names the gateway and model servers export, copied from docs/serving-contract.md.

Monitoring may not import ``api`` or ``serving``; the contract page is where the names meet. A
test parses the page and fails when this list and the page disagree, so a rename there must be
made here (and in the rules and dashboards, which a second test checks against this list).
"""

from __future__ import annotations

from typing import Final

from monitoring.exporter import EXPORTED_METRICS

GATEWAY_METRICS: Final[frozenset[str]] = frozenset(
    {
        "portfolio_os_gateway_requests_total",
        "portfolio_os_gateway_request_duration_seconds",
        "portfolio_os_gateway_model_call_duration_seconds",
        "portfolio_os_gateway_fallbacks_total",
        "portfolio_os_gateway_circuit_state",
        "portfolio_os_gateway_degraded_responses_total",
        "portfolio_os_gateway_feature_read_duration_seconds",
        "portfolio_os_gateway_feature_age_seconds",
        "portfolio_os_gateway_signal_score",
        "portfolio_os_gateway_tenant_requests_total",
        "portfolio_os_gateway_rate_limited_total",
        "portfolio_os_gateway_audit_failures_total",
        "portfolio_os_gateway_audit_rows_dropped_total",
        "portfolio_os_gateway_usage_flush_failures_total",
        "portfolio_os_gateway_scored_universe_age_seconds",
        "portfolio_os_gateway_scored_universe_build_seconds",
        "portfolio_os_gateway_scored_universe_tickers",
        "portfolio_os_gateway_scored_universe_lookups_total",
        "portfolio_os_gateway_backtest_jobs",
        "portfolio_os_gateway_backtest_submissions_total",
    }
)
MODEL_SERVER_METRICS: Final[frozenset[str]] = frozenset(
    {
        "portfolio_os_model_ready",
        "portfolio_os_model_info",
        "portfolio_os_model_reloads_total",
        "portfolio_os_model_registry_errors_total",
        "portfolio_os_model_predictions_total",
        "portfolio_os_model_predict_duration_seconds",
    }
)
HISTOGRAMS: Final[frozenset[str]] = frozenset(
    {
        "portfolio_os_gateway_request_duration_seconds",
        "portfolio_os_gateway_model_call_duration_seconds",
        "portfolio_os_gateway_feature_read_duration_seconds",
        "portfolio_os_gateway_signal_score",
        "portfolio_os_gateway_scored_universe_build_seconds",
        "portfolio_os_model_predict_duration_seconds",
    }
)


def exposed_series_names() -> frozenset[str]:
    """Every series name a scrape can return: contract names (histograms expanded) and monitoring's."""
    names = set(GATEWAY_METRICS | MODEL_SERVER_METRICS | EXPORTED_METRICS)
    for histogram in HISTOGRAMS:
        names |= {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}
    return frozenset(names - HISTOGRAMS)
