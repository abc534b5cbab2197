"""Request and response bodies, named by role (``...Request`` in, ``...Public`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Ticker = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,14}$", to_upper=True, strip_whitespace=True)
]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. unknown_tickers, rate_limited.")
    message: str = Field(description="What went wrong, for a human.")
    request_id: str = Field(description="Echoed in the X-Request-ID header and the gateway's logs.")


class ErrorPublic(BaseModel):
    """The body of every non-2xx answer."""

    error: ErrorDetail


class DegradedReason(BaseModel):
    model: str = Field(description="The model (or component) concerned.")
    code: str = Field(description="not_deployed, timeout, connection_error, circuit_open, http_<status>, ...")
    message: str


class ComponentScores(BaseModel):
    technical: float | None = None
    fundamental: float | None = None
    sentiment_signal: float | None = None


class SignalPublic(BaseModel):
    ticker: str
    score: float | None = Field(description="Ensemble P(21-session excess return > 0).")
    coverage: float | None = Field(description="Share of ensemble weight present.")
    rank: int | None = Field(description="Rank within this request by score, 1 = best.")
    components: ComponentScores
    as_of: datetime | None = Field(description="Newest event time of the ticker's features.")


class SignalsPublic(BaseModel):
    signals: list[SignalPublic]
    model_versions: dict[str, str]
    as_of: datetime | None
    degraded: bool
    reasons: list[DegradedReason]
    request_id: str


class AllocationConstraints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_weight: float = Field(1.0, gt=0.0, le=1.0, description="Largest weight of one asset.")
    long_only: bool = Field(True, description="The fallback allocators are always long-only.")


class AllocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    universe: list[Ticker] = Field(min_length=1, description="Tickers to allocate across (no duplicates).")
    capital: float = Field(gt=0.0, le=1e13, description="Amount to allocate, in the account currency.")
    constraints: AllocationConstraints = Field(default_factory=AllocationConstraints)
    risk_tolerance: Literal["low", "medium", "high"] = Field(
        "medium", description="Fallback mapping: low = inverse variance, medium = inverse volatility, high = equal."
    )

    @field_validator("universe")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("universe has duplicate tickers")
        return value


class WeightPublic(BaseModel):
    ticker: str
    weight: float
    amount: float
    volatility: float | None = Field(description="Annualised vol_63d read online (None when missing).")


class AllocationPublic(BaseModel):
    allocations: list[WeightPublic]
    cash: float = Field(description="Capital left unallocated (non-zero only when caps bind).")
    expected_volatility: float | None = Field(description="Annualised portfolio volatility under the assumption.")
    volatility_assumption: str
    method: str = Field(description="The allocator model, or the named fallback used.")
    model_versions: dict[str, str]
    as_of: datetime | None
    degraded: bool
    reasons: list[DegradedReason]
    request_id: str


class ContributionPublic(BaseModel):
    feature: str
    value: float | None = Field(description="The feature's online value.")
    contribution: float = Field(description="SHAP contribution in log-odds.")


class ExplanationPublic(BaseModel):
    ticker: str
    score: float = Field(description="The technical model's probability, from the contributions.")
    log_odds: float
    bias: float
    contributions: list[ContributionPublic]
    narrative: str
    model_version: str
    as_of: datetime | None
    request_id: str


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] = Field(min_length=1, max_length=64)


class SentimentScores(BaseModel):
    negative: float
    neutral: float
    positive: float
    label: Literal["negative", "neutral", "positive"]


class SentimentPublic(BaseModel):
    results: list[SentimentScores]
    model_version: str
    request_id: str


class RegistryVersion(BaseModel):
    version: str
    run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class RegistryPublic(BaseModel):
    champion: RegistryVersion | None = None
    challenger: RegistryVersion | None = None
    error: str | None = None


class ModelPublic(BaseModel):
    name: str
    deployed: bool = Field(description="Configured in MODEL_URLS.")
    ready: bool | None = Field(description="From GET /v2/models/<name>/ready; None when not deployed.")
    serving_version: str | None = Field(description="From v2 metadata, else the last version seen in an answer.")
    circuit_state: Literal["closed", "half_open", "open"] | None
    registry: RegistryPublic | None = Field(description="MLflow aliases, when MLFLOW_URL is set.")


class ModelsPublic(BaseModel):
    models: list[ModelPublic]
    request_id: str


class HealthPublic(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
