"""Portfolio OS B2B gateway (FastAPI): auth, quotas, composition, fallbacks, audit, metrics."""
