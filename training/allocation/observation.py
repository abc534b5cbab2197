"""The allocator's observation: normalised features and the current book, laid out flat.

One definition for the environment (training, backtests) and the registered ``allocator`` model
(serving): this file travels inside the model (``code_paths``), so it imports numpy only, and the
project's error root where the project is installed.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

try:  # the project installed: training, tests
    from training.errors import TrainingError
except ImportError:  # inside a model server: code_paths put this file on sys.path alone
    TrainingError = ValueError  # type: ignore[misc,assignment]

FloatArray = npt.NDArray[np.float64]
ObsArray = npt.NDArray[np.float32]

# z-scores beyond 5 are almost surely data errors; clipping keeps one bad print from saturating the net.
FEATURE_CLIP: Final = 5.0
# A cross-section whose spread is below this share of its largest value is rounding noise, not spread.
_RELATIVE_SPREAD_FLOOR: Final = 1e-10


def normalise_features(features: npt.ArrayLike) -> ObsArray:
    """Cross-sectional z-scores per session and feature; missing values become 0; clipped to +-5.

    Each session is scaled by its own cross-section only (the tickers' values that session), so a
    session's result never depends on another session: no look-ahead, and normalising a whole
    panel once (the environment) or only the last ``window`` sessions (the served policy) gives
    identical numbers. A feature with no spread in a session (fewer than two finite values, or all
    equal) carries no cross-sectional information there and becomes 0.

    Args:
        features: ``[..., N, F]`` values, NaN or inf where missing; the ticker axis is second to last.

    Returns:
        float32 of the same shape, finite everywhere, within ``[-FEATURE_CLIP, FEATURE_CLIP]``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim < 2:
        raise TrainingError(f"features must be [..., tickers, features], got shape {x.shape}")
    finite = np.isfinite(x)
    count = np.maximum(finite.sum(axis=-2, keepdims=True), 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mean = np.where(finite, x, 0.0).sum(axis=-2, keepdims=True) / count
        dev = np.where(finite, x - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=-2, keepdims=True) / count)
        scale = np.where(finite, np.abs(x), 0.0).max(axis=-2, keepdims=True)
        spread = np.isfinite(std) & (std > _RELATIVE_SPREAD_FLOOR * scale)
        z = np.where(spread, dev / np.where(spread, std, 1.0), 0.0)
    return np.clip(z, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


def build_observation(window_features: ObsArray, weights: FloatArray) -> ObsArray:
    """The flat observation from normalised features and the current (drifted) asset weights.

    Layout, length ``window * N * F + N + 1`` (float32):

    * ``[0, W*N*F)``: ``window_features`` (``[W, N, F]``, from :func:`normalise_features`) in C order:
      index ``(s * N + i) * F + f`` is feature ``f`` of ticker ``i`` on the ``s``-th session of
      the window, ``s = W - 1`` being the decision session;
    * ``[W*N*F, W*N*F + N)``: the asset weights after the decision session's drift, panel order;
    * the last entry: the cash weight ``1 - sum(weights)``, floored at 0 against rounding. It is
      there with or without ``allow_cash``, because every episode starts from cash.
    """
    size = window_features.size
    out = np.empty(size + weights.size + 1, dtype=np.float32)
    out[:size] = window_features.reshape(-1)
    out[size:-1] = weights
    out[-1] = max(0.0, 1.0 - float(weights.sum()))
    return out
