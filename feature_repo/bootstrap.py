"""The stationary block bootstrap (Politis & Romano 1994) and the statistics of its paths: one definition.

Training's backtest Monte Carlo (``training.allocation.performance.block_bootstrap``) and the
gateway's portfolio forecast (``POST /v1/portfolios/forecast``) draw their paths here, so the same
seed and returns give the same paths in both. Pure numpy, every path at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

SESSIONS_PER_YEAR: Final = 252
FloatArray = npt.NDArray[np.float64]


def stationary_bootstrap_indices(
    n_obs: int, *, n_paths: int, horizon: int, block: float, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Indices ``[n_paths, horizon]`` into a series of ``n_obs`` observations.

    Each path strings together blocks of consecutive observations, wrapping from the last to the
    first, with block lengths geometric of mean ``block``: runs of days keep their volatility
    clustering and autocorrelation, which an i.i.d. resample (``block=1``) would destroy. A path
    of length h is the first h steps of a longer path drawn with the same generator state, so
    nested horizons can share paths.

    Raises:
        ValueError: a count below 1.
    """
    for name, value in (("n_obs", n_obs), ("block", block), ("n_paths", n_paths), ("horizon", horizon)):
        if value < 1:
            raise ValueError(f"block_bootstrap {name} must be at least 1, got {value}")
    new_block = rng.random((n_paths, horizon)) < 1.0 / block
    new_block[:, 0] = True
    start = rng.integers(0, n_obs, size=(n_paths, horizon))
    day = np.arange(horizon)
    block_began = np.maximum.accumulate(np.where(new_block, day, 0), axis=1)
    index: npt.NDArray[np.int64] = (np.take_along_axis(start, block_began, axis=1) + day - block_began) % n_obs
    return index


@dataclass(frozen=True, eq=False)
class HorizonOutcomes:
    """Per path, what ``horizon`` sessions of simulated daily returns gave.

    Attributes:
        horizon: sessions.
        cumulative_return: compounded return at the horizon, ``[n_paths]``.
        max_drawdown: worst fall from a running peak (the start, 1.0, included) up to the horizon;
            negative or 0.
        volatility: annualised std (ddof=1) of the path's daily returns up to the horizon (NaN for a
            horizon of 1).
    """

    horizon: int
    cumulative_return: FloatArray
    max_drawdown: FloatArray
    volatility: FloatArray


def horizon_outcomes(paths: FloatArray, horizons: list[int]) -> list[HorizonOutcomes]:
    """The outcomes of every path at each horizon (prefixes of the paths), in one pass.

    Args:
        paths: daily simple returns ``[n_paths, H]``, each > -1.
        horizons: sessions, each in 1..H.
    """
    n_paths, longest = paths.shape
    if any(not 1 <= h <= longest for h in horizons):
        raise ValueError(f"horizons {horizons} must lie in 1..{longest}")
    equity: FloatArray = np.cumprod(1.0 + paths, axis=1, dtype=np.float64)
    peak = np.maximum.accumulate(equity, axis=1)
    np.maximum(peak, 1.0, out=peak)
    drawdown = np.divide(equity, peak, out=peak)
    drawdown -= 1.0
    worst = np.minimum.accumulate(drawdown, axis=1, out=drawdown)
    np.minimum(worst, 0.0, out=worst)
    sums = np.cumsum(paths, axis=1)
    squares = np.cumsum(np.square(paths), axis=1)
    outcomes = []
    for h in horizons:
        if h > 1:
            s, q = sums[:, h - 1], squares[:, h - 1]
            variance = np.maximum(q - s * s / h, 0.0) / (h - 1)
            vol: FloatArray = np.sqrt(variance * SESSIONS_PER_YEAR)
        else:
            vol = np.full(n_paths, math.nan)
        outcomes.append(HorizonOutcomes(h, equity[:, h - 1] - 1.0, worst[:, h - 1].copy(), vol))
    return outcomes
