"""Alpha decay: rolling IC and rank IC of each model's scores against realised outcomes.

Inputs are long frames. Predictions: ``date``, ``ticker``, ``model``, ``score`` (what a model
scored on a date). Outcomes: ``date``, ``ticker``, ``known_at`` and ``fwd_excess_{h}d`` as made by
:func:`feature_repo.transforms.outcomes.forward_outcomes`. An outcome is used only once it is
known (``known_at`` <= ``as_of``): a monitor must not peek at returns the market has not realised.

Per date, IC is the Pearson and rank IC the Spearman correlation of score and outcome across
tickers (never pooled over dates, see ``training/evaluation/metrics.py`` for why). Over a rolling
window of the last ``window`` evaluated dates the mean rank IC gets a Newey–West t-statistic with
``h - 1`` lags, because h-session outcomes of consecutive dates overlap.

**Rule.** A model is *decayed* when the latest window's t-statistic is below ``tstat_min``; it
*lost significance* when, in addition, an earlier window of its history was at or above it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_repo.schema import OUTCOME_HORIZON
from feature_repo.significance import newey_west_tstat
from feature_repo.tables import DATE, TICKER
from monitoring.errors import MonitoringError

MODEL: Final = "model"
SCORE: Final = "score"
KNOWN_AT: Final = "known_at"


def per_date_ic(frame: pd.DataFrame, target: str, *, min_tickers: int = 5) -> pd.DataFrame:
    """Per date with enough tickers and some spread: ``ic`` and ``rank_ic`` (vectorised)."""
    data = frame[[DATE, SCORE, target]].dropna()
    grouped = data.groupby(DATE, sort=True)
    size = grouped[SCORE].transform("size")
    varies = (grouped[SCORE].transform("nunique") > 1) & (grouped[target].transform("nunique") > 1)
    data = data.loc[(size >= min_tickers) & varies]
    ranks = data.groupby(DATE)[[SCORE, target]].rank(method="average")
    ic = _group_corr(data[DATE], data[SCORE], data[target])
    rank_ic = _group_corr(data[DATE], ranks[SCORE], ranks[target])
    return pd.DataFrame({"ic": ic, "rank_ic": rank_ic}).sort_index()


def _group_corr(keys: pd.Series, x: pd.Series, y: pd.Series) -> pd.Series:
    dx = x - x.groupby(keys).transform("mean")
    dy = y - y.groupby(keys).transform("mean")
    cov = (dx * dy).groupby(keys).sum()
    return cov / np.sqrt((dx * dx).groupby(keys).sum() * (dy * dy).groupby(keys).sum())


@dataclass(frozen=True)
class DecayResult:
    """The latest rolling signal quality of one model and the decay verdict."""

    model: str
    as_of: str
    horizon: int
    window: int
    n_dates: int
    rolling_ic: float
    rolling_rank_ic: float
    rank_ic_tstat: float
    peak_tstat: float
    tstat_min: float
    decayed: bool
    lost_significance: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rolling_history(per_date: pd.DataFrame, window: int, horizon: int) -> pd.DataFrame:
    """Rolling mean IC, rank IC and the rank IC's Newey–West t-stat, one row per full window."""
    rank_ic = per_date["rank_ic"].to_numpy(np.float64)
    tstats = [newey_west_tstat(rank_ic[i - window : i], horizon - 1) for i in range(window, rank_ic.size + 1)]
    out = per_date.rolling(window).mean().iloc[window - 1 :].add_prefix("rolling_")
    out["rank_ic_tstat"] = tstats
    return out


def model_decay(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    model: str,
    *,
    as_of: date,
    window: int = 63,
    horizon: int = OUTCOME_HORIZON,
    tstat_min: float = 2.0,
    min_tickers: int = 5,
) -> DecayResult:
    """Rolling IC of one model up to ``as_of`` and whether it decayed (see the module's rule).

    Raises:
        MonitoringError: fewer than ``window`` evaluated dates with known outcomes.
    """
    target = f"fwd_excess_{horizon}d"
    missing = {DATE, TICKER, KNOWN_AT, target} - set(outcomes.columns)
    if missing:
        raise MonitoringError(f"outcomes lack {sorted(missing)}")
    known = outcomes.loc[pd.to_datetime(outcomes[KNOWN_AT]) <= pd.Timestamp(as_of), [DATE, TICKER, target]]
    scored = predictions.loc[predictions[MODEL] == model, [DATE, TICKER, SCORE]]
    per_date = per_date_ic(scored.merge(known, on=[DATE, TICKER], how="inner"), target, min_tickers=min_tickers)
    if len(per_date) < window:
        raise MonitoringError(f"{model}: {len(per_date)} evaluated dates with known outcomes, need {window}")
    history = rolling_history(per_date, window, horizon)
    latest = history.iloc[-1]
    tstat = float(latest["rank_ic_tstat"])
    peak = float(np.nanmax(history["rank_ic_tstat"].to_numpy(np.float64)))
    decayed = math.isnan(tstat) or tstat < tstat_min
    return DecayResult(
        model=model,
        as_of=as_of.isoformat(),
        horizon=horizon,
        window=window,
        n_dates=len(per_date),
        rolling_ic=float(latest["rolling_ic"]),
        rolling_rank_ic=float(latest["rolling_rank_ic"]),
        rank_ic_tstat=tstat,
        peak_tstat=peak,
        tstat_min=tstat_min,
        decayed=decayed,
        lost_significance=decayed and peak >= tstat_min,
    )


def all_models_decay(predictions: pd.DataFrame, outcomes: pd.DataFrame, **options: Any) -> list[DecayResult]:
    """:func:`model_decay` for every model in ``predictions``, sorted by model name."""
    if not {DATE, TICKER, MODEL, SCORE} <= set(predictions.columns):
        raise MonitoringError("predictions need date, ticker, model and score columns")
    return [model_decay(predictions, outcomes, m, **options) for m in sorted(predictions[MODEL].unique())]


FEATURE_PREFIX: Final = "feature:"


def feature_decay(
    view_rows: pd.DataFrame,
    outcomes: pd.DataFrame,
    features: list[str],
    *,
    as_of: date,
    top: int = 5,
    window: int = 63,
    horizon: int = OUTCOME_HORIZON,
    tstat_min: float = 2.0,
) -> list[DecayResult]:
    """Rolling IC of the ``top`` features that ordered outcomes best over their known history.

    A feature is scored like a model (its raw value is the score), so the same rolling window,
    Newey–West t-statistic and decay rule apply. "Top" is by the absolute mean rank IC over every
    date whose outcome is known by ``as_of``; each result is named ``feature:<name>``. Features
    that order outcomes in reverse (negative IC, like short-term reversal) are scored negated, so
    "decayed" means the same thing for both signs.
    """
    if DATE not in view_rows.columns:
        raise MonitoringError("feature rows need a date column")
    target = f"fwd_excess_{horizon}d"
    known = outcomes.loc[pd.to_datetime(outcomes[KNOWN_AT]) <= pd.Timestamp(as_of), [DATE, TICKER, target]]
    joined = view_rows[[DATE, TICKER, *features]].merge(known, on=[DATE, TICKER], how="inner")
    strength: dict[str, float] = {}
    for name in features:
        per_date = per_date_ic(joined[[DATE, TICKER, name, target]].rename(columns={name: SCORE}), target)
        if len(per_date) >= window:
            strength[name] = float(per_date["rank_ic"].mean())
    chosen = sorted(strength, key=lambda n: abs(strength[n]), reverse=True)[:top]
    results = []
    for name in chosen:
        sign = 1.0 if strength[name] >= 0 else -1.0
        scored = joined[[DATE, TICKER]].assign(model=FEATURE_PREFIX + name, score=sign * joined[name])
        results.append(
            model_decay(
                scored,
                outcomes,
                FEATURE_PREFIX + name,
                as_of=as_of,
                window=window,
                horizon=horizon,
                tstat_min=tstat_min,
            )
        )
    return results
