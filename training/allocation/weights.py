"""Long-only target weights from logits, and the two trading constraints: a max weight and a turnover cap.

Pure numpy, no state: the environment, the backtester and the served allocator model all call
these, so a policy is scored in training exactly as it is served. This file travels inside the
registered ``allocator`` model (``code_paths``), so it imports nothing of the project but the
error root, and falls back to ``ValueError`` where the project is not installed.

Order of operations for one decision (see :func:`constrained_target`):

1. ``softmax(logits)`` with the max subtracted first (no overflow for any finite logits). With
   ``allow_cash`` the last logit is the cash slot.
2. :func:`cap_weights`: no asset above ``max_weight``; the excess goes to the uncapped assets in
   proportion to their weights (water-filling), or to cash when every asset is at the cap.
3. :func:`limit_turnover`: when the trade ``sum |target - drifted|`` exceeds ``turnover_cap``, move
   only that far along the straight line from the drifted book to the target. Both ends are
   long-only and sum to at most 1, so every point between them is too; if the drifted book itself
   sits above the max weight (prices moved), the cap is restored only as fast as the turnover cap
   allows, and :func:`limit_turnover` says so through its second return value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

try:  # the project installed: training, tests
    from training.errors import TrainingError
except ImportError:  # inside a model server: code_paths put this file on sys.path alone
    TrainingError = ValueError  # type: ignore[misc,assignment]

FloatArray = npt.NDArray[np.float64]
_TOL = 1e-12


def check_feasible(n_assets: int, max_weight: float, allow_cash: bool) -> None:
    """Raise when a fully invested long-only book cannot respect ``max_weight`` over ``n_assets`` names."""
    if not 0.0 < max_weight <= 1.0:
        raise TrainingError(f"max_weight must be in (0, 1], got {max_weight}")
    if n_assets < 1:
        raise TrainingError("the universe is empty")
    if not allow_cash and max_weight * n_assets < 1.0 - 1e-9:
        raise TrainingError(
            f"infeasible constraints: max_weight {max_weight} x {n_assets} names = "
            f"{max_weight * n_assets:.3f} < 1, so a fully invested book must break the cap; "
            f"raise max_weight to at least {1.0 / n_assets:.4f}, add names, or allow cash"
        )


def softmax(logits: FloatArray) -> FloatArray:
    """Softmax over the last axis, shifted by the max so that ``exp`` never overflows."""
    z = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(z).all():
        raise TrainingError("logits must be finite")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: FloatArray = e / e.sum(axis=-1, keepdims=True)
    return out


def cap_weights(weights: FloatArray, max_weight: float) -> FloatArray:
    """Clip every weight at ``max_weight``, handing the excess to the uncapped names pro rata.

    The total is kept when the uncapped names can absorb the excess; otherwise (every name at the
    cap) the remainder is left uninvested (cash). At most ``N`` passes: each pass caps one name or more.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    total = float(w.sum())
    capped = np.zeros(w.shape, dtype=bool)
    for _ in range(w.size):
        over = w > max_weight + _TOL
        if not over.any():
            break
        capped |= over
        w[capped] = max_weight
        free = ~capped
        room = total - max_weight * int(capped.sum())
        free_sum = float(w[free].sum())
        if not free.any() or room <= _TOL:
            break
        if free_sum <= _TOL:
            w[free] = room / int(free.sum())
        else:
            w[free] *= room / free_sum
    return np.minimum(w, max_weight)


def limit_turnover(target: FloatArray, drifted: FloatArray, turnover_cap: float | None) -> tuple[FloatArray, float]:
    """Move from ``drifted`` toward ``target`` by at most ``turnover_cap`` one-way turnover.

    Returns:
        The weights after trading and the share of the wanted trade made (1.0 = all of it).
    """
    wanted = float(np.abs(target - drifted).sum())
    if turnover_cap is None or wanted <= turnover_cap or wanted <= _TOL:
        return np.asarray(target, dtype=np.float64).copy(), 1.0
    share = turnover_cap / wanted
    return drifted + share * (target - drifted), share


def constrained_target(
    logits: FloatArray,
    drifted: FloatArray,
    *,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
    present: npt.NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, float]:
    """Weights after trading from ``drifted`` on the policy's ``logits``: softmax, max weight, turnover cap.

    Args:
        logits: ``N`` values, or ``N + 1`` with ``allow_cash`` (the last is cash).
        drifted: the current asset weights ``[N]`` after the session's price moves.
        present: which assets may be held (a served request may name only some of the trained
            universe); the others get weight 0 and the softmax runs over the rest. None: all.

    Returns:
        The new asset weights ``[N]`` (cash is ``1 - sum``) and the share of the wanted trade made.
    """
    n = drifted.size
    expected = n + 1 if allow_cash else n
    if logits.shape != (expected,):
        cash = " + cash" if allow_cash else ""
        raise TrainingError(f"expected {expected} logits ({n} assets{cash}), got {logits.shape}")
    keep = np.ones(expected, dtype=bool)
    if present is not None:
        keep[:n] = present
    probs = np.zeros(expected)
    if keep.any():
        probs[keep] = softmax(logits[keep])
    target = cap_weights(probs[:n], max_weight)
    return limit_turnover(target, drifted, turnover_cap)


def drift(weights: FloatArray, returns: FloatArray) -> tuple[FloatArray, float]:
    """Weights after one session of price moves (cash earns 0), and the book's gross return."""
    grown = weights * (1.0 + returns)
    gross = float(grown.sum() - weights.sum())
    value = 1.0 + gross
    if value <= 0.0:
        raise TrainingError("the portfolio lost all of its value in one session")
    return grown / value, gross


def hold_unpriced(target: FloatArray, drifted: FloatArray, priced: npt.NDArray[np.bool_] | None) -> FloatArray:
    """``target`` where every held name without a close keeps its drifted weight (it cannot trade).

    A halted name is carried at its last close until it trades again; the rest of the target is
    scaled down, if need be, so the book still sums to at most 1.
    """
    if priced is None:
        return target
    frozen = ~priced & (drifted > 0.0)
    if not frozen.any():
        return target
    out = np.where(frozen, drifted, target)
    room = max(0.0, 1.0 - float(drifted[frozen].sum()))
    free = float(out[~frozen].sum())
    if free > room:
        out[~frozen] *= room / free
    return out


def sell_exits(weights: FloatArray, exits: npt.NDArray[np.bool_] | None) -> tuple[FloatArray, float]:
    """The book after selling, at this close, every held name whose series ends here; and that turnover."""
    if exits is None:
        return weights, 0.0
    sold = exits & (weights > 0.0)
    if not sold.any():
        return weights, 0.0
    out = weights.copy()
    out[sold] = 0.0
    return out, float(weights[sold].sum())


def slot_target(
    logits: FloatArray,
    drifted: FloatArray,
    slots: npt.NDArray[np.intp],
    tradable: npt.ArrayLike,
    width: int,
    *,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
) -> tuple[FloatArray, float]:
    """:func:`constrained_target` for a fixed-width policy: ``width`` slot logits to weights of all names.

    Args:
        logits: ``width`` values (``width + 1`` with ``allow_cash``), one per slot.
        drifted: ``[N]`` current weights of every name.
        slots: positions of the slots' names (at most ``width``, in slot order); other names get 0.
        tradable: ``[len(slots)]`` bool, whether each slot's name may be traded (others get no logit).
        width: the number of slots.

    Returns:
        ``[N]`` weights after trading and the share of the wanted trade made.
    """
    k = slots.size
    in_slots = np.zeros(width)
    in_slots[:k] = drifted[slots]
    present = np.zeros(width, dtype=bool)
    present[:k] = np.asarray(tradable, dtype=bool)
    chosen, share = constrained_target(
        logits, in_slots, max_weight=max_weight, turnover_cap=turnover_cap, allow_cash=allow_cash, present=present
    )
    out = np.zeros(drifted.size)
    out[slots] = chosen[:k]
    return out, share
