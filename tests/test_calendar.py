"""The exchange calendar: sessions from exchange_calendars, calendar health checks, windows that count sessions.

Prices here are synthetic random walks laid on the real XASX sessions of 2014, with planted
defects: a market week the "vendor" never delivered, a late listing with holes, a reused code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from feature_repo.transforms.outcomes import forward_outcomes
from feature_repo.transforms.technical import technical_features
from training.calendar import CalendarConfig, exchange_sessions, run_sessions
from training.config import load_config
from training.errors import TrainingError
from training.health import HealthThresholds, run_health_checks
from training.instruments import code_lives

ASX_2014 = exchange_sessions("XASX", "2014-01-01", "2014-12-31")
MISSING_WEEK = pd.bdate_range("2014-06-16", "2014-06-20")


def synthetic_prices(tickers: dict[str, pd.DatetimeIndex], seed: int = 5) -> pd.DataFrame:
    """Random-walk bars (synthetic) for each ticker on its own dates."""
    rng = np.random.default_rng(seed)
    frames = []
    for ticker, dates in tickers.items():
        level = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, len(dates))))
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": dates,
                    "close": level,
                    "adj_close": level,
                    "volume": rng.lognormal(12, 0.3, len(dates)),
                    "source": "synthetic",
                    "synthetic": True,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def without_week(dates: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return dates[~dates.isin(MISSING_WEEK)]


def test_asx_sessions_leave_out_its_own_holidays_and_weekends() -> None:
    sessions = exchange_sessions("XASX", "2024-01-22", "2024-01-31")
    assert pd.Timestamp("2024-01-26") not in sessions  # Australia Day
    assert list(sessions.strftime("%d")) == ["22", "23", "24", "25", "29", "30", "31"]
    assert pd.Timestamp("2024-01-26") in exchange_sessions("XNYS", "2024-01-22", "2024-01-31")
    assert pd.Timestamp("2014-04-25") not in ASX_2014  # Anzac Day
    assert sessions.tz is None and sessions.dtype == "datetime64[ns]"


def test_the_exchange_is_validated_and_optional(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="XXXX"):
        CalendarConfig(exchange="XXXX")
    path = tmp_path / "run.yaml"
    path.write_text("calendar:\n  exchange: XASX\n")
    assert load_config(path).calendar.exchange == "XASX"
    path.write_text("calendar:\n  exchange: NOPE\n")
    with pytest.raises(TrainingError, match=r"calendar\.exchange"):
        load_config(path)
    assert run_sessions(None, ASX_2014) is None
    assert run_sessions("XASX", ASX_2014[10:20]).equals(ASX_2014[10:20])


def test_a_market_week_missing_for_every_ticker_is_found_and_named() -> None:
    prices = synthetic_prices({t: without_week(ASX_2014) for t in ("AAA", "BBB", "CCC")})
    report = run_health_checks(prices, sessions=ASX_2014)
    check = report.check("missing_market_sessions")
    assert check.affected == 5 and check.failed
    assert check.examples == ["2014-06-16..2014-06-20: 5 session(s) without data"]
    assert "missing_market_sessions" in report.to_table() and report.failed
    # The union of the data's own dates cannot see it.
    blind = run_health_checks(prices)
    assert blind.check("missing_market_sessions").affected == 0
    assert (
        not run_health_checks(prices, HealthThresholds(max_missing_market_sessions=5), ASX_2014)
        .check("missing_market_sessions")
        .failed
    )


def test_per_ticker_missing_sessions_count_the_real_calendar_within_each_listing_life() -> None:
    late = ASX_2014[ASX_2014 >= "2014-07-01"]
    reused = ASX_2014[(ASX_2014 < "2014-03-01") | (ASX_2014 >= "2014-12-01")]
    prices = synthetic_prices(
        {
            "AAA": without_week(ASX_2014),
            "LTE": late.delete([5, 6, 40]),  # listed in July, three holes of its own
            "RRR": reused,  # gone March to November: another company from December
        }
    )
    t = HealthThresholds(max_missing_session_share=0.0)
    check = run_health_checks(prices, t, ASX_2014).check("missing_sessions")
    assert sorted(check.examples) == [
        f"AAA: 5 of {len(ASX_2014)} sessions missing (2.0%)",
        f"LTE: 3 of {len(late)} sessions missing ({3 / len(late):.1%})",
    ]
    reuse = run_health_checks(prices, t, ASX_2014).check("reused_codes")
    assert reuse.affected == 1 and not reuse.failed
    assert reuse.examples[0].startswith("RRR: absent") and "new instrument from 2014-12-01" in reuse.examples[0]


def test_a_hole_is_counted_in_exchange_sessions_even_where_no_ticker_traded() -> None:
    # One ticker alone: its own dates are the whole "calendar", so without the exchange's sessions a
    # 150-session hole is invisible.
    dates = ASX_2014[(ASX_2014 < "2014-02-01") | (ASX_2014 >= "2014-09-01")]
    prices = synthetic_prices({"ONE": dates})
    assert code_lives(prices, gap_sessions=126).breaks.empty
    breaks = code_lives(prices, gap_sessions=126, sessions=ASX_2014).breaks
    assert breaks["date"].tolist() == [pd.Timestamp("2014-09-01")]


def test_feature_windows_and_labels_count_the_missing_week_as_sessions() -> None:
    prices = synthetic_prices({t: without_week(ASX_2014) for t in ("AAA", "BBB")})
    bench = pd.Series(100.0, index=without_week(ASX_2014))
    after = pd.Timestamp("2014-06-23")  # first bar after the missing week
    before = pd.Timestamp("2014-06-13")  # last bar before it
    aaa = prices[prices["ticker"] == "AAA"].set_index("date")["adj_close"]

    counted = technical_features(prices, bench, sessions=ASX_2014).set_index(["ticker", "date"])
    skipped = technical_features(prices, bench).set_index(["ticker", "date"])
    # Five sessions back from 06-23 is 06-16, inside the hole: the bridge carries 06-13's price.
    assert counted.loc[("AAA", after), "ret_5d"] == pytest.approx(aaa[after] / aaa[before] - 1)
    five_bars_back = aaa.index[aaa.index.get_loc(after) - 5]
    assert skipped.loc[("AAA", after), "ret_5d"] == pytest.approx(aaa[after] / aaa[five_bars_back] - 1)

    h = 10
    labels = forward_outcomes(prices, bench, horizon=h, sessions=ASX_2014).set_index(["ticker", "date"])
    assert labels.loc[("AAA", before), "known_at"] == ASX_2014[ASX_2014.get_loc(before) + h]
    plain = forward_outcomes(prices, bench, horizon=h).set_index(["ticker", "date"])
    assert plain.loc[("AAA", before), "known_at"] > labels.loc[("AAA", before), "known_at"]


def test_a_holiday_filled_with_a_copy_of_the_day_before_is_reported() -> None:
    prices = synthetic_prices(dict.fromkeys(("AAA", "BBB", "CCC"), ASX_2014))
    # The "vendor" wrote Anzac Day (closed) as a copy of the Thursday before it.
    copy = prices[prices["date"] == pd.Timestamp("2014-04-24")].assign(date=pd.Timestamp("2014-04-25"))
    prices = pd.concat([prices, copy], ignore_index=True)
    check = run_health_checks(prices, sessions=ASX_2014).check("off_calendar_dates")
    assert check.affected == 1 and check.failed
    assert check.examples == ["2014-04-25: 3 bars, 100% repeat the previous close"]
    assert run_health_checks(prices).check("off_calendar_dates").affected == 0


def test_bars_on_a_closed_day_are_left_out_of_windows_and_labels() -> None:
    from training.calendar import on_sessions

    prices = synthetic_prices(dict.fromkeys(("AAA", "BBB"), ASX_2014))
    holiday, thursday, monday = (pd.Timestamp(d) for d in ("2014-04-25", "2014-04-24", "2014-04-28"))
    copy = prices[prices["date"] == thursday].assign(date=holiday)
    with_copy = pd.concat([prices, copy], ignore_index=True)
    bench = pd.Series(100.0, index=pd.DatetimeIndex(sorted(with_copy["date"].unique())))
    assert on_sessions(with_copy, None) is with_copy
    kept = on_sessions(with_copy, ASX_2014)
    assert len(kept) == len(prices) and holiday not in set(kept["date"])

    features = technical_features(kept, bench, sessions=ASX_2014).set_index(["ticker", "date"])
    phantom = technical_features(with_copy, bench).set_index(["ticker", "date"])
    aaa = prices[prices["ticker"] == "AAA"].set_index("date")["adj_close"]
    # Monday's 1-session return is from Thursday; with the copy it would be from the phantom Friday.
    assert features.loc[("AAA", monday), "ret_1d"] == pytest.approx(aaa[monday] / aaa[thursday] - 1)
    assert phantom.loc[("AAA", holiday), "ret_1d"] == 0.0
    assert ("AAA", holiday) not in features.index
    labels = forward_outcomes(kept, bench, horizon=1, sessions=ASX_2014).set_index(["ticker", "date"])
    assert labels.loc[("AAA", thursday), "known_at"] == monday
