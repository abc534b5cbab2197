"""Benchmark: corporate-action detection and adjustment factors on the real ASX end-of-day data (1997-2014).

What is measured, on every 3-character code of ``/work/shared/data/asx-eod`` loaded with the project's
importer (:func:`training.ingest.eod_files.load_eod_files`: raw closes, ``adj_close`` = ``close``):

* ``detect``: :func:`training.corporate_actions.detect.detect_suspects` (persistent jumps, proposals,
  evidence), with the reused codes (:func:`training.instruments.code_lives` on the XASX calendar) as
  known breaks, as the ingest stage runs it;
* ``factors``: :func:`~training.corporate_actions.factors.action_factors` plus
  :func:`~training.corporate_actions.factors.apply_factors` for every suspect taken as an action (what
  policy ``adjust`` does), i.e. the cost of a user file of that many confirmed actions;
* ``process_mask``: the whole ingest step under the default policy (file none, mask);
* the suspects: how many, by proposed kind and by ratio match, and examples with their evidence.

Optional: without the data folder it says so and exits 0 (the suite never needs the data). One JSON
document on stdout, also written to ``bench/results/corporate_actions.json``; ``--suspects-csv`` also
writes the full suspects report (it names real tickers: keep it out of the repository).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import common
from feature_repo.tables import DATE, TICKER
from training.calendar import run_sessions
from training.corporate_actions.config import CorporateActionsConfig
from training.corporate_actions.detect import detect_suspects
from training.corporate_actions.factors import action_factors, apply_factors
from training.corporate_actions.policy import process_prices, suspects_as_actions, write_report
from training.instruments import code_lives

NAME: Final = "corporate_actions"
REUSE_GAP_SESSIONS: Final = 126  # HealthThresholds.reuse_gap_sessions' default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.corporate_actions",
        description="Seconds for corporate-action detection and factors on the real ASX data; one JSON document.",
    )
    common.add_asx_eod_arg(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (median reported)")
    parser.add_argument("--examples", type=int, default=8, help="suspects shown with their evidence")
    parser.add_argument("--suspects-csv", type=Path, default=None, help="also write the full suspects report here")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def _jump_size(suspects: pd.DataFrame) -> pd.Series:
    return pd.Series(np.abs(np.log(suspects["day_ratio"].to_numpy())), index=suspects.index)


def _price_level(suspects: pd.DataFrame) -> pd.Series:
    return suspects[["close_before", "close_after"]].min(axis=1)


def examples(suspects: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """A spread of suspects: matched ratios of the highest-priced shares, then the largest unmatched jumps."""
    matched = suspects[suspects["match"] != "none"]
    unmatched = suspects[suspects["match"] == "none"]
    picks = pd.concat(
        [
            matched.loc[_price_level(matched).sort_values(ascending=False).index].head(n - n // 2),
            unmatched.loc[_jump_size(unmatched).sort_values(ascending=False).index].head(n // 2),
        ]
    )
    records = picks.to_dict("records")
    return [common.finite({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}) for row in records]


def suspect_counts(suspects: pd.DataFrame, masked_breaks: int, left_after_adjust: int) -> dict[str, Any]:
    """How many suspects, by proposed kind and by ratio match, and what the policies leave of them."""
    return {
        "total": len(suspects),
        "tickers": int(suspects["ticker"].nunique()),
        "by_kind": {str(k): int(v) for k, v in suspects["kind"].value_counts().items()},
        "by_match": {str(k): int(v) for k, v in suspects["match"].value_counts().head(12).items()},
        "unmatched": int((suspects["match"] == "none").sum()),
        "at_series_end": int((suspects["bars_after"] == 0).sum()),
        "masked_breaks": masked_breaks,
        "left_after_adjust": left_after_adjust,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        return common.skipped(NAME, f"no data folder {args.data}")
    began = time.perf_counter()
    prices = common.read_asx_eod(args.data)
    load_seconds = time.perf_counter() - began
    began = time.perf_counter()
    keys = prices[[TICKER, DATE]]
    breaks = code_lives(keys, gap_sessions=REUSE_GAP_SESSIONS, sessions=run_sessions("XASX", keys[DATE])).breaks
    lives_seconds = time.perf_counter() - began
    common.log(f"loaded {len(prices):,} rows in {load_seconds:.1f} s; {len(breaks):,} reused-code breaks")

    detect_seconds, suspects = common.median_seconds(lambda: detect_suspects(prices, breaks=breaks), args.repeats)
    actions = suspects_as_actions(suspects)

    def factors() -> pd.DataFrame:
        return apply_factors(prices, action_factors(prices, actions))

    factor_seconds, adjusted = common.median_seconds(factors, args.repeats)
    config = CorporateActionsConfig()
    mask_seconds, outcome = common.median_seconds(lambda: process_prices(prices, config, breaks), args.repeats)
    if args.suspects_csv is not None:
        write_report(suspects, args.suspects_csv)
    after = detect_suspects(adjusted, breaks=breaks)
    dates = pd.DatetimeIndex(prices[DATE])
    doc = {
        "benchmark": NAME,
        "data": f"real ASX end-of-day prices, {args.data} (raw, 3-character codes), "
        f"{dates.min().date()}..{dates.max().date()}",
        "input": {
            "price_rows": len(prices),
            "tickers": int(prices[TICKER].nunique()),
            "reused_code_breaks": len(breaks),
        },
        "seconds": {
            "load_eod_files": round(load_seconds, 2),
            "code_lives_xasx": round(lives_seconds, 2),
            "detect": round(detect_seconds, 3),
            "factors_and_adj_close": round(factor_seconds, 3),
            "process_mask": round(mask_seconds, 3),
            "repeats": args.repeats,
            "statistic": "median",
        },
        "detection": config.detection.model_dump(),
        "suspects": suspect_counts(suspects, len(outcome.breaks), len(after)),
        "examples": examples(suspects, args.examples),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": common.environment(),
    }
    common.emit(NAME, doc, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
