"""The portfolio forecast: a stationary block bootstrap of the portfolio's point-in-time daily returns.

The portfolio is held at constant weights (rebalanced daily; cash earns 0), so its daily return on
a past session is ``R @ w`` over the names' returns that session, and resampling sessions of that
one series is resampling whole cross-sections: correlations between names are kept. Paths come
from the shared bootstrap (:mod:`feature_repo.bootstrap`, the one training's Monte Carlo uses);
every horizon reads the prefix of the same paths, so bands of nested horizons are consistent.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from api.errors import InvalidRequestError
from api.market_data import MarketDataUnavailableError, ReturnWindow
from api.market_schemas import WEIGHT_SUM_TOLERANCE, BandsPublic, HorizonForecastPublic
from feature_repo.bootstrap import horizon_outcomes, stationary_bootstrap_indices

QUANTILES: Final = (0.05, 0.25, 0.5, 0.75, 0.95)
ASSUMPTIONS: Final = (
    "constant weights rebalanced daily (cash earns 0); daily returns resampled from the portfolio's own history "
    "by a stationary block bootstrap (whole sessions, so correlations between names are kept); no costs; volatility "
    "annualised with sqrt(252)"
)
SHOWN: Final = 5  # tickers named in a message


@dataclass(frozen=True, eq=False)
class PortfolioHistory:
    """The portfolio's daily returns on the sessions every weighted name has one, up to the last session."""

    returns: npt.NDArray[np.float64]
    first: dt.date
    last: dt.date
    limited_by: list[str]


def check_weight_sum(weights: dict[str, float]) -> None:
    """Refuse given weights that do not sum to 1 within :data:`WEIGHT_SUM_TOLERANCE` (422 naming the sum)."""
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise InvalidRequestError(
            f"weights sum to {total:.6g}; they must sum to 1 within {WEIGHT_SUM_TOLERANCE:g} (hold no cash in a "
            "forecast of given weights)"
        )


def _day(value: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(value.astype("datetime64[D]")))


def portfolio_history(windows: dict[str, ReturnWindow], weights: dict[str, float]) -> PortfolioHistory:
    """The daily returns ``R @ w`` on the trailing sessions where every name with a weight has a return.

    Raises:
        MarketDataUnavailableError: the windows were not materialised together (different calendars).
        InvalidRequestError: a weighted name has no return on the last session.
    """
    held = [t for t, w in weights.items() if w > 0] or list(weights)  # all cash: the names, weighted 0
    sessions = windows[held[0]].sessions
    if any(not np.array_equal(windows[t].sessions, sessions) for t in held):
        raise MarketDataUnavailableError("the return windows of these tickers come from different materialisations")
    matrix = np.column_stack([windows[t].returns for t in held])
    missing = ~np.isfinite(matrix)
    gaps = np.flatnonzero(missing.any(axis=1))
    start = int(gaps[-1]) + 1 if gaps.size else 0
    if start >= matrix.shape[0]:
        stale = [t for j, t in enumerate(held) if missing[-1, j]]
        raise InvalidRequestError(
            f"no return on the last session ({_day(sessions[-1])}) for {', '.join(stale[:SHOWN])}: nothing to resample"
        )
    limited = [t for j, t in enumerate(held) if start > 0 and missing[start - 1, j]]
    if len(limited) == len(held):  # every name starts there: the data's start, not one name's listing
        limited = []
    vector = np.array([weights[t] for t in held], dtype=np.float64)
    return PortfolioHistory(
        returns=matrix[start:] @ vector,
        first=_day(sessions[start]),
        last=_day(sessions[-1]),
        limited_by=limited,
    )


def check_horizons(history: PortfolioHistory, horizons: list[int]) -> list[int]:
    """The distinct horizons in increasing order; 422 naming the bound when one exceeds the history."""
    ordered = sorted(set(horizons))
    bound = history.returns.size
    if ordered[-1] > bound:
        limited = f", limited by the history of {', '.join(history.limited_by[:SHOWN])}" if history.limited_by else ""
        raise InvalidRequestError(
            f"horizon {ordered[-1]} is beyond the data: the portfolio's daily returns cover {bound} sessions "
            f"({history.first}..{history.last}{limited}); horizons must be at most {bound}"
        )
    return ordered


def _bands(values: npt.NDArray[np.float64]) -> BandsPublic:
    p5, p25, p50, p75, p95 = (float(v) for v in np.quantile(values, QUANTILES))
    return BandsPublic(p5=p5, p25=p25, p50=p50, p75=p75, p95=p95)


def simulate(
    returns: npt.NDArray[np.float64],
    horizons: list[int],
    *,
    n_paths: int,
    block: int,
    seed: int,
    loss_threshold: float,
) -> list[HorizonForecastPublic]:
    """Percentile bands and the loss probability at each horizon (each in 2..len(returns), increasing).

    One set of paths as long as the longest horizon, drawn from ``default_rng(seed)``: the same
    inputs and seed give the same answer.
    """
    rng = np.random.default_rng(seed)
    index = stationary_bootstrap_indices(returns.size, n_paths=n_paths, horizon=horizons[-1], block=block, rng=rng)
    return [
        HorizonForecastPublic(
            horizon=o.horizon,
            cumulative_return=_bands(o.cumulative_return),
            max_drawdown=_bands(o.max_drawdown),
            volatility=_bands(o.volatility),
            loss_probability=float(np.mean(o.cumulative_return < -loss_threshold)),
        )
        for o in horizon_outcomes(returns[index], horizons)
    ]
