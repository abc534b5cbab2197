"""Portfolio OS B2B gateway (FastAPI): auth, quotas, composition, fallbacks, audit, metrics."""

import os

# Importing Feast sets PROMETHEUS_MULTIPROC_DIR (for its own feature server), and a process that
# imported Feast hands it on to the processes it starts (the launcher, the benchmark, the demo).
# A prometheus_client loaded with it set keeps every value in mmap files shared by all registries
# of the process: two gateway apps in one process add up each other's counters, and every
# increment becomes a file write (measured: a fifth of the gateway's CPU per request). The gateway
# serves its own in-memory registry, one process per pod, and never aggregates across processes,
# so it drops the variable and loads prometheus_client before anything imports Feast.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
import prometheus_client.values  # noqa: F401
