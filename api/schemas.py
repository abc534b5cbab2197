"""Request and response bodies, named by role (``...Request`` in, ``...Public`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.tickers import TICKER_PATTERN
from feature_repo.contract import MAX_TEXT_CHARS, MAX_TEXTS

# Exactly the declared pattern: no whitespace stripped, so what the schema refuses the handler refuses.
Ticker = Annotated[str, StringConstraints(pattern=TICKER_PATTERN, to_upper=True)]
# A key of ``current_weights`` as sent: keys differing only in letter case are merged by the route
# (pydantic would otherwise keep only the last of them, silently).
BookTicker = Annotated[str, StringConstraints(pattern=TICKER_PATTERN)]
# Python's whitespace (``str.isspace``) spelled out, so ECMA, Rust and Python regexes read it alike:
# a text is refused by the sentiment model when ``text.strip()`` is empty.
_SPACE: Final = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK: Final = f"[^{_SPACE}]"


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


# feature_repo.data_quality.DATA_QUALITY_STATUSES spelled as a type (a test keeps them equal).
DataQualityStatus = Literal["ok", "anomaly", "unchecked"]


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
    data_quality: DataQualityStatus = Field(
        "unchecked",
        description="The data-quality sentinel on the session of as_of: `anomaly` (the ticker's statistics were "
        "flagged that session; GET /v1/briefing names why), `ok` (scored, not flagged) or `unchecked` (the "
        "sentinel has not scored that session).",
    )


class SignalsPublic(BaseModel):
    signals: list[SignalPublic]
    model_versions: dict[str, str]
    as_of: datetime | None
    degraded: bool
    reasons: list[DegradedReason]
    request_id: str


class AllocationConstraints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_weight: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Largest weight of one asset, a hard limit: the allocator model's weights are capped at it "
        "(the excess is held in cash) and the fallbacks respect it.",
    )
    long_only: bool = Field(True, description="The allocator model and the fallbacks are always long-only.")


# Tolerance on "the book sums to at most 1": float sums of weights a client computed.
BOOK_TOLERANCE: Final = 1e-9
Weight = Annotated[float, Field(ge=0.0, le=1.0)]


class AllocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    universe: list[Ticker] = Field(
        min_length=1,
        description="Tickers to allocate across, at most max_tickers (declared as maxItems). A ticker named "
        "more than once (in any letter case) is allocated once, with a `duplicate_tickers` note in `reasons`.",
    )
    capital: float = Field(gt=0.0, le=1e13, description="Amount to allocate, in the account currency.")
    constraints: AllocationConstraints = Field(default_factory=AllocationConstraints)
    risk_tolerance: Literal["low", "medium", "high"] = Field(
        "medium", description="Fallback mapping: low = inverse variance, medium = inverse volatility, high = equal."
    )
    current_weights: dict[BookTicker, Weight] = Field(
        default_factory=dict,
        description="The book held now, ticker -> weight in [0, 1] (the rest is cash). Empty = all cash. The "
        "allocator model takes it into account (turnover); the fallbacks ignore it. A held ticker outside the "
        "universe is taken as sold (note `book_outside_universe`); a book summing above 1 is scaled to sum to 1 "
        "(note `book_scaled`); keys differing only in letter case are added up.",
        # pydantic declares the key pattern as patternProperties, which alone lets any other key through.
        json_schema_extra={"additionalProperties": False},
    )


class WeightPublic(BaseModel):
    ticker: str
    weight: float
    amount: float
    volatility: float | None = Field(description="Annualised vol_63d read online (None when missing).")


class AllocationPublic(BaseModel):
    allocations: list[WeightPublic]
    cash: float = Field(
        description="Capital left unallocated: the allocator model's cash weight plus any excess over max_weight "
        "(with a fallback, non-zero only when caps bind)."
    )
    expected_volatility: float | None = Field(description="Annualised portfolio volatility under the assumption.")
    volatility_assumption: str
    method: str = Field(
        description="`allocator` (the registered allocator model answered) or the named fallback used: "
        "inverse_volatility, inverse_variance or equal_weight."
    )
    model_versions: dict[str, str] = Field(
        description="Model -> the version that produced the weights ({'allocator': '<version>'}); empty for a fallback."
    )
    as_of: datetime | None
    degraded: bool = Field(description="True when a fallback answered instead of the allocator model.")
    reasons: list[DegradedReason] = Field(
        description="Why a fallback answered (code not_deployed, outside_universe, timeout, connection_error, "
        "circuit_open, http_<status>, bad_response) and notes (max_weight_cap, long_only, fallback_note)."
    )
    request_id: str


class ContributionPublic(BaseModel):
    feature: str
    value: float | None = Field(description="The feature's online value.")
    contribution: float = Field(description="SHAP contribution in the explanation's units (log-odds or score).")


class ExplanationPublic(BaseModel):
    ticker: str
    score: float = Field(
        description="The technical model's score: a probability for a binary model (units log-odds), the "
        "predicted centred cross-sectional rank (-0.5..0.5, 0 = the peers' median) otherwise (units score)."
    )
    units: Literal["log-odds", "score"] = Field(description="Units of raw_score, bias and every contribution.")
    raw_score: float = Field(description="bias plus every contribution: log-odds, or the score itself.")
    log_odds: float | None = Field(description="Deprecated: raw_score when units is log-odds, else null.")
    bias: float
    contributions: list[ContributionPublic]
    narrative: str
    model_version: str
    as_of: datetime | None
    request_id: str


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=NOT_BLANK)]] = Field(
        min_length=1,
        max_length=MAX_TEXTS,
        description=f"1 to {MAX_TEXTS} texts of 1 to {MAX_TEXT_CHARS:,} characters, "
        "each with a non-whitespace character.",
    )


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
