"""Blending component scores with renormalised weights: the ensemble's inference rule.

This module imports nothing but numpy and pandas, on purpose: it travels inside the registered
ensemble model (``code_paths``), so a model server runs exactly the code training evaluated,
without the training package installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def on_common_scale(scores: pd.DataFrame, affine: Mapping[str, Sequence[float]] | None) -> np.ndarray:
    """Each component's scores mapped to the ensemble's common scale: ``shift + scale * score``.

    Components trained with different objectives answer in different units (a rank-label
    regression near 0.5, a LambdaRank score around 0); renormalising a blend over the components
    present is only fair when they share one scale. A component without a map (an ensemble
    registered before maps existed, or ``affine`` None) is taken as it is.
    """
    values = scores.to_numpy(dtype=float)
    if not affine:
        return values
    shift = np.array([float(affine[c][0]) if c in affine else 0.0 for c in scores.columns])
    scale = np.array([float(affine[c][1]) if c in affine else 1.0 for c in scores.columns])
    mapped: np.ndarray = shift + scale * values
    return mapped


def blend(
    scores: pd.DataFrame, weights: Mapping[str, float], affine: Mapping[str, Sequence[float]] | None = None
) -> pd.DataFrame:
    """Blend component scores row by row, renormalising over the components present.

    Args:
        scores: one column per component (NaN where a component did not answer). A component of
            ``weights`` that has no column counts as missing; a column not in ``weights`` is an error.
        weights: the weight of every component, summing to one.
        affine: per component ``(shift, scale)`` onto the common scale (see :func:`on_common_scale`).

    Returns:
        ``score`` (NaN when no component answered) and ``coverage`` (the present weight share).

    Raises:
        ValueError: a column names no known component.
    """
    unknown = [c for c in scores.columns if c not in weights]
    if unknown:
        raise ValueError(f"unknown ensemble component(s) {unknown}; components are {sorted(weights)}")
    w = np.array([weights[c] for c in scores.columns], dtype=float)
    values = on_common_scale(scores, affine)
    present = ~np.isnan(values)
    coverage = present @ w if len(w) else np.zeros(len(scores))
    weighted = np.where(present, values, 0.0) @ w if len(w) else np.zeros(len(scores))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(coverage > 0, weighted / coverage, np.nan)
    return pd.DataFrame({"score": score, "coverage": coverage}, index=scores.index)
