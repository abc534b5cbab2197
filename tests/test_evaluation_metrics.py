"""Signal metrics (IC, rank IC, honest t-stats, AUC, quintile spread) and point-in-time baselines.

Every frame here is SYNTHETIC: hand-made numbers or seeded random draws, used only to check the
arithmetic; no quality figure is reported on them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.evaluation import (
    momentum_12_1,
    naive_tstat,
    newey_west_tstat,
    per_date_statistics,
    short_term_reversal,
    signal_metrics,
)
from training.evaluation.metrics import group_ranks

DAYS = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])
TICKERS = ["A", "B", "C", "D", "E"]


def long_frame(scores: list[list[float]], targets: list[list[float]], tickers: list[str] = TICKERS) -> pd.DataFrame:
    """A SYNTHETIC prediction frame: one row per (date, ticker), label = target > 0."""
    rows = [
        {"date": DAYS[d], "ticker": t, "score": s, "target": y}
        for d, (day_scores, day_targets) in enumerate(zip(scores, targets, strict=True))
        for t, s, y in zip(tickers, day_scores, day_targets, strict=True)
    ]
    frame = pd.DataFrame(rows)
    frame["label"] = (frame["target"] > 0).astype(int)
    return frame


def hand_frame() -> pd.DataFrame:
    """Three evaluated dates of five tickers plus a fourth date of four tickers (too few to count).

    Scores are 1..5 every date. Targets (SYNTHETIC):
    * date 0: 0.01..0.05, rising with score -> IC 1, rank IC 1, top-bottom spread 0.04.
    * date 1: 0.05..0.01, falling -> IC -1, rank IC -1, spread -0.04.
    * date 2: 0.01, 0.02, 0.03, 0.04, 0.50 -> rank IC 1; Pearson by hand: centred score
      (-2, -1, 0, 1, 2), centred target (-.11, -.10, -.09, -.08, .38); sum of products 1.00,
      sums of squares 10 and 0.181, so IC = 1 / sqrt(1.81). Spread 0.49.
    """
    frame = long_frame(
        [[1, 2, 3, 4, 5]] * 3,
        [[0.01, 0.02, 0.03, 0.04, 0.05], [0.05, 0.04, 0.03, 0.02, 0.01], [0.01, 0.02, 0.03, 0.04, 0.50]],
    )
    fourth = long_frame([[4, 3, 2, 1]], [[0.1, 0.2, 0.3, 0.4]], tickers=["A", "B", "C", "D"])
    fourth["date"] = DAYS[3]
    return pd.concat([frame, fourth], ignore_index=True)


# ---------------------------------------------------------------- IC and rank IC by hand


def test_ic_rank_ic_spread_and_hit_rate_match_the_hand_computation() -> None:
    metrics = signal_metrics(hand_frame(), horizon=1)

    ic = [1.0, -1.0, 1.0 / math.sqrt(1.81)]
    rank_ic = [1.0, -1.0, 1.0]
    assert metrics.n_dates == 3  # the four-ticker date is not evaluated
    assert metrics.ic_mean == pytest.approx(np.mean(ic))
    assert metrics.ic_std == pytest.approx(np.std(ic, ddof=1))
    assert metrics.ic_ir == pytest.approx(np.mean(ic) / np.std(ic, ddof=1))
    assert metrics.ic_ir_ann == pytest.approx(metrics.ic_ir * math.sqrt(252))
    assert metrics.rank_ic_mean == pytest.approx(1 / 3)
    assert metrics.rank_ic_std == pytest.approx(np.std(rank_ic, ddof=1))
    assert metrics.quintile_spread == pytest.approx((0.04 - 0.04 + 0.49) / 3)
    assert metrics.hit_rate == pytest.approx(2 / 3)
    # With h = 1 there is no overlap: NW with 0 lags is the ddof=0 textbook t-stat.
    assert metrics.ic_t_nw == pytest.approx(np.mean(ic) / math.sqrt(np.var(ic) / 3))
    assert metrics.ic_t_nonoverlap == pytest.approx(naive_tstat(ic))


def test_min_tickers_lets_the_small_date_in() -> None:
    per_date = per_date_statistics(hand_frame(), min_tickers=4)
    assert list(per_date["n_tickers"]) == [5, 5, 5, 4]
    # Day 3: scores 4, 3, 2, 1 against rising targets -> perfectly reversed.
    assert per_date["ic"].iloc[3] == pytest.approx(-1.0)
    assert per_date["rank_ic"].iloc[3] == pytest.approx(-1.0)


def test_ic_is_cross_sectional_not_pooled() -> None:
    # SYNTHETIC: within each date the target pattern (1, -1, 0, -1, 1) is orthogonal to the
    # score pattern (1..5), so every per-date IC is 0, but both drift up together over dates.
    pattern = np.array([1.0, -1.0, 0.0, -1.0, 1.0]) * 0.01
    scores = [[10.0 * d + s for s in range(1, 6)] for d in range(3)]
    targets = [list(0.1 * d + pattern) for d in range(3)]
    frame = long_frame(scores, targets)

    pooled = np.corrcoef(frame["score"], frame["target"])[0, 1]
    metrics = signal_metrics(frame, horizon=1)

    assert pooled > 0.9
    assert metrics.ic_mean == pytest.approx(0.0, abs=1e-12)
    assert metrics.rank_ic_mean == pytest.approx(0.0, abs=1e-12)


def test_dates_with_a_constant_score_are_not_evaluated() -> None:
    frame = long_frame([[1, 2, 3, 4, 5], [7, 7, 7, 7, 7]], [[0.1, 0.2, 0.3, 0.4, 0.5]] * 2)
    metrics = signal_metrics(frame, horizon=1)
    assert metrics.n_dates == 1
    assert metrics.ic_mean == pytest.approx(1.0)


# ---------------------------------------------------------------- t-statistics


def test_newey_west_matches_a_hand_computation() -> None:
    # x = 1, 2, 3, 4: mean 2.5, e = (-1.5, -.5, .5, 1.5); g0 = 5/4, g1 = 1.25/4; Bartlett weight
    # for lag 1 of L = 1 is 1/2, so lrv = 1.25 + 2 * 0.5 * 0.3125 = 1.5625, se = sqrt(lrv/4) = .625.
    assert newey_west_tstat([1.0, 2.0, 3.0, 4.0], lags=1) == pytest.approx(4.0)
    assert newey_west_tstat([1.0, 2.0, 3.0, 4.0], lags=0) == pytest.approx(2.5 / math.sqrt(1.25 / 4))
    assert math.isnan(newey_west_tstat([1.0], lags=3))
    assert math.isnan(newey_west_tstat([2.0, 2.0, 2.0], lags=1))


def test_newey_west_widens_the_error_of_an_overlapping_series() -> None:
    # SYNTHETIC: 21-session rolling sums of iid noise, the shape of a daily IC series on 21-day
    # targets. Its true long-run variance is about 21x the variance; NW with 20 lags must see
    # most of that, while a naive t-stat does not.
    rng = np.random.default_rng(7)
    h = 21
    series = np.convolve(rng.normal(0.0, 1.0, 3000 + h - 1), np.ones(h), mode="valid") / h + 0.05
    naive = naive_tstat(series)
    hac = newey_west_tstat(series, lags=h - 1)
    assert abs(naive) / abs(hac) > 2.5


def test_nonoverlap_tstat_uses_every_hth_date() -> None:
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2024-01-01", periods=30)
    frame = pd.DataFrame(
        {
            "date": np.repeat(days, 8),
            "ticker": np.tile([f"T{i}" for i in range(8)], 30),
            "score": rng.normal(size=240),
            "target": rng.normal(size=240),
        }
    )
    frame["label"] = (frame["target"] > 0).astype(int)
    metrics = signal_metrics(frame, horizon=5)
    per_date = per_date_statistics(frame)

    assert metrics.n_dates == 30
    assert metrics.n_dates_nonoverlap == 6
    assert metrics.ic_t_nonoverlap == pytest.approx(naive_tstat(per_date["ic"].to_numpy()[::5]))
    assert metrics.rank_ic_t_nw == pytest.approx(newey_west_tstat(per_date["rank_ic"].to_numpy(), 4))
    assert metrics.ic_ir_ann == pytest.approx(metrics.ic_ir * math.sqrt(252 / 5))


# ---------------------------------------------------------------- AUC, quintiles, ranks


def test_auc_is_pooled_and_nan_with_one_class() -> None:
    frame = long_frame([[0.1, 0.4, 0.35, 0.8, 0.2]], [[-0.1, -0.2, 0.3, 0.1, -0.05]])
    # Positives score 0.35 and 0.8; negatives 0.1, 0.4, 0.2: 5 of 6 pairs ordered -> 5/6.
    assert signal_metrics(frame, horizon=1).auc == pytest.approx(5 / 6)
    frame["label"] = 1
    assert math.isnan(signal_metrics(frame, horizon=1).auc)


def test_quintile_spread_matches_pandas_qcut_per_date() -> None:
    # SYNTHETIC: dates of 5..23 tickers, including tied scores, against a per-date qcut reference.
    rng = np.random.default_rng(11)
    parts = []
    for d, n in enumerate(range(5, 24)):
        parts.append(
            pd.DataFrame(
                {
                    "date": pd.Timestamp("2024-01-01") + pd.Timedelta(days=d),
                    "ticker": [f"T{i:02d}" for i in range(n)],
                    "score": rng.integers(0, 6, n).astype(float),
                    "target": rng.normal(size=n),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["label"] = (frame["target"] > 0).astype(int)

    def reference(day: pd.DataFrame) -> float:
        bucket = pd.qcut(day["score"].rank(method="first"), 5, labels=False)
        return float(day["target"][bucket == 4].mean() - day["target"][bucket == 0].mean())

    expected = [reference(day) for _, day in frame.groupby("date")]
    got = per_date_statistics(frame)["quintile_spread"]
    np.testing.assert_allclose(got.to_numpy(), expected)


def test_group_ranks_match_pandas() -> None:
    rng = np.random.default_rng(5)
    codes = np.sort(rng.integers(0, 20, 500)).astype(np.int64)
    values = rng.integers(0, 10, 500).astype(float)  # many ties
    first, average = group_ranks(codes, values)
    grouped = pd.Series(values).groupby(codes)
    np.testing.assert_array_equal(first, grouped.rank(method="first").to_numpy())
    np.testing.assert_allclose(average, grouped.rank(method="average").to_numpy())


def test_to_dict_holds_every_field() -> None:
    values = signal_metrics(hand_frame(), horizon=1).to_dict()
    assert values["n_dates"] == 3
    assert {"auc", "ic_t_nw", "rank_ic_t_nonoverlap", "quintile_spread_t_nw", "hit_rate"} <= set(values)


# ---------------------------------------------------------------- refusals


def test_bad_input_is_refused_with_the_name_of_the_culprit() -> None:
    frame = hand_frame()
    with pytest.raises(TrainingError, match="horizon"):
        signal_metrics(frame, horizon=0)
    with pytest.raises(TrainingError, match="min_tickers"):
        signal_metrics(frame, horizon=1, min_tickers=1)
    with pytest.raises(TrainingError, match="target"):
        signal_metrics(frame.drop(columns="target"), horizon=1)
    with pytest.raises(TrainingError, match="label"):
        signal_metrics(frame.assign(label=2), horizon=1)
    with pytest.raises(TrainingError, match="unique"):
        signal_metrics(pd.concat([frame, frame.iloc[:1]]), horizon=1)


# ---------------------------------------------------------------- baselines


def closes(n_sessions: int = 300, seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC random-walk closes for three tickers; C lists late, B delists early."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2020-01-01", periods=n_sessions)
    close = pd.DataFrame(
        100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n_sessions, 3)), axis=0)), index=index, columns=["A", "B", "C"]
    )
    close.iloc[280:, 1] = np.nan  # B's last bar is session 279
    close.iloc[:30, 2] = np.nan  # C's first bar is session 30
    return close


def test_momentum_is_close_21_back_over_close_252_back() -> None:
    close = closes()
    scores = momentum_12_1(close).set_index(["date", "ticker"])["score"]
    t = close.index[290]
    expected = close["A"].iloc[290 - 21] / close["A"].iloc[290 - 252] - 1
    assert scores[(t, "A")] == pytest.approx(expected)
    # A's first score needs 252 sessions of history; C's needs 252 after its listing at 30.
    assert scores.xs("A", level="ticker").index[0] == close.index[252]
    assert scores.xs("C", level="ticker").index[0] == close.index[282]


def test_reversal_is_minus_the_last_21_session_return() -> None:
    close = closes()
    scores = short_term_reversal(close).set_index(["date", "ticker"])["score"]
    assert scores[(close.index[100], "C")] == pytest.approx(-(close["C"].iloc[100] / close["C"].iloc[79] - 1))
    assert scores.xs("C", level="ticker").index[0] == close.index[51]  # listed at 30, needs 21 more
    assert list(scores.reset_index()["date"].diff().dropna() >= pd.Timedelta(0)) == [True] * (len(scores) - 1)


@pytest.mark.parametrize("baseline", [momentum_12_1, short_term_reversal])
def test_baseline_scores_are_point_in_time(baseline) -> None:
    close = closes()
    t = 270
    before = baseline(close)
    perturbed = close.copy()
    perturbed.iloc[t + 1 :] *= np.linspace(0.5, 2.0, len(close) - t - 1)[:, None]  # rewrite the future
    after = baseline(perturbed)

    up_to_t = before["date"] <= close.index[t]
    pd.testing.assert_frame_equal(
        before[up_to_t].reset_index(drop=True), after[after["date"] <= close.index[t]].reset_index(drop=True)
    )
    assert not before[~up_to_t].reset_index(drop=True).equals(after[after["date"] > close.index[t]])


@pytest.mark.parametrize("baseline", [momentum_12_1, short_term_reversal])
def test_a_delisted_ticker_gets_no_score(baseline) -> None:
    scores = baseline(closes())
    b_dates = scores.loc[scores["ticker"] == "B", "date"]
    assert b_dates.max() == closes().index[279]


def test_baselines_refuse_an_unsorted_index_and_bad_windows() -> None:
    close = closes()
    with pytest.raises(TrainingError, match="ascending"):
        momentum_12_1(close.iloc[::-1])
    with pytest.raises(TrainingError, match="skip"):
        momentum_12_1(close, lookback=21, skip=21)
    with pytest.raises(TrainingError, match="window"):
        short_term_reversal(close, window=0)
