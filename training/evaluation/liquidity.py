"""Point-in-time liquidity (ADV, daily volatility, ADV terciles) and the cost of each trade.

**ADV.** A name's average daily traded value at session t is the mean of ``raw close x volume``
over the ``sessions`` sessions ending at t (inclusive: t's close is known when a signal dated t is
formed, and the trade happens at a later close). A session without a bar counts 0, as in the
universe rule (:mod:`training.universe`): the name did not trade. Nothing after t is read.

**Daily volatility** (``sigma``) at t is the standard deviation (ddof=1) of the name's daily returns
of adjusted closes over the same window, with at least half the window's returns present.

**Cost of a trade.** A trade of AUD value Q in a name with ADV ``V`` and volatility ``sigma`` costs,
as a fraction of Q::

    brokerage + half_spread[tercile] + impact_coefficient * sigma * sqrt(Q / V)

* ``tercile`` splits the names eligible on the signal date (the universe's members with a score
  and a bar) by ADV: 0 most liquid, 2 least liquid. A name below the lower cut, or without an ADV
  (a delisted name sold at its last close), pays the least liquid tercile's spread.
* The last term is the square-root law of market impact (Almgren et al. 2005, Toth et al. 2011):
  impact grows with the square root of the participation ``Q / V``. A name without a positive ADV
  or a volatility is charged as if it traded a whole day's volume (participation 1) at the median
  volatility of the date, so the model never makes an illiquid exit free. A rate is capped at 1
  (a trade costs at most its value), which only a book far past its capacity reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.errors import TrainingError
from training.evaluation.config import CostConfig, LiquidityCostConfig

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BPS = 10_000.0


@dataclass(frozen=True)
class TradeCosts:
    """Cost rates per side, as fractions of the traded value (10 bps = 0.001).

    Attributes:
        brokerage: charged on every trade.
        half_spread: by ADV tercile, most liquid first; non-decreasing.
        impact_coefficient: Y of the square-root impact ``Y * sigma * sqrt(Q / ADV)``.
    """

    brokerage: float
    half_spread: tuple[float, float, float] = (0.0, 0.0, 0.0)
    impact_coefficient: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.brokerage, *self.half_spread)
        if any(not 0.0 <= r < 0.1 for r in rates):
            raise TrainingError(f"cost rates must be fractions in [0, 0.1) (10 bps = 0.001), got {rates}")
        if list(self.half_spread) != sorted(self.half_spread):
            raise TrainingError(f"half_spread must widen as liquidity falls, got {self.half_spread}")
        if not 0.0 <= self.impact_coefficient <= 10.0:
            raise TrainingError(f"impact_coefficient must be in [0, 10], got {self.impact_coefficient}")

    @classmethod
    def flat(cls, per_side: float) -> TradeCosts:
        """One rate for every name and size: the plain ``bps_per_side + slippage_bps`` model."""
        return cls(brokerage=per_side)

    @classmethod
    def from_config(cls, config: LiquidityCostConfig) -> TradeCosts:
        """The run config's ``signals.costs.liquidity`` block, basis points turned into fractions."""
        spreads = tuple(v / BPS for v in config.half_spread_bps)
        return cls(config.brokerage_bps / BPS, (spreads[0], spreads[1], spreads[2]), config.impact_coefficient)

    @classmethod
    def from_costs(cls, config: CostConfig) -> TradeCosts:
        """The run config's ``signals.costs``: by liquidity with its ``liquidity`` block, else flat.

        The one cost model of a signal run: the plain top-k table and the portfolio section both
        charge these rates, so their figures compare.
        """
        return cls.flat(config.per_side_fraction) if config.liquidity is None else cls.from_config(config.liquidity)

    @property
    def needs_liquidity(self) -> bool:
        """Whether the rates differ by name (spreads by tercile, or impact), so ADV is required."""
        return self.impact_coefficient > 0 or self.half_spread[2] > self.half_spread[0]

    def rates(self, traded_aud: FloatArray, adv: FloatArray, sigma: FloatArray, tercile: IntArray) -> FloatArray:
        """Cost per side of each trade as a fraction of its value (module docstring: the formula)."""
        spread = np.asarray(self.half_spread, dtype=np.float64)[tercile]
        if self.impact_coefficient == 0.0:
            return self.brokerage + spread
        known = np.isfinite(adv) & (adv > 0)
        participation = np.where(known, traded_aud / np.where(known, adv, 1.0), 1.0)
        finite_sigma = sigma[np.isfinite(sigma)]
        fallback = float(np.median(finite_sigma)) if finite_sigma.size else 0.02
        vol = np.where(np.isfinite(sigma), sigma, fallback)
        impact = self.impact_coefficient * vol * np.sqrt(participation)
        # A trade cannot cost more than its own value: past that the model is outside its range.
        return np.minimum(self.brokerage + spread + impact, 1.0)


@dataclass(frozen=True, eq=False)
class Liquidity:
    """ADV (AUD per session) and daily volatility on the close grid (sessions x tickers)."""

    adv: FloatArray
    sigma: FloatArray


def traded_value_panel(prices: pd.DataFrame) -> pd.DataFrame:
    """Wide raw ``close x volume`` (sessions x tickers) from long price rows; NaN without a bar.

    Raises:
        TrainingError: the prices lack ``date``, ``ticker``, ``close`` or ``volume``, or hold no volume.
    """
    missing = [c for c in ("date", "ticker", "close", "volume") if c not in prices.columns]
    if missing:
        raise TrainingError(f"ADV needs price column(s) {missing}; the prices have {list(prices.columns)}")
    volume = prices["volume"].astype("float64")
    if len(volume) and volume.isna().all():
        raise TrainingError(
            "ADV needs volume and the prices hold none: drop signals.costs.liquidity and "
            "signals.evaluation.book.adv_cap, or use data with volume"
        )
    value = prices["close"].astype("float64") * volume
    frame = pd.DataFrame({"date": pd.DatetimeIndex(prices["date"]), "ticker": prices["ticker"], "v": value})
    wide = frame.pivot_table(index="date", columns="ticker", values="v", aggfunc="last").sort_index()
    wide.index = pd.DatetimeIndex(wide.index)
    return wide


def liquidity_panels(close: pd.DataFrame, traded_value: pd.DataFrame, *, sessions: int) -> Liquidity:
    """Point-in-time ADV and volatility on ``close``'s grid (module docstring: definitions).

    Args:
        close: wide adjusted closes, the grid every backtest runs on.
        traded_value: wide raw close x volume; reindexed to ``close`` (absent = did not trade).
        sessions: window length in sessions (>= 2).

    Raises:
        TrainingError: a window shorter than two sessions.
    """
    if sessions < 2:
        raise TrainingError(f"the ADV window must hold at least 2 sessions, got {sessions}")
    value = traded_value.reindex(index=close.index, columns=close.columns).fillna(0.0)
    adv = value.rolling(sessions, min_periods=1).mean().to_numpy(np.float64)
    returns = close.pct_change(fill_method=None)
    sigma = returns.rolling(sessions, min_periods=max(sessions // 2, 2)).std(ddof=1).to_numpy(np.float64)
    return Liquidity(adv=adv, sigma=sigma)


def adv_terciles(adv: FloatArray, eligible: npt.NDArray[np.bool_]) -> IntArray:
    """Tercile of each name on one date: 0 most liquid ... 2 least (and no ADV), cut on the eligible.

    The cuts are the 1/3 and 2/3 quantiles of the eligible names' ADV, so a third of the universe
    falls in each; names outside it are placed by the same cuts.
    """
    pool = adv[eligible & np.isfinite(adv)]
    out = np.full(adv.shape, 2, dtype=np.int64)
    if pool.size == 0:
        return out
    low, high = np.quantile(pool, [1.0 / 3.0, 2.0 / 3.0])
    finite = np.isfinite(adv)
    out[finite & (adv >= low)] = 1
    out[finite & (adv >= high)] = 0
    return out


def describe_costs(config: CostConfig, book_aud: float) -> str:
    """The cost model of :meth:`TradeCosts.from_costs` in words, for the head of every table it prices."""
    if config.liquidity is None:
        return f"flat {config.bps_per_side + config.slippage_bps:g} bps per side on every name (no liquidity model)"
    c = config.liquidity
    spreads = "/".join(f"{v:g}" for v in c.half_spread_bps)
    return (
        f"by liquidity: brokerage {c.brokerage_bps:g} bps + half-spread {spreads} bps by ADV tercile of the "
        f"members (liquid/middle/illiquid) + impact {c.impact_coefficient:g} x sigma_daily x sqrt(AUD traded / ADV), "
        f"ADV over {c.adv_sessions} sessions, book AUD {book_aud:,.0f}; per side"
    )
