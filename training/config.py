"""Run configuration: one YAML file per run, loaded into typed models (unknown keys refused)."""

from __future__ import annotations

import re
import warnings
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.allocation.config import AllocationRunConfig
from training.calendar import CalendarConfig
from training.corporate_actions.config import CorporateActionsConfig
from training.errors import TrainingError
from training.health import HealthThresholds
from training.ingest.bars import BracketPolicy
from training.ingest.eod_codes import ASX_CODE_PATTERN, ASX_INDEX_CODES
from training.registry.config import RegistryConfig, lift_legacy_registry
from training.sentiment.config import SentimentRunConfig
from training.signals.config import SignalRunConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WithDocuments(_Strict):
    """A source to which the user may add news and announcements files."""

    documents: list[Path] = Field(
        default_factory=list,
        description=(
            "News and announcements files (CSV, JSON or JSON Lines: ticker, published_at, title, body"
            "[, source, id]), merged with the source's own documents and de-duplicated by content; "
            "malformed records are skipped and listed."
        ),
    )


class SkfolioSource(_WithDocuments):
    """The bundled real S&P 500 sample (the demo default)."""

    kind: Literal["skfolio"] = "skfolio"
    start: date | None = Field(None, description="First session to load (inclusive).")
    end: date | None = Field(None, description="Last session to load (inclusive).")


class FilesSource(_WithDocuments):
    """CSV/Parquet files the user brings."""

    kind: Literal["files"] = "files"
    prices: list[Path] = Field(description="OHLCV files (ticker, date, open, high, low, close, volume[, adj_close]).")
    benchmark: Path | None = Field(None, description="OHLCV file of the benchmark; its ticker becomes the symbol.")
    fundamentals: list[Path] = Field(default_factory=list, description="Quarterly fundamentals files.")
    bracket_violations: BracketPolicy = Field(
        "refuse",
        description=(
            "A price bar with open/close outside [low, high] or high below low: 'refuse' the file, or 'warn' "
            "(keep the bar as delivered; the rows are named). The benchmark file always warns."
        ),
    )


class EodFilesSource(_WithDocuments):
    """Per-day end-of-day vendor files (headerless CODE,YYYYMMDD,open,high,low,close,volume), e.g. ASX."""

    kind: Literal["eod_files"] = "eod_files"
    paths: list[Path] = Field(
        min_length=1, description="Folders and .zip archives of per-day .txt/.csv files (searched recursively)."
    )
    code_pattern: str = Field(
        ASX_CODE_PATTERN,
        description=(
            "Regular expression a code must match to be kept (ASX shares: three characters); the others "
            "(options, warrants, rights) are counted and skipped."
        ),
    )
    index_codes: list[str] = Field(
        default_factory=lambda: list(ASX_INDEX_CODES),
        description="Index codes: their closes go to the benchmark table (symbol = code), not to prices.",
    )
    bracket_violations: BracketPolicy = Field(
        "warn",
        description=(
            "A share bar with open/close outside [low, high] or high below low: 'warn' (kept as delivered, "
            "counted and named; vendor files carry some) or 'refuse'. Index bars always only warn."
        ),
    )
    start: date | None = Field(None, description="First session to load (inclusive).")
    end: date | None = Field(None, description="Last session to load (inclusive).")

    @field_validator("code_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from e
        return pattern


class EodhdSource(_WithDocuments):
    """The EODHD API (key from EODHD_API_KEY)."""

    kind: Literal["eodhd"] = "eodhd"
    tickers: list[str] = Field(min_length=1, description="EODHD symbols, e.g. AAPL.US or BHP.AU.")
    benchmark: str = Field("GSPC.INDX", description="EODHD symbol of the benchmark index.")
    start: date
    end: date | None = None
    fundamentals: bool = Field(True, description="Also fetch quarterly fundamentals.")
    news: bool = Field(False, description="Also fetch news documents.")


class SyntheticSource(_Strict):
    """A generated ASX-like universe: scale tests only, flagged synthetic everywhere."""

    kind: Literal["synthetic"] = "synthetic"
    n_tickers: int = Field(2400, gt=0)
    n_months: int = Field(36, gt=0)
    seed: int = 0


DataSource = Annotated[
    SkfolioSource | FilesSource | EodFilesSource | EodhdSource | SyntheticSource, Field(discriminator="kind")
]


class FeatureConfig(_Strict):
    session_close_utc: str = Field(
        "21:00",
        pattern=r"^\d{2}:\d{2}$",
        description="Market close in UTC (HH:MM); documents after it count for the next session.",
    )


class PipelineConfig(_Strict):
    """One run of the main job."""

    name: str = "demo"
    data: DataSource = Field(default_factory=SkfolioSource)
    health: HealthThresholds = Field(default_factory=HealthThresholds)
    calendar: CalendarConfig = Field(
        default_factory=CalendarConfig,
        description="The exchange whose sessions health checks, feature windows and labels count (default: the "
        "union of the data's dates).",
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    corporate_actions: CorporateActionsConfig = Field(
        default_factory=CorporateActionsConfig,
        description="Confirmed corporate actions (a file) and the policy for detected, unconfirmed ones.",
    )
    materialize: Literal["full", "incremental"] = "incremental"
    online_tickers: list[str] = Field(default_factory=lambda: ["AAPL", "MSFT", "JPM"], min_length=1)
    sentiment: SentimentRunConfig | None = Field(
        None, description="The text model: fine-tune, validate, register, score stored documents; None skips it."
    )
    signals: SignalRunConfig | None = Field(None, description="Signal models to train; None skips training.")
    allocation: AllocationRunConfig | None = Field(
        None, description="The allocator and its baselines (needs 'signals' for segments); None skips it."
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig,
        description="The MLflow registry of every model family: tracking URI, aliases, promotion margin, guard.",
    )

    @model_validator(mode="before")
    @classmethod
    def _registry_at_top_level(cls, data: Any) -> Any:
        return lift_legacy_registry(data)

    @model_validator(mode="after")
    def _actions_file_needs_raw_prices(self) -> Self:
        # These sources deliver adjusted closes already: a file would adjust its actions a second time.
        if self.corporate_actions.file is not None and self.data.kind in ("skfolio", "eodhd"):
            raise ValueError(f"corporate_actions.file: the {self.data.kind} source's prices are adjusted already")
        return self

    @model_validator(mode="after")
    def _allocation_needs_signals(self) -> Self:
        if self.allocation is not None and self.allocation.enabled and self.signals is None:
            raise ValueError("allocation: needs the 'signals' section (universe, benchmark and segments)")
        return self


def load_config(path: Path) -> PipelineConfig:
    """Load and validate a run configuration; errors name the file and the offending key."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise TrainingError(f"cannot read run configuration {path}: {e}") from e
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FutureWarning)
            config = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise TrainingError(f"invalid run configuration {path}: {problems}") from e
    for warning in caught:  # re-issued naming the file, so a user knows which config to edit
        warnings.warn(f"run configuration {path}: {warning.message}", warning.category, stacklevel=2)
    return config
