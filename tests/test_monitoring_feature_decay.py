"""Rolling IC of the top features (SYNTHETIC rows: a fixture, no quality figure)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from monitoring.decay import feature_decay


def _frames(n_dates: int = 300, n_tickers: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    rows = pd.DataFrame(
        {"date": np.repeat(dates, n_tickers), "ticker": np.tile([f"T{i}" for i in range(n_tickers)], n_dates)}
    )
    target = rng.normal(size=len(rows))
    late = (rows["date"] >= dates[200]).to_numpy()
    rows["fading"] = np.where(late, rng.normal(size=len(rows)), target + rng.normal(size=len(rows)))
    rows["inverse"] = -target + rng.normal(size=len(rows))  # orders outcomes in reverse, always
    rows["noise"] = rng.normal(size=len(rows))
    outcomes = rows[["date", "ticker"]].assign(known_at=rows["date"] + pd.Timedelta(days=30), fwd_excess_1d=target)
    return rows, outcomes


def test_top_features_are_chosen_by_strength_and_judged_by_the_decay_rule() -> None:
    rows, outcomes = _frames()
    results = {
        r.model: r
        for r in feature_decay(rows, outcomes, ["fading", "inverse", "noise"], as_of=date(2030, 1, 1), top=2, horizon=1)
    }
    assert set(results) == {"feature:fading", "feature:inverse"}  # noise is not a top feature
    assert results["feature:fading"].decayed and results["feature:fading"].lost_significance
    # The reversed feature is scored negated: still significant, so not decayed.
    assert not results["feature:inverse"].decayed and results["feature:inverse"].rolling_rank_ic > 0.3


def test_outcomes_not_yet_known_are_not_used() -> None:
    rows, outcomes = _frames()
    early = feature_decay(rows, outcomes, ["fading"], as_of=date(2020, 9, 1), top=1, horizon=1)
    assert early[0].n_dates < 200 and not early[0].decayed  # the fade after date 200 is not known yet
