"""The regime classifier on the ground floor, the market_regime view built from it, and the answer's bounds."""

from __future__ import annotations

import datetime as dt
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from api.errors import InvalidRequestError
from api.market_schemas import RegimeLabel, RegimeStatePublic
from api.regime import history_range, regime_answer, state_on
from feature_repo.market import PRIMARY_MARKET, RegimeHistory, regime_history, regime_view_frame
from feature_repo.transforms.regime import (
    REGIMES,
    TREND_STATES,
    VOLATILITY_STATES,
    RegimeInputError,
    benchmark_returns,
    classify_regimes,
    regime_series,
)
from training.allocation import performance
from training.errors import TrainingError

SESSIONS = 700


def _benchmark(seed: int = 5) -> pd.Series:
    """A SYNTHETIC index level: calm rise, a turbulent fall (sessions 300-360), recovery."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0003, 0.01, SESSIONS)
    r[300:360] = rng.normal(-0.008, 0.025, 60)
    dates = pd.bdate_range("2015-01-02", periods=SESSIONS + 1)
    return pd.Series(1000.0 * np.cumprod(np.r_[1.0, 1.0 + r]), index=dates)


def _history(close: pd.Series) -> RegimeHistory:
    row = {str(k): v for k, v in regime_view_frame(close, "SYNTH").iloc[0].items()}
    history = regime_history(row)
    assert history is not None
    return history


def test_a_scrambled_future_leaves_every_past_regime_and_input_unchanged() -> None:
    close = _benchmark()
    returns, dates = benchmark_returns(close)
    base = regime_series(returns, dates)
    rng = np.random.default_rng(9)
    for t in (125, 200, 330, 400, 650):
        future = returns.copy()
        future[t + 1 :] = rng.normal(0.01, 0.05, returns.size - t - 1)
        other = regime_series(future, dates)
        assert np.array_equal(other.labels[: t + 1], base.labels[: t + 1]), t
        for name in ("trend", "volatility", "volatility_median"):
            np.testing.assert_array_equal(getattr(other, name)[: t + 1], getattr(base, name)[: t + 1])
    # The view built from a truncated history agrees with the full one on every session it holds.
    short = _history(close.iloc[:400]).series
    full = _history(close).series
    assert np.array_equal(short.labels, full.labels[: short.labels.size])
    np.testing.assert_array_equal(short.trend, full.trend[: short.trend.size])


def test_the_labels_follow_the_stated_rule_and_states() -> None:
    returns, dates = benchmark_returns(_benchmark())
    series = regime_series(returns, dates)
    trends, vols = np.array(series.trend_states()), np.array(series.volatility_states())
    known = series.labels != "unknown"
    assert (series.labels[:125] == "unknown").all() and known[125:].all()
    assert ((series.labels == "bull") == (known & (trends == "up") & (vols == "low"))).all()
    assert ((series.labels == "bear") == (known & (trends == "down") & (vols == "high"))).all()
    assert (series.labels[330:360] == "bear").all()
    high = series.volatility > series.volatility_median
    assert (vols[known] == np.where(high, "high", "low")[known]).all()


def test_training_labels_its_backtests_with_the_same_code() -> None:
    returns, dates = benchmark_returns(_benchmark(7))
    assert np.array_equal(performance.classify_regimes(returns, dates), classify_regimes(returns, dates))
    with pytest.raises(TrainingError, match="there is none"):
        performance.classify_regimes(None, dates)
    with pytest.raises(RegimeInputError, match="strictly increasing"):
        classify_regimes(returns, dates[::-1])


def test_the_view_row_round_trips_and_names_its_benchmark() -> None:
    close = _benchmark()
    frame = regime_view_frame(close, "SYNTH")
    assert len(frame) == 1 and frame["market"].iloc[0] == PRIMARY_MARKET
    assert frame["date"].iloc[0] == close.index[-1]
    history = _history(close)
    returns, dates = benchmark_returns(close)
    series = regime_series(returns, dates)
    assert history.benchmark == "SYNTH"
    assert np.array_equal(history.series.labels, series.labels)
    assert np.array_equal(history.series.dates, dates)
    assert regime_history({"benchmark": None, "sessions": None}) is None


def test_the_answer_refuses_a_range_outside_the_data_naming_the_bound() -> None:
    history = _history(_benchmark())
    series = history.series
    first = dt.date.fromisoformat(str(series.dates[0]))
    last = dt.date.fromisoformat(str(series.dates[-1]))
    with pytest.raises(InvalidRequestError, match=f"before the first session with a benchmark return, {first}"):
        history_range(series, first - dt.timedelta(days=1), None)
    with pytest.raises(InvalidRequestError, match=f"after the last session in the data, {last}"):
        history_range(series, None, last + dt.timedelta(days=1))
    with pytest.raises(InvalidRequestError, match=f"to {dt.date.min} is before the first session"):
        history_range(series, None, dt.date.min)
    with pytest.raises(InvalidRequestError, match="is after to"):
        history_range(series, last, first)
    answer = regime_answer(history, first, last, "r1")
    assert len(answer.history) == series.dates.size and answer.history[-1] == answer.current
    assert (answer.benchmark, answer.as_of, answer.first_session) == ("SYNTH", last, first)
    default = regime_answer(history, None, None, "r2")
    assert default.history_to == last and (last - default.history_from).days <= 365
    saturday = dt.date(2016, 4, 9)
    assert state_on(history, saturday).date == dt.date(2016, 4, 8)


def test_the_public_labels_are_the_classifiers() -> None:
    # A Literal must spell its values; this keeps them the ground floor's.
    assert set(get_args(RegimeLabel)) == set(REGIMES)
    assert set(get_args(RegimeStatePublic.model_fields["trend"].annotation)) == set(TREND_STATES)
    assert set(get_args(RegimeStatePublic.model_fields["volatility"].annotation)) == set(VOLATILITY_STATES)
