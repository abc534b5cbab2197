"""Fundamental and sentiment features: visibility dates, TTM rules, session attribution, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.schema import FUNDAMENTAL_FEATURES, SENTIMENT_FEATURES, names
from feature_repo.transforms.fundamental import fundamental_features
from feature_repo.transforms.sentiment import assign_sessions, sentiment_features

SESSIONS = pd.bdate_range("2023-01-02", "2024-06-28")


def bars(tickers: tuple[str, ...] = ("AAA", "BBB", "CCC"), close: float = 10.0) -> pd.DataFrame:
    frame = pd.DataFrame([(t, d) for t in tickers for d in SESSIONS], columns=["ticker", "date"])
    frame["close"] = close
    return frame


def quarters(ticker: str, n: int = 6, lag_days: int = 40, net_income: float = 5.0) -> pd.DataFrame:
    ends = pd.date_range("2022-03-31", periods=n, freq="QE")
    return pd.DataFrame(
        {
            "ticker": ticker,
            "period_end": ends,
            "report_date": ends + pd.Timedelta(days=lag_days),
            "revenue": 100.0,
            "net_income": net_income,
            "operating_cash_flow": 7.0,
            "total_assets": 1000.0,
            "total_equity": 400.0,
            "total_debt": 200.0,
            "shares_outstanding": 50.0,
            "source": "test",
            "synthetic": True,
        }
    )


def test_fundamentals_follow_the_schema_and_cover_every_bar() -> None:
    fundamentals = pd.concat([quarters("AAA"), quarters("BBB", net_income=-2.0)])
    out = fundamental_features(bars(), fundamentals)
    assert list(out.columns) == ["ticker", "date", *names(FUNDAMENTAL_FEATURES)]
    assert len(out) == len(bars())


def test_a_report_is_used_only_from_the_session_after_its_report_date() -> None:
    fundamentals = quarters("AAA", n=6)
    out = fundamental_features(bars(("AAA",)), fundamentals).set_index("date")
    # The first full TTM needs the 4th quarter (2022-12-31), reported 2023-02-09 (a Thursday).
    report = pd.Timestamp("2022-12-31") + pd.Timedelta(days=40)
    assert np.isnan(out.loc[report, "earnings_yield"])
    next_session = SESSIONS[report < SESSIONS][0]
    assert out.loc[next_session, "earnings_yield"] == pytest.approx(4 * 5.0 / (10.0 * 50.0))
    assert out.loc[next_session, "days_since_report"] == (next_session - report).days


def test_ttm_needs_four_consecutive_quarters() -> None:
    fundamentals = quarters("AAA", n=6).drop(index=[1])  # a missing quarter breaks the chain
    out = fundamental_features(bars(("AAA",)), fundamentals).set_index("date")
    visible_q4 = SESSIONS[pd.Timestamp("2022-12-31") + pd.Timedelta(days=40) < SESSIONS][0]
    assert np.isnan(out.loc[visible_q4, "earnings_yield"])  # only 3 quarters within a year
    assert out.loc[visible_q4, "book_to_price"] == pytest.approx(400.0 / 500.0)  # stock items still fine


def test_negative_equity_gives_missing_roe_not_a_sign_flip() -> None:
    f = quarters("AAA")
    f["total_equity"] = -10.0
    out = fundamental_features(bars(("AAA",)), f)
    assert out["roe"].isna().all() and out["debt_to_equity"].isna().all()


def test_fundamental_zscores_are_within_date() -> None:
    fundamentals = pd.concat(
        [quarters("AAA", net_income=1.0), quarters("BBB", net_income=2.0), quarters("CCC", net_income=6.0)]
    )
    out = fundamental_features(bars(), fundamentals)
    day = out[out["date"] == pd.Timestamp("2024-03-01")].set_index("ticker")
    ey = day["earnings_yield"]
    np.testing.assert_allclose(day["earnings_yield_csz"], (ey - ey.mean()) / ey.std())


def test_fundamentals_at_t_ignore_reports_after_t() -> None:
    cutoff = pd.Timestamp("2023-09-29")
    fundamentals = pd.concat([quarters("AAA", n=8), quarters("BBB", n=8, net_income=3.0)], ignore_index=True)
    full = fundamental_features(bars(), fundamentals)
    later = fundamentals["report_date"] > cutoff
    changed = fundamentals.copy()
    assert later.sum() == 4
    changed.loc[later, ["net_income", "total_equity"]] = [999.0, 1.0]
    altered = fundamental_features(bars(), changed)
    past = full["date"] <= cutoff
    pd.testing.assert_frame_equal(full[past], altered[past])
    assert not full[~past].equals(altered[~past])


def docs(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": [r[0] for r in rows],
            "published_at": pd.to_datetime([r[1] for r in rows], utc=True),
            "score": [r[2] for r in rows],
        }
    )


CLOSE = pd.Timedelta(hours=21)


def test_documents_after_the_close_or_at_weekends_count_for_the_next_session() -> None:
    scored = docs(
        [
            ("AAA", "2024-03-04 20:59", 0.5),  # Monday before the close -> Monday
            ("AAA", "2024-03-04 21:30", -0.5),  # Monday after the close -> Tuesday
            ("AAA", "2024-03-09 10:00", 1.0),  # Saturday -> Monday 11th
        ]
    )
    assigned = assign_sessions(scored, pd.DatetimeIndex(SESSIONS), CLOSE).set_index("score")["date"]
    assert assigned[0.5] == pd.Timestamp("2024-03-04")
    assert assigned[-0.5] == pd.Timestamp("2024-03-05")
    assert assigned[1.0] == pd.Timestamp("2024-03-11")


def test_sentiment_aggregates() -> None:
    scored = docs(
        [
            ("AAA", "2024-03-04 10:00", 0.6),
            ("AAA", "2024-03-04 11:00", 0.2),
            ("AAA", "2024-03-06 12:00", -0.4),
            ("BBB", "2024-03-05 12:00", 1.0),
        ]
    )
    out = sentiment_features(bars(("AAA", "BBB")), scored, session_close_utc=CLOSE)
    assert list(out.columns) == ["ticker", "date", *names(SENTIMENT_FEATURES)]
    aaa = out[out["ticker"] == "AAA"].set_index("date")
    assert aaa.loc["2024-03-04", "sent_score_1d"] == pytest.approx(0.4)
    assert aaa.loc["2024-03-04", "sent_count_1d"] == 2
    assert np.isnan(aaa.loc["2024-03-05", "sent_score_1d"])
    assert aaa.loc["2024-03-05", "sent_count_1d"] == 0
    assert aaa.loc["2024-03-06", "sent_count_21d"] == 3
    assert aaa.loc["2024-03-06", "sent_mean_21d"] == pytest.approx((0.6 + 0.2 - 0.4) / 3)
    assert aaa.loc["2024-03-01", "sent_count_21d"] == 0 and np.isnan(aaa.loc["2024-03-01", "sent_decay_5d"])
    # The decayed mean leans towards the newest document.
    assert -0.4 < aaa.loc["2024-03-06", "sent_decay_5d"] < (0.6 + 0.2 - 0.4) / 3
    bbb = out[out["ticker"] == "BBB"].set_index("date")
    assert bbb.loc["2024-03-04", "sent_count_21d"] == 0  # AAA's news never leaks into BBB
    assert out["sent_count_1d"].dtype == "int64"


def test_sentiment_at_t_ignores_documents_after_t() -> None:
    rng = np.random.default_rng(5)
    stamps = SESSIONS[rng.integers(0, len(SESSIONS), 400)] + pd.to_timedelta(rng.integers(0, 86_400, 400), "s")
    scored = pd.DataFrame(
        {
            "ticker": rng.choice(["AAA", "BBB", "CCC"], 400),
            "published_at": stamps.tz_localize("UTC"),
            "score": rng.uniform(-1, 1, 400),
        }
    )
    cutoff = pd.Timestamp("2024-01-31")
    full = sentiment_features(bars(), scored, session_close_utc=CLOSE)
    before_close = scored["published_at"] <= (cutoff + CLOSE).tz_localize("UTC")
    truncated = sentiment_features(bars(), scored[before_close], session_close_utc=CLOSE)
    past = full["date"] <= cutoff
    pd.testing.assert_frame_equal(full[past], truncated[past])
    assert not full[~past].equals(truncated[~past])
    assert full.loc[past, "sent_surprise"].notna().any()
