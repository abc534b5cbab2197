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


def slot_observation_size(window: int, width: int, n_features: int) -> int:
    """Length of a fixed-width observation (:func:`build_slot_observation`)."""
    return window * width * n_features + 2 * width + 1


def assign_slots(key: npt.ArrayLike, eligible: npt.ArrayLike, held: npt.ArrayLike, width: int) -> npt.NDArray[np.intp]:
    """Which names fill a fixed-width observation's slots, in slot order, from what is known now.

    A policy of fixed width serves any membership: each decision fills up to ``width`` slots with
    the eligible names (available, or held), held names first so a book is never dropped for lack
    of room, then the rest by ``key`` ascending (a feature's value: for ``vol_63d`` the calmest
    names first). The chosen names are laid out by ``key`` ascending (missing last, ties in their
    given order), so a slot's position means the same rank in training and in serving.

    Args:
        key: ``[N]`` the ranking feature's values (NaN: unknown, ranked last).
        eligible: ``[N]`` bool, names that may take a slot.
        held: ``[N]`` bool, names in the current book (taken first).
        width: the number of slots.

    Returns:
        Positions of the chosen names (at most ``width``), in slot order.
    """
    values = np.nan_to_num(np.asarray(key, dtype=np.float64), nan=np.inf, posinf=np.inf, neginf=-np.inf)
    candidates = np.flatnonzero(np.asarray(eligible, dtype=bool) | np.asarray(held, dtype=bool))
    if candidates.size > width:
        first = np.lexsort((candidates, values[candidates], ~np.asarray(held, dtype=bool)[candidates]))
        candidates = np.sort(candidates[first[:width]])
    order: npt.NDArray[np.intp] = candidates[np.lexsort((candidates, values[candidates]))]
    return order


def build_slot_observation(
    window_features: ObsArray,
    weights: FloatArray,
    slots: npt.NDArray[np.intp],
    tradable: npt.ArrayLike,
    width: int,
) -> ObsArray:
    """The fixed-width observation: ``width`` slots of (features, mask, weight) and the cash weight.

    Layout, length ``W * M * F + 2 * M + 1`` (float32, ``M = width``):

    * ``[0, W*M*F)``: the features of the name in each slot (``[W, M, F]`` in C order, from
      ``window_features[:, slots]``); an empty slot holds zeros;
    * ``[W*M*F, W*M*F + M)``: the mask, 1 where the slot's name may be traded now, 0 for an empty
      slot or a held name that may not (it shows its weight but gets no logit);
    * the next ``M``: each slot's current (drifted) weight, 0 for an empty slot;
    * the last entry: the cash weight ``1 - sum(weights)``, floored at 0.

    Args:
        window_features: ``[W, N, F]`` normalised features of every candidate name.
        weights: ``[N]`` current weights.
        slots: positions of the names in slot order (:func:`assign_slots`), at most ``width``.
        tradable: ``[len(slots)]`` bool, whether each slot's name may be traded.
        width: the number of slots ``M``.
    """
    w, _, f = window_features.shape
    k = slots.size
    if k > width:
        raise TrainingError(f"{k} names for an observation of {width} slots")
    feats = np.zeros((w, width, f), dtype=np.float32)
    feats[:, :k] = window_features[:, slots]
    size = feats.size
    out = np.zeros(size + 2 * width + 1, dtype=np.float32)
    out[:size] = feats.reshape(-1)
    out[size : size + k] = np.asarray(tradable, dtype=np.float32)
    out[size + width : size + width + k] = weights[slots]
    out[-1] = max(0.0, 1.0 - float(weights.sum()))
    return out
