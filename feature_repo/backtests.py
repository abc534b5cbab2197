"""Backtest jobs: the contract between the gateway (which queues them) and the training job (which runs them).

The gateway validates a :class:`BacktestSpec`, stores it in ``gateway_backtest_jobs`` and hands the
job id to Ray; the job (``python -m training.backtest_job run --job-id ...``, in the training
environment) reads the spec from the same row, writes its progress, result and HTML tear sheet
back, and moves the row to a final state. Neither side imports the other: they share this module,
the database and the job id. The data a backtest may cover is published by the training side in
``gateway_backtest_catalogue`` (one row), which the gateway reads to refuse a range outside it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Collection, Iterable
from datetime import date
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import JSON, Column, Date, DateTime, Float, Integer, MetaData, String, Table, Text

from feature_repo.contract import ALLOCATOR, CHAMPION

# The job's entry point in the training environment: ``python -m <JOB_MODULE> run --job-id <id>``.
JOB_MODULE: Final = "training.backtest_job"
STRATEGIES: Final[tuple[str, ...]] = ("topk", "topk_dropout", "min_variance", "hrp", "equal_weight", "allocator")
Strategy = Literal["topk", "topk_dropout", "min_variance", "hrp", "equal_weight", "allocator"]
# The ``allocator`` strategy runs this registered model at this alias (the one the allocator server serves).
ALLOCATOR_MODEL: Final = ALLOCATOR
ALLOCATOR_ALIAS: Final = CHAMPION
REFUSAL_SHOWN: Final = 10  # tickers named in an allocator refusal; the count says how many more
# What ranks names for the two top-k books: the price baselines (computed point-in-time from the
# closes by the job) or the signal models' out-of-sample scores the train stage left behind.
Signal = Literal["momentum_12_1", "short_term_reversal", "model"]
RANKED: Final = frozenset({"topk", "topk_dropout"})

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: Final[tuple[str, ...]] = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE: Final[tuple[str, ...]] = (QUEUED, RUNNING)
FINAL: Final[tuple[str, ...]] = (SUCCEEDED, FAILED, CANCELLED)
# Strategy parameters an Optuna search may vary, per strategy (the spec's value is the first trial).
SEARCHABLE: Final[dict[str, tuple[str, ...]]] = {
    "topk": ("k", "buffer", "max_replace", "min_hold", "rebalance_every"),
    "topk_dropout": ("k", "n_drop", "rebalance_every"),
    "min_variance": ("lookback", "rebalance_every"),
    "hrp": ("lookback", "rebalance_every"),
    "equal_weight": ("rebalance_every",),
    "allocator": ("rebalance_every",),
}
MAX_UNIVERSE: Final = 500
JobTicker = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,19}$", to_upper=True)]


class CostSpec(BaseModel):
    """Trading costs per side (training/evaluation/liquidity.py): brokerage + half-spread by ADV tercile + impact."""

    model_config = ConfigDict(extra="forbid")

    brokerage_bps: float = Field(
        5.0, ge=0, lt=1000, description="Brokerage per side, basis points of the traded value."
    )
    half_spread_bps: tuple[float, float, float] = Field(
        (5.0, 10.0, 20.0),
        description="Half-spread per side by ADV tercile, most liquid first, in basis points: non-decreasing, "
        "each below 1000.",
    )
    impact_coefficient: float = Field(
        0.1, ge=0, le=10, description="Y of the square-root impact Y x sigma x sqrt(traded / ADV); 0 for none."
    )
    adv_sessions: int = Field(63, ge=2, le=252, description="Sessions of the ADV and volatility windows.")
    book_aud: float = Field(
        10_000_000.0, gt=0, le=1e12, description="Book size in AUD: the scale of market impact and the ADV cap."
    )

    @model_validator(mode="after")
    def _spreads(self) -> Self:
        spreads = self.half_spread_bps
        if any(not 0 <= s < 1000 for s in spreads) or list(spreads) != sorted(spreads):
            raise ValueError(f"half_spread_bps must be non-decreasing values in [0, 1000), got {list(spreads)}")
        return self


class StrategyParams(BaseModel):
    """The strategy's parameters; each strategy reads those it needs (``SEARCHABLE`` lists them)."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(
        None,
        ge=1,
        le=MAX_UNIVERSE,
        description="topk, topk_dropout: names held, at most the universe's distinct tickers; null: min(10, half "
        "the universe), filled in when the job is accepted.",
    )
    buffer: int = Field(
        5, ge=0, le=MAX_UNIVERSE, description="topk: a held name is kept while ranked within k + buffer."
    )
    max_replace: int | None = Field(
        None, ge=0, le=MAX_UNIVERSE, description="topk: most rank exits per rebalance; null for no limit."
    )
    min_hold: int = Field(0, ge=0, le=52, description="topk: rebalances a bought name is held before a rank exit.")
    n_drop: int = Field(
        2, ge=0, le=MAX_UNIVERSE, description="topk_dropout: held names replaced at most per rebalance."
    )
    lookback: int = Field(
        126, ge=20, le=756, description="min_variance, hrp: sessions of returns behind each estimate."
    )
    max_weight: float | None = Field(
        None, gt=0, le=1, description="min_variance, hrp: the most one name may hold; null for no cap."
    )
    adv_cap: float | None = Field(
        None, gt=0, le=1, description="topk, equal_weight: largest position as a share of its ADV; null for no cap."
    )

    def held(self) -> int:
        """``k``, filled in by :class:`BacktestSpec` when the request left it out."""
        if self.k is None:
            raise ValueError("params.k is unset: validate the parameters as part of a BacktestSpec")
        return self.k


class SearchSpec(BaseModel):
    """An Optuna study over the strategy's searchable parameters, stored in the gateway database."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(10, ge=1, le=100, description="Trials in total; a resumed study runs only those still missing.")
    objective: Literal["sharpe", "annual_return"] = Field("sharpe", description="Net of costs, on the search window.")
    holdout_fraction: float = Field(
        0.3,
        ge=0.1,
        le=0.5,
        description="The last share of the sessions held out: trials are scored before it, the best "
        "parameters are then run once on it (the reported out-of-sample figures).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="The sampler's seed (TPE): the same seed, the same trials.")
    study: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")] | None = Field(
        None,
        description="Study name to create or resume (per tenant); default: the job's own id. Resuming needs the "
        "same strategy.",
    )


class BacktestSpec(BaseModel):
    """What a backtest job runs: a strategy over a universe and a date range, with costs."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field(
        description="The book: "
        + ", ".join(STRATEGIES)
        + f". `allocator` is the registered `{ALLOCATOR_MODEL}` model at its `{ALLOCATOR_ALIAS}` alias; its "
        "trained universe must cover the request's."
    )
    universe: list[JobTicker] = Field(
        min_length=2,
        max_length=MAX_UNIVERSE,
        description="Tickers of the backtest data (GET /v1/backtest-data lists them); duplicates count once.",
    )
    start: date = Field(description="First session of the backtest (inclusive), within the data.")
    end: date = Field(description="Last session (inclusive), within the data and after start.")
    rebalance_every: int = Field(5, ge=1, le=63, description="Sessions between rebalances.")
    execution_lag: int = Field(1, ge=1, le=5, description="Sessions between a signal's close and the trade's close.")
    signal: Signal = Field(
        "momentum_12_1",
        description="topk, topk_dropout: the ranking score; `model` is the signal models' out-of-sample scores.",
    )
    params: StrategyParams = Field(default_factory=StrategyParams)
    costs: CostSpec = Field(default_factory=CostSpec)
    search: SearchSpec | None = Field(None, description="Tune the strategy's parameters with Optuna first.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        names = len(set(self.universe))
        if self.params.k is None:
            self.params = self.params.model_copy(update={"k": max(1, min(10, names // 2))})
        if self.strategy in RANKED and self.params.held() > names:
            raise ValueError(f"params.k={self.params.k} exceeds the universe's {names} distinct tickers")
        if self.strategy == "topk_dropout" and self.params.n_drop > self.params.held():
            raise ValueError(f"params.n_drop={self.params.n_drop} exceeds params.k={self.params.k}")
        return self


backtest_metadata = MetaData()

# One row per job. The gateway writes spec/state/created_at and the Ray reference; the job writes
# progress, result and report, and a final state only while the row is still running (a cancel wins).
backtest_jobs = Table(
    "gateway_backtest_jobs",
    backtest_metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(100), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("spec", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("executor_ref", String(200), nullable=True),
    Column("result", JSON, nullable=True),
    # The HTML tear sheet as :func:`encode_report` stores it (gzip, base64 text); rows from before
    # hold the HTML itself, which :func:`decode_report` returns as is.
    Column("report", Text, nullable=True),
)

# One row per tenant that ever submitted: the gateway's admission writes it first in the transaction
# that counts the tenant's active jobs and inserts the new one, so that write's row lock (PostgreSQL)
# or write lock (SQLite) makes concurrent admissions of a tenant, on any replica, one at a time.
backtest_admissions = Table(
    "gateway_backtest_admissions",
    backtest_metadata,
    Column("tenant", String(100), primary_key=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The data a backtest may cover (row id 1), published by ``python -m training.backtest_job catalogue``.
backtest_catalogue = Table(
    "gateway_backtest_catalogue",
    backtest_metadata,
    Column("id", Integer, primary_key=True),
    Column("first_session", Date, nullable=False),
    Column("last_session", Date, nullable=False),
    Column("tickers", JSON, nullable=False),
    Column("label", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def allocator_refusal(version: str, width: int | None, trained: Collection[str], universe: Iterable[str]) -> str | None:
    """Why the allocator champion ``version`` cannot run ``universe``, or None when it can.

    A policy of fixed ``width`` takes any tickers, at most ``width`` of them; one without a width
    allocates only the universe it was ``trained`` on. The gateway refuses with this text at submit
    when it can ask the registry; the job refuses with it when it runs, so both say the same.
    """
    names = sorted(set(universe))
    if width is not None:
        if len(names) <= width:
            return None
        return (
            f"the {ALLOCATOR_MODEL} champion v{version} allocates at most {width} names "
            f"(its policy's width); the universe has {len(names)}"
        )
    known = frozenset(trained)
    outside = [t for t in names if t not in known]
    if not outside:
        return None
    more = f" (+{len(outside) - REFUSAL_SHOWN} more)" if len(outside) > REFUSAL_SHOWN else ""
    return (
        f"the {ALLOCATOR_MODEL} champion v{version} was trained on {len(trained)} tickers "
        f"that do not cover the universe: {', '.join(outside[:REFUSAL_SHOWN])}{more} are outside it"
    )


def study_name(tenant: str, job_id: str, search: SearchSpec) -> str:
    """The Optuna study of a job: per tenant, so one tenant never resumes another's."""
    return f"backtest:{tenant}:{search.study or job_id}"


# A stored report that starts with this is gzip-compressed HTML in base64; anything else is the HTML itself.
REPORT_GZIP_PREFIX: Final = "gzip+base64:"


def encode_report(html: str) -> str:
    """The tear sheet as the job stores it: gzip (no timestamp, so the same HTML stores the same) in base64.

    Most of a tear sheet is the embedded plotting library and the figures' JSON, which compress several
    times over; base64 keeps the column text, so the table and older rows stay as they are.
    """
    packed = gzip.compress(html.encode("utf-8"), compresslevel=6, mtime=0)
    return REPORT_GZIP_PREFIX + base64.b64encode(packed).decode("ascii")


def report_gzip(stored: str) -> bytes | None:
    """The gzip bytes of a compressed stored report; None for a row that holds plain HTML.

    Raises:
        ValueError: the row says it is compressed but its base64 is damaged.
    """
    if not stored.startswith(REPORT_GZIP_PREFIX):
        return None
    try:
        return base64.b64decode(stored[len(REPORT_GZIP_PREFIX) :], validate=True)
    except binascii.Error as e:
        raise ValueError(f"stored report is not valid base64: {e}") from e


def decode_report(stored: str) -> str:
    """The tear sheet's HTML from a stored report, compressed (:func:`encode_report`) or not (older rows).

    Raises:
        ValueError: a compressed report that does not decompress to UTF-8.
    """
    packed = report_gzip(stored)
    if packed is None:
        return stored
    try:
        return gzip.decompress(packed).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"stored report does not decompress: {e}") from e
