"""Tests of training.health: each defect injected into a small clean frame is flagged exactly."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from feature_repo.tables import PRICE_COLUMNS
from training.errors import HealthCheckFailed, TrainingError
from training.health import CHECK_NAMES, HealthReport, HealthThresholds, run_health_checks

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE")


def make_prices(
    tickers: tuple[str, ...] = TICKERS,
    n_sessions: int = 60,
    *,
    seed: int = 0,
    close_only: bool = False,
    start_price: float = 100.0,
) -> pd.DataFrame:
    """A clean frame in the price contract: 1% daily-vol random walks on a business-day calendar."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=n_sessions)
    paths = start_price * np.exp(np.cumsum(rng.normal(0.0, 0.01, (len(tickers), n_sessions)), axis=1))
    close = paths.ravel()
    frame = pd.DataFrame(
        {
            "ticker": np.repeat(tickers, n_sessions),
            "date": np.tile(dates.to_numpy(), len(tickers)),
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "adj_close": close,
            "volume": 1e6,
            "source": "test",
            "synthetic": True,
        }
    )
    if close_only:
        frame[["open", "high", "low", "volume"]] = np.nan
    return frame[list(PRICE_COLUMNS)]


def rows_of(frame: pd.DataFrame, ticker: str) -> pd.Series:
    return frame["ticker"] == ticker


def scale_from(
    frame: pd.DataFrame,
    ticker: str,
    session: int,
    factor: float,
    cols: tuple[str, ...] = ("close", "adj_close"),
) -> pd.DataFrame:
    """Multiply a ticker's prices from its ``session``-th bar on (a level shift such as a split)."""
    out = frame.copy()
    idx = out.index[rows_of(out, ticker)][session:]
    out.loc[idx, list(cols)] *= factor
    return out


def date_of(frame: pd.DataFrame, session: int) -> str:
    return str(pd.Timestamp(sorted(frame["date"].unique())[session]).date())


def affected(report: HealthReport) -> dict[str, int]:
    return {c.name: c.affected for c in report.checks}


def assert_only(report: HealthReport, **expected: int) -> None:
    """Exactly the named checks flag the given counts; every other check flags nothing."""
    want = {name: expected.get(name, 0) for name in CHECK_NAMES}
    assert affected(report) == want, report.to_table()


def test_clean_frame_passes_every_check() -> None:
    report = run_health_checks(make_prices())
    assert_only(report)
    assert not report.failed
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert (report.n_rows, report.n_tickers, report.n_sessions) == (300, 5, 60)
    report.raise_if_failed()


def test_missing_sessions_flag_only_the_holey_ticker() -> None:
    prices = make_prices()
    bbb = prices.index[rows_of(prices, "BBB")]
    ccc = prices.index[rows_of(prices, "CCC")]
    # BBB misses 5 of 60 sessions (8%); CCC misses 1 (1.7%, under the 2% default); DDD lists late.
    ddd_early = prices.index[rows_of(prices, "DDD")][:20]
    prices = prices.drop(index=[*bbb[[10, 20, 30, 40, 50]], ccc[30], *ddd_early])
    report = run_health_checks(prices)
    assert_only(report, missing_sessions=1)
    result = report.check("missing_sessions")
    assert result.examples == ["BBB: 5 of 60 sessions missing (8.3%)"]
    # One ticker of five is over the 10% share limit.
    assert result.failed
    assert not run_health_checks(prices, HealthThresholds(max_missing_ticker_share=0.2)).failed
    assert (
        run_health_checks(prices, HealthThresholds(max_missing_session_share=0.01))
        .check("missing_sessions")
        .examples[1]
        .startswith("CCC: 1 of 60")
    )


def test_nan_adj_close_counts_as_a_missing_session() -> None:
    prices = make_prices()
    aaa = prices.index[rows_of(prices, "AAA")]
    prices.loc[aaa[[5, 6, 7]], "adj_close"] = np.nan
    assert_only(run_health_checks(prices), missing_sessions=1)


def test_stale_tickers_use_sessions_before_the_latest_date() -> None:
    prices = make_prices()
    # CCC stops 10 sessions early, DDD exactly 5 (stale), EEE 4 (not stale).
    drop = [*prices.index[rows_of(prices, "CCC")][-10:], *prices.index[rows_of(prices, "DDD")][-5:]]
    drop += list(prices.index[rows_of(prices, "EEE")][-4:])
    report = run_health_checks(prices.drop(index=drop))
    assert_only(report, stale_tickers=2)
    result = report.check("stale_tickers")
    assert result.examples == [
        f"CCC: last bar {date_of(prices, 49)}, 10 sessions before {date_of(prices, 59)}",
        f"DDD: last bar {date_of(prices, 54)}, 5 sessions before {date_of(prices, 59)}",
    ]
    assert result.failed
    relaxed = HealthThresholds(stale_after_sessions=11)
    assert run_health_checks(prices.drop(index=drop), relaxed).check("stale_tickers").affected == 0


def test_non_positive_prices_flag_exact_rows() -> None:
    prices = make_prices()
    bbb, eee = prices.index[rows_of(prices, "BBB")], prices.index[rows_of(prices, "EEE")]
    prices.loc[bbb[3], "close"] = -1.0
    prices.loc[eee[7], ["low", "adj_close"]] = 0.0
    report = run_health_checks(prices)
    # A zero adj_close is excluded from returns, so it creates no outlier or split on top.
    assert_only(report, non_positive_prices=2)
    assert report.check("non_positive_prices").examples == [
        f"BBB {date_of(prices, 3)} close=-1",
        f"EEE {date_of(prices, 7)} low=0 adj_close=0",
    ]
    assert report.check("non_positive_prices").failed


def test_nan_open_high_low_are_not_non_positive() -> None:
    prices = make_prices(close_only=True)
    assert prices[["open", "high", "low", "volume"]].isna().all().all()
    report = run_health_checks(prices)
    assert_only(report)
    assert not report.failed


def test_outlier_returns_and_their_limit() -> None:
    # A lasting +45% move on CCC: an outlier (not near any split ratio), one row.
    prices = scale_from(make_prices(), "CCC", 25, 1.45)
    report = run_health_checks(prices)
    assert_only(report, outlier_returns=1)
    result = report.check("outlier_returns")
    assert result.examples[0].startswith(f"CCC {date_of(prices, 25)} return=+4")
    assert not result.failed  # one row is within the default limit of 50
    strict = run_health_checks(prices, HealthThresholds(max_outlier_rows=0))
    assert strict.check("outlier_returns").failed
    assert strict.failed
    assert run_health_checks(prices, HealthThresholds(outlier_abs_return=0.5)).check("outlier_returns").affected == 0


def test_unadjusted_split_is_flagged_once_and_not_as_outlier() -> None:
    prices = scale_from(make_prices(), "DDD", 30, 0.5)
    report = run_health_checks(prices)
    assert_only(report, unadjusted_splits=1)
    result = report.check("unadjusted_splits")
    assert result.failed
    assert result.examples[0].startswith(f"DDD {date_of(prices, 30)} adj_close ")
    assert result.examples[0].endswith("~ 1/2)")


def test_split_adjusted_in_adj_close_is_not_flagged() -> None:
    # The close halves (a real 2-for-1 split) but adj_close was adjusted: the data is right.
    prices = scale_from(make_prices(), "DDD", 30, 0.5, cols=("close",))
    assert_only(run_health_checks(prices))


def test_asx_style_consolidation_is_flagged() -> None:
    # A penny stock consolidating 1-for-10: the unadjusted price jumps tenfold and stays.
    prices = make_prices(("PNY.AX", "BHP.AX"), start_price=0.05)
    prices = scale_from(prices, "PNY.AX", 40, 10.0)
    report = run_health_checks(prices)
    assert_only(report, unadjusted_splits=1)
    assert report.check("unadjusted_splits").examples[0].endswith("~ 10)")


def test_a_sub_cent_tick_is_not_a_split_below_the_tick_noise_price() -> None:
    # A share at 0.001 that trades at 0.002 from then on: one tick, x2, persistent.
    prices = make_prices(("PNY.AX", "BHP.AX"), start_price=0.001)
    prices = scale_from(prices, "PNY.AX", 40, 2.0)
    assert run_health_checks(prices).check("unadjusted_splits").affected == 1
    report = run_health_checks(prices, tick_noise_below=0.01)
    assert report.check("unadjusted_splits").affected == 0
    # The same x2 on a share above the tick-noise price is still a split.
    dearer = scale_from(make_prices(("PNY.AX", "BHP.AX"), start_price=0.05), "PNY.AX", 40, 2.0)
    assert run_health_checks(dearer, tick_noise_below=0.01).check("unadjusted_splits").affected == 1


def test_genuine_crash_is_not_a_split() -> None:
    # -30% that stays down: far from every split ratio, and under the outlier bound.
    prices = scale_from(make_prices(), "AAA", 30, 0.7)
    assert_only(run_health_checks(prices))
    # -40% is an outlier move but still not a split.
    assert_only(run_health_checks(scale_from(make_prices(), "AAA", 30, 0.6)), outlier_returns=1)


def test_halving_that_reverses_next_day_is_not_a_split() -> None:
    prices = make_prices()
    bbb = prices.index[rows_of(prices, "BBB")]
    prices.loc[bbb[30], ["close", "adj_close"]] *= 0.5
    report = run_health_checks(prices)
    # The bad tick and its undoing are two outlier rows; neither is a split.
    assert_only(report, outlier_returns=2)


def test_split_ratio_move_undone_within_the_window_is_not_a_split() -> None:
    # Halved for three bars, then back: reversed inside the default 5-bar window.
    prices = make_prices()
    bbb = prices.index[rows_of(prices, "BBB")]
    prices.loc[bbb[30:33], ["close", "adj_close"]] *= 0.5
    assert run_health_checks(prices).check("unadjusted_splits").affected == 0
    # With a 2-bar window the reversal is too late to count, so both jumps look like splits.
    short = run_health_checks(prices, HealthThresholds(split_confirm_bars=2))
    assert short.check("unadjusted_splits").affected == 2


def test_duplicate_keys_are_counted_once_each() -> None:
    prices = make_prices()
    aaa, eee = prices.index[rows_of(prices, "AAA")], prices.index[rows_of(prices, "EEE")]
    dupes = prices.loc[[aaa[4], eee[9], eee[9]]]
    report = run_health_checks(pd.concat([prices, dupes], ignore_index=True))
    assert_only(report, duplicate_rows=2)
    result = report.check("duplicate_rows")
    assert result.examples == [
        f"EEE {date_of(prices, 9)} appears 3 times",
        f"AAA {date_of(prices, 4)} appears 2 times",
    ]
    assert result.total == 300
    assert result.failed
    assert not run_health_checks(pd.concat([prices, dupes]), HealthThresholds(max_duplicate_keys=2)).failed


def test_row_order_does_not_matter() -> None:
    prices = scale_from(make_prices(), "DDD", 30, 0.5)
    shuffled = prices.sample(frac=1.0, random_state=7)
    assert run_health_checks(shuffled).to_dict() == run_health_checks(prices).to_dict()


def test_raise_if_failed_names_the_failed_check() -> None:
    prices = scale_from(make_prices(), "DDD", 30, 0.5)
    with pytest.raises(HealthCheckFailed) as caught:
        run_health_checks(prices).raise_if_failed()
    message = str(caught.value)
    assert "unadjusted_splits" in message
    failed_line = next(line for line in message.splitlines() if line.startswith("unadjusted_splits"))
    assert "FAIL" in failed_line
    assert "check" in message and "status" in message  # the table, not just the names


def test_table_and_dict_render_every_check() -> None:
    prices = scale_from(make_prices(), "CCC", 25, 1.45)
    report = run_health_checks(prices)
    table = report.to_table()
    print(table)
    for name in CHECK_NAMES:
        assert name in table
    assert "\x1b[" not in table
    assert "OK" in table
    round_trip = json.loads(json.dumps(report.to_dict()))
    assert [c["name"] for c in round_trip["checks"]] == list(CHECK_NAMES)
    assert round_trip["failed"] is False


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValidationError):
        HealthThresholds(max_outlier_rowz=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        HealthThresholds(split_ratios=(0.5, 1.0))
    with pytest.raises(ValidationError):
        HealthThresholds(max_stale_ticker_share=1.5)


def test_frame_without_required_columns_is_refused() -> None:
    with pytest.raises(TrainingError, match="adj_close"):
        run_health_checks(make_prices().drop(columns=["adj_close"]))


def test_large_universe_is_checked_whole() -> None:
    # Scale, not speed: tests assert behaviour (bench/ reports speed; wall time printed for the log).
    prices = make_prices(tuple(f"T{i:04d}" for i in range(2400)), 756, close_only=True)
    start = time.perf_counter()
    report = run_health_checks(prices.sample(frac=1.0, random_state=1))
    print(f"\n{len(prices)} rows checked in {time.perf_counter() - start:.2f}s")
    assert report.n_rows == 1_814_400


def test_real_skfolio_sp500_prices() -> None:
    # Ships inside the skfolio package (the training extra): no download.
    datasets = pytest.importorskip("skfolio.datasets")
    wide = datasets.load_sp500_dataset()
    prices = wide.rename_axis("date").reset_index().melt(id_vars="date", var_name="ticker", value_name="close")
    prices["adj_close"] = prices["close"]
    prices[["open", "high", "low", "volume"]] = np.nan
    prices["source"], prices["synthetic"] = "skfolio.sp500", False
    report = run_health_checks(prices[list(PRICE_COLUMNS)])
    print("\n" + report.to_table())
    assert report.n_tickers == wide.shape[1]
    assert report.check("non_positive_prices").affected == 0
    assert report.check("duplicate_rows").affected == 0
    assert report.check("missing_sessions").affected == 0  # one shared calendar, no gaps
