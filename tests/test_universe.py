"""The point-in-time universe: rule config, membership from the past only, storage, use by training.

Every price here is SYNTHETIC, generated in the test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from feature_repo.tables import DATE, TICKER, UNIVERSE_MEMBERSHIP_COLUMNS
from training.config import load_config
from training.errors import TrainingError
from training.signals.config import SignalRunConfig, UniverseRule
from training.signals.evaluate import baselines
from training.signals.inputs import load_inputs, point_in_time_universe
from training.store import OfflineStore
from training.universe import (
    check_member_counts,
    compute_membership,
    member_mask,
    reconstitution_dates,
    refresh_universe,
    restrict_to_members,
)

SESSIONS = pd.bdate_range("2020-01-01", "2021-06-30")


def synthetic_prices(
    sessions: pd.DatetimeIndex = SESSIONS, n: int = 8, seed: int = 0, *, spans: dict[str, tuple[str, str]] | None = None
) -> pd.DataFrame:
    """SYNTHETIC long prices: ticker T{i} trades about 1e3 * (i + 1) shares a day at about 10.

    ``spans`` limits a ticker to ``[first, last]`` (its listing life).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ticker = f"T{i}"
        close = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(sessions))))
        volume = 1000.0 * (i + 1) * rng.uniform(0.8, 1.2, len(sessions))
        frame = pd.DataFrame({TICKER: ticker, DATE: sessions, "close": close, "volume": volume})
        if spans and ticker in spans:
            first, last = (pd.Timestamp(d) for d in spans[ticker])
            frame = frame[(frame[DATE] >= first) & (frame[DATE] <= last)]
        rows.append(frame)
    prices = pd.concat(rows, ignore_index=True)
    prices["adj_close"] = prices["close"]
    prices["synthetic"] = True
    return prices


def rule(**overrides: object) -> UniverseRule:
    base: dict[str, object] = {
        "rule": "liquidity",
        "top_n": 3,
        "lookback_sessions": 20,
        "min_price": 0.05,
        "min_history_sessions": 40,
    }
    return UniverseRule.model_validate(base | overrides)


def members_on(membership: pd.DataFrame, day: str) -> list[str]:
    rows = membership[membership[DATE] == pd.Timestamp(day)].sort_values("rank")
    return list(rows[TICKER])


# --- configuration ---------------------------------------------------------------------------------

SIGNALS = {
    "segments": {
        "train": ["2020-04-01", "2020-09-30"],
        "valid": ["2020-10-01", "2020-12-31"],
        "test": ["2021-01-01", "2021-03-31"],
    },
    "horizon": 5,
    "walk_forward": {"n_folds": 2, "min_train_sessions": 40, "test_sessions": 20, "embargo_sessions": 2},
    "models": {"technical": {"feature_service": "technical_model_v1"}},
    "evaluation": {"top_k": 2},
}


def test_a_rule_universe_loads_and_the_list_and_all_stay() -> None:
    config = SignalRunConfig.model_validate(
        SIGNALS | {"universe": {"rule": "liquidity", "top_n": 300, "lookback_sessions": 60, "min_price": 0.05}}
    )
    assert isinstance(config.universe, UniverseRule)
    assert config.universe.top_n == 300 and config.universe.reconstitute == "monthly"
    assert config.universe.min_history_sessions == 252 and config.universe.statistic == "median"
    assert config.universe.name == "liquidity-top300-median60-p0.05-h252-monthly"
    assert SignalRunConfig.model_validate(SIGNALS | {"universe": "all"}).universe == "all"
    assert SignalRunConfig.model_validate(SIGNALS | {"universe": ["A", "B"]}).universe == ("A", "B")


def test_a_rule_with_an_unknown_key_or_a_bad_value_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "signals": SIGNALS | {"universe": {"rule": "liquidity", "topn": 3}}}))
    with pytest.raises(TrainingError) as info:
        load_config(path)
    message = str(info.value)
    assert "topn" in message and "top_n" in message and "universe" in message
    with pytest.raises(ValueError, match="reconstitute"):
        SignalRunConfig.model_validate(
            SIGNALS | {"universe": {"rule": "liquidity", "top_n": 3, "reconstitute": "weekly"}}
        )
    with pytest.raises(ValueError, match="top_n"):
        SignalRunConfig.model_validate(SIGNALS | {"universe": {"rule": "liquidity", "top_n": 0}})


# --- the rule ---------------------------------------------------------------------------------------


def test_reconstitution_dates_are_the_first_session_of_each_month_or_quarter() -> None:
    sessions = pd.bdate_range("2021-01-04", "2021-07-30")
    monthly = reconstitution_dates(sessions, "monthly")
    assert [d.strftime("%Y-%m-%d") for d in monthly] == [
        "2021-01-04", "2021-02-01", "2021-03-01", "2021-04-01", "2021-05-03", "2021-06-01", "2021-07-01",
    ]  # fmt: skip
    quarterly = reconstitution_dates(sessions, "quarterly")
    assert [d.strftime("%Y-%m-%d") for d in quarterly] == ["2021-01-04", "2021-04-01", "2021-07-01"]


def test_members_are_the_most_traded_eligible_names_ranked() -> None:
    membership = compute_membership(synthetic_prices(), rule())
    assert list(membership.columns) == list(UNIVERSE_MEMBERSHIP_COLUMNS)
    # T7 trades the most shares at similar prices, then T6, T5.
    assert members_on(membership, "2020-06-01") == ["T7", "T6", "T5"]
    counts = membership.groupby(DATE).size()
    assert (counts == 3).all()
    # No member before 40 bars of history exist: January and February 2020 hold fewer.
    assert counts.index.min() == pd.Timestamp("2020-03-02")
    assert set(membership[DATE]) <= set(reconstitution_dates(SESSIONS, "monthly"))


def test_no_future_data_changes_a_past_membership() -> None:
    prices = synthetic_prices(n=12, seed=3)
    full = compute_membership(prices, rule(top_n=5))
    cut = pd.Timestamp("2020-11-02")  # a reconstitution date
    past = prices[prices[DATE] <= cut]
    # Scramble everything after the cut and add a huge newcomer: the past must not move.
    future = prices[prices[DATE] > cut].copy()
    rng = np.random.default_rng(99)
    future["close"] = rng.uniform(0.01, 100.0, len(future))
    future["volume"] = rng.uniform(0.0, 1e9, len(future))
    later = SESSIONS[SESSIONS.to_numpy() > cut.to_datetime64()]
    newcomer = synthetic_prices(later, n=1, seed=5).assign(ticker="BIG", volume=1e12)
    for other in (past, pd.concat([past, future, newcomer], ignore_index=True)):
        again = compute_membership(other, rule(top_n=5))
        pd.testing.assert_frame_equal(
            again[again[DATE] <= cut].reset_index(drop=True), full[full[DATE] <= cut].reset_index(drop=True)
        )
    changed = compute_membership(pd.concat([past, future, newcomer]), rule(top_n=5))
    assert not changed[changed[DATE] > cut].reset_index(drop=True).equals(full[full[DATE] > cut].reset_index(drop=True))


def test_a_delisted_name_stays_a_member_until_its_last_bar() -> None:
    # T7, the most traded, delists on 2020-08-14 (its last bar): it is still chosen on 2020-08-03.
    prices = synthetic_prices(spans={"T7": ("2020-01-01", "2020-08-14")})
    membership = compute_membership(prices, rule())
    assert members_on(membership, "2020-08-03")[0] == "T7"
    assert "T7" not in members_on(membership, "2020-09-01")
    last_bar = prices.groupby(TICKER)[DATE].max()
    mask = member_mask(membership, SESSIONS, "monthly", last_bar=last_bar)
    assert mask.loc["2020-08-03":"2020-08-14", "T7"].all()
    assert not mask.loc["2020-08-17":, "T7"].any()
    # Its place is taken only at the next reconstitution: no look-ahead refill mid-month.
    assert not mask.loc["2020-08-17":"2020-08-31", "T4"].any()
    assert mask.loc["2020-09-01", "T4"]


def test_min_price_and_min_history_filters() -> None:
    prices = synthetic_prices(spans={"T6": ("2020-05-01", "2021-06-30")})
    penny = prices[TICKER] == "T7"
    prices.loc[penny, "close"] = 0.01
    prices.loc[penny, "volume"] = 1e9  # the most traded by value, but under min_price
    membership = compute_membership(prices, rule())
    assert "T7" not in set(membership[TICKER])
    assert "T7" in set(compute_membership(prices, rule(min_price=0.0))[TICKER])
    # T6 lists on 2020-05-01; its 40th bar is on 2020-06-25, so it is first chosen on 2020-07-01.
    first = membership.loc[membership[TICKER] == "T6", DATE].min()
    assert first == pd.Timestamp("2020-07-01")
    assert "T6" in members_on(compute_membership(prices, rule(min_history_sessions=5)), "2020-06-01")


def test_ties_are_broken_by_ticker_and_volume_is_required() -> None:
    prices = synthetic_prices(n=4)
    prices["close"], prices["volume"] = 10.0, 100.0
    assert members_on(compute_membership(prices, rule(top_n=2)), "2020-06-01") == ["T0", "T1"]
    with pytest.raises(TrainingError, match="volume"):
        compute_membership(prices.assign(volume=np.nan), rule())


# --- storage ----------------------------------------------------------------------------------------


def test_the_membership_is_stored_and_a_rerun_reports_nothing_new(tmp_path: Path) -> None:
    prices = synthetic_prices(spans={"T7": ("2020-01-01", "2020-08-14")})
    with OfflineStore(tmp_path / "store.duckdb") as store:
        first = refresh_universe(store, prices, rule())
        assert first.written.inserted == len(first.membership) > 0
        again = refresh_universe(store, prices, rule())
        assert (again.written.inserted, again.written.updated) == (0, 0)
        other = refresh_universe(store, prices, rule(top_n=2))  # another rule: its own rows
        stored = store.read("universe_membership", "universe = ?", [rule().name])
        assert store.count("universe_membership") == len(first.membership) + len(other.membership)
    pd.testing.assert_frame_equal(
        stored.sort_values([DATE, "rank"]).reset_index(drop=True)[["date", "ticker", "rank"]],
        first.membership[["date", "ticker", "rank"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert "0 new, 0 changed" in again.summary()


def test_fewer_members_than_top_k_is_an_error_naming_the_date_and_count(tmp_path: Path) -> None:
    # Only T6 and T7 are eligible from August 2020 on: the others fall under min_price.
    prices = synthetic_prices()
    cheap = ~prices[TICKER].isin(["T6", "T7"]) & (prices[DATE] >= pd.Timestamp("2020-07-15"))
    prices.loc[cheap, "close"] = 0.01
    with OfflineStore(tmp_path / "store.duckdb") as store:
        universe = refresh_universe(store, prices, rule())
    with pytest.raises(TrainingError, match=r"2 member\(s\) on reconstitution date 2020-08-03.*3 evaluation"):
        check_member_counts(universe, start="2020-04-01", end="2021-03-31", need=3, what="evaluation")
    check_member_counts(universe, start="2020-04-01", end="2021-03-31", need=2, what="evaluation")
    # Before the window's governing date nothing is checked (the first months have no members).
    check_member_counts(universe, start="2020-04-15", end="2020-07-31", need=3, what="evaluation")


# --- use by training --------------------------------------------------------------------------------


def _store_with(tmp_path: Path, prices: pd.DataFrame) -> Path:
    path = tmp_path / "store.duckdb"
    frame = prices.assign(open=np.nan, high=np.nan, low=np.nan, source="synthetic")
    bench = pd.DataFrame({"symbol": "SP500", DATE: SESSIONS, "close": 100.0, "source": "synthetic", "synthetic": True})
    with OfflineStore(path) as store:
        store.upsert("prices", frame[[c for c in frame.columns if c in store.read("prices").columns]])
        store.upsert("benchmark", bench)
    return path


def test_training_samples_are_members_on_their_date_only(tmp_path: Path) -> None:
    prices = synthetic_prices(spans={"T7": ("2020-01-01", "2020-08-14")})
    path = _store_with(tmp_path, prices)
    config = SignalRunConfig.model_validate(SIGNALS | {"universe": rule().model_dump()})
    inputs = load_inputs(config, path, repo=None)  # type: ignore[arg-type]  # the repo is only carried
    assert inputs.universe is not None and inputs.members is not None
    mask = inputs.members
    member = [bool(mask.loc[d, t]) for d, t in zip(inputs.outcomes[DATE], inputs.outcomes[TICKER], strict=True)]
    assert member and all(member)
    assert set(inputs.outcomes[TICKER]) == {"T4", "T5", "T6", "T7"}  # T0..T3 are never members
    # A list universe keeps every labelled row, as before.
    listed = load_inputs(SignalRunConfig.model_validate(SIGNALS | {"universe": ["T0", "T7"]}), path, repo=None)  # type: ignore[arg-type]
    assert listed.universe is None and set(listed.outcomes[TICKER]) == {"T0", "T7"}
    with OfflineStore(path, read_only=True) as store:
        assert store.count("universe_membership") == len(inputs.universe.membership)


def test_restrict_to_members_keeps_member_rows_only() -> None:
    mask = pd.DataFrame({"A": [True, False], "B": [False, True]}, index=pd.DatetimeIndex(["2021-01-04", "2021-01-05"]))
    frame = pd.DataFrame(
        {DATE: pd.DatetimeIndex(["2021-01-04", "2021-01-04", "2021-01-05", "2021-01-05"]), TICKER: ["A", "B", "B", "C"]}
    )
    kept = restrict_to_members(frame, mask)
    assert list(zip(kept[DATE].dt.day, kept[TICKER], strict=True)) == [(4, "A"), (5, "B")]


def test_no_rule_means_no_universe_table(tmp_path: Path) -> None:
    path = _store_with(tmp_path, synthetic_prices())
    config = SignalRunConfig.model_validate(SIGNALS | {"universe": "all"})
    assert point_in_time_universe(config, path, synthetic_prices(), 2, "evaluation.top_k") is None
    with OfflineStore(path, read_only=True) as store:
        assert store.count("universe_membership") == 0


def test_evaluation_books_hold_members_only(tmp_path: Path) -> None:
    prices = synthetic_prices(spans={"T7": ("2020-01-01", "2021-02-12")})
    path = _store_with(tmp_path, prices)
    evaluation = {"top_k": 2, "rebalance_every": 5}
    ruled = rule(top_n=5).model_dump()  # the metrics need 5 tickers a date
    config = SignalRunConfig.model_validate(SIGNALS | {"universe": ruled, "evaluation": evaluation})
    inputs = load_inputs(config, path, repo=None)  # type: ignore[arg-type]  # the repo is only carried
    assert inputs.members is not None
    rows = baselines(inputs)
    held_any = set()
    for name in ("momentum_12_1", "reversal_1m", "equal_weight"):
        book = rows[name][1]
        for trade_day, weights in book.weights.iterrows():
            signal = book.signal_dates[trade_day]
            held = list(weights.index[weights > 0])
            held_any |= set(held)
            assert all(inputs.members.loc[signal, t] for t in held), (name, signal, held)
    assert held_any <= {"T2", "T3", "T4", "T5", "T6", "T7"} and "T2" in held_any  # T2 replaces T7 from March 2021
    with pytest.raises(TrainingError, match="no date has at least 5 tickers"):
        small = SignalRunConfig.model_validate(SIGNALS | {"universe": rule().model_dump(), "evaluation": evaluation})
        baselines(load_inputs(small, path, repo=None))  # type: ignore[arg-type]


def test_a_reused_code_counts_its_history_from_the_break() -> None:
    # T7's first company trades until 2020-03-31; a new company takes the code from 2020-06-01.
    prices = synthetic_prices()
    gap = (prices[TICKER] == "T7") & prices[DATE].between(pd.Timestamp("2020-04-01"), pd.Timestamp("2020-05-29"))
    prices = prices[~gap]
    breaks = pd.DataFrame(
        {TICKER: ["T7"], DATE: [pd.Timestamp("2020-06-01")], "reason": ["code_reused"], "detail": ["synthetic"]}
    )

    def first_member(frame: pd.DataFrame) -> pd.Timestamp:
        return frame.loc[frame[TICKER] == "T7", DATE][frame[DATE] >= pd.Timestamp("2020-06-01")].min()

    # Without the break the old company's bars count: a member once it trades again.
    assert first_member(compute_membership(prices, rule())) == pd.Timestamp("2020-07-01")
    # With it the new company needs its own 40 bars (2020-06-01..2020-07-27).
    assert first_member(compute_membership(prices, rule(), breaks=breaks)) == pd.Timestamp("2020-08-03")
    corporate = breaks.assign(reason="corporate_action_suspect")  # the same company: history kept
    assert first_member(compute_membership(prices, rule(), breaks=corporate)) == pd.Timestamp("2020-07-01")
