"""Portfolio OS B2B gateway (FastAPI): auth, quotas, composition, fallbacks, audit, metrics.

Importing this package (or :mod:`api.client`, the SDK a B2B client uses) changes nothing in the
process: what the gateway's process needs (telemetry off, in-memory metrics) is set by its entry
point, :func:`api.__main__.prepare_process`, before the application is imported.
"""
