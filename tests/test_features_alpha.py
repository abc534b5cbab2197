"""Alpha158-style features: schema contract, per-ticker oracle, no look-ahead, Qlib spot checks.

Inputs are SYNTHETIC random walks made here (test inputs only, no figure is reported on them),
with the defects real bars have: gaps short and long, missing volumes, trading-halt rows with
open/high/low of 0, a close-only ticker, a late listing, a split, and a series break.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.contract import MODEL_SERVICES
from feature_repo.files import read_feature_file, write_feature_chunks
from feature_repo.schema import ALPHA_FEATURES, ALPHA_ROLLING_OPS, ALPHA_WINDOWS, names
from feature_repo.transforms.alpha import alpha_feature_chunks, alpha_features, feature_frame_columns
from tests.alpha_oracle import alpha_per_ticker
from tests.frames import assert_rows_close, scrambled_after

ALL = names(ALPHA_FEATURES)
SESSIONS = pd.bdate_range("2020-01-01", periods=170, name="date")


def _walk(rng: np.random.Generator, ticker: str, days: pd.DatetimeIndex, start: float) -> pd.DataFrame:
    close = start * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    open_ = close * np.exp(rng.normal(0, 0.01, len(days)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, len(days))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, len(days))))
    volume = rng.lognormal(12, 0.6, len(days)).round()
    return pd.DataFrame(
        {"ticker": ticker, "date": days, "open": open_, "high": high, "low": low, "close": close}
        | {"adj_close": close, "volume": volume}
    )


@pytest.fixture(scope="module")
def panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five SYNTHETIC tickers with every defect the transform must handle, and one break."""
    rng = np.random.default_rng(7)
    frames = [_walk(rng, t, SESSIONS, s) for t, s in (("AAA", 20.0), ("BBB", 3.0), ("CCC", 50.0), ("DDD", 0.5))]
    frames.append(_walk(rng, "EEE", SESSIONS[40:], 8.0))  # listed late
    prices = pd.concat(frames, ignore_index=True)
    drop = (prices["ticker"] == "AAA") & prices["date"].isin(SESSIONS[[30, 31, 60, 100, 101, 102, 103, 104, 105, 106]])
    drop |= (prices["ticker"] == "BBB") & prices["date"].isin(SESSIONS[[5, 90]])
    prices = prices[~drop].reset_index(drop=True)
    prices.loc[(prices["ticker"] == "BBB") & prices["date"].isin(SESSIONS[50:58]), "volume"] = np.nan
    halt = (prices["ticker"] == "CCC") & prices["date"].isin(SESSIONS[[70, 71, 120]])
    prices.loc[halt, ["open", "high", "low", "volume"]] = 0.0
    prices.loc[prices["ticker"] == "DDD", ["open", "high", "low"]] = np.nan  # a close-only source
    prices.loc[(prices["ticker"] == "EEE") & (prices["date"] == SESSIONS[45]), "open"] = 0.1  # open below low
    # A 1:4 split of CCC on session 80: raw prices before it are 4x, adj_close continuous.
    before = (prices["ticker"] == "CCC") & (prices["date"] < SESSIONS[80])
    prices.loc[before, ["open", "high", "low", "close"]] *= 4.0
    # (volume arrives adjusted, as the features stage passes it: unchanged)
    breaks = pd.DataFrame({"ticker": ["AAA"], "date": [SESSIONS[110]], "reason": ["code_reused"], "detail": [""]})
    return prices, breaks


def assert_same(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> None:
    assert_rows_close(left, right, columns, rtol=1e-7, atol=1e-9)


def test_schema_lists_every_operator_window_once_and_v2_extends_v1() -> None:
    assert len(ALL) == len(set(ALL)) == 9 + 4 + len(ALPHA_ROLLING_OPS) * len(ALPHA_WINDOWS) + 5
    assert all(s.description and s.dtype == "float64" for s in ALPHA_FEATURES)
    assert MODEL_SERVICES["technical_model_v2"] == ("technical_features", "alpha_features")
    assert MODEL_SERVICES["technical_model_v1"] == ("technical_features",)


def test_columns_follow_the_schema_in_order(panel) -> None:
    prices, breaks = panel
    out = alpha_features(prices, sessions=SESSIONS, breaks=breaks)
    assert list(out.columns) == feature_frame_columns()
    assert len(out) == len(prices)
    assert out[["ticker", "date"]].equals(out[["ticker", "date"]].sort_values(["ticker", "date"]))
    assert [str(t) for t in out.dtypes[2:].unique()] == ["float64"]
    # Every feature has values somewhere, and no infinity escapes.
    values = out[ALL].to_numpy()
    assert not np.isinf(values).any()
    assert out[ALL].notna().any().all(), out[ALL].columns[~out[ALL].notna().any()].tolist()


def test_vectorised_transform_matches_the_per_ticker_oracle(panel) -> None:
    prices, breaks = panel
    assert_same(
        alpha_features(prices, sessions=SESSIONS, breaks=breaks), alpha_per_ticker(prices, SESSIONS, breaks), ALL
    )


def test_oracle_agreement_with_traded_value_given(panel) -> None:
    prices, _ = panel
    prices = prices[prices["ticker"].isin(["BBB", "CCC"])]  # missing volumes and halt rows
    given = prices.assign(traded_value=prices["close"] * prices["volume"] * 1.5)
    got = alpha_features(given, sessions=SESSIONS)
    liquidity = [c for c in ALL if c.startswith("log_")]
    assert_same(got, alpha_per_ticker(given, SESSIONS), liquidity)


def test_features_at_t_ignore_every_row_after_t(panel) -> None:
    prices, breaks = panel
    cutoff = SESSIONS[120]
    full = alpha_features(prices, sessions=SESSIONS, breaks=breaks)
    truncated = alpha_features(prices[prices["date"] <= cutoff], sessions=SESSIONS, breaks=breaks)
    scrambled = scrambled_after(prices, cutoff, ("open", "high", "low", "close", "adj_close", "volume"))
    changed = alpha_features(scrambled, sessions=SESSIONS, breaks=breaks)
    past = (full["date"] <= cutoff).to_numpy()
    assert past.sum() > 400
    assert_same(full[past], truncated, ALL)
    assert_same(full[past], changed[changed["date"] <= cutoff], ALL)
    # The scramble did change the future, so the comparisons above could have failed.
    assert not np.allclose(full.loc[~past, "ma20"], changed.loc[~past, "ma20"], equal_nan=True)


def test_no_window_spans_a_series_break(panel) -> None:
    prices, breaks = panel
    aaa = prices[prices["ticker"] == "AAA"]
    with_break = alpha_features(aaa, sessions=SESSIONS, breaks=breaks)
    after = aaa[aaa["date"] >= breaks["date"].iloc[0]]
    alone = alpha_features(after, sessions=SESSIONS)
    assert_same(with_break[with_break["date"] >= breaks["date"].iloc[0]], alone, ALL)
    assert with_break.loc[with_break["date"] == breaks["date"].iloc[0], "ma5"].isna().all()


def test_a_split_changes_no_ratio_feature(panel) -> None:
    """Raw prices 4x before a split, adj_close continuous: the same features as the unsplit bars."""
    prices, _ = panel
    ccc = prices[prices["ticker"] == "CCC"]
    unsplit = ccc.copy()
    raw_cols = ["open", "high", "low", "close"]
    unsplit[raw_cols] = unsplit[raw_cols].div(unsplit["close"] / unsplit["adj_close"], axis=0)
    level = ["log_price", "log_med_value_20", "log_med_value_60", "log_amihud_20", "log_amihud_60"]
    assert_same(
        alpha_features(ccc, sessions=SESSIONS),
        alpha_features(unsplit, sessions=SESSIONS),
        [c for c in ALL if c not in level],
    )
    # The price level is the raw one the market saw: 4x before the split.
    out = alpha_features(ccc, sessions=SESSIONS).set_index("date")
    assert out.loc[SESSIONS[79], "log_price"] == pytest.approx(np.log(ccc.set_index("date").loc[SESSIONS[79], "close"]))


def test_halt_rows_and_close_only_bars_have_no_kbar_but_keep_windows(panel) -> None:
    prices, _ = panel
    out = alpha_features(prices, sessions=SESSIONS).set_index(["ticker", "date"])
    halt = out.loc[("CCC", SESSIONS[120])]
    assert np.isnan(halt[["kmid", "klen", "open0", "vma20"]].astype(float)).all()
    assert np.isfinite(halt[["ma20", "max20", "rsv20", "imax20"]].astype(float)).all()
    ddd = out.loc["DDD"]
    assert ddd["kmid"].isna().all() and ddd["high0"].isna().all()
    assert ddd["max20"].notna().sum() > 100  # the close stands in for a missing high
    # A vendor open below the low widens the low: shadows are never negative.
    assert (out[["kup", "klow", "kup2", "klow2"]].dropna() >= 0).all().all()


def test_a_ticker_alone_gets_the_same_values(panel) -> None:
    prices, breaks = panel
    together = alpha_features(prices, sessions=SESSIONS, breaks=breaks)
    alone = alpha_features(prices[prices["ticker"] == "EEE"], sessions=SESSIONS)
    assert_same(together[together["ticker"] == "EEE"], alone, ALL)


# --- Qlib definitions on hand-computed series ----------------------------------------------------


def _bars(close: list[float], **columns: list[float]) -> pd.DataFrame:
    n = len(close)
    frame = {"ticker": "X", "date": SESSIONS[:n], "close": close, "adj_close": close}
    frame |= {"open": close, "high": close, "low": close, "volume": [1000.0] * n} | columns
    return pd.DataFrame(frame)


def test_kbar_of_one_bar_by_hand() -> None:
    out = alpha_features(_bars([10.0], open=[8.0], high=[11.0], low=[7.0])).iloc[0]
    assert out["kmid"] == pytest.approx(2 / 8)
    assert out["klen"] == pytest.approx(4 / 8)
    assert out["kmid2"] == pytest.approx(2 / 4)
    assert out["kup"] == pytest.approx(1 / 8)
    assert out["kup2"] == pytest.approx(1 / 4)
    assert out["klow"] == pytest.approx(1 / 8)
    assert out["klow2"] == pytest.approx(1 / 4)
    assert out["ksft"] == pytest.approx((20 - 11 - 7) / 8)
    assert out["ksft2"] == pytest.approx(2 / 4)
    assert out["open0"] == pytest.approx(0.8)
    assert out["typ0"] == pytest.approx((11 + 7 + 10) / 30)


def test_linear_trend_and_window_statistics_by_hand() -> None:
    close = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    high = [c + 0.5 for c in close]
    low = [c - 0.5 for c in close]
    out = alpha_features(_bars(close, high=high, low=low, open=close)).iloc[-1]
    # Window of 5: closes 11..15, today 15.
    assert out["roc5"] == pytest.approx(10 / 15)
    assert out["ma5"] == pytest.approx(13 / 15)
    assert out["std5"] == pytest.approx(np.std([11, 12, 13, 14, 15], ddof=1) / 15)
    assert out["beta5"] == pytest.approx(1 / 15)  # slope 1 per session
    assert out["rsqr5"] == pytest.approx(1.0)
    assert out["resi5"] == pytest.approx(0.0, abs=1e-12)
    assert out["max5"] == pytest.approx(15.5 / 15)
    assert out["min5"] == pytest.approx(10.5 / 15)
    assert out["qtlu5"] == pytest.approx(14.2 / 15)  # linear interpolation: 11 + 0.8 x 4
    assert out["qtld5"] == pytest.approx(11.8 / 15)
    assert out["rank5"] == pytest.approx(1.0)
    assert out["rsv5"] == pytest.approx(4.5 / 5)
    assert out["imax5"] == pytest.approx(1.0)  # the high is today, position 5 of 5
    assert out["imin5"] == pytest.approx(0.2)
    assert out["imxd5"] == pytest.approx(0.8)
    assert out["cntp5"] == pytest.approx(1.0) and out["cntn5"] == 0.0
    assert out["sump5"] == pytest.approx(1.0) and out["sumd5"] == pytest.approx(1.0)
    assert np.isnan(out["corr5"])  # a constant volume has no correlation
    assert out["vma5"] == pytest.approx(1.0) and out["vstd5"] == pytest.approx(0.0)
    assert np.isnan(out["ma10"])  # windows are full or missing


def test_rank_ties_and_volume_sums_by_hand() -> None:
    close = [5.0, 3.0, 5.0, 4.0, 5.0]
    volume = [100.0, 300.0, 200.0, 200.0, 400.0]
    out = alpha_features(_bars(close, volume=volume)).iloc[-1]
    assert out["rank5"] == pytest.approx(0.8)  # three tied 5s share ranks 3..5: mean 4 of 5
    # Volume changes +200, -100, 0, +200: rises 400 of 500 moved.
    assert np.isnan(out["vsump5"])  # needs 6 volumes for 5 changes
    out4 = alpha_features(_bars([1.0, *close], volume=[100.0, *volume])).iloc[-1]
    assert out4["vsump5"] == pytest.approx(400 / 500)
    assert out4["vsumn5"] == pytest.approx(100 / 500)
    assert out4["cntp5"] == pytest.approx(3 / 5) and out4["cntn5"] == pytest.approx(2 / 5)
    assert out4["vma5"] == pytest.approx(np.mean(volume) / 400)


def test_chunks_of_tickers_equal_the_whole_universe_and_write_one_file(panel, tmp_path) -> None:
    prices, breaks = panel
    whole = alpha_features(prices, breaks=breaks)
    chunks = list(alpha_feature_chunks(prices.sample(frac=1.0, random_state=1), tickers_per_chunk=2, breaks=breaks))
    assert [sorted(c["ticker"].unique()) for c in chunks] == [["AAA", "BBB"], ["CCC", "DDD"], ["EEE"]]
    assert_same(pd.concat(chunks, ignore_index=True), whole, ALL)
    path, rows = write_feature_chunks(tmp_path, "alpha_features", iter(chunks))
    assert path.name == "alpha_features.parquet"
    assert rows == len(whole)
    stored = read_feature_file(tmp_path, "alpha_features")
    assert stored["created_timestamp"].nunique() == 1
    np.testing.assert_array_equal(stored["ticker"].to_numpy(), whole["ticker"].to_numpy())
    np.testing.assert_allclose(stored[ALL].to_numpy(), whole[ALL].to_numpy(), equal_nan=True)
    with pytest.raises(ValueError, match="tickers_per_chunk"):
        next(alpha_feature_chunks(prices, tickers_per_chunk=0))
