"""Stages ``apply``, ``materialize`` and ``online``: the Feast side of the pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from feature_repo.contract import SIGNAL_FEATURE_SERVICES, TECHNICAL
from feature_repo.definitions import feature_file
from feature_repo.files import read_feature_file
from feature_repo.store import FeatureRepo, full_window
from training.context import RunContext

# Shown by the `online` stage: enough to recognise the vector without a wall of numbers.
ONLINE_PREVIEW = ("ret_21d", "ret_252d", "vol_63d", "rsi_14", "beta_252d", "ret_21d_csrank")


def apply(ctx: RunContext) -> dict[str, object]:
    """Register the entity, views and services; list what was registered."""
    repo = FeatureRepo.open(ctx.settings)
    repo.apply()
    defs = repo.definitions
    print(f"  views: {', '.join(defs.views)}", file=ctx.out)
    print(f"  services: {', '.join(defs.services)}", file=ctx.out)
    return {"views": len(defs.views), "services": len(defs.services)}


def materialize(ctx: RunContext) -> dict[str, object]:
    """Full materialisation the first time (or when configured), incremental afterwards."""
    repo = FeatureRepo.open(ctx.settings)
    summary: dict[str, object] = {}
    for view in repo.definitions.views:
        if not Path(feature_file(str(ctx.data_dir), view)).exists():
            # The data_quality view is written by the monitoring sentinel, which materialises it itself.
            print(f"  {view:<22} skipped: no feature file", file=ctx.out)
            continue
        source = read_feature_file(ctx.data_dir, view)
        if source.empty:
            print(f"  {view:<22} skipped: no rows", file=ctx.out)
            continue
        start, end = full_window(source["event_timestamp"])
        registered = repo.store.get_feature_view(view)
        started = time.perf_counter()
        if ctx.config.materialize == "full" or not registered.materialization_intervals:
            repo.materialize(start, end, [view])
            mode = "full"
        else:
            repo.materialize_incremental(end, [view])
            mode = "incremental"
        seconds = time.perf_counter() - started
        print(f"  {view:<22} {mode}, up to {end:%Y-%m-%d}, {seconds:.2f} s", file=ctx.out)
        summary[view] = mode
    return summary


def online(ctx: RunContext) -> dict[str, object]:
    """Read the technical model's feature service online for the configured tickers."""
    repo = FeatureRepo.open(ctx.settings)
    tickers = ctx.config.online_tickers
    started = time.perf_counter()
    service = SIGNAL_FEATURE_SERVICES[TECHNICAL]
    frame = repo.online(service, tickers)
    millis = (time.perf_counter() - started) * 1000
    preview = frame.set_index("ticker")[list(ONLINE_PREVIEW)].T
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
        print(
            f"  {service} online ({frame.shape[1] - 1} features; {len(ONLINE_PREVIEW)} shown), {millis:.1f} ms:",
            file=ctx.out,
        )
        print("  " + preview.to_string().replace("\n", "\n  "), file=ctx.out)
    missing = frame.set_index("ticker").isna().all(axis=1)
    for ticker in missing[missing].index:
        print(f"  {ticker}: no online features (unknown ticker, or not materialised yet)", file=ctx.out)
    return {"tickers": len(tickers), "missing": int(missing.sum()), "ms": round(millis, 1)}
