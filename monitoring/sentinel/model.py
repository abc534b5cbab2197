"""The sentinel's model: scikit-learn's IsolationForest on standardised statistics, fitted on a reference window.

Each statistic is standardised by the reference window's median and scaled MAD (robust to the very
outliers the sentinel looks for); a missing statistic is imputed with the median (deviation 0), so
the forest never sees a NaN and missingness itself is a statistic. The threshold is the reference
scores' ``1 - contamination`` quantile: on data like the reference, about that share is flagged.

An isolation forest cannot rank a point beyond the range it was fitted on above the fitted
extremes (the point falls in the same leaf as the most extreme reference row), so a statistic
constant in the reference (staleness is 0 on nearly every healthy row) is invisible to it, and a
return ten times the largest ever seen scores like the largest. A row is therefore also flagged
when a deviation leaves the reference's envelope: beyond ``envelope_factor`` times the reference's
``envelope_quantile`` of that absolute deviation, plus ``envelope_margin`` (the margin alone for a
statistic constant in the reference). Each flag records which rule raised it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from feature_repo.data_quality import STATISTIC_NAMES
from monitoring.errors import MonitoringError

MAD_TO_SD: Final = 1.4826
# A statistic that barely varies in the reference (staleness is 0 almost always) still gets a scale,
# in its own units: one session of staleness, two features in a hundred missing, 0.05 of a z-score.
MIN_SCALE: Final[dict[str, float]] = {
    "return_z": 0.05,
    "range_z": 0.05,
    "volume_z": 0.05,
    "missing_share": 0.02,
    "staleness": 1.0,
}
MIN_REFERENCE_ROWS: Final = 50
THRESHOLD_SAMPLE: Final = 250_000


@dataclass(frozen=True)
class SentinelParams:
    """The forest's settings and the share of reference rows above the threshold."""

    contamination: float = 0.001
    n_estimators: int = 100
    max_samples: int = 256
    seed: int = 0
    envelope_quantile: float = 0.9999
    envelope_factor: float = 2.0
    envelope_margin: float = 3.0


@dataclass(frozen=True)
class Scored:
    """Scores, flags and standardised deviations of a frame of statistics (aligned with its rows).

    ``forest`` marks the rows whose forest score reached the threshold (``>=``: forest scores are
    bounded, and on data with few varying statistics the reference's top quantile is the bound
    itself, which no row can exceed), ``envelope`` those with a
    deviation outside the reference's envelope; ``flags`` is either.
    """

    scores: np.ndarray
    forest: np.ndarray
    envelope: np.ndarray
    deviations: pd.DataFrame

    @property
    def flags(self) -> np.ndarray:
        flags: np.ndarray = self.forest | self.envelope
        return flags


@dataclass(frozen=True)
class SentinelModel:
    """A fitted forest plus the reference's centre and scale of every statistic."""

    forest: object  # sklearn.ensemble.IsolationForest (imported lazily: monitoring's extra carries it)
    center: np.ndarray
    scale: np.ndarray
    threshold: float
    envelope: np.ndarray
    reference_rows: int

    def deviations(self, statistics: pd.DataFrame) -> pd.DataFrame:
        """(value - reference median) / reference scale per statistic; NaN where the value is missing."""
        values = statistics[list(STATISTIC_NAMES)].to_numpy(dtype="float64")
        return pd.DataFrame((values - self.center) / self.scale, columns=list(STATISTIC_NAMES), index=statistics.index)

    def score(self, statistics: pd.DataFrame) -> Scored:
        """Anomaly scores (higher = more anomalous) and flags (score above the threshold)."""
        deviations = self.deviations(statistics)
        scores = _scores(self.forest, deviations)
        outside = (np.abs(np.nan_to_num(deviations.to_numpy(dtype="float64"))) > self.envelope).any(axis=1)
        return Scored(scores=scores, forest=scores >= self.threshold, envelope=outside, deviations=deviations)


def fit(reference: pd.DataFrame, params: SentinelParams | None = None) -> SentinelModel:
    """Fit the forest on the reference rows' statistics.

    Raises:
        MonitoringError: fewer than ``MIN_REFERENCE_ROWS`` reference rows.
    """
    from sklearn.ensemble import IsolationForest

    params = params or SentinelParams()
    if len(reference) < MIN_REFERENCE_ROWS:
        raise MonitoringError(
            f"the reference window has {len(reference)} rows; the sentinel needs {MIN_REFERENCE_ROWS}"
        )
    values = reference[list(STATISTIC_NAMES)].to_numpy(dtype="float64")
    with warnings.catch_warnings():
        # A statistic without any value (no high/low in a close-only source): centre 0, the floor scale.
        warnings.simplefilter("ignore", RuntimeWarning)
        center = np.nan_to_num(np.nanmedian(values, axis=0))
        mad = np.nanmedian(np.abs(values - center), axis=0) * MAD_TO_SD
    scale = np.maximum(np.nan_to_num(mad), [MIN_SCALE[s] for s in STATISTIC_NAMES])
    forest = IsolationForest(
        n_estimators=params.n_estimators,
        max_samples=min(params.max_samples, len(reference)),
        random_state=params.seed,
    )
    standardised = np.nan_to_num((values - center) / scale)
    forest.fit(standardised)
    # The threshold is a quantile of the reference's own scores; a seeded sample of them is enough
    # (the 99.9% quantile of 250,000 rows stands on 250 rows) and scoring a whole exchange's years
    # would cost most of the fit.
    sample = np.random.default_rng(params.seed).permutation(len(standardised))[:THRESHOLD_SAMPLE]
    sampled = standardised[np.sort(sample)]
    reference_scores = -forest.score_samples(sampled)
    threshold = float(np.quantile(reference_scores, 1.0 - params.contamination))
    tail = np.quantile(np.abs(sampled), params.envelope_quantile, axis=0)
    envelope = tail * params.envelope_factor + params.envelope_margin
    return SentinelModel(forest, center, scale, threshold, envelope, len(reference))


def _scores(forest: object, deviations: pd.DataFrame) -> np.ndarray:
    values = np.nan_to_num(deviations.to_numpy(dtype="float64"))
    scores: np.ndarray = -forest.score_samples(values)  # type: ignore[attr-defined]
    return scores
