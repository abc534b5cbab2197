"""Significance of a per-date signal series whose outcomes overlap: the Newey–West t-statistic.

Training's evaluation (:mod:`training.evaluation.metrics`) and monitoring's alpha-decay monitor
(:mod:`monitoring.decay`) both judge a model's per-date rank IC against h-session outcomes, whose
consecutive dates share h-1 sessions of returns. The two must compute the same statistic (a model
is promoted and later called decayed by the same yardstick) and import no each other, so the
statistic lives here, on the ground floor beside the outcomes it is about.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["newey_west_tstat"]


def newey_west_tstat(values: npt.ArrayLike, lags: int) -> float:
    """t-statistic of the mean of a series with a Newey–West (HAC) standard error.

    With demeaned values ``e`` and autocovariances ``g_j = sum_{t>=j} e_t e_{t-j} / n``, the long-run
    variance is ``g_0 + 2 * sum_{j=1..L} (1 - j / (L + 1)) * g_j`` (Bartlett weights keep it
    non-negative) and the standard error of the mean is ``sqrt(lrv / n)``. ``L`` is capped at n-1.
    With ``lags=0`` this is the textbook t-statistic with a ddof=0 variance.

    Args:
        values: the series (e.g. the per-date IC), NaN-free.
        lags: L; use h-1 for a series built from h-session overlapping targets.

    Returns:
        ``mean / se``; NaN with fewer than two values or a zero long-run variance.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 2:
        return math.nan
    e = x - x.mean()
    lrv = float(e @ e) / n
    max_lag = min(max(lags, 0), n - 1)
    for j in range(1, max_lag + 1):
        lrv += 2.0 * (1.0 - j / (max_lag + 1)) * float(e[j:] @ e[:-j]) / n
    if lrv <= 0.0:
        return math.nan
    return float(x.mean() / math.sqrt(lrv / n))
