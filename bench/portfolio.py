"""Benchmark: the turnover-aware top-k book of stored scores against momentum, reversal and equal weight.

What is measured, on a run's offline store and saved scores (a data folder the train stage wrote:
``offline.duckdb`` and ``signals/predictions.parquet`` + ``signals/outcomes.parquet``), over the
window given, for the model named and for the 12-1 momentum and 1-month reversal baselines, all
on the config's point-in-time universe with its construction and costs
(:mod:`training.evaluation.suite`): net and gross Sharpe, one-way turnover, annual cost, excess
over equal weight, capacity, the long-short book, the decile spread, rank IC by year and by
liquidity tercile. With ``--grid``, the long-only book is also run for every combination of the
buffers, replacement limits and minimum holds given (the model's score only, no capacity), so
the construction can be chosen on a development window.

The window must be one the scores are out of sample on and that tuning may read (a valid
segment); the run config's test segment is for the final read only.

Optional: without the data folder the benchmark says so and exits 0. One JSON document on
stdout, also written to ``bench/results/portfolio.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from bench import common
from feature_repo.tables import DATE, TICKER
from training.calendar import on_sessions, run_sessions
from training.config import load_config
from training.evaluation.book import BookRules, book_backtest
from training.evaluation.liquidity import liquidity_panels, traded_value_panel
from training.evaluation.suite import PortfolioData, PortfolioSettings, portfolio_report
from training.signals.config import SignalRunConfig, UniverseRule
from training.signals.inputs import close_panel
from training.store import OfflineStore
from training.universe import compute_membership, member_mask

NAME: Final = "portfolio"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.portfolio", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a data folder the train stage wrote")
    parser.add_argument("--config", type=Path, default=Path("configs/asx-dev.yaml"))
    parser.add_argument("--model", default="technical", help="model name in predictions.parquet")
    parser.add_argument("--start", required=True, help="first signal date (a segment tuning may read)")
    parser.add_argument("--end", required=True)
    parser.add_argument("--grid", action="store_true", help="also sweep buffer x max_replace x min_hold")
    parser.add_argument("--buffers", default="0,10,20,30,45")
    parser.add_argument("--max-replace", default="none,5,10")
    parser.add_argument("--min-holds", default="0,2,3")
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return parser.parse_args(argv)


def load_data(data_dir: Path, config: SignalRunConfig, exchange: str | None, window: tuple[str, str]) -> PortfolioData:
    """Closes, outcomes, the universe mask and liquidity as the train stage builds them."""
    with OfflineStore(data_dir / "offline.duckdb", read_only=True) as store:
        prices, breaks = store.read("prices"), store.read("series_breaks")
    prices = on_sessions(prices, run_sessions(exchange, prices[DATE]))
    close = close_panel(prices, breaks)
    members = None
    if isinstance(config.universe, UniverseRule):
        membership = compute_membership(prices, config.universe, breaks=breaks)
        last_bar = prices.groupby(prices[TICKER].astype(str))[DATE].max()
        members = member_mask(
            membership, pd.DatetimeIndex(close.index), config.universe.reconstitute, last_bar=last_bar
        )
    sessions = config.costs.liquidity.adv_sessions if config.costs.liquidity is not None else 60
    liquidity = liquidity_panels(close, traded_value_panel(prices), sessions=sessions)
    h = config.horizon
    outcomes = pd.read_parquet(data_dir / "signals" / "outcomes.parquet")
    outcomes = outcomes.rename(columns={f"fwd_excess_{h}d": "target"})[[DATE, TICKER, "target"]]
    first, last = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    return PortfolioData(close, outcomes, h, (first, last), members, liquidity)


def model_scores(data_dir: Path, model: str, window: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
    predictions = pd.read_parquet(data_dir / "signals" / "predictions.parquet")
    rows = predictions[(predictions["model"] == model) & predictions[DATE].between(*window)]
    if rows.empty:
        raise SystemExit(f"no '{model}' score between {window[0].date()} and {window[1].date()}")
    return rows[[DATE, TICKER, "score"]].reset_index(drop=True)


def _values(text: str) -> list[int | None]:
    return [None if v == "none" else int(v) for v in text.split(",")]


def sweep(
    scores: pd.DataFrame, data: PortfolioData, settings: PortfolioSettings, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The long-only book for every buffer x max_replace x min_hold, same universe and costs."""
    base = settings.rules
    out = []
    for buffer, limit, hold in itertools.product(
        _values(args.buffers), _values(args.max_replace), _values(args.min_holds)
    ):
        rules = BookRules(base.k, buffer or 0, limit, hold or 0, base.adv_cap, base.book_aud)
        book = book_backtest(
            scores, data.close, rules=rules, costs=settings.costs, schedule=settings.schedule,
            members=data.members, liquidity=data.liquidity,
        )  # fmt: skip
        m = book.metrics()
        row: dict[str, Any] = {"buffer": buffer, "max_replace": limit, "min_hold": hold}
        for key in ("sharpe", "gross_sharpe", "one_way_turnover", "cost_ann", "ann_return"):
            row[key] = common.rounded(float(m[key]))
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data_dir / "offline.duckdb").exists():
        return common.skipped(NAME, f"no offline store under {args.data_dir}")
    pipeline = load_config(args.config)
    config = pipeline.signals
    if config is None:
        raise SystemExit(f"{args.config} has no signals section")
    began = time.perf_counter()
    data = load_data(args.data_dir, config, pipeline.calendar.exchange, (args.start, args.end))
    scores = model_scores(args.data_dir, args.model, data.window)
    # Scores stop a horizon before the segment's end (their labels must end inside it): so do the books.
    data = replace(data, window=(data.window[0], min(data.window[1], pd.Timestamp(scores[DATE].max()))))
    settings = PortfolioSettings.from_config(config.evaluation, config.costs, data.window)
    loaded = time.perf_counter() - began
    report = portfolio_report({args.model: scores}, data, settings, with_capacity=not args.no_capacity)
    result: dict[str, Any] = {
        "benchmark": NAME,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": f"{args.data_dir} (real ASX end-of-day), scores of '{args.model}'",
        "window": [str(data.window[0].date()), str(data.window[1].date())],
        "settings": {"rules": settings.rules.__dict__, "costs": settings.costs.__dict__},
        "seconds": {"load": round(loaded, 1), "report": round(time.perf_counter() - began - loaded, 1)},
        "table": json.loads(report.table.round(4).to_json(orient="index")),
        "rank_ic_by_year": report.rank_ic_by_year.round(4).to_dict(orient="records"),
        "rank_ic_by_tercile": report.rank_ic_by_tercile.round(4).to_dict(orient="records"),
    }
    if args.grid:
        result["grid"] = sweep(scores, data, settings, args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{NAME}.json").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
