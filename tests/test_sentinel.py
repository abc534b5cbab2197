"""The data-quality sentinel on SYNTHETIC inputs: planted faults are found and explained, clean data gives few
flags, and a flag on a date never depends on later data."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from feature_repo.data_quality import Reason, reasons, status
from feature_repo.tables import DATE, TICKER
from monitoring.errors import MonitoringError
from monitoring.sentinel.job import score_inputs
from monitoring.sentinel.model import SentinelParams
from monitoring.sentinel.statistics import daily_statistics
from monitoring.sentinel.synthetic import Planted, plant, synthetic_inputs
from monitoring.windows import Window

N_TICKERS, N_SESSIONS, REFERENCE_SESSIONS = 40, 260, 180


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return synthetic_inputs(N_TICKERS, N_SESSIONS, seed=3)


def _sessions(frame: pd.DataFrame) -> list[pd.Timestamp]:
    return [pd.Timestamp(d) for d in sorted(frame[DATE].unique())]


def _reference(frame: pd.DataFrame) -> Window:
    sessions = _sessions(frame)
    return Window(sessions[0].date(), sessions[REFERENCE_SESSIONS - 1].date())


def test_every_planted_fault_is_flagged_and_its_statistic_named_first(clean: pd.DataFrame) -> None:
    sessions = _sessions(clean)
    faults = [
        Planted(f"SYN{i:04d}", sessions[REFERENCE_SESSIONS + 10 + 5 * i], fault)
        for i, fault in enumerate(("return", "range", "volume", "missing", "stale"))
    ]
    result = score_inputs(plant(clean, faults), _reference(clean))
    found = result.anomalies.set_index([TICKER, DATE])
    for fault in faults:
        assert (fault.ticker, fault.date) in found.index, fault
        row = found.loc[(fault.ticker, fault.date)]
        assert row["reasons"].split(" ")[0] == fault.statistic, (fault, row["reasons"])
        assert row["ticker_class"] in {"liquid", "mid", "illiquid"}
    # The view row says the same as the anomalies table.
    view = result.view.set_index([TICKER, DATE])
    assert all(view.loc[(f.ticker, f.date), "anomaly"] == 1 for f in faults)


def test_clean_data_gives_few_flags(clean: pd.DataFrame) -> None:
    params = SentinelParams(contamination=0.001)
    result = score_inputs(clean, _reference(clean), params=params)
    scored = len(result.view)
    assert scored == N_TICKERS * (N_SESSIONS - REFERENCE_SESSIONS)
    # About the contamination share by construction (the threshold is the reference's quantile);
    # allow sampling noise and the envelope rule, never a flood.
    assert len(result.anomalies) <= max(5, 5 * params.contamination * scored), result.anomalies
    assert result.summary["rows_scored"] == scored
    assert sum(result.summary["tickers_by_class"].values()) == N_TICKERS


def test_a_flag_never_depends_on_later_data(clean: pd.DataFrame) -> None:
    sessions = _sessions(clean)
    cut = sessions[REFERENCE_SESSIONS + 30]
    fault = Planted("SYN0007", cut, "volume")
    full = score_inputs(plant(clean, [fault]), _reference(clean)).view
    # The future rewritten wildly: every later return tripled, later volumes shifted.
    later = clean[DATE] > cut
    changed = clean.copy()
    changed.loc[later, "ret_1d"] *= 3.0
    changed.loc[later, "volume_zscore_21d"] += 5.0
    truncated = score_inputs(plant(changed, [fault]), _reference(clean)).view
    up_to_cut = full[full[DATE] <= cut].reset_index(drop=True)
    again = truncated[truncated[DATE] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(up_to_cut, again)
    assert up_to_cut.loc[(up_to_cut[TICKER] == "SYN0007") & (up_to_cut[DATE] == cut), "anomaly"].item() == 1


def test_a_scored_window_inside_the_reference_is_refused(clean: pd.DataFrame) -> None:
    reference = _reference(clean)
    with pytest.raises(MonitoringError, match="inside the reference window"):
        score_inputs(clean, reference, current=Window(reference.end, date(2030, 1, 1)))


def test_statistics_use_the_previous_sessions_only() -> None:
    frame = synthetic_inputs(2, 40, seed=1)
    stats = daily_statistics(frame)
    first = stats[stats[TICKER] == "SYN0000"].reset_index(drop=True)
    source = frame[frame[TICKER] == "SYN0000"].reset_index(drop=True)
    # return_z divides by the previous session's daily volatility.
    expected = source.loc[5, "ret_1d"] / (source.loc[4, "vol_21d"] / 252**0.5)
    assert first.loc[5, "return_z"] == pytest.approx(expected)
    assert pd.isna(first.loc[0, "return_z"])
    # Staleness: two unchanged closes then a change after a missing session.
    stale = frame.copy()
    rows = stale.index[stale[TICKER] == "SYN0001"]
    stale.loc[rows[10:12], "ret_1d"] = 0.0
    stale = stale.drop(rows[13])
    values = daily_statistics(stale).set_index([TICKER, DATE])["staleness"]
    dates = frame.loc[rows, DATE].tolist()
    assert [values[("SYN0001", dates[i])] for i in (9, 10, 11, 12, 14)] == [0.0, 1.0, 2.0, 0.0, 1.0]


def test_reasons_are_the_largest_deviations_and_status_needs_the_same_date() -> None:
    deviations = {"return_z": 1.5, "range_z": -7.25, "volume_z": 3.0, "missing_share": None, "staleness": float("nan")}
    assert reasons(deviations) == [Reason("range_z", -7.25), Reason("volume_z", 3.0)]
    assert reasons({"return_z": 0.5, "volume_z": 0.25}) == [Reason("return_z", 0.5)]  # the largest always
    assert Reason("range_z", -7.25).text() == "range_z -7.2"
    assert status(1, "2024-05-02", "2024-05-02") == "anomaly"
    assert status(0, "2024-05-02", "2024-05-02") == "ok"
    assert status(1, "2024-05-01", "2024-05-02") == "unchecked"
    assert status(None, None, "2024-05-02") == "unchecked"
