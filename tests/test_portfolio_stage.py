"""The train stage's portfolio section: printed, written to reports/, one row per model and baseline.

Prices, scores and outcomes are SYNTHETIC (seeded random walks); the run config is the demo's
(flat costs, no ADV cap: no prices are read back from a store).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.settings import FeatureStoreSettings
from training.config import load_config
from training.context import RunContext
from training.signals.inputs import SignalInputs
from training.signals.portfolio_report import report_portfolios

ROOT = Path(__file__).resolve().parents[1]


def test_the_portfolio_section_is_printed_and_written(tmp_path: Path) -> None:
    pipeline = load_config(ROOT / "configs" / "demo.yaml")
    config = pipeline.signals
    assert config is not None
    rng = np.random.default_rng(3)
    index = pd.bdate_range("2017-01-02", "2022-12-28")
    names = [f"S{i:02d}" for i in range(20)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.015, (len(index), 20)), 0)), index, names)
    target = close.shift(-config.horizon) / close - 1.0
    outcomes = target.stack().rename(f"fwd_excess_{config.horizon}d").reset_index()
    outcomes.columns = ["date", "ticker", f"fwd_excess_{config.horizon}d"]
    outcomes = outcomes.dropna()
    scores = outcomes.rename(columns={f"fwd_excess_{config.horizon}d": "score"})[["date", "ticker", "score"]]
    scores["score"] += rng.normal(0, 0.05, len(scores))
    inputs = SignalInputs(config, None, outcomes, close)  # type: ignore[arg-type]  # the section reads no features
    out = io.StringIO()
    ctx = RunContext(pipeline, FeatureStoreSettings(environment="local", data_dir=str(tmp_path)), out, progress=False)
    report = report_portfolios(ctx, {"technical": scores}, inputs, "SYNTHETIC data")
    assert list(report.table.index) == ["technical", "momentum_12_1", "reversal_1m", "equal_weight"]
    assert report.books["technical"].returns.index[0] >= pd.Timestamp("2019-01-01")  # the test segment only
    printed = out.getvalue()
    assert "Portfolios on the test segment (SYNTHETIC data)" in printed and "one_way_turnover" in printed
    # The demo's prices hold no volume: flat costs, named above the table (as in the signal report).
    assert "Costs flat 10 bps per side on every name (no liquidity model)." in printed
    written = sorted(p.name for p in (tmp_path / "reports").iterdir())
    stamp = written[0].split(".")[0].split("-")[1]
    assert {n.replace(f"portfolio-{stamp}", "") for n in written} == {".md", ".csv", "-by-year.csv", "-by-tercile.csv"}
    markdown = next((tmp_path / "reports").glob("portfolio-*.md")).read_text(encoding="utf-8")
    assert "capacity_aud" in markdown and "Rank IC by year" in markdown
    assert "Costs flat 10 bps per side" in markdown
