"""The ``PrometheusRule`` custom resource (prometheus-operator) built from the same rules file.

The chart renders its own copy through ``templates/prometheusrule.yaml``; this renderer serves
clusters installed without the chart (``kubectl apply -f -``) and lets tests compare the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitoring.rules import RULES_FILE, load_rules


def prometheus_rule(
    name: str = "portfolio-os-monitoring",
    namespace: str = "portfolio-os",
    labels: dict[str, str] | None = None,
    rules_file: Path = RULES_FILE,
) -> dict[str, Any]:
    """The resource as a mapping; ``labels`` should include the operator's ruleSelector labels."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "portfolio-os", "app.kubernetes.io/component": "monitoring"}
            | (labels or {}),
        },
        "spec": {"groups": load_rules(rules_file)["groups"]},
    }


def render_yaml(**options: Any) -> str:
    """The resource as YAML text (``{{ $labels }}`` templates kept verbatim for Prometheus)."""
    return yaml.safe_dump(prometheus_rule(**options), sort_keys=False, width=120)
