"""``python -m feature_repo.serve``: Feast's HTTP feature server over the online store only.

The same server as ``feast serve`` (``FeatureStore.serve``: /get-online-features, /push to the
online store, /health), but over the store ``FeatureRepo.open(..., online_only=True)`` opens: the
configuration comes from the typed settings (``PORTFOLIO_OS_*``, as every other process reads it)
and no offline store engine is imported, so it runs in the gateway image. Offline operations
(/materialize, a push to the offline store) are refused naming why (feature_repo/online_only.py);
materialisation is the CronJob's.

    python -m feature_repo.serve --host 127.0.0.1 --port 6566 [--workers 1] [--no-access-log]
"""

from __future__ import annotations

import argparse

from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, open the store online-only and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m feature_repo.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (the chart passes 0.0.0.0)")
    parser.add_argument("--port", type=int, default=6566)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--registry-ttl-sec", type=int, default=60, help="how long the registry is cached")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    repo = FeatureRepo.open(FeatureStoreSettings(), online_only=True)
    repo.store.serve(
        host=args.host,
        port=args.port,
        no_access_log=args.no_access_log,
        workers=args.workers,
        registry_ttl_sec=args.registry_ttl_sec,
    )


if __name__ == "__main__":
    main()
