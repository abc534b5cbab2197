"""The alert rules: promtool check and unit tests, coverage of every alert, chart copy and CRD."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from feature_repo.transforms.regime import VOL_WINDOW
from monitoring import prometheus_rule, regime_metrics, rules
from monitoring.briefing import facts
from monitoring.contract import exposed_series_names
from monitoring.drift import WASSERSTEIN_THRESHOLD
from monitoring.promql import metric_names
from monitoring.rules import CHART_RULES_FILE, RULE_TESTS_DIR, RULES_FILE, alert_names, find_binary, load_rules
from monitoring.settings import MonitoringSettings

REQUIRED_ALERTS = {
    "PortfolioOSGatewayErrorRateHigh",
    "PortfolioOSSignalsLatencyBudgetBurnFast",
    "PortfolioOSSignalsLatencyBudgetBurnSlow",
    "PortfolioOSFallbackRateHigh",
    "PortfolioOSAllocatorFallbackRateHigh",
    "PortfolioOSCircuitOpen",
    "PortfolioOSModelNotReady",
    "PortfolioOSModelReadyAbsent",
    "PortfolioOSFeatureDriftDetected",
    "PortfolioOSFeaturesStale",
    "PortfolioOSAlphaDecay",
    "PortfolioOSVolatilitySpike",
    "PortfolioOSSentimentSpikes",
}


def test_promtool_and_prometheus_are_installed():
    """Fails (never skips) without the binaries: the message names the install step."""
    for name in ("promtool", "prometheus"):
        assert Path(find_binary(name)).exists(), rules.INSTALL_HINT


def test_promtool_check_rules_passes():
    result = rules.check_rules()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass():
    result = rules.run_rule_tests()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(list(RULE_TESTS_DIR.glob("*.yaml")))


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names(load_rules()))
    assert names >= REQUIRED_ALERTS
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_rules_use_only_exported_or_recorded_series():
    groups = load_rules()["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    allowed = exposed_series_names() | recorded
    used = {name for g in groups for r in g["rules"] for name in metric_names(r["expr"])}
    assert used - allowed == set()
    assert "portfolio_os_gateway_request_duration_seconds_bucket" in used


def test_thresholds_in_rules_match_the_code():
    text = RULES_FILE.read_text()
    settings = MonitoringSettings()
    assert f"portfolio_os_drift_share) >= {settings.drift_share_threshold}" in text
    assert f"portfolio_os_model_rolling_ic_tstat) < {settings.decay_tstat_min:g}" in text
    assert 0 < WASSERSTEIN_THRESHOLD < 1
    # The latency SLO's 250 ms must be a bucket bound of the gateway histogram (api/metrics.py).
    assert 'le="0.25"' in text


def _alert(name: str) -> dict[str, Any]:
    return next(r for g in load_rules()["groups"] for r in g["rules"] if r.get("alert") == name)


def test_spike_thresholds_and_windows_in_rules_match_the_code():
    settings = MonitoringSettings()
    volatility = _alert("PortfolioOSVolatilitySpike")
    assert volatility["expr"].endswith(f"(portfolio_os_market_volatility_zscore) >= {settings.volatility_spike_z:g}")
    described = volatility["annotations"]["description"]
    assert f"previous {regime_metrics.SPIKE_LOOKBACK} sessions" in described
    assert f"{VOL_WINDOW}-session volatility" in described
    sentiment = _alert("PortfolioOSSentimentSpikes")
    assert f"> {settings.sentiment_spike_share:g})" in sentiment["expr"]
    assert f"max(portfolio_os_sentiment_spikes) >= {settings.sentiment_spike_min_tickers}" in sentiment["expr"]
    assert f"at least {facts.SPIKE_Z:g} standard deviations" in sentiment["annotations"]["description"]


def test_short_for_copy_changes_only_for(tmp_path):
    short = rules.with_short_for(load_rules(), "1s")
    durations = {r["for"] for g in short["groups"] for r in g["rules"] if "alert" in r}
    assert durations == {"1s"}
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(short))
    assert rules.check_rules(path).returncode == 0


def test_chart_copy_equals_the_source_and_the_crd_carries_every_group():
    assert CHART_RULES_FILE.read_bytes() == RULES_FILE.read_bytes(), "run: python -m monitoring rules sync-chart"
    resource = prometheus_rule.prometheus_rule(labels={"release": "kube-prometheus-stack"})
    assert resource["kind"] == "PrometheusRule" and resource["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert resource["spec"]["groups"] == load_rules()["groups"]
    rendered = prometheus_rule.render_yaml()
    assert re.search(r"\{\{ \$labels\.model \}\}", rendered)  # Prometheus templates survive verbatim
