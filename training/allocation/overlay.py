"""The RL policy as an overlay on a classic book (residual policy learning): the base books it tilts.

With ``allocation.rl.overlay.base`` set, the policy's action no longer chooses the weights from
nothing: at each rebalance a base book is formed and the action tilts it,
``w ∝ base * exp(scale * tanh(a))`` (:func:`training.allocation.weights.overlay_target`), masked,
capped at ``max_weight`` and limited by the turnover cap. A zero action (what an untrained SB3
policy starts near) holds the base, so the policy starts from a classic book and must learn to
improve on it.

The bases:

* ``inverse_variance``: ``1 / vol_63d**2`` over the names in the slots, capped: the minimum
  variance book of a diagonal covariance. It needs one volatility per name, which every served
  request carries (the allocator_v1 row), so the registered allocator rebuilds it exactly.
* ``min_variance`` and ``hrp``: the classic optimisers of :mod:`training.allocation.optimisers`
  on the trailing ``lookback`` returns of the names available then (through the session before
  the decision, as the backtester gives them). A served request holds one row of features per
  ticker and no returns window, so an allocator on these bases cannot be served: the stage
  backtests and reports it and does not register it.

For the window bases the environment gets a table (decision date -> base book) computed once, in
the driver, for the rebalance grid of every panel the RL search uses (:func:`base_table`); its
episodes then start on that grid. In the walk-forward backtest the
:class:`~training.allocation.policy_strategy.PolicyStrategy` calls the same optimiser on the
history it is handed, so its base is the classic strategy's own book on that rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from training.allocation.env import WINDOW_BASES
from training.allocation.optimisers import ClassicStrategy, HierarchicalRiskParity, MinimumVariance
from training.allocation.panel import MarketPanel
from training.allocation.results import FloatArray
from training.errors import TrainingError


def base_optimiser(base: str, *, lookback: int, max_weight: float) -> ClassicStrategy:
    """The classic strategy that forms a window base (``min_variance`` or ``hrp``)."""
    if base == "min_variance":
        return MinimumVariance(lookback=lookback, max_weight=max_weight, name="overlay_base_min_variance")
    if base == "hrp":
        return HierarchicalRiskParity(lookback=lookback, max_weight=max_weight, name="overlay_base_hrp")
    raise TrainingError(f"overlay base {base!r} is not estimated on a returns window {list(WINDOW_BASES)}")


def decision_dates(panel: MarketPanel, window: int, every: int) -> list[np.datetime64]:
    """The sessions an environment on ``panel`` decides on when its episodes start on the grid.

    From the first decision session (``window - 1``) every ``every`` sessions, never the last
    session (nothing is traded there).
    """
    return [panel.dates[t] for t in range(window - 1, panel.n_sessions - 1, every)]


def base_table(
    full: MarketPanel, dates: Iterable[np.datetime64], optimiser: ClassicStrategy
) -> dict[np.datetime64, FloatArray]:
    """The optimiser's book for a decision on each of ``dates``, from the returns through the session before.

    ``full`` is the unlagged panel the segments are cut from; a decision at the close of ``t``
    sees ``full.slice(0, t)``, exactly what the walk-forward backtester hands a strategy.

    Raises:
        TrainingError: a date outside ``full``, or one without ``lookback`` sessions before it.
    """
    table: dict[np.datetime64, FloatArray] = {}
    for day in sorted(set(dates)):
        t = int(np.searchsorted(full.dates, day))
        if t >= full.n_sessions or full.dates[t] != day:
            raise TrainingError(f"the base's decision date {day} is not a session of the panel")
        table[full.dates[t]] = optimiser.target(full.slice(0, t), np.zeros(full.n_assets))
    return table
