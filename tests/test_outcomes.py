"""Realised outcomes: hand-computed values, timestamping at known_at, no look-ahead, no cross-ticker fill."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.schema import OUTCOME_FIELDS, outcome_fields
from feature_repo.transforms.outcomes import forward_outcomes, outcome_frame_columns
from tests.conftest import benchmark_series
from tests.frames import scrambled_after

SESSIONS = pd.bdate_range("2024-01-01", periods=6)
# Three tickers over six sessions; with h=2 every value below is worked out by hand in the tests.
CLOSES = {
    "AAA": [10.0, 11.0, 12.0, 12.0, 15.0, 18.0],
    "BBB": [20.0, 22.0, 18.0, 18.0, 27.0, 18.0],
    "CCC": [50.0, 40.0, 55.0, 50.0, 55.0, 40.0],
}
BENCH = pd.Series([100.0, 100.0, 110.0, 100.0, 121.0, 90.0], index=SESSIONS)


def long_prices(closes: dict[str, list[float]], sessions: pd.DatetimeIndex = SESSIONS) -> pd.DataFrame:
    """(ticker, date, adj_close) rows from per-ticker close lists; NaN closes become missing bars."""
    rows = pd.concat(pd.DataFrame({"ticker": t, "date": sessions[: len(c)], "adj_close": c}) for t, c in closes.items())
    return rows.dropna(subset=["adj_close"]).reset_index(drop=True)


def random_prices(n_tickers: int, n_sessions: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n_sessions)
    levels = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_sessions, n_tickers)), axis=0))
    return pd.DataFrame(
        {
            "ticker": np.repeat([f"T{i:02d}" for i in range(n_tickers)], n_sessions),
            "date": np.tile(dates, n_tickers),
            "adj_close": levels.T.ravel(),
        }
    )


def row(out: pd.DataFrame, ticker: str, date: pd.Timestamp) -> pd.Series:
    match = out[(out["ticker"] == ticker) & (out["date"] == date)]
    assert len(match) == 1, f"expected one row for {ticker} on {date.date()}, got {len(match)}"
    return match.iloc[0]


@pytest.fixture(scope="module")
def real(sp500):
    return sp500.prices, benchmark_series(sp500.benchmark)


def test_hand_computed_values_on_three_tickers() -> None:
    out = forward_outcomes(long_prices(CLOSES), BENCH, horizon=2)
    s = SESSIONS
    expected = pd.DataFrame(
        {
            "ticker": ["AAA"] * 4 + ["BBB"] * 4 + ["CCC"] * 4,
            "date": list(s[:4]) * 3,
            "known_at": list(s[2:]) * 3,
            # AAA: 12/10, 12/11, 15/12, 18/12; BBB: 18/20, 18/22, 27/18, 18/18; CCC: 55/50, 50/40, 55/55, 40/50.
            "fwd_ret_2d": [0.2, 1 / 11, 0.25, 0.5, -0.1, -4 / 22, 0.5, 0.0, 0.1, 0.25, 0.0, -0.2],
            # Medians by date: 0.1, 1/11, 0.25, 0.0.
            "fwd_excess_2d": [0.1, 0.0, 0.0, 0.5, -0.2, -4 / 22 - 1 / 11, 0.25, 0.0, 0.0, 0.25 - 1 / 11, -0.25, -0.2],
            "label_2d": [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0],
            # Benchmark: 110/100, 100/100, 121/110, 90/100.
            "fwd_bench_ret_2d": [0.1, 0.0, 0.1, -0.1] * 3,
        }
    )
    pd.testing.assert_frame_equal(out, expected, check_exact=False, rtol=1e-12, atol=1e-12, check_names=False)
    assert out["label_2d"].dtype == np.int64
    assert out["known_at"].dtype == "datetime64[ns]"


def test_columns_follow_the_schema_in_order() -> None:
    prices = long_prices(CLOSES)
    with_bench = forward_outcomes(prices, BENCH, horizon=2)
    without = forward_outcomes(prices, horizon=2)
    assert list(with_bench.columns) == outcome_frame_columns(2, with_benchmark=True)
    assert list(without.columns) == outcome_frame_columns(2)
    assert list(with_bench.columns)[3:] == [s.name for s in outcome_fields(2)]
    assert list(without.columns) == ["ticker", "date", "known_at", "fwd_ret_2d", "fwd_excess_2d", "label_2d"]
    # The published default block describes the default 21-session horizon.
    assert [s.name for s in OUTCOME_FIELDS] == ["fwd_ret_21d", "fwd_excess_21d", "label_21d", "fwd_bench_ret_21d"]
    assert {s.name: s.dtype for s in OUTCOME_FIELDS}["label_21d"] == "int64"
    pd.testing.assert_frame_equal(with_bench[without.columns], without)


@pytest.mark.parametrize("n_tickers", [5, 4])
def test_excess_is_centred_on_the_median(n_tickers: int) -> None:
    out = forward_outcomes(random_prices(n_tickers, 40, seed=n_tickers), horizon=3)
    by_date = out.groupby("date")
    assert by_date["fwd_excess_3d"].median().abs().max() < 1e-15
    np.testing.assert_allclose(
        out["fwd_excess_3d"], out["fwd_ret_3d"] - by_date["fwd_ret_3d"].transform("median"), atol=1e-15
    )
    assert (out["label_3d"] == (out["fwd_excess_3d"] > 0)).all()
    # Half (rounded down) of the tickers beat the median on every date.
    assert (by_date["label_3d"].sum() == n_tickers // 2).all()
    zeros = by_date["fwd_excess_3d"].apply(lambda x: int((x == 0.0).sum()))
    # With an odd number of tickers exactly one sits on the median (excess 0, label 0).
    assert (zeros == (1 if n_tickers % 2 else 0)).all()


def test_the_last_horizon_sessions_have_no_rows() -> None:
    out = forward_outcomes(long_prices(CLOSES), horizon=2)
    assert out["date"].max() == SESSIONS[-3]
    assert not out["date"].isin(SESSIONS[-2:]).any()
    assert out.groupby("ticker").size().tolist() == [4, 4, 4]
    assert out.notna().all().all()


def test_horizon_parameter_is_respected() -> None:
    prices = random_prices(3, 30, seed=1)
    out = forward_outcomes(prices, horizon=5)
    assert list(out.columns) == ["ticker", "date", "known_at", "fwd_ret_5d", "fwd_excess_5d", "label_5d"]
    wide = prices.pivot(index="date", columns="ticker", values="adj_close")
    expected = (wide.shift(-5) / wide - 1).stack().dropna()
    got = out.set_index(["date", "ticker"])["fwd_ret_5d"]
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy(), rtol=1e-12)
    assert len(out) == 3 * 25
    assert (out["known_at"] == out["date"].map(dict(zip(wide.index[:-5], wide.index[5:], strict=True)))).all()


def test_known_at_is_h_sessions_later_in_the_market_calendar(real) -> None:
    prices, bench = real
    # Knock out bars so the calendar must come from the other tickers and the benchmark.
    prices = prices.drop(index=np.random.default_rng(5).choice(len(prices), 2_000, replace=False))
    out = forward_outcomes(prices, bench, horizon=21)
    calendar = pd.DatetimeIndex(np.sort(bench.index.unique()))
    expected = calendar[calendar.get_indexer(pd.DatetimeIndex(out["date"])) + 21]
    assert (out["known_at"].to_numpy() == expected.to_numpy()).all()
    assert (out["known_at"] > out["date"]).all()
    np.testing.assert_allclose(
        out["fwd_bench_ret_21d"].to_numpy(),
        (bench.reindex(expected).to_numpy() / bench.reindex(out["date"]).to_numpy()) - 1,
        rtol=1e-12,
    )


def test_outcomes_ignore_every_price_after_known_at(real) -> None:
    prices, bench = real
    prices = prices[prices["date"] >= "2015-01-01"].reset_index(drop=True)
    cutoff = pd.Timestamp("2018-06-29")
    full = forward_outcomes(prices, bench)
    truncated = forward_outcomes(prices[prices["date"] <= cutoff], bench[bench.index <= cutoff])
    changed = forward_outcomes(scrambled_after(prices, cutoff), bench.where(bench.index <= cutoff, bench * 3))

    known = full[full["known_at"] <= cutoff].reset_index(drop=True)
    assert len(known) > 10_000
    pd.testing.assert_frame_equal(known, truncated, check_exact=True)
    pd.testing.assert_frame_equal(known, changed[changed["known_at"] <= cutoff].reset_index(drop=True))
    # The scramble did change outcomes that end after the cutoff, so the comparisons could fail.
    late = full["known_at"] > cutoff
    assert not np.allclose(full.loc[late, "fwd_ret_21d"], changed.loc[late, "fwd_ret_21d"])


def test_only_the_price_at_t_plus_h_moves_the_outcome_at_t() -> None:
    prices = long_prices(CLOSES)
    base = forward_outcomes(prices, horizon=2)
    t, end = SESSIONS[1], SESSIONS[3]
    at_end = (prices["ticker"] == "AAA") & (prices["date"] == end)
    after_end = (prices["ticker"] == "AAA") & (prices["date"] > end)
    moved_end = forward_outcomes(prices.assign(adj_close=prices["adj_close"].where(~at_end, 99.0)), horizon=2)
    moved_after = forward_outcomes(prices.assign(adj_close=prices["adj_close"].where(~after_end, 99.0)), horizon=2)
    before = row(base, "AAA", t)
    assert row(moved_after, "AAA", t).equals(before)
    assert row(moved_end, "AAA", t)["fwd_ret_2d"] == pytest.approx(99.0 / 11.0 - 1)
    assert row(moved_end, "AAA", t)["fwd_ret_2d"] != before["fwd_ret_2d"]


def test_a_gap_at_t_plus_h_uses_the_tickers_own_last_price_never_another_tickers() -> None:
    sessions = pd.bdate_range("2024-01-01", periods=12)
    closes = {
        # AAA has no bars in sessions 4-6; BBB trades through them at very different levels.
        "AAA": [10.0, 11.0, 12.0, 13.0, np.nan, np.nan, np.nan, 17.0, 18.0, 19.0, 20.0, 21.0],
        "BBB": [500.0 + i for i in range(12)],
    }
    prices = long_prices(closes, sessions)
    out = forward_outcomes(prices, horizon=3, max_gap_sessions=2)
    # t=2 -> t+h=5: AAA's own last price (13 at session 3, two sessions back) bridges the gap.
    assert row(out, "AAA", sessions[2])["fwd_ret_3d"] == pytest.approx(13.0 / 12.0 - 1)
    assert row(out, "AAA", sessions[2])["known_at"] == sessions[5]
    # t=3 -> t+h=6: three sessions without a bar is beyond the bridge, so no row at all.
    assert out[(out["ticker"] == "AAA") & (out["date"] == sessions[3])].empty
    # No bar at t, no outcome (never back-filled from a later bar).
    assert not out[(out["ticker"] == "AAA")]["date"].isin(sessions[4:7]).any()
    # AAA's returns are the same whether or not BBB is in the universe (same calendar).
    alone = forward_outcomes(
        prices[prices["ticker"] == "AAA"], pd.Series(1.0, index=sessions), horizon=3, max_gap_sessions=2
    )
    mine = out[out["ticker"] == "AAA"].reset_index(drop=True)
    pd.testing.assert_series_equal(mine["fwd_ret_3d"], alone["fwd_ret_3d"])
    # Without a bridge, a missing bar at t+h simply means no outcome.
    strict = forward_outcomes(prices, horizon=3, max_gap_sessions=0)
    assert strict[(strict["ticker"] == "AAA") & (strict["date"] == sessions[2])].empty


def test_a_delisted_ticker_gets_no_label_once_its_prices_stop() -> None:
    sessions = pd.bdate_range("2024-01-01", periods=20)
    closes = {"AAA": [10.0 + i for i in range(20)], "BBB": [30.0 - i for i in range(20)], "GONE": [5.0] * 8}
    out = forward_outcomes(long_prices(closes, sessions), horizon=3, max_gap_sessions=2)
    gone = out[out["ticker"] == "GONE"]
    # Last bar at session 7; t+h may be at most two sessions later (session 9), so t <= 6.
    assert gone["date"].max() == sessions[6]
    assert gone["known_at"].max() == sessions[9]
    assert row(out, "GONE", sessions[6])["fwd_ret_3d"] == 0.0
    # Later dates are labelled among the survivors only.
    late = out[out["date"] > sessions[6]]
    assert set(late["ticker"]) == {"AAA", "BBB"}
    assert (late.groupby("date")["fwd_excess_3d"].sum().abs() < 1e-12).all()


def test_labels_are_roughly_balanced_on_real_prices(real) -> None:
    prices, bench = real
    out = forward_outcomes(prices, bench, horizon=21)
    assert 0.4 <= out["label_21d"].mean() <= 0.6
    assert set(out["label_21d"].unique()) == {0, 1}
    assert out["fwd_ret_21d"].notna().all() and out["fwd_excess_21d"].notna().all()
    assert out["date"].max() < prices["date"].max()


def test_rejects_a_horizon_below_one_session() -> None:
    with pytest.raises(ValueError, match="horizon"):
        forward_outcomes(long_prices(CLOSES), horizon=0)
    with pytest.raises(ValueError, match="max_gap_sessions"):
        forward_outcomes(long_prices(CLOSES), max_gap_sessions=-1)
