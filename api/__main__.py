"""``python -m api --host 127.0.0.1 --port 8000`` (``portfolio-os gateway``): run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

from feature_repo.import_costs import skip_typeguard_instrumentation
from feature_repo.telemetry import telemetry_off


def prepare_process() -> None:
    """Telemetry off, prometheus_client's values kept in memory, and Feast's typeguard instrumentation
    skipped (:mod:`feature_repo.import_costs`); call it before the app is imported.

    Importing Feast sets PROMETHEUS_MULTIPROC_DIR (for its own feature server), and a process that
    imported Feast hands it on to the processes it starts (the launcher, the benchmark, the demo).
    A prometheus_client loaded with it set keeps every value in mmap files shared by all registries
    of the process: two gateway apps in one process add up each other's counters, and every
    increment becomes a file write (measured: a fifth of the gateway's CPU per request). The gateway
    serves its own in-memory registry, one process per pod, and never aggregates across processes,
    so it drops the variable and loads prometheus_client before anything imports Feast.
    """
    telemetry_off()
    skip_typeguard_instrumentation()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import prometheus_client.values  # noqa: F401 - binds the in-memory value class now


def keep_torch_out() -> None:
    """Mark torch absent in this process, as it is in the gateway image; call it before Feast loads.

    The gateway installs without torch (pyproject's gateway group; the image has none), but Feast
    imports torch at import time whenever it is installed (``feast.torch_wrapper``), as it is in a
    development venv that also trains. There it cost the gateway about 180 MB resident and seconds
    of start-up for a module nothing in it calls. ``None`` in ``sys.modules`` makes ``import torch``
    raise ImportError, which Feast catches exactly as in the image. Only the gateway's own process
    entry calls this: a process that already imported torch keeps it.
    """
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # None: "known absent" to the import system


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, prepare the process, configure logging and serve."""
    parser = argparse.ArgumentParser(prog="python -m api", description="Portfolio OS B2B gateway.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (the chart passes 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    prepare_process()  # before the imports below load Feast
    keep_torch_out()

    import uvicorn

    from api.app import create_app
    from api.logs import configure_logging
    from api.settings import get_settings
    from api.tickers import tickers_query_max_length

    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn's own access log lacks the request id; the gateway middleware logs each request.
    # h11 refuses request heads above 16 KiB by default; a GET naming max_tickers tickers may need more.
    head_bytes = max(16 * 1024, tickers_query_max_length(settings.max_tickers) + 8 * 1024)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        h11_max_incomplete_event_size=head_bytes,
    )


if __name__ == "__main__":
    main()
