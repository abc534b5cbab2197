"""Portfolio OS B2B gateway (FastAPI): auth, quotas, composition, fallbacks, audit, metrics."""

# Importing Feast sets PROMETHEUS_MULTIPROC_DIR (for its own feature server). A prometheus_client
# imported after that switches to file-backed values shared by every registry of the process, so
# two gateway apps in one process would add up each other's counters. The gateway runs one process
# per pod with its own registry: load prometheus_client first so its values stay in memory.
import prometheus_client.values  # noqa: F401
