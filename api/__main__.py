"""``python -m api --host 127.0.0.1 --port 8000``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import logging

from api.middleware import RequestIdFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str) -> None:
    """Every line carries the request id (``-`` outside a request)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, configure logging and serve."""
    parser = argparse.ArgumentParser(prog="python -m api", description="Portfolio OS B2B gateway.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (the chart passes 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    import uvicorn

    from api.app import create_app
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
