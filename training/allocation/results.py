"""What one strategy's backtest produced: the common input of metrics, comparison tables and the tear sheet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.errors import TrainingError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """Daily net returns, weights and trading of one strategy over a backtest window.

    Attributes:
        name: the strategy's name as shown in tables and plots (``ppo``, ``min_variance``...).
        dates: the sessions of the backtest, ``datetime64[D]``, shape ``[T]``.
        returns: net daily returns after costs and slippage, shape ``[T]``. ``returns[t]`` is earned
            from the close of ``dates[t-1]`` to the close of ``dates[t]``.
        gross_returns: the same before costs, shape ``[T]``.
        weights: the weights held over each session after trading at its close (end-of-day, before
            the next session's drift), shape ``[T, N]``; tickers in ``tickers`` order.
        cash: the cash weight after trading, shape ``[T]`` (``1 - weights.sum(axis=1)``).
        turnover: one-way turnover traded at each session's close, ``sum |w_target - w_drifted|``,
            shape ``[T]`` (0 on sessions without a trade).
        costs: the cost charged at each session as a fraction of equity, shape ``[T]``.
        tickers: the asset names, length ``N``.
        rebalance_every: sessions between rebalances (1 daily, 5 weekly).
        label: where the data came from (``REAL data: ...`` or ``SYNTHETIC data: ...``).
    """

    name: str
    dates: npt.NDArray[np.datetime64]
    returns: FloatArray
    gross_returns: FloatArray
    weights: FloatArray
    cash: FloatArray
    turnover: FloatArray
    costs: FloatArray
    tickers: tuple[str, ...]
    rebalance_every: int
    label: str

    def equity(self) -> FloatArray:
        """Compounded net equity, starting from 1.0 before the first session."""
        equity: FloatArray = np.cumprod(1.0 + self.returns, dtype=np.float64)
        return equity


def check_comparable(results: Sequence[StrategyResult], what: str) -> StrategyResult:
    """The first result, once every result has a distinct name and covers the same sessions.

    Args:
        results: the strategies to compare side by side.
        what: the comparison, for the message when there is nothing to compare.
    """
    if not results:
        raise TrainingError(f"{what} needs at least one strategy result")
    first = results[0]
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise TrainingError(f"strategy names must be unique, got {names}")
    for other in results[1:]:
        if not np.array_equal(other.dates, first.dates):
            raise TrainingError(
                f"{other.name!r} covers other sessions than {first.name!r}: backtest them on one window"
            )
    return first
