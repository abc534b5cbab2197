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


# The overlay (residual policy): the policy's action tilts a base book instead of choosing weights
# from nothing. A base that every served request can rebuild from its own rows is "servable".
OVERLAY_BASES = ("none", "inverse_variance", "min_variance", "hrp")
SERVABLE_BASES = ("none", "inverse_variance")
# The feature the inverse-variance base reads: a 63-session volatility, annualised or not (the
# base depends only on the ratios between names).
BASE_VOL_FEATURE = "vol_63d"


def inverse_variance_base(vol: npt.ArrayLike, tradable: npt.ArrayLike, max_weight: float) -> FloatArray:
    """The inverse-variance book over the tradable names: ``1 / vol**2``, normalised, capped at ``max_weight``.

    It is the minimum-variance book of a diagonal covariance, and it needs nothing but one
    volatility per name, so the environment (from the panel) and the served allocator (from the
    request's rows) build the same book. A tradable name without a finite positive volatility
    gets the median inverse variance of the others (it is tradable, its risk just unknown); when
    none has one, the book is equal weight. Excess above the cap goes to the uncapped names
    (:func:`cap_weights`), and to cash only when every name is at the cap.

    Args:
        vol: ``[n]`` volatilities (NaN: unknown).
        tradable: ``[n]`` bool, the names the book may hold.
        max_weight: the cap per name.

    Returns:
        ``[n]`` long-only weights summing to at most 1 (exactly 1 when ``n_tradable * max_weight >= 1``).
    """
    v = np.asarray(vol, dtype=np.float64)
    ok = np.asarray(tradable, dtype=bool)
    out = np.zeros(v.size)
    if not ok.any():
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(v) & (v > 0.0), 1.0 / (v * v), np.nan)
    known = ok & np.isfinite(inv)
    fill = float(np.median(inv[known])) if known.any() else 1.0
    out[ok] = np.where(known[ok], inv[ok], fill)
    out /= out.sum()
    return cap_weights(out, max_weight)


def overlay_target(
    action: FloatArray,
    base: FloatArray,
    drifted: FloatArray,
    *,
    scale: float,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
    present: npt.NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, float]:
    """Weights after trading from ``drifted``: the ``base`` book tilted by ``exp(scale * tanh(action))``.

    The book is ``w ∝ base * exp(scale * tanh(a))`` over the present names (and, with
    ``allow_cash``, cash, whose base weight is ``1 - sum(base)`` and whose action is the last one),
    keeping the base's total; then the max weight and the turnover cap as in
    :func:`constrained_target`. A zero action is no tilt: the target is the base itself, so a
    policy that learns nothing holds the base. Each tilt factor lies in ``[e**-scale, e**scale]``.
    Without ``allow_cash`` the base is scaled to be fully invested. A base with no weight on a
    present name is replaced by equal weight over the present names (capped).

    Args:
        action: ``N`` values, or ``N + 1`` with ``allow_cash`` (the last tilts cash).
        base: ``[N]`` long-only base weights summing to at most 1.
        drifted: ``[N]`` the current weights.
        scale: the tilt's bound, > 0.

    Returns:
        The new asset weights ``[N]`` and the share of the wanted trade made.
    """
    n = drifted.size
    expected = n + 1 if allow_cash else n
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (expected,):
        cash = " + cash" if allow_cash else ""
        raise TrainingError(f"expected {expected} actions ({n} assets{cash}), got {a.shape}")
    if not np.isfinite(a).all():
        raise TrainingError("actions must be finite")
    if not (np.isfinite(scale) and scale > 0):
        raise TrainingError(f"the overlay scale must be a finite number > 0, got {scale!r}")
    keep = np.ones(n, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    b = np.where(keep, np.clip(np.asarray(base, dtype=np.float64), 0.0, None), 0.0)
    if b.sum() <= _TOL:
        b = np.zeros(n)
        if keep.any():
            b[keep] = cap_weights(np.full(int(keep.sum()), 1.0 / int(keep.sum())), max_weight)
    if b.sum() <= _TOL:
        return limit_turnover(np.zeros(n), drifted, turnover_cap)
    if allow_cash:
        book = np.append(b, max(0.0, 1.0 - float(b.sum())))
        total = float(book.sum())
    else:
        book, total = b, 1.0
    tilted = book * np.exp(scale * np.tanh(a))
    tilted *= total / float(tilted.sum())
    target = cap_weights(tilted[:n], max_weight)
    return limit_turnover(target, drifted, turnover_cap)


def overlay_slot_target(
    action: FloatArray,
    drifted: FloatArray,
    slots: npt.NDArray[np.intp],
    tradable: npt.ArrayLike,
    width: int,
    *,
    base: FloatArray,
    scale: float,
    max_weight: float,
    turnover_cap: float | None,
    allow_cash: bool,
) -> tuple[FloatArray, float]:
    """:func:`overlay_target` for a fixed-width policy (the slots of :func:`slot_target`).

    Args:
        base: ``[N]`` the base book over every name; only the tradable slot names keep theirs
            (with ``allow_cash`` the rest of the base goes to cash, without it the book is scaled up).
    """
    k = slots.size
    in_slots = np.zeros(width)
    in_slots[:k] = drifted[slots]
    present = np.zeros(width, dtype=bool)
    present[:k] = np.asarray(tradable, dtype=bool)
    base_slots = np.zeros(width)
    base_slots[:k] = np.asarray(base, dtype=np.float64)[slots]
    chosen, share = overlay_target(
        action,
        base_slots,
        in_slots,
        scale=scale,
        max_weight=max_weight,
        turnover_cap=turnover_cap,
        allow_cash=allow_cash,
        present=present,
    )
    out = np.zeros(drifted.size)
    out[slots] = chosen[:k]
    return out, share
