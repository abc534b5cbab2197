"""Drift on the bundled real S&P 500 prices: a regime change drifts, calm neighbouring years do not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from feature_repo.definitions import EVENT_TIMESTAMP
from feature_repo.files import to_feast_frame, write_feature_file
from feature_repo.transforms.technical import technical_features
from monitoring.drift import ColumnTest, compare, run_view, view_tests
from monitoring.errors import MonitoringError
from monitoring.reports import latest_drift_summaries
from monitoring.windows import Window, last_sessions

VIEW = "technical_features"
REFERENCE = Window.parse("2005-01-01:2006-12-31")


@pytest.fixture(scope="module")
def technical_rows(sp500) -> pd.DataFrame:
    """Real technical feature rows (bundled S&P 500 sample), 2003-2009, in the view's file shape."""
    prices = sp500.prices[(sp500.prices["date"] >= "2003-01-01") & (sp500.prices["date"] <= "2009-12-31")]
    benchmark = sp500.benchmark.set_index("date")["close"]
    return to_feast_frame(technical_features(prices, benchmark.loc["2003-01-01":"2009-12-31"]), VIEW)


@pytest.mark.slow
def test_crisis_year_drifts_and_calm_neighbour_does_not(technical_rows):
    crisis, _ = compare(
        REFERENCE.select(technical_rows), Window.parse("2008-01-01:2008-12-31").select(technical_rows), VIEW
    )
    calm, _ = compare(
        Window.parse("2005-01-01:2005-12-31").select(technical_rows),
        Window.parse("2006-01-01:2006-12-31").select(technical_rows),
        VIEW,
    )
    assert crisis.detected and crisis.share >= 0.9
    assert not calm.detected and calm.share < crisis.share
    vol = {f.feature: f for f in crisis.features}["vol_63d"]
    assert vol.method == "wasserstein" and vol.detected and vol.score > 1.0  # 2008 volatility: > 1 sd shift
    # Close-only prices have no volume: skipped with a reason rather than scored as "no drift".
    assert "volume_zscore_21d" in crisis.skipped


def test_cross_sectional_features_are_not_tested_and_counts_use_psi():
    technical = view_tests(VIEW)
    assert not [n for n in technical if n.endswith(("_csrank", "_csz"))]
    assert technical["ret_21d"] == ColumnTest("wasserstein", 0.25)
    assert view_tests("sentiment_features")["sent_count_21d"].method == "psi"
    with pytest.raises(MonitoringError, match="unknown feature view"):
        view_tests("no_such_view")


def test_detection_direction_depends_on_the_method():
    assert ColumnTest("wasserstein", 0.25).detected(0.3) and not ColumnTest("wasserstein", 0.25).detected(0.2)
    assert ColumnTest("ks", 0.05).detected(0.01) and not ColumnTest("ks", 0.05).detected(0.2)
    with pytest.raises(MonitoringError):
        ColumnTest("p_hacking", 0.05)


@pytest.mark.slow
def test_run_view_writes_reports_and_latest_summary(tmp_path, technical_rows):
    reference, current = Window.parse("2006-01-01:2006-12-31"), Window.parse("2008-07-01:2008-12-31")
    result = run_view(tmp_path, VIEW, reference, current, reports_dir=tmp_path / "reports", frame=technical_rows)
    run_dirs = list((tmp_path / "reports" / "drift").glob("2*"))
    assert len(run_dirs) == 1
    names = {p.name for p in run_dirs[0].iterdir()}
    assert {f"{VIEW}.html", f"{VIEW}.evidently.json", f"{VIEW}.summary.json"} <= names
    assert "<html" in (run_dirs[0] / f"{VIEW}.html").read_text()[:2000].lower()
    assert json.loads((run_dirs[0] / f"{VIEW}.evidently.json").read_text())  # Evidently's own snapshot
    (summary,) = latest_drift_summaries(tmp_path / "reports")
    assert summary["share"] == result.share and summary["run_at"] > 0 and summary["current"]["start"] == "2008-07-01"


def test_run_view_reads_the_feature_file(tmp_path):
    """SYNTHETIC edge case: a shifted column in a file written by feature_repo.files."""
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2020-01-01", periods=300)
    frame = pd.DataFrame({"ticker": np.repeat(["AAA", "BBB", "CCC"], 300), "date": np.tile(dates, 3)})
    from feature_repo.schema import FEATURES_BY_VIEW

    for spec in FEATURES_BY_VIEW[VIEW]:
        frame[spec.name] = rng.normal(size=len(frame))
    frame.loc[frame["date"] >= dates[200], "ret_21d"] += 3.0
    write_feature_file(tmp_path, VIEW, frame)
    current = last_sessions(pd.read_parquet(tmp_path / "features" / f"{VIEW}.parquet"), 100)
    assert current.start == dates[200].date()
    result = run_view(tmp_path, VIEW, Window(dates[0].date(), dates[199].date()), current, reports_dir=tmp_path / "r")
    drifted = [f.feature for f in result.features if f.detected]
    assert drifted == ["ret_21d"] and not result.detected


def test_empty_window_and_all_missing_columns_are_errors():
    """SYNTHETIC edge cases."""
    ts = pd.date_range("2020-01-01", periods=50, tz="UTC")
    rows = pd.DataFrame({EVENT_TIMESTAMP: ts, "ret_1d": np.linspace(0, 1, 50)})
    with pytest.raises(MonitoringError, match="current window has no rows"):
        compare(rows, rows.iloc[:0], VIEW, tests={"ret_1d": ColumnTest("wasserstein", 0.25)})
    rows["ret_1d"] = np.nan
    with pytest.raises(MonitoringError, match="no tested feature has data"):
        compare(rows, rows, VIEW, tests={"ret_1d": ColumnTest("wasserstein", 0.25)})
    with pytest.raises(MonitoringError, match="window ends"):
        Window.parse("2020-02-01:2020-01-01")
