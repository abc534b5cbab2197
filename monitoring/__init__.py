"""Portfolio OS monitoring: feature drift, alpha decay, Prometheus metrics, alert rules, dashboards.

Imports ``feature_repo`` only; it meets training, serving and the gateway through files, metric
names (``docs/serving-contract.md``) and the documented retraining command. Nothing runs at import.
"""
