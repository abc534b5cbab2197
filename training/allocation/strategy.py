"""The interface every allocation strategy offers the backtester (classic optimisers, top-k, the RL policy)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from training.allocation.panel import MarketPanel

FloatArray = npt.NDArray[np.float64]


class Strategy(Protocol):
    """A rule that turns the past into target weights.

    The backtester calls :meth:`fit` at the start of each re-training window with the history up to
    (and including) that session, then :meth:`target` at every rebalance with the history up to the
    rebalance session's close. Neither may look at anything after the last session it is given.
    """

    name: str

    def fit(self, history: MarketPanel) -> None:
        """Learn whatever the strategy learns (a no-op for rules without parameters)."""
        ...

    def target(self, history: MarketPanel, current: FloatArray) -> FloatArray:
        """Target asset weights ``[N]`` (long-only, sum <= 1; the rest is cash) at ``history``'s last close.

        Args:
            history: every session up to and including the decision session.
            current: the asset weights held now, after the session's drift.
        """
        ...
