"""Bodies of the backtest routes: the request is the ground floor's spec, the answers are the job's state."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.engine import Row

from feature_repo.backtests import BacktestSpec, JobState, StrategyParams


class BacktestRequest(BacktestSpec):
    """A backtest job: a strategy over a universe and a date range within the published data, with costs."""


class EquityPoint(BaseModel):
    date: date
    equity: float = Field(description="Net equity, 1.0 before the first session.")


class SearchPublic(BaseModel):
    study: str = Field(description="The Optuna study (stored in the gateway database; name it again to resume).")
    trials: int = Field(description="Finished trials in the study (resumed ones included).")
    pruned: int = Field(description="Trials whose parameters could not trade (their reason is in the study).")
    resumed_from: int = Field(description="Trials the study already held when this job started.")
    best_params: dict[str, int | float] = Field(description="The best trial's parameters.")
    best_in_sample: float | None = Field(description="Its objective on the search window (in-sample).")
    holdout_start: date = Field(description="First held-out session: the reported figures start here.")


class BacktestResultPublic(BaseModel):
    strategy: str
    label: str = Field(description="Where the data came from: REAL data: ... or SYNTHETIC data: ...")
    cost_model: str = Field(
        "", description="How trades were charged (flat when the prices hold no volume, else by liquidity)."
    )
    model: str | None = Field(
        None, description="Strategy allocator: the registered model version the job ran (name, version, alias)."
    )
    params: StrategyParams = Field(description="The parameters run (the search's best when searched).")
    rebalance_every: int
    first_session: date
    last_session: date
    sessions: int
    metrics: dict[str, float | None] = Field(
        description="Net of costs: ann_return, ann_vol, sharpe, max_drawdown, turnover, costs (None: undefined)."
    )
    equal_weight_metrics: dict[str, float | None] = Field(
        description="The equal-weight book under the same schedule and costs, on the same sessions."
    )
    deflated_sharpe: float | None = Field(description="Deflated Sharpe ratio counting every configuration tried.")
    equity: list[EquityPoint] = Field(description="Net equity, thinned to about 260 points.")
    search: SearchPublic | None = None


class BacktestJobPublic(BaseModel):
    id: str = Field(description="The job id (32 hex characters).")
    state: JobState = Field(description="queued -> running -> succeeded | failed | cancelled.")
    progress: float = Field(ge=0, le=1, description="Share of the work done.")
    message: str | None = Field(description="What the job is doing now (or why it waits).")
    error: str | None = Field(description="Why it failed or was cancelled.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    spec: BacktestSpec
    result: BacktestResultPublic | None = Field(description="Once succeeded.")
    report_url: str | None = Field(description="The HTML tear sheet, once succeeded.")
    request_id: str


class BacktestDataPublic(BaseModel):
    first_session: date
    last_session: date
    tickers: list[str]
    label: str
    updated_at: datetime
    request_id: str


def utc(moment: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite hands back naive datetimes for timezone-aware columns)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def job_public(row: Row[Any], request_id: str) -> BacktestJobPublic:
    """A job row as the API answers it."""
    done = row.state == "succeeded" and row.result is not None
    return BacktestJobPublic(
        id=row.id,
        state=row.state,
        progress=float(row.progress or 0.0),
        message=row.message,
        error=row.error,
        created_at=utc(row.created_at),
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        spec=BacktestSpec.model_validate(row.spec),
        result=BacktestResultPublic.model_validate(row.result) if done else None,
        report_url=f"/v1/backtests/{row.id}/report" if done else None,
        request_id=request_id,
    )
