"""Cross-sectional information coefficients: how well a score orders names on each date."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

MIN_NAMES_PER_DATE: Final = 5


def rank_ic_by_date(scores: np.ndarray, target: np.ndarray, dates: np.ndarray) -> pd.Series:
    """Per date, the Spearman correlation of ``scores`` with ``target`` across names.

    Dates with fewer than :data:`MIN_NAMES_PER_DATE` names, or with a constant score or target,
    are left out: a correlation needs variation across names. The result is indexed by date,
    ascending.
    """
    frame = pd.DataFrame({"d": dates, "s": scores, "t": target}).dropna()
    ranked = frame.groupby("d")[["s", "t"]].rank()
    ranked["d"] = frame["d"].to_numpy()
    counts = ranked.groupby("d").size()
    # Pearson on ranks = Spearman; computed from grouped moments to stay vectorised.
    ranked["st"] = ranked["s"] * ranked["t"]
    ranked["ss"] = ranked["s"] ** 2
    ranked["tt"] = ranked["t"] ** 2
    sums = ranked.groupby("d")[["s", "t", "st", "ss", "tt"]].sum()
    n = counts.astype(float)
    cov = sums["st"] - sums["s"] * sums["t"] / n
    var_s = sums["ss"] - sums["s"] ** 2 / n
    var_t = sums["tt"] - sums["t"] ** 2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = cov / np.sqrt(var_s * var_t)
    keep = (counts >= MIN_NAMES_PER_DATE) & (var_s > 1e-12) & (var_t > 1e-12)
    result: pd.Series = ic[keep].sort_index()
    return result


def mean_rank_ic(scores: np.ndarray, target: np.ndarray, dates: np.ndarray) -> float:
    """Mean of :func:`rank_ic_by_date`; NaN when no date qualifies."""
    ics = rank_ic_by_date(scores, target, dates)
    return float(ics.mean()) if len(ics) else float("nan")
