"""The evaluation settings of a signal run: trading costs, the top-k book and how models are compared.

Read from the ``signals:`` section (``costs`` and ``evaluation``) and used by every backtest of
:mod:`training.evaluation`, whatever produced the scores.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiquidityCostConfig(_Strict):
    """Costs by liquidity: brokerage, a half-spread by ADV tercile and square-root market impact.

    Per side, a trade of value Q in a name with average daily traded value ADV and daily volatility
    sigma costs ``brokerage + half_spread[tercile] + impact_coefficient * sigma * sqrt(Q / ADV)``
    (a fraction of Q); terciles split the universe's members by ADV on the signal date, and a name
    less liquid than every member's tercile cut pays the least liquid tercile's spread.
    """

    brokerage_bps: float = Field(8.0, ge=0, lt=1000, description="Brokerage per side, every trade.")
    half_spread_bps: tuple[float, float, float] = Field(
        (5.0, 12.0, 30.0), description="Half-spread per side by ADV tercile: most liquid, middle, least liquid."
    )
    impact_coefficient: float = Field(
        1.0, ge=0, le=10, description="Y of the square-root impact Y * sigma_daily * sqrt(Q / ADV); 0 = none."
    )
    adv_sessions: int = Field(
        60, ge=5, le=504, description="Sessions of close x volume (and of returns for sigma) behind ADV."
    )

    @field_validator("half_spread_bps")
    @classmethod
    def _spreads_widen(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v < 0 or v >= 1000 for v in value) or list(value) != sorted(value):
            raise ValueError(f"half_spread_bps must be in [0, 1000) and widen as liquidity falls, got {list(value)}")
        return value


class CostConfig(_Strict):
    """Trading costs of every book of a signal run: flat basis points, or costs by liquidity.

    One model prices every table (the plain top-k table and the portfolio section): with a
    ``liquidity`` block, costs by liquidity; without one, the flat ``bps_per_side + slippage_bps``.
    The flat fields are refused beside a ``liquidity`` block, where nothing would charge them.
    """

    bps_per_side: float = Field(10.0, ge=0, description="Flat costs: commission and spread per side traded.")
    slippage_bps: float = Field(0.0, ge=0, description="Flat costs: extra market impact per side traded.")
    liquidity: LiquidityCostConfig | None = Field(
        None, description="Costs by liquidity bucket (needs volume); None: the flat bps above on every name."
    )

    @model_validator(mode="after")
    def _one_cost_model(self) -> CostConfig:
        flat = {"bps_per_side", "slippage_bps"} & self.model_fields_set
        if self.liquidity is not None and flat:
            raise ValueError(
                f"{' and '.join(sorted(flat))} price flat costs only; with costs.liquidity every book pays "
                "brokerage + half-spread + impact, so they would be ignored: drop them"
            )
        return self

    @property
    def per_side_fraction(self) -> float:
        """The total cost of trading one unit of value once, as a fraction (10 bps -> 0.001)."""
        return (self.bps_per_side + self.slippage_bps) / 10_000


class BookConfig(_Strict):
    """How the top-k long-only book trades: buffer, replacements, holding period, ADV cap, book size."""

    buffer: int = Field(0, ge=0, description="A held name stays while its rank is within top_k + buffer.")
    max_replace: int | None = Field(
        None, ge=0, description="Most names sold for rank per rebalance (forced exits aside); None: no limit."
    )
    min_hold: int = Field(0, ge=0, description="Rebalances a bought name is kept (unless it leaves the universe).")
    adv_cap: float | None = Field(
        None, gt=0, le=10, description="Largest position as a share of its ADV (book_aud sets the scale); None: no cap."
    )
    book_aud: float = Field(10_000_000.0, gt=0, description="Book size in AUD for the ADV cap and market impact.")


class EvaluationConfig(_Strict):
    """How models and baselines are compared on the test segment."""

    top_k: int = Field(5, ge=1, description="Names held by the top-k long-only book.")
    rebalance_every: int = Field(21, ge=1, description="Sessions between rebalances of the top-k book.")
    execution_lag: int = Field(1, ge=1, description="Sessions from a signal (at a close) to its trade.")
    ensemble_ic_window: int = Field(
        252, ge=5, description="Known dates of trailing rank IC behind the ensemble's weights."
    )
    book: BookConfig = Field(default_factory=BookConfig, description="Turnover-aware top-k rules.")
