"""Benchmark: the point-in-time liquidity universe on the real ASX end-of-day data (1997-2014).

What is measured: the wall time of :func:`training.universe.compute_membership` (the membership
table: one ranking per reconstitution date) and of :func:`training.universe.member_mask` (its daily
expansion) for a rule given on the command line (default: top 300 by median traded value over 60
sessions, close >= 0.05, 252 bars of history, monthly), on the prices of every 3-character code in
``/work/shared/data/asx-eod`` as the project's importer reads them
(:func:`training.ingest.eod_files.load_eod_files`: raw closes and volumes; index codes go to the
benchmark table), timed separately and once. No series breaks are applied here (a reused code's
history is not reset).

Membership figures: members per reconstitution date; turnover per reconstitution (names that
entered / members); tickers ever members; members whose bars stopped before the next
reconstitution (delisted or suspended while members: kept until their last bar).

Optional: without the data folder the benchmark says so and exits 0 (the data is never needed by
the test suite). One JSON document on stdout, also written to ``bench/results/universe.json``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from feature_repo.tables import DATE, TICKER
from training.signals.config import UniverseRule
from training.universe import compute_membership, member_mask

NAME: Final = "universe"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.universe",
        description="Seconds to compute the point-in-time liquidity universe on the real ASX data; one JSON document.",
    )
    common.add_asx_eod_arg(parser)
    parser.add_argument("--top-n", type=int, default=300)
    parser.add_argument("--lookback", type=int, default=60)
    parser.add_argument("--min-price", type=float, default=0.05)
    parser.add_argument("--min-history", type=int, default=252)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (median reported)")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def membership_stats(membership: pd.DataFrame, prices: pd.DataFrame, rule: UniverseRule) -> dict[str, Any]:
    """Members per date, turnover per reconstitution, ever-members and members that stopped trading."""
    by_date = membership.groupby(DATE)[TICKER].apply(frozenset).sort_index()
    counts = by_date.map(len)
    entered = [len(now - before) / max(len(now), 1) for before, now in itertools.pairwise(by_date)]
    last_bar = prices.groupby(TICKER)[DATE].max()
    dates = list(by_date.index)
    stopped = 0
    for day, following in itertools.pairwise(dates):
        ends = last_bar.reindex(list(by_date[day]))
        stopped += int(((ends >= day) & (ends < following)).sum())
    return {
        "reconstitutions": len(by_date),
        "first_date": str(dates[0].date()) if dates else None,
        "last_date": str(dates[-1].date()) if dates else None,
        "members_per_date": {
            "min": int(counts.min()),
            "median": float(counts.median()),
            "max": int(counts.max()),
            "dates_below_top_n": int((counts < rule.top_n).sum()),
        },
        "turnover_per_reconstitution": {
            "mean": float(np.mean(entered)),
            "median": float(np.median(entered)),
            "max": float(np.max(entered)),
            "definition": "names that entered / members, at each reconstitution after the first",
        },
        "tickers_ever_members": int(membership[TICKER].nunique()),
        "members_whose_bars_stopped_before_the_next_reconstitution": stopped,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        return common.skipped(NAME, f"no data folder {args.data}")
    rule = UniverseRule(
        rule="liquidity",
        top_n=args.top_n,
        lookback_sessions=args.lookback,
        min_price=args.min_price,
        min_history_sessions=args.min_history,
    )
    began = time.perf_counter()
    prices = common.read_asx_eod(args.data)
    read_seconds = time.perf_counter() - began
    compute_seconds, membership = common.median_seconds(lambda: compute_membership(prices, rule), args.repeats)
    sessions = pd.DatetimeIndex(prices[DATE]).unique().sort_values()
    last_bar = prices.groupby(TICKER)[DATE].max()
    mask_seconds, mask = common.median_seconds(
        lambda: member_mask(membership, sessions, rule.reconstitute, last_bar=last_bar), args.repeats
    )
    doc = {
        "benchmark": NAME,
        "data": f"real ASX end-of-day prices, {args.data} (raw, via load_eod_files), "
        f"{sessions[0].date()}..{sessions[-1].date()}",
        "rule": rule.model_dump(),
        "universe": rule.name,
        "input": {"price_rows": len(prices), "tickers": int(prices[TICKER].nunique()), "sessions": len(sessions)},
        "seconds": {
            "load_eod_files_once": round(read_seconds, 2),
            "compute_membership": round(compute_seconds, 3),
            "member_mask": round(mask_seconds, 3),
            "repeats": args.repeats,
            "statistic": "median",
        },
        "membership": membership_stats(membership, prices, rule),
        "daily_mask": {"sessions": mask.shape[0], "tickers": mask.shape[1], "member_days": int(mask.to_numpy().sum())},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
