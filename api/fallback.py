"""The gateway's own allocation fallback: equal weight or inverse volatility, capped, no optimiser.

Inputs are the online ``vol_63d`` feature (annualised). Weights are long-only and respect
``max_weight`` by water-filling: capped assets are fixed at the cap and the rest is shared out
again in proportion; when ``n * max_weight < 1`` the remainder stays in cash.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Final

# risk_tolerance -> (method name, exponent of 1/vol): a lower tolerance leans harder on low vol.
METHODS: Final[dict[str, tuple[str, float]]] = {
    "low": ("inverse_variance", 2.0),
    "medium": ("inverse_volatility", 1.0),
    "high": ("equal_weight", 0.0),
}


@dataclass
class FallbackAllocation:
    weights: list[float]
    vols: list[float | None]
    method: str
    notes: list[str] = field(default_factory=list)


def capped(raw: list[float], max_weight: float) -> list[float]:
    """Normalise ``raw`` (non-negative) to sum to 1, with no weight above ``max_weight``."""
    n = len(raw)
    if n * max_weight <= 1.0 + 1e-12:
        return [max_weight] * n
    weights = [0.0] * n
    free = set(range(n))
    budget = 1.0
    while free:
        total = sum(raw[i] for i in free)
        share = {i: budget * raw[i] / total if total > 0 else budget / len(free) for i in free}
        over = {i for i, w in share.items() if w > max_weight}
        if not over:
            for i, w in share.items():
                weights[i] = w
            break
        for i in over:
            weights[i] = max_weight
        budget -= max_weight * len(over)
        free -= over
    return weights


def allocate(vols: list[float | None], max_weight: float, risk_tolerance: str) -> FallbackAllocation:
    """Weights for assets with annualised volatilities ``vols`` (``None`` = unknown)."""
    method, exponent = METHODS[risk_tolerance]
    known = [v for v in vols if v is not None and v > 0 and math.isfinite(v)]
    notes: list[str] = []
    if exponent > 0 and not known:
        notes.append("no volatility feature available for any asset; used equal weights")
        method, exponent = "equal_weight", 0.0
    filled: list[float] = []
    fill = statistics.median(known) if known else 1.0
    for v in vols:
        ok = v is not None and v > 0 and math.isfinite(v)
        filled.append(v if ok else fill)  # type: ignore[arg-type]
    if exponent > 0 and len(known) < len(vols):
        notes.append("vol_63d missing for some assets; the median of the others was used for them")
    raw = [1.0 / v**exponent for v in filled]
    return FallbackAllocation(weights=capped(raw, max_weight), vols=vols, method=method, notes=notes)


def portfolio_volatility(weights: list[float], vols: list[float | None], rho: float) -> float | None:
    """Annualised volatility with a constant pairwise correlation ``rho``; None if a vol is missing.

    sigma_p^2 = (1 - rho) * sum((w_i s_i)^2) + rho * (sum(w_i s_i))^2
    """
    if any(v is None for v in vols):
        return None
    ws = [w * v for w, v in zip(weights, vols, strict=True)]  # type: ignore[operator]
    variance = (1.0 - rho) * sum(x * x for x in ws) + rho * sum(ws) ** 2
    return math.sqrt(max(variance, 0.0))
