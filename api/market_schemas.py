"""Bodies of the market analytics routes: ``GET /v1/regime`` and ``POST /v1/portfolios/forecast``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import AllocationConstraints, BookTicker, DegradedReason, Ticker, Weight
from feature_repo.contract import RETURN_WINDOW_SESSIONS

RegimeLabel = Literal["bull", "bear", "sideways", "unknown"]
# Weights a client computed and rounded: 50 names rounded to 5 decimals stay well inside.
WEIGHT_SUM_TOLERANCE: Final = 1e-3
DEFAULT_HORIZONS: Final = (21, 63, 252)
MAX_PATHS: Final = 5000


class RegimeInputsPublic(BaseModel):
    trend: float | None = Field(description="Compound benchmark return over the trend window (None before it fills).")
    trend_window: int = Field(description="Sessions of the trend window.")
    volatility: float | None = Field(
        description="Annualised volatility: std (ddof=1) of daily benchmark returns over the vol window x sqrt(252)."
    )
    volatility_median: float | None = Field(
        description="Annualised expanding median of that volatility up to the session: the high/low line."
    )
    vol_window: int = Field(description="Sessions of the volatility window.")


class RegimeStatePublic(BaseModel):
    date: dt.date = Field(description="The session (its close).")
    regime: RegimeLabel = Field(description="bull = trend up and volatility low; bear = down and high; else sideways.")
    trend: Literal["up", "down", "flat", "unknown"]
    volatility: Literal["low", "high", "unknown"]
    inputs: RegimeInputsPublic


class RegimePublic(BaseModel):
    benchmark: str = Field(description="Symbol of the benchmark the regime is read from.")
    as_of: dt.date = Field(description="The last session in the data: the date of `current`.")
    current: RegimeStatePublic
    history_from: dt.date = Field(description="First session of `history` (the first session >= `from`).")
    history_to: dt.date = Field(description="Last session of `history` (the last session <= `to`).")
    history: list[RegimeStatePublic] = Field(description="One state per session from `history_from` to `history_to`.")
    first_session: dt.date = Field(description="The first session with a benchmark return: the earliest `from`.")
    definition: str = Field(description="The classifier's rule, in words.")
    request_id: str


def _no_default(schema: dict[str, Any]) -> None:
    """An optional field whose absence selects the other alternative: no ``default: null`` to send."""
    schema.pop("default", None)


def _weights_schema(schema: dict[str, Any]) -> None:
    _no_default(schema)
    schema["additionalProperties"] = False


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # Exactly one of the two: the portfolio to forecast is given, or the allocator's answer for a universe.
        json_schema_extra={"oneOf": [{"required": ["weights"]}, {"required": ["universe"]}]},
    )

    weights: dict[BookTicker, Weight] = Field(
        default=None,  # type: ignore[arg-type]  # absent means "use universe"; null is refused
        min_length=1,
        description="Ticker -> weight in [0, 1], summing to 1 within 0.001 (a 422 names the sum). At most "
        "max_tickers names (maxProperties); keys differing only in letter case are added up.",
        # pydantic declares the key pattern as patternProperties, which alone lets any other key through.
        json_schema_extra=_weights_schema,
    )
    universe: list[Ticker] = Field(
        default=None,  # type: ignore[arg-type]
        min_length=1,
        description="Forecast the allocator's answer for these tickers (as POST /v1/allocations gives it, the "
        "fallback's when the allocator model cannot answer; cash earns 0).",
        json_schema_extra=_no_default,
    )
    constraints: AllocationConstraints = Field(
        default_factory=AllocationConstraints, description="For `universe`: the allocator's constraints."
    )
    risk_tolerance: Literal["low", "medium", "high"] = Field(
        "medium", description="For `universe`: the fallback mapping, as in POST /v1/allocations."
    )
    horizons: list[Annotated[int, Field(ge=2, le=RETURN_WINDOW_SESSIONS)]] = Field(
        default_factory=lambda: list(DEFAULT_HORIZONS),
        min_length=1,
        max_length=6,
        description="Horizons in sessions (21, 63, 252 by default), each at most the portfolio's return history "
        "(a 422 names that bound); answered in increasing order, once each.",
    )
    n_paths: int = Field(1000, ge=100, le=MAX_PATHS, description="Simulated paths.")
    block: int = Field(21, ge=1, le=252, description="Mean block length of the stationary bootstrap, in sessions.")
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the generator: the same request gives the same answer."
    )
    loss_threshold: float = Field(
        0.1, gt=0.0, lt=1.0, description="`loss_probability` is P(cumulative return < -loss_threshold)."
    )

    @model_validator(mode="after")
    def _one_portfolio(self) -> Self:
        if (self.weights is None) == (self.universe is None):
            raise ValueError("give exactly one of weights and universe")
        return self


class BandsPublic(BaseModel):
    """Percentiles across the simulated paths (pointwise: each is a different path's)."""

    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


class HorizonForecastPublic(BaseModel):
    horizon: int = Field(description="Sessions ahead.")
    cumulative_return: BandsPublic = Field(description="Compounded return over the horizon.")
    max_drawdown: BandsPublic = Field(description="Worst fall from a running peak within the horizon (<= 0).")
    volatility: BandsPublic = Field(description="Annualised volatility of the path's daily returns.")
    loss_probability: float = Field(description="Share of paths with a cumulative return below -loss_threshold.")


class HistoryPublic(BaseModel):
    first: dt.date = Field(description="First session of the returns resampled.")
    last: dt.date = Field(description="Last session of the returns resampled (nothing after it is used).")
    sessions: int = Field(description="Sessions resampled: the bound on a horizon.")


class PortfolioWeightPublic(BaseModel):
    ticker: str
    weight: float


class ForecastPublic(BaseModel):
    weights: list[PortfolioWeightPublic] = Field(description="The portfolio forecast (given, or the allocator's).")
    cash: float = Field(description="Weight in cash (earning 0): the allocator's cash; 0 for given weights.")
    method: str = Field(description="`weights` (given), `allocator`, or the allocation fallback that answered.")
    model_versions: dict[str, str]
    degraded: bool = Field(description="True when an allocation fallback answered instead of the allocator model.")
    reasons: list[DegradedReason]
    horizons: list[HorizonForecastPublic]
    loss_threshold: float
    n_paths: int
    block: int
    seed: int
    history: HistoryPublic
    assumptions: str = Field(description="What the simulation assumes, in words.")
    as_of: dt.datetime | None = Field(description="Event time of the return rows read.")
    request_id: str
