"""Issue 15's acceptance on SYNTHETIC per-day archives: every planted defect detected or handled.

One ASX-like archive set (XASX sessions, per-day files in yearly zips) carries at once a 1:10
consolidation, a trading halt, an empty holiday file, a missing market week, a reused code and an
index open above its high. It goes through the real stages (ingest, health, features) the way a
user's ``configs/asx-dev.yaml`` run does, and each defect is checked where a user would meet it:
the ingest summary, the health report, the stored breaks and instruments, the suspects report and
the feature rows. Nothing here is real market data.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.files import read_feature_file
from feature_repo.settings import FeatureStoreSettings
from tests import eod_archives as eod
from training.calendar import CalendarConfig, exchange_sessions
from training.config import EodFilesSource, PipelineConfig
from training.context import RunContext
from training.health import HealthThresholds
from training.pipeline import run_pipeline
from training.store import OfflineStore

CODES = ("AAA", "BBB", "CCC", "DDD", "EEE")
CONSOLIDATION = "AAA"  # 1:10 on the 200th session: the close jumps x10 and stays there
HALTED = "BBB"
REUSED = "DDD"  # delisted after session 120, its code reused from session 300
MISSING_WEEK = slice(150, 155)  # five XASX sessions with no file at all
EMPTY_DAY = 60  # a file that is there but empty (a bad day at the vendor)


def _sessions() -> pd.DatetimeIndex:
    return exchange_sessions("XASX", pd.Timestamp("2023-01-03"), pd.Timestamp("2024-09-30"))


def _bars(sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """SYNTHETIC random-walk bars on XASX sessions, with the defects planted."""
    rng = np.random.default_rng(7)
    frames = []
    for i, code in enumerate((*CODES, "XJO")):
        index = code == "XJO"
        close = (7000.0 if index else 2.0 + i) * np.exp(np.cumsum(rng.normal(0.0, 0.012, len(sessions))))
        if code == CONSOLIDATION:
            close[200:] *= 10.0
        close = np.round(close, 1 if index else 3)
        frame = pd.DataFrame(
            {
                "code": code,
                "date": sessions,
                "open": close,
                "high": np.round(close * 1.01, 3),
                "low": np.round(close * 0.99, 3),
                "close": close,
                "volume": 0.0 if index else rng.integers(50_000, 500_000, len(sessions)).astype(float),
            }
        )
        if code == REUSED:
            frame = frame.drop(index=range(120, 300))
        frames.append(frame)
    bars = pd.concat(frames, ignore_index=True)
    bars = eod.halt(bars, HALTED, str(sessions[80].date()))
    bars = eod.bad_open(bars, "XJO", str(sessions[90].date()))
    gone = sessions[MISSING_WEEK].append(sessions[[EMPTY_DAY]])
    return bars[~bars["date"].isin(gone)]


def _technical(data: Path) -> pd.DataFrame:
    """The technical view's source rows, with the session date back as a naive ``date``."""
    rows = read_feature_file(data, "technical_features")
    return rows.assign(date=rows["event_timestamp"].dt.tz_localize(None).astype("datetime64[ns]"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, pd.DatetimeIndex]:
    tmp = tmp_path_factory.mktemp("asx")
    sessions = _sessions()
    files = eod.empty_day(eod.day_files(_bars(sessions)), str(sessions[EMPTY_DAY].date()))
    for year in ("2023", "2024"):
        eod.write_zip(tmp / f"asx-{year}.zip", {k: v for k, v in files.items() if k.startswith(year)})
    config = PipelineConfig(
        data=EodFilesSource(paths=[tmp], index_codes=["XJO"]),
        calendar=CalendarConfig(exchange="XASX"),
        # The planted week and empty day are missing market sessions: listed, tolerated here.
        health=HealthThresholds(max_missing_market_sessions=10, max_missing_ticker_share=1.0),
    )
    settings = FeatureStoreSettings(environment="local", data_dir=str(tmp / "data"))
    out = io.StringIO()
    run_pipeline(
        RunContext(config=config, settings=settings, out=out, progress=False), ["ingest", "health", "features"]
    )
    return out.getvalue(), tmp / "data", sessions


def test_ingest_reports_the_empty_file_the_halt_and_the_index_open(run: tuple[str, Path, pd.DatetimeIndex]) -> None:
    log, data, sessions = run
    assert re.search(r"eod files: \d+ read, 1 empty, 0 duplicate;.* 1 halt", log)
    assert f"{HALTED} {sessions[80].date()}" in log and "index bar(s) outside their own range" in log
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        prices = store.read("prices").set_index(["ticker", "date"])
    halted = prices.loc[(HALTED, sessions[80])]
    assert halted[["open", "high", "low"]].isna().all() and halted["close"] > 0


def test_health_names_the_missing_market_week(run: tuple[str, Path, pd.DatetimeIndex]) -> None:
    log, _, sessions = run
    week = sessions[MISSING_WEEK]
    assert f"{week[0].date()}..{week[-1].date()}: 5 session(s) without data" in log
    assert re.search(r"missing_market_sessions +6/", log)  # the week and the empty day


def test_the_consolidation_is_proposed_and_masked(run: tuple[str, Path, pd.DatetimeIndex]) -> None:
    _, data, sessions = run
    suspects = pd.read_csv(data / "reports" / "corporate_actions_suspected.csv")
    [row] = suspects[suspects["ticker"] == CONSOLIDATION].to_dict("records")
    assert row["ex_date"] == str(sessions[200].date()) and row["kind"] == "consolidation"
    assert row["ratio"] == pytest.approx(0.1) and row["match"] == "1:10"
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        breaks = store.read("series_breaks")
    masked = breaks[breaks["reason"] == "corporate_action_suspect"]
    assert masked[["ticker", "date"]].values.tolist() == [[CONSOLIDATION, sessions[200]]]
    features = _technical(data)
    aaa = features[features["ticker"] == CONSOLIDATION].set_index("date")["ret_21d"]
    # No 21-session return spans the jump (it would read about +900%); after 21 clean sessions it is back.
    assert aaa.loc[sessions[200] : sessions[220]].isna().all()
    assert aaa.loc[sessions[221] :].notna().all() and aaa.abs().max() < 1.0


def test_the_reused_code_is_a_new_instrument_and_no_window_spans_its_lives(
    run: tuple[str, Path, pd.DatetimeIndex],
) -> None:
    _, data, sessions = run
    with OfflineStore(data / "offline.duckdb", read_only=True) as store:
        instruments = store.read("instruments")
        breaks = store.read("series_breaks")
    lives = instruments[instruments["ticker"] == REUSED].sort_values("first_date")
    assert lives["first_date"].tolist() == [sessions[0], sessions[300]]
    assert lives["instrument_id"].nunique() == 2
    reused = breaks[breaks["reason"] == "code_reused"]
    assert reused[["ticker", "date"]].values.tolist() == [[REUSED, sessions[300]]]
    features = _technical(data)
    ddd = features[features["ticker"] == REUSED].set_index("date")["ret_21d"]
    assert ddd.loc[sessions[300] : sessions[320]].isna().all() and ddd.loc[sessions[321] :].notna().all()


def test_features_count_exchange_sessions_across_the_missing_week(run: tuple[str, Path, pd.DatetimeIndex]) -> None:
    _, data, sessions = run
    features = _technical(data)
    eee = features[features["ticker"] == "EEE"].set_index("date")["ret_21d"]
    assert not set(sessions[MISSING_WEEK]) & set(eee.index)
    # 21 sessions back from a session just after the week is 21 positions back on the XASX grid,
    # not on the dates the data happens to hold (that would reach 5 sessions further back).
    close = _bars(sessions).query("code == 'EEE'").set_index("date")["close"]
    at = MISSING_WEEK.stop + 10
    assert eee.loc[sessions[at]] == pytest.approx(close[sessions[at]] / close[sessions[at - 21]] - 1.0)
