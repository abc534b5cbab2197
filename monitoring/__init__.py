"""Portfolio OS monitoring: drift, alpha decay, alert rules and dashboards."""
