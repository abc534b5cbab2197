"""The ``main()`` of every ``python -m serving.<name>``: environment, arguments, then the server.

Only light modules are imported here, so ``--help`` and argument errors answer at once, and the
environment defaults (telemetry off, MLflow client limits) are in place before MLflow loads.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from serving.settings import apply_process_defaults, parse_options

LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # Uvicorn takes these signals over while it serves and re-raises them after its graceful
    # shutdown; landing here then (or before it started) ends the process with status 0.
    raise SystemExit(0)


def _exit_now() -> None:
    # Everything the server owns is released by now (requests drained, poll stopped, temporary
    # folders removed). Python's own teardown of the kserve/mlflow/lightgbm/pandas import graph
    # takes 0.5-2 s of garbage collection on two cores and does nothing a server needs: skip it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(registered_name: str) -> None:
    """Serve ``models:/<registered_name>@<alias>`` as described in docs/serving-contract.md."""
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    apply_process_defaults()
    options = parse_options(registered_name)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from serving.server import serve  # kserve, mlflow, lightgbm: seconds of imports

    serve(options)
    _exit_now()
