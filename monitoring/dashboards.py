"""Grafana dashboards as code: one JSON file per concern under ``monitoring/dashboards/``.

Every panel queries Prometheus through the ``${datasource}`` variable (no hard-coded datasource
UID) so the same files work in any Grafana. The JSON files are generated (``python -m monitoring
dashboards --write``) and copied to the chart; tests check the files equal this code's output and
that every PromQL ``expr`` selects only series the code exports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from monitoring.rules import CHART_FILES, PACKAGE_DIR

DASHBOARDS_DIR: Final = PACKAGE_DIR / "dashboards"
CHART_DASHBOARDS_DIR: Final = CHART_FILES / "dashboards"
SCHEMA_VERSION: Final = 39
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
RATE: Final = "$__rate_interval"
G: Final = "portfolio_os_gateway"


@dataclass(frozen=True)
class Panel:
    """One panel: its title, (expr, legend) targets, unit and Grafana panel type."""

    title: str
    targets: list[tuple[str, str]]
    unit: str = "short"
    kind: str = "timeseries"
    thresholds: list[float] = field(default_factory=list)


def _p99(metric: str, by: str, quantile: float = 0.99) -> str:
    return f"histogram_quantile({quantile}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))"


GATEWAY: Final = [
    Panel("Requests by route", [(f"sum by (route) (rate({G}_requests_total[{RATE}]))", "{{route}}")], "reqps"),
    Panel(
        "5xx share",
        [(f'sum(rate({G}_requests_total{{status=~"5.."}}[{RATE}])) / sum(rate({G}_requests_total[{RATE}]))', "5xx")],
        "percentunit",
        thresholds=[0.05],
    ),
    Panel(
        "Latency p50 / p99 by route",
        [
            (_p99(f"{G}_request_duration_seconds", "route", 0.5), "p50 {{route}}"),
            (_p99(f"{G}_request_duration_seconds", "route"), "p99 {{route}}"),
        ],
        "s",
    ),
    Panel(
        "/v1/signals slower than 250 ms (SLO 1%)",
        [(f"portfolio_os:signals_slow_ratio:rate{w}", w) for w in ("5m", "1h", "6h")],
        "percentunit",
        thresholds=[0.01],
    ),
    Panel("Degraded responses", [(f"sum by (route) (rate({G}_degraded_responses_total[{RATE}]))", "{{route}}")]),
    Panel("Feature read p99", [(_p99(f"{G}_feature_read_duration_seconds", "instance"), "{{instance}}")], "s"),
    Panel(
        "Scored universe: snapshot age and tickers",
        [(f"max({G}_scored_universe_age_seconds)", "age (s)"), (f"max({G}_scored_universe_tickers)", "tickers")],
    ),
    Panel(
        "Signal requests by scored-universe outcome",
        [(f"sum by (outcome) (rate({G}_scored_universe_lookups_total[{RATE}]))", "{{outcome}}")],
        "reqps",
    ),
    Panel("Scored-universe build p99", [(_p99(f"{G}_scored_universe_build_seconds", "outcome"), "{{outcome}}")], "s"),
    Panel(
        "Backtest jobs by state, submissions by outcome",
        [
            (f"max by (state) ({G}_backtest_jobs)", "{{state}}"),
            (f"sum by (outcome) (increase({G}_backtest_submissions_total[{RATE}]))", "submitted: {{outcome}}"),
        ],
    ),
    Panel(
        "Audit and usage-flush failures",
        [
            (f"sum(increase({G}_audit_failures_total[{RATE}]))", "audit"),
            (f"sum by (reason) (increase({G}_audit_rows_dropped_total[{RATE}]))", "audit rows lost ({{reason}})"),
            (f"sum(increase({G}_usage_flush_failures_total[{RATE}]))", "usage flush"),
        ],
    ),
]
MODELS: Final = [
    Panel("Ready", [("min by (model) (portfolio_os_model_ready)", "{{model}}")], kind="stat"),
    Panel(
        "Predict p99 by version",
        [(_p99("portfolio_os_model_predict_duration_seconds", "model, version"), "{{model}} v{{version}}")],
        "s",
    ),
    Panel(
        "Gateway model-call p99 by version",
        [(_p99(f"{G}_model_call_duration_seconds", "model, version"), "{{model}} v{{version}}")],
        "s",
    ),
    Panel(
        "Model calls by outcome",
        [(f"sum by (model, outcome) (rate({G}_model_call_duration_seconds_count[{RATE}]))", "{{model}} {{outcome}}")],
        "reqps",
    ),
    Panel(
        "Rows scored by version",
        [
            (
                "sum by (model, version) (rate(portfolio_os_model_predictions_total[$__rate_interval]))",
                "{{model}} v{{version}}",
            )
        ],
        "rowsps",
    ),
    Panel(
        "Served versions", [("max by (model, version, feature_service) (portfolio_os_model_info)", "")], kind="table"
    ),
    Panel(
        "Reloads and registry errors",
        [
            (
                "sum by (model, outcome) (increase(portfolio_os_model_reloads_total[$__rate_interval]))",
                "{{model}} reload {{outcome}}",
            ),
            (
                "sum by (model) (increase(portfolio_os_model_registry_errors_total[$__rate_interval]))",
                "{{model}} registry error",
            ),
        ],
    ),
]
RESILIENCE: Final = [
    Panel(
        "Fallbacks by model and reason",
        [(f"sum by (model, reason) (rate({G}_fallbacks_total[{RATE}]))", "{{model}} {{reason}}")],
    ),
    Panel(
        "Circuit state (0 closed, 1 half-open, 2 open)",
        [(f"max by (model) ({G}_circuit_state)", "{{model}}")],
        thresholds=[1, 2],
    ),
    Panel("Degraded responses", [(f"sum by (route) (increase({G}_degraded_responses_total[{RATE}]))", "{{route}}")]),
]
DRIFT: Final = [
    Panel(
        "Drifted share by view",
        [("max by (view) (portfolio_os_drift_share)", "{{view}}")],
        "percentunit",
        thresholds=[0.5],
    ),
    Panel("Drifted features", [("sum by (view) (portfolio_os_drift_detected)", "{{view}}")], kind="stat"),
    Panel(
        "Drift score by feature",
        [("max by (view, feature) (portfolio_os_drift_score)", "{{view}} {{feature}}")],
        kind="table",
    ),
    Panel(
        "Since last drift run",
        [("time() - max by (view) (portfolio_os_drift_last_run_timestamp_seconds)", "{{view}}")],
        "s",
        "stat",
        [172800],
    ),
    # The data-quality sentinel beside the drift it often explains (PortfolioOSDataAnomalies at 5%).
    Panel(
        "Data anomaly share by ticker class (sentinel, newest session)",
        [
            (
                "max by (ticker_class) (portfolio_os_data_anomalies / portfolio_os_data_sentinel_tickers)",
                "{{ticker_class}}",
            )
        ],
        "percentunit",
        thresholds=[0.05],
    ),
]
DECAY: Final = [
    Panel("Rolling rank IC", [("max by (model) (portfolio_os_model_rolling_rank_ic)", "{{model}}")]),
    Panel(
        "Rolling rank IC t-stat (Newey-West)",
        [("max by (model) (portfolio_os_model_rolling_ic_tstat)", "{{model}}")],
        thresholds=[2],
    ),
    Panel("Served score median", [(_p99(f"{G}_signal_score", "model", 0.5), "{{model}}")], "percentunit"),
]
FRESHNESS: Final = [
    Panel(
        "Offline feature age by view",
        [("max by (view) (portfolio_os_feature_freshness_seconds)", "{{view}}")],
        "s",
        thresholds=[345600],
    ),
    Panel(
        "Online feature age by service",
        [(f"max by (service) ({G}_feature_age_seconds)", "{{service}}")],
        "s",
        thresholds=[345600],
    ),
    Panel(
        "Data anomalies by ticker class (sentinel, newest session)",
        [("max by (ticker_class) (portfolio_os_data_anomalies)", "{{ticker_class}}")],
    ),
    Panel(
        "Since last sentinel run",
        [("time() - max(portfolio_os_data_sentinel_last_run_timestamp_seconds)", "sentinel")],
        "s",
        "stat",
        [172800],
    ),
]
TENANTS: Final = [
    Panel(
        "Requests by tenant", [(f"sum by (tenant) (rate({G}_tenant_requests_total[{RATE}]))", "{{tenant}}")], "reqps"
    ),
    Panel(
        "Requests by tenant and route",
        [(f"sum by (tenant, route) (increase({G}_tenant_requests_total[1d]))", "{{tenant}} {{route}}")],
        kind="table",
    ),
    Panel(
        "Rate-limited by tenant", [(f"sum by (tenant) (rate({G}_rate_limited_total[{RATE}]))", "{{tenant}}")], "reqps"
    ),
]
MARKET: Final = [
    Panel(
        "Market regime (1 = current)",
        [("max by (benchmark, regime) (portfolio_os_market_regime)", "{{benchmark}} {{regime}}")],
    ),
    Panel(
        "Current regime", [("max by (benchmark, regime) (portfolio_os_market_regime) == 1", "{{regime}}")], kind="stat"
    ),
    Panel(
        "Regime inputs: trailing trend and volatility (annualised) against its median",
        [
            ("max by (benchmark) (portfolio_os_market_trend)", "trend {{benchmark}}"),
            ("max by (benchmark) (portfolio_os_market_volatility)", "volatility {{benchmark}}"),
            ("max by (benchmark) (portfolio_os_market_volatility_median)", "volatility median {{benchmark}}"),
        ],
        "percentunit",
    ),
    Panel(
        "Since the regime's session",
        [("time() - max by (benchmark) (portfolio_os_market_regime_session_timestamp_seconds)", "{{benchmark}}")],
        "s",
        "stat",
        [345600],
    ),
    # Volatility and sentiment spikes (PortfolioOSVolatilitySpike at z 2, PortfolioOSSentimentSpikes at 10%).
    Panel(
        "Volatility spike: z-score against its trailing 252 sessions",
        [("max by (benchmark) (portfolio_os_market_volatility_zscore)", "{{benchmark}}")],
        thresholds=[2],
    ),
    Panel(
        "Volatility percentile in its trailing 252 sessions",
        [("max by (benchmark) (portfolio_os_market_volatility_percentile)", "{{benchmark}}")],
        "percentunit",
        thresholds=[0.95],
    ),
    Panel(
        "Sentiment spikes: share of tickers with news (newest session)",
        [("max(portfolio_os_sentiment_spikes) / max(portfolio_os_sentiment_tickers)", "share")],
        "percentunit",
        thresholds=[0.1],
    ),
    Panel(
        "Sentiment spikes: tickers and the largest move (z-score)",
        [
            ("max(portfolio_os_sentiment_spikes)", "tickers with a spike"),
            ("max(portfolio_os_sentiment_tickers)", "tickers with news"),
            ("max(portfolio_os_sentiment_spike_largest_zscore)", "largest move (z)"),
        ],
    ),
    Panel(
        "Since the newest sentiment session",
        [("time() - max(portfolio_os_sentiment_session_timestamp_seconds)", "sentiment")],
        "s",
        "stat",
        [345600],
    ),
    Panel(
        "Regime and forecast requests",
        [
            (
                f"sum by (route, status) (rate({G}_requests_total"
                f'{{route=~"/v1/regime|/v1/portfolios/forecast"}}[{RATE}]))',
                "{{route}} {{status}}",
            )
        ],
        "reqps",
    ),
    Panel(
        "Forecast latency p50 / p99",
        [
            (
                f"histogram_quantile({q}, sum by (le) (rate({G}_request_duration_seconds_bucket"
                f'{{route="/v1/portfolios/forecast"}}[{RATE}])))',
                name,
            )
            for q, name in ((0.5, "p50"), (0.99, "p99"))
        ],
        "s",
        thresholds=[0.2],
    ),
]
DASHBOARDS: Final[dict[str, tuple[str, list[Panel]]]] = {
    "portfolio-os-gateway": ("Portfolio OS / Gateway (RED, SLO)", GATEWAY),
    "portfolio-os-models": ("Portfolio OS / Model latency by version", MODELS),
    "portfolio-os-resilience": ("Portfolio OS / Fallbacks and circuits", RESILIENCE),
    "portfolio-os-drift": ("Portfolio OS / Feature drift", DRIFT),
    "portfolio-os-decay": ("Portfolio OS / Alpha decay (rolling IC)", DECAY),
    "portfolio-os-freshness": ("Portfolio OS / Data freshness", FRESHNESS),
    "portfolio-os-tenants": ("Portfolio OS / Usage by tenant", TENANTS),
    "portfolio-os-market": ("Portfolio OS / Market regime and forecasts", MARKET),
}


# Grafana's panel schemas (grafana-foundation-sdk) require these options per panel kind; the values
# are Grafana's own defaults, written out so a dashboard validates and renders the same in any
# Grafana version rather than relying on the frontend to fill them in.
_LEGEND: Final = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
PANEL_OPTIONS: Final[dict[str, dict[str, Any]]] = {
    "timeseries": {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "desc"}},
    "stat": {
        "graphMode": "area",
        "colorMode": "value",
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "percentChangeColorMode": "standard",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    },
    "table": {"frameIndex": 0, "showHeader": True},
}
FIELD_CUSTOM: Final[dict[str, dict[str, Any]]] = {
    "timeseries": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False},
    "stat": {},
    "table": {"align": "auto", "inspect": False},
}


def _panel_json(panel_id: int, panel: Panel) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [
        {"color": "orange" if i < len(panel.thresholds) - 1 else "red", "value": v}
        for i, v in enumerate(panel.thresholds)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "options": PANEL_OPTIONS[panel.kind],
        "gridPos": {"x": 12 * ((panel_id - 1) % 2), "y": 8 * ((panel_id - 1) // 2), "w": 12, "h": 8},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": FIELD_CUSTOM[panel.kind],
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            | ({"format": "table", "instant": True} if panel.kind == "table" else {})
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model."""
    datasource_variable = {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}
    return {
        "uid": uid,
        "title": title,
        "tags": ["portfolio-os"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [datasource_variable]},
        "annotations": {"list": []},
        "panels": [_panel_json(i, p) for i, p in enumerate(panels, start=1)],
    }


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{uid}.json": json.dumps(dashboard(uid, t, p), indent=2) + "\n" for uid, (t, p) in DASHBOARDS.items()}


def write_all(folder: Path = DASHBOARDS_DIR, chart_folder: Path | None = CHART_DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard to ``folder`` and copy it to the chart; stale JSON files are removed."""
    written = []
    for target in [folder] + ([chart_folder] if chart_folder else []):
        target.mkdir(parents=True, exist_ok=True)
        rendered = render_all()
        for stale in {p.name for p in target.glob("*.json")} - set(rendered):
            (target / stale).unlink()
        for name, text in rendered.items():
            (target / name).write_text(text)
            written.append(target / name)
    return written


def exprs(board: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression of a dashboard (panel targets and query variables)."""
    for panel in board.get("panels", []):
        yield from (t["expr"] for t in panel.get("targets", []) if "expr" in t)
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield str(variable.get("query", ""))


__all__ = ["DASHBOARDS", "FIELD_CUSTOM", "PANEL_OPTIONS", "dashboard", "exprs", "render_all", "write_all"]
