"""The meta-ensemble: a blend of the component signal models with weights from trailing rank IC.

At each date t a component's weight is its mean cross-sectional rank IC over the trailing
``window`` sessions whose outcomes were already known at t (``label_end < t``), floored at zero
and normalised across components. Nothing about t's own outcome, or any later one, can enter the
weight used at t. When no component has a positive trailing IC (or none has history yet), the
weights are equal and the row is flagged ``fallback_equal``.

Before blending, each component is mapped onto one common scale by an affine map fitted on its
out-of-sample (valid segment) scores (:func:`fit_common_scale`): rank IC, and so the weights, do
not change, but a blend renormalised over the components present then means the same whichever
components answered, even when they were trained with different objectives.

Blending renormalises over the components present for a name: a missing component (its server
down, its features absent) drops out and the rest share its weight; ``coverage`` (the weight
share that was present) says how much of the ensemble answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.errors import TrainingError
from training.ic import rank_ic_by_date
from training.models.blend import blend, on_common_scale

__all__ = [
    "EnsembleWeights",
    "blend",
    "blend_point_in_time",
    "fit_common_scale",
    "trailing_weights",
    "weights_from_ic",
]

# Below this standard deviation a component's scores are taken as constant: no map is fitted.
_MIN_SPREAD = 1e-12


def fit_common_scale(components: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per component ``(shift, scale)`` mapping its scores onto one common scale.

    The common scale has the mean of the components' means and the mean of their standard
    deviations, so components that already share a scale get (nearly) the identity and the
    blend keeps its units. Fit on out-of-sample scores that precede every row it is used on.

    Raises:
        TrainingError: a component has no finite score to fit on.
    """
    moments: dict[str, tuple[float, float]] = {}
    for name in components.columns:
        x = components[name].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise TrainingError(f"ensemble component {name!r} has no out-of-sample score to fit its scale on")
        moments[name] = (float(x.mean()), float(x.std()))
    spreads = [sd for _, sd in moments.values() if sd > _MIN_SPREAD]
    target_mean = float(np.mean([m for m, _ in moments.values()]))
    target_sd = float(np.mean(spreads)) if spreads else 1.0
    affine: dict[str, tuple[float, float]] = {}
    for name, (mean, sd) in moments.items():
        scale = target_sd / sd if sd > _MIN_SPREAD else 1.0
        affine[name] = (target_mean - scale * mean, scale)
    return affine


@dataclass(frozen=True)
class EnsembleWeights:
    """Weights per component at one date, and whether they fell back to equal weights."""

    weights: dict[str, float]
    fallback_equal: bool


def weights_from_ic(trailing_ic: Mapping[str, float]) -> EnsembleWeights:
    """Positive parts of the trailing ICs, normalised; equal weights when none is positive."""
    names = list(trailing_ic)
    if not names:
        raise TrainingError("the ensemble needs at least one component")
    positive = {n: max(float(v), 0.0) if np.isfinite(v) else 0.0 for n, v in trailing_ic.items()}
    total = sum(positive.values())
    if total <= 0:
        return EnsembleWeights({n: 1.0 / len(names) for n in names}, fallback_equal=True)
    return EnsembleWeights({n: v / total for n, v in positive.items()}, fallback_equal=False)


def trailing_weights(
    components: pd.DataFrame,
    target: pd.Series,
    dates: pd.Series,
    label_end: pd.Series,
    *,
    window: int = 252,
) -> pd.DataFrame:
    """Point-in-time ensemble weights for every date of ``dates``.

    Args:
        components: one score column per component, rows aligned with ``target``/``dates``.
        target: the realised continuous target of each row.
        dates: each row's date.
        label_end: the date each row's target became known.
        window: how many of the most recent known dates the trailing IC averages.

    Returns:
        One row per unique date (ascending): a weight column per component and ``fallback_equal``.
    """
    d = pd.to_datetime(dates).to_numpy()
    known_at = pd.Series(pd.to_datetime(label_end).to_numpy(), index=d).groupby(level=0).max().sort_index()
    ics = {
        name: rank_ic_by_date(components[name].to_numpy(), target.to_numpy(), d).reindex(known_at.index)
        for name in components.columns
    }
    rows = []
    for t in known_at.index:
        # Dates whose every outcome was known strictly before t: the only IC history t may see.
        visible = known_at.index[known_at.to_numpy() < t][-window:]
        trailing = {name: float(ic.loc[visible].mean()) if len(visible) else np.nan for name, ic in ics.items()}
        w = weights_from_ic(trailing)
        rows.append({**w.weights, "fallback_equal": w.fallback_equal})
    return pd.DataFrame(rows, index=known_at.index)


def blend_point_in_time(
    components: pd.DataFrame,
    dates: pd.Series,
    weights_by_date: pd.DataFrame,
    affine: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """Blend each row with the weights of its own date (see :func:`trailing_weights`), on the common scale."""
    names = list(components.columns)
    row_weights = weights_by_date.reindex(pd.to_datetime(dates).to_numpy())[names].to_numpy(dtype=float)
    values = on_common_scale(components, affine)
    present = ~np.isnan(values)
    coverage = (present * row_weights).sum(axis=1)
    weighted = (np.where(present, values, 0.0) * row_weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(coverage > 0, weighted / coverage, np.nan)
    return pd.DataFrame({"score": score, "coverage": coverage}, index=components.index)
