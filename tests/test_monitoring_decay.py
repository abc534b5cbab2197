"""Rolling IC and the alpha-decay rule, on real outcomes from the bundled S&P 500 prices."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from feature_repo.significance import newey_west_tstat
from feature_repo.transforms.outcomes import forward_outcomes
from monitoring.decay import all_models_decay, model_decay, per_date_ic
from monitoring.errors import MonitoringError


@pytest.fixture(scope="module")
def outcomes(sp500) -> pd.DataFrame:
    prices = sp500.prices[(sp500.prices["date"] >= "2015-01-01") & (sp500.prices["date"] <= "2017-12-31")]
    return forward_outcomes(prices, horizon=21)


def _predictions(outcomes: pd.DataFrame, switch: str) -> pd.DataFrame:
    """SYNTHETIC scores on real outcomes: an informed model (outcome + noise) until ``switch``, noise after."""
    rng = np.random.default_rng(11)
    rows = outcomes.dropna(subset=["fwd_excess_21d"])[["date", "ticker", "fwd_excess_21d"]].copy()
    noise = rng.normal(scale=rows["fwd_excess_21d"].std(), size=len(rows))
    informed = rows["date"] < pd.Timestamp(switch)
    rows["score"] = np.where(informed, rows["fwd_excess_21d"] + noise, noise)
    rows["model"] = "technical"
    steady = rows.assign(model="ensemble", score=rows["fwd_excess_21d"] + noise)
    return pd.concat([rows, steady])[["date", "ticker", "model", "score"]]


def test_newey_west_matches_textbook_without_lags_and_widens_with_autocorrelation():
    x = np.array([0.1, 0.3, -0.2, 0.4, 0.0, 0.2])
    textbook = x.mean() / (x.std(ddof=0) / math.sqrt(x.size))
    assert newey_west_tstat(x, 0) == pytest.approx(textbook)
    persistent = np.repeat([0.2, -0.05, 0.3, 0.1], 5)  # overlapping outcomes look like this
    assert abs(newey_west_tstat(persistent, 4)) < abs(newey_west_tstat(persistent, 0))
    assert math.isnan(newey_west_tstat([1.0], 3))


def test_per_date_rank_ic_is_spearman(outcomes):
    day = outcomes.dropna()[outcomes["date"] == pd.Timestamp("2016-03-01")].assign(
        score=lambda f: f["fwd_excess_21d"] ** 3
    )
    per_date = per_date_ic(day, "fwd_excess_21d")
    assert per_date["rank_ic"].iloc[0] == pytest.approx(1.0)  # monotone transform: perfect rank IC
    assert per_date["ic"].iloc[0] < 1.0


def test_a_model_that_loses_its_signal_is_flagged_and_a_steady_one_is_not(outcomes):
    predictions = _predictions(outcomes, switch="2017-03-01")
    by_model = {r.model: r for r in all_models_decay(predictions, outcomes, as_of=date(2017, 12, 31), window=63)}
    assert by_model["technical"].decayed and by_model["technical"].lost_significance
    assert by_model["technical"].peak_tstat >= 2 > by_model["technical"].rank_ic_tstat
    assert not by_model["ensemble"].decayed and by_model["ensemble"].rolling_rank_ic > 0.3


def test_outcomes_not_yet_known_are_not_used(outcomes):
    predictions = _predictions(outcomes, switch="2017-03-01")
    early = model_decay(predictions, outcomes, "technical", as_of=date(2017, 2, 28), window=63)
    assert not early.decayed  # the noise period's outcomes are not known yet
    assert pd.Timestamp(early.as_of) == pd.Timestamp("2017-02-28")
    with pytest.raises(MonitoringError, match="evaluated dates"):
        model_decay(predictions, outcomes, "technical", as_of=date(2015, 2, 1), window=63)
