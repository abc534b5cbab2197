"""What one strategy's backtest produced: the common input of metrics, comparison tables and the tear sheet."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
