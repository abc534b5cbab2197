"""Technical features: the schema contract, the per-ticker oracle, no look-ahead, no cross-ticker fill."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.schema import TECHNICAL_CROSS_SECTIONAL, TECHNICAL_FEATURES, names
from feature_repo.transforms.reference import technical_features_per_ticker
from feature_repo.transforms.technical import feature_frame_columns, rsi, technical_features
from tests.conftest import benchmark_series
from tests.frames import assert_rows_close, scrambled_after

CROSS_SECTIONAL = {f"{n}_{kind}" for n in TECHNICAL_CROSS_SECTIONAL for kind in ("csrank", "csz")}
PER_TICKER = [c for c in names(TECHNICAL_FEATURES) if c not in CROSS_SECTIONAL]


@pytest.fixture(scope="module")
def real(sp500):
    """Ten years of the real sample, with volumes added and a few bars knocked out."""
    prices = sp500.prices[sp500.prices["date"] >= "2010-01-01"].reset_index(drop=True)
    rng = np.random.default_rng(11)
    prices["volume"] = rng.lognormal(14, 0.5, len(prices))
    gaps = rng.choice(len(prices), 400, replace=False)
    return prices.drop(index=gaps).reset_index(drop=True), benchmark_series(sp500.benchmark)


def test_columns_follow_the_schema_in_order(real) -> None:
    prices, bench = real
    out = technical_features(prices, bench)
    assert list(out.columns) == feature_frame_columns()
    assert len(out) == len(prices)
    assert out[["ticker", "date"]].equals(out[["ticker", "date"]].sort_values(["ticker", "date"]))


def test_vectorised_transform_matches_the_per_ticker_oracle(real) -> None:
    prices, bench = real
    assert_rows_close(
        technical_features(prices, bench),
        technical_features_per_ticker(prices, bench),
        names(TECHNICAL_FEATURES),
    )


def test_features_at_t_ignore_every_row_after_t(real) -> None:
    prices, bench = real
    cutoff = pd.Timestamp("2016-06-30")
    full = technical_features(prices, bench)
    # Remove the future entirely...
    truncated = technical_features(prices[prices["date"] <= cutoff], bench[bench.index <= cutoff])
    # ...or change it wildly (prices, volumes, benchmark).
    scrambled = scrambled_after(prices, cutoff)
    scrambled.loc[scrambled["date"] > cutoff, "volume"] = 1.0
    bench_scrambled = bench.where(bench.index <= cutoff, bench * 3)
    changed = technical_features(scrambled, bench_scrambled)

    past = full["date"] <= cutoff
    assert past.sum() > 10_000
    assert_rows_close(full[past], truncated, names(TECHNICAL_FEATURES))
    assert_rows_close(full[past], changed[changed["date"] <= cutoff], names(TECHNICAL_FEATURES))
    # The scramble did change the future, so the comparison above could have failed.
    assert not np.allclose(full.loc[~past, "ret_1d"], changed.loc[~past, "ret_1d"], equal_nan=True)


def test_no_value_is_filled_across_tickers(real) -> None:
    prices, bench = real
    alone = prices[prices["ticker"] == "AAPL"]
    with_others = technical_features(prices, bench)
    solo = technical_features(alone, bench)
    # Per-ticker features of AAPL do not depend on any other ticker being present.
    assert_rows_close(with_others[with_others["ticker"] == "AAPL"], solo, PER_TICKER)


def test_a_ticker_listed_late_starts_with_missing_features_not_borrowed_ones(real) -> None:
    prices, bench = real
    late = prices[~((prices["ticker"] == "MSFT") & (prices["date"] < "2015-01-01"))]
    out = technical_features(late, bench)
    first = out[out["ticker"] == "MSFT"].iloc[0]
    assert first["date"] >= pd.Timestamp("2015-01-01")
    assert np.isnan(first["ret_1d"]) and np.isnan(first["vol_21d"]) and np.isnan(first["beta_252d"])


def test_gaps_longer_than_the_bridge_break_the_return_chain() -> None:
    dates = pd.bdate_range("2024-01-01", periods=30)
    prices = pd.DataFrame({"ticker": "AAA", "date": dates, "adj_close": np.linspace(10, 20, 30), "volume": np.nan})
    gapped = prices.drop(index=range(10, 20))  # ten missing sessions
    other = prices.assign(ticker="BBB")  # keeps the calendar complete
    out = technical_features(pd.concat([gapped, other]), pd.Series(100.0, index=dates))
    aaa = out[out["ticker"] == "AAA"].set_index("date")
    assert np.isnan(aaa.loc[dates[20], "ret_1d"])  # 11 sessions back: beyond the 5-session bridge
    assert aaa.loc[dates[21], "ret_1d"] == pytest.approx(prices["adj_close"][21] / prices["adj_close"][20] - 1)


def test_rsi_is_100_without_losses_and_0_without_gains() -> None:
    up = pd.DataFrame({"A": np.arange(1.0, 40.0)})
    down = pd.DataFrame({"A": np.arange(40.0, 1.0, -1.0)})
    assert rsi(up, 14)["A"].iloc[-1] == 100.0
    assert rsi(down, 14)["A"].iloc[-1] == pytest.approx(0.0)


def test_cross_sectional_ranks_and_zscores_use_only_the_same_date(real) -> None:
    prices, bench = real
    out = technical_features(prices, bench)
    day = out[out["date"] == pd.Timestamp("2018-03-01")]
    expected_rank = day["ret_21d"].rank(pct=True)
    np.testing.assert_allclose(day["ret_21d_csrank"], expected_rank)
    z = day["vol_63d_csz"]
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z.std() == pytest.approx(1.0)


def test_beta_of_the_benchmark_against_itself_is_one(sp500) -> None:
    bench = benchmark_series(sp500.benchmark)
    as_stock = pd.DataFrame({"ticker": "IDX", "date": bench.index, "adj_close": bench.to_numpy(), "volume": np.nan})
    out = technical_features(as_stock, bench)
    assert out["beta_252d"].dropna().to_numpy() == pytest.approx(1.0)
    assert out["resid_mom_126d"].dropna().abs().max() < 1e-9
