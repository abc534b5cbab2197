"""Capacity: the AUD book size at which costs eat half of a book's gross excess return.

**The cost model** is :class:`training.evaluation.liquidity.TradeCosts`: per side, brokerage plus a
half-spread by ADV tercile (both independent of size) plus square-root impact
``Y * sigma_daily * sqrt(Q / ADV)``, where Q is the AUD traded, so costs grow with the book. The
ADV cap of :class:`training.evaluation.book.BookRules` (a position at most ``adv_cap x ADV``) also
binds harder as the book grows: weight moves from capped names to others, then to cash, which
dilutes the gross return as well.

**Excess returns** are measured against a fixed reference, the no-skill book's *gross* daily
returns (equal weight on the same universe, no costs), so the reference does not move with size:

* ``gross_excess``: ``252 x mean(gross_book - reference)`` of the book at the smallest size tried,
  where no cap binds and impact is negligible: the edge before any cost;
* ``net_excess(B)``: ``252 x mean(net_book(B) - reference)`` at book size B.

**Capacity** is the smallest B where ``net_excess(B) <= gross_excess / 2``: costs (and the cap's
dilution) have eaten half the edge. Sizes are tried on a geometric grid and the crossing is
interpolated linearly in log(B) between the two grid points around it. With no positive
gross edge there is no capacity to speak of (``bound = "no_edge"``, NaN); a crossing before the
first or after the last size is reported as that size with ``bound = "below"`` or ``"above"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from training.errors import TrainingError
from training.evaluation.metrics import SESSIONS_PER_YEAR
from training.evaluation.topk import BacktestResult

Bound = Literal["exact", "below", "above", "no_edge"]
DEFAULT_SIZES = tuple(float(x) for x in np.geomspace(1e5, 1e10, 21))


@dataclass(frozen=True, eq=False)
class Capacity:
    """Where costs eat half the edge (module docstring: definitions).

    Attributes:
        book_aud: the capacity in AUD (NaN with no edge).
        bound: ``exact`` (interpolated), ``below``/``above`` the grid, or ``no_edge``.
        gross_excess: annual gross excess return at the smallest size.
        curve: per size tried: ``book_aud``, ``net_excess``, ``gross_excess``, ``cost_ann``.
    """

    book_aud: float
    bound: Bound
    gross_excess: float
    curve: pd.DataFrame


def annual_excess(returns: pd.Series, reference: pd.Series) -> float:
    """``252 x mean(returns - reference)`` over the sessions both cover."""
    joined = pd.concat([returns, reference], axis=1, join="inner").to_numpy(np.float64)
    if joined.shape[0] == 0:
        raise TrainingError("the book and its reference share no session: no excess return to measure")
    return float((joined[:, 0] - joined[:, 1]).mean()) * SESSIONS_PER_YEAR


def capacity(
    run_book: Callable[[float], BacktestResult],
    reference: pd.Series,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
) -> Capacity:
    """Run the book at each size in ``sizes`` (ascending) and find where costs eat half its edge.

    Args:
        run_book: book size in AUD -> the book's backtest at that size.
        reference: the no-skill book's gross daily returns.
        sizes: book sizes in AUD, ascending, at least two.

    Raises:
        TrainingError: fewer than two sizes, or sizes not positive and ascending.
    """
    grid = np.asarray(sizes, dtype=np.float64)
    if grid.size < 2 or (grid <= 0).any() or (np.diff(grid) <= 0).any():
        raise TrainingError(f"capacity needs at least two positive ascending sizes, got {list(sizes)}")
    rows = []
    for size in grid:
        result = run_book(float(size))
        rows.append(
            {
                "book_aud": float(size),
                "net_excess": annual_excess(result.returns, reference),
                "gross_excess": annual_excess(result.gross_returns, reference),
                "cost_ann": result.metrics()["cost_ann"],
            }
        )
    curve = pd.DataFrame(rows)
    edge = float(curve["gross_excess"].iloc[0])
    if not edge > 0:
        return Capacity(math.nan, "no_edge", edge, curve)
    net = curve["net_excess"].to_numpy(np.float64)
    crossed = np.flatnonzero(net <= edge / 2.0)
    if crossed.size == 0:
        return Capacity(float(grid[-1]), "above", edge, curve)
    i = int(crossed[0])
    if i == 0:
        return Capacity(float(grid[0]), "below", edge, curve)
    # Linear in log(size) between the last size above half the edge and the first at or below it.
    frac = (net[i - 1] - edge / 2.0) / (net[i - 1] - net[i])
    log_size = math.log(grid[i - 1]) + frac * (math.log(grid[i]) - math.log(grid[i - 1]))
    return Capacity(math.exp(log_size), "exact", edge, curve)
