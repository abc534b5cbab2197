"""Series breaks and reused codes: no return, window or label spans a break; lives and breaks stored idempotently.

All data here is synthetic (generated random walks), labelled so in the frames' ``source`` column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.schema import TECHNICAL_FEATURES, names
from feature_repo.transforms.fundamental import fundamental_features
from feature_repo.transforms.outcomes import forward_outcomes
from feature_repo.transforms.panel import split_at_breaks
from feature_repo.transforms.sentiment import sentiment_features
from feature_repo.transforms.technical import technical_features
from tests.frames import assert_rows_close
from training.instruments import code_lives, refresh_code_lives
from training.store import OfflineStore

SESSIONS = pd.bdate_range("2020-01-01", periods=700)
TICKERS = ("AAA", "BBB", "CCC", "DDD")
H = 21


def walk(seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """Synthetic prices (random walks with volumes) for four tickers and a benchmark, every session."""
    rng = np.random.default_rng(seed)
    levels = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (len(SESSIONS), len(TICKERS))), axis=0))
    prices = pd.DataFrame(
        {
            "ticker": np.repeat(TICKERS, len(SESSIONS)),
            "date": np.tile(SESSIONS, len(TICKERS)),
            "adj_close": levels.T.ravel(),
            "close": levels.T.ravel(),
            "volume": rng.lognormal(12, 0.4, len(SESSIONS) * len(TICKERS)),
            "source": "synthetic",
        }
    )
    bench = pd.Series(1000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(SESSIONS)))), index=SESSIONS)
    return prices, bench


def breaks_at(ticker: str, date: pd.Timestamp, reason: str = "corporate_action_suspect") -> pd.DataFrame:
    return pd.DataFrame({"ticker": [ticker], "date": [date], "reason": [reason], "detail": ["planted"]})


BREAK = SESSIONS[400]
PER_TICKER = [n for n in names(TECHNICAL_FEATURES) if not n.endswith(("_csrank", "_csz"))]


def test_segments_keep_rows_and_relabel_only_after_the_break() -> None:
    prices, _ = walk()
    segments = split_at_breaks(prices, breaks_at("AAA", BREAK))
    labels = segments.frame.set_index(["date"])[segments.frame["ticker"].str.startswith("AAA").to_numpy()]["ticker"]
    assert (labels[labels.index < BREAK] == "AAA").all()
    assert (labels[labels.index >= BREAK] != "AAA").all() and labels[labels.index >= BREAK].nunique() == 1
    assert segments.ends.to_dict() == {"AAA": BREAK}
    assert split_at_breaks(prices, None).frame is prices


def test_technical_windows_never_span_a_break_and_restart_on_the_later_history() -> None:
    prices, bench = walk()
    # A 10x jump at the break: were any window to span it, the values after would explode.
    prices.loc[(prices["ticker"] == "AAA") & (prices["date"] >= BREAK), ["adj_close", "close"]] *= 10.0
    out = technical_features(prices, bench, breaks=breaks_at("AAA", BREAK))
    assert len(out) == len(prices)
    assert out[["ticker", "date"]].equals(out[["ticker", "date"]].sort_values(["ticker", "date"]))

    aaa = out[out["ticker"] == "AAA"].set_index("date")
    assert np.isnan(aaa.loc[BREAK, "ret_1d"])
    # The first 21 bars of the new segment have no 21-session return: the window would span the break.
    assert aaa.loc[SESSIONS[400:421], "ret_21d"].isna().all()
    assert not np.isnan(aaa.loc[SESSIONS[421], "ret_21d"])  # defined once the window fits

    # After the break: exactly the values computed on the post-break history alone.
    alone = prices[~((prices["ticker"] == "AAA") & (prices["date"] < BREAK))]
    expected = technical_features(alone, bench)
    after = out[out["date"] >= BREAK].reset_index(drop=True)
    assert_rows_close(after, expected[expected["date"] >= BREAK].reset_index(drop=True), names(TECHNICAL_FEATURES))
    # Before the break: exactly the values without any break (nothing leaks backwards).
    unbroken = technical_features(prices, bench)
    before = out["date"] < BREAK
    assert_rows_close(out[before], unbroken[before.to_numpy()], PER_TICKER)


def test_no_label_spans_a_break_and_later_labels_use_the_later_history_only() -> None:
    prices, bench = walk()
    prices.loc[(prices["ticker"] == "AAA") & (prices["date"] >= BREAK), "adj_close"] *= 10.0
    out = forward_outcomes(prices, bench, horizon=H, breaks=breaks_at("AAA", BREAK))
    aaa = out[out["ticker"] == "AAA"].set_index("date")
    # Bars whose horizon reaches the break (t < break <= t+h) have no outcome, even with the bridge.
    spanning = SESSIONS[400 - H : 400]
    assert not aaa.index.isin(spanning).any()
    assert (aaa.index < BREAK).sum() == 400 - H  # every earlier bar keeps its outcome
    # From the break on, the labels are those of the later history alone.
    alone = prices[~((prices["ticker"] == "AAA") & (prices["date"] < BREAK))]
    expected = forward_outcomes(alone, bench, horizon=H)
    cols = [c for c in out.columns if c not in ("ticker", "date", "known_at")]
    assert_rows_close(
        out[out["date"] >= BREAK].reset_index(drop=True),
        expected[expected["date"] >= BREAK].reset_index(drop=True),
        cols,
    )
    assert (out["fwd_ret_21d"].abs() < 3.0).all()  # no 10x jump inside any label


def test_a_break_ends_the_bridge_of_the_earlier_segment() -> None:
    prices, bench = walk()
    # AAA has no bars for three sessions right before the break: without the break, the bridge
    # would carry the last old price to a t+h inside that hole.
    hole = (prices["ticker"] == "AAA") & prices["date"].isin(SESSIONS[397:400])
    prices = prices[~hole]
    out = forward_outcomes(prices, bench, horizon=H, breaks=breaks_at("AAA", BREAK))
    aaa = out[out["ticker"] == "AAA"]
    assert not ((aaa["date"] < BREAK) & (aaa["known_at"] >= BREAK)).any()
    # Without the break the bridge does give those bars an outcome: the test can fail.
    plain = forward_outcomes(prices, bench, horizon=H)
    plain_aaa = plain[plain["ticker"] == "AAA"]
    assert ((plain_aaa["date"] < BREAK) & (plain_aaa["known_at"] >= BREAK)).any()


def test_sentiment_of_an_earlier_life_does_not_count_after_a_break() -> None:
    prices, _ = walk()
    docs = pd.DataFrame(
        {
            "ticker": ["AAA"] * 3,
            # Two documents just before the break, one a few sessions after it (UTC, before the close).
            "published_at": pd.to_datetime([SESSIONS[398], SESSIONS[399], SESSIONS[403]]).tz_localize("UTC")
            + pd.Timedelta(hours=12),
            "score": [0.9, 0.8, -0.5],
        }
    )
    plain = sentiment_features(prices, docs).set_index(["ticker", "date"])
    split = sentiment_features(prices, docs, breaks=breaks_at("AAA", BREAK, "code_reused")).set_index(
        ["ticker", "date"]
    )
    assert plain.loc[("AAA", SESSIONS[403]), "sent_count_21d"] == 3
    assert split.loc[("AAA", SESSIONS[403]), "sent_count_21d"] == 1
    assert split.loc[("AAA", SESSIONS[403]), "sent_mean_21d"] == pytest.approx(-0.5)
    assert split.loc[("AAA", SESSIONS[399]), "sent_count_21d"] == 2  # before the break: unchanged


def test_fundamentals_reported_before_a_break_are_not_used_after_it() -> None:
    prices, _ = walk()
    ends = pd.date_range("2019-03-31", periods=8, freq="QE")
    reports = pd.DataFrame(
        {
            "ticker": "AAA",
            "period_end": ends,
            "report_date": ends + pd.Timedelta(days=40),
            "revenue": 100.0,
            "net_income": 5.0,
            "operating_cash_flow": 7.0,
            "total_assets": 1000.0,
            "total_equity": 400.0,
            "total_debt": 200.0,
            "shares_outstanding": 50.0,
            "source": "synthetic",
            "synthetic": True,
        }
    )
    brk = pd.Timestamp("2020-12-01")
    plain = fundamental_features(prices, reports).set_index(["ticker", "date"])
    split = fundamental_features(prices, reports, breaks=breaks_at("AAA", brk, "code_reused")).set_index(
        ["ticker", "date"]
    )
    day_after = SESSIONS[brk <= SESSIONS][1]
    assert not np.isnan(plain.loc[("AAA", day_after), "earnings_yield"])
    assert np.isnan(split.loc[("AAA", day_after), "earnings_yield"])
    assert split.loc[("AAA", day_after), "days_since_report"] == -1
    day_before = SESSIONS[brk > SESSIONS][-1]
    assert split.loc[("AAA", day_before), "earnings_yield"] == plain.loc[("AAA", day_before), "earnings_yield"]


def reused_prices() -> pd.DataFrame:
    """Synthetic: ZZZ trades 300 sessions, vanishes for 200, and a different company trades as ZZZ."""
    prices, _ = walk()
    gone = (prices["ticker"] == "AAA") & prices["date"].isin(SESSIONS[300:500])
    prices = prices[~gone].copy()
    prices.loc[prices["ticker"] == "AAA", "ticker"] = "ZZZ"
    # The new company trades at a tenth of the old one's price.
    prices.loc[(prices["ticker"] == "ZZZ") & (prices["date"] >= SESSIONS[500]), "adj_close"] /= 10.0
    return prices.reset_index(drop=True)


def test_a_reused_code_becomes_a_new_instrument_with_a_break() -> None:
    lives = code_lives(reused_prices(), gap_sessions=126)
    zzz = lives.instruments[lives.instruments["ticker"] == "ZZZ"]
    assert zzz["instrument_id"].tolist() == [f"ZZZ:{SESSIONS[0]:%Y%m%d}", f"ZZZ:{SESSIONS[500]:%Y%m%d}"]
    assert zzz["last_date"].tolist() == [SESSIONS[299], SESSIONS[-1]]
    assert len(lives.instruments) == len(TICKERS) + 1
    assert lives.breaks[["ticker", "date", "reason"]].to_dict("records") == [
        {"ticker": "ZZZ", "date": SESSIONS[500], "reason": "code_reused"}
    ]
    assert "absent 200 sessions" in lives.breaks["detail"].iat[0]
    # A shorter absence (a halt) is the same instrument.
    assert code_lives(reused_prices(), gap_sessions=200).breaks.empty


def test_no_feature_or_label_spans_the_two_lives_of_a_reused_code() -> None:
    prices = reused_prices()
    _, bench = walk()
    breaks = code_lives(prices, gap_sessions=126).breaks
    features = technical_features(prices, bench, breaks=breaks)
    zzz = features[features["ticker"] == "ZZZ"].set_index("date")
    # Without the break, ret_1d on the first bar of the new life would be about -90% (a 200-session "return").
    assert np.isnan(zzz.loc[SESSIONS[500], "ret_1d"])
    assert zzz.loc[SESSIONS[500] :, "vol_63d"].iloc[:49].isna().all()
    outcomes = forward_outcomes(prices, bench, horizon=H, breaks=breaks)
    first_life = outcomes[(outcomes["ticker"] == "ZZZ") & (outcomes["date"] < SESSIONS[500])]
    assert (first_life["known_at"] <= SESSIONS[299] + pd.Timedelta(days=7)).all()
    assert (outcomes.loc[outcomes["ticker"] == "ZZZ", "fwd_ret_21d"] > -0.6).all()


def test_lives_and_breaks_are_stored_idempotently_and_leave_other_reasons_alone(tmp_path: Path) -> None:
    prices = reused_prices()
    prices = prices.assign(
        open=np.nan, high=np.nan, low=np.nan, close=prices["adj_close"], source="synthetic", synthetic=True
    )
    with OfflineStore(tmp_path / "offline.duckdb") as store:
        store.upsert("prices", prices[list(store_columns())])
        other = breaks_at("BBB", SESSIONS[10])
        store.upsert("series_breaks", other)
        lives, first = refresh_code_lives(store, exchange=None, gap_sessions=126)
        assert "5 new" in first and "1 reused code" in first
        _, again = refresh_code_lives(store, exchange=None, gap_sessions=126)
        assert "0 new, 0 changed" in again and again.endswith("0 new, 0 changed")
        stored = store.read("series_breaks")
        assert sorted(stored["reason"]) == ["code_reused", "corporate_action_suspect"]
        assert store.read("instruments")["instrument_id"].tolist() == sorted(lives.instruments["instrument_id"])
        # A longer tolerated absence: the reuse disappears from the store, the other reason stays.
        refresh_code_lives(store, exchange=None, gap_sessions=300)
        assert store.read("series_breaks")["reason"].tolist() == ["corporate_action_suspect"]
        assert store.count("instruments") == len(TICKERS)


def store_columns() -> tuple[str, ...]:
    from feature_repo.tables import PRICE_COLUMNS

    return PRICE_COLUMNS


def test_the_store_reads_only_the_columns_asked_for(tmp_path: Path) -> None:
    from training.errors import StoreError

    with OfflineStore(tmp_path / "offline.duckdb") as store:
        store.upsert("series_breaks", breaks_at("BBB", SESSIONS[10]))
        keys = store.read("series_breaks", columns=["ticker", "date"])
        assert list(keys.columns) == ["ticker", "date"] and keys["date"].dtype == "datetime64[ns]"
        with pytest.raises(StoreError, match="no column"):
            store.read("series_breaks", columns=["ticker", "price"])


def test_a_close_panel_links_across_breaks_so_a_held_name_earns_nothing_there() -> None:
    from training.signals.inputs import close_panel

    prices = reused_prices()  # ZZZ: a tenth of the price after 200 absent sessions
    plain = close_panel(prices)
    linked = close_panel(prices, code_lives(prices, gap_sessions=126).breaks)
    zzz, raw = linked["ZZZ"].dropna(), plain["ZZZ"].dropna()
    assert raw.pct_change().loc[SESSIONS[500]] == pytest.approx(raw[SESSIONS[500]] / raw[SESSIONS[299]] - 1)
    assert zzz.pct_change().loc[SESSIONS[500]] == pytest.approx(0.0)
    # Every other return, and every close from the break on, is unchanged.
    others = zzz.index != SESSIONS[500]
    np.testing.assert_allclose(zzz.pct_change()[others].dropna(), raw.pct_change()[others].dropna())
    assert (linked.loc[SESSIONS[500] :, "ZZZ"] == plain.loc[SESSIONS[500] :, "ZZZ"]).all()
    assert linked.drop(columns="ZZZ").equals(plain.drop(columns="ZZZ"))


def test_the_ingest_stage_writes_lives_and_breaks_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    from tests.test_pipeline_cli import cli, write_config
    from training.calendar import exchange_sessions

    sessions = exchange_sessions("XASX", "2013-01-01", "2014-12-31")
    rng = np.random.default_rng(8)
    rows = [("AAA", d) for d in sessions] + [("ZZZ", d) for d in (*sessions[:100], *sessions[300:])]
    frame = pd.DataFrame(rows, columns=["ticker", "date"])
    frame["close"] = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, len(frame))))
    frame = frame.assign(open=frame["close"], high=frame["close"] * 1.01, low=frame["close"] * 0.99, volume=1000.0)
    path = tmp_path / "synthetic_prices.csv"
    frame.to_csv(path, index=False)
    config = write_config(
        tmp_path / "run.yaml", f"data: {{kind: files, prices: [{path}]}}\ncalendar: {{exchange: XASX}}\n"
    )
    data = tmp_path / "d"
    first = cli("ingest", "--config", str(config), data_dir=data)
    assert first.returncode == 0, first.stderr
    assert instruments_line(first.stdout).endswith(
        "3 rows: 3 new, 0 changed; 1 reused code(s) (absent > 126 sessions): 1 new, 0 changed"
    )
    second = cli("ingest", "--config", str(config), data_dir=data)
    assert second.returncode == 0, second.stderr
    assert instruments_line(second.stdout).endswith(
        "3 rows: 0 new, 0 changed; 1 reused code(s) (absent > 126 sessions): 0 new, 0 changed"
    )
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        assert store.read("instruments")["instrument_id"].tolist() == [
            f"AAA:{sessions[0]:%Y%m%d}",
            f"ZZZ:{sessions[0]:%Y%m%d}",
            f"ZZZ:{sessions[300]:%Y%m%d}",
        ]
        breaks = store.read("series_breaks")
        assert breaks[["ticker", "date", "reason"]].to_dict("records") == [
            {"ticker": "ZZZ", "date": sessions[300], "reason": "code_reused"}
        ]


def instruments_line(stdout: str) -> str:
    """The ingest log's instruments line (one per run)."""
    (line,) = [x for x in stdout.splitlines() if x.strip().startswith("instruments ")]
    return line
