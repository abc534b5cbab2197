"""What a backtest job computes: the optional search, the strategy's run, the equal-weight comparison, the report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from feature_repo.backtests import BacktestSpec, StrategyParams, study_name
from training.backtest_data import JobData, load_job_data
from training.backtest_report import comparison, equity_points, finite, strategy_result, tear_sheet
from training.backtest_runs import Window, cost_model, run_window, trade_costs
from training.backtest_search import SearchOutcome, best_params, run_search, split_date
from training.evaluation.book import Schedule, equal_weight_book
from training.evaluation.topk import BacktestResult


class Progress(Protocol):
    def progress(self, fraction: float, message: str) -> None: ...


# Shares of the progress bar: loading, the search's trials, the final run, the report.
LOADED, SEARCHED, RAN = 0.05, 0.8, 0.9


def _sessions(data: JobData, start: date, end: date) -> list[date]:
    index = pd.DatetimeIndex(data.close.index)
    return [d.date() for d in index[(index >= pd.Timestamp(start)) & (index <= pd.Timestamp(end))]]


def _search(
    job_id: str, tenant: str, *, spec: BacktestSpec, data: JobData, data_dir: Path, storage: str, record: Progress
) -> tuple[StrategyParams, int, date, SearchOutcome]:
    assert spec.search is not None
    split = split_date(_sessions(data, spec.start, spec.end), spec.search)
    before = max(d for d in _sessions(data, spec.start, spec.end) if d < split)
    objective = "sharpe" if spec.search.objective == "sharpe" else "ann_return"

    def score(params: StrategyParams, every: int) -> float:
        result = run_window(spec, params, data, Window(spec.start, before, every), data_dir=data_dir)
        return float(result.metrics()[objective])

    def on_trial(done: int, total: int) -> None:
        record.progress(LOADED + (SEARCHED - LOADED) * done / max(total, 1), f"search: {done}/{total} trials")

    outcome = run_search(
        spec,
        storage=storage,
        study=study_name(tenant, job_id, spec.search),
        names=len(set(spec.universe)),
        score=score,
        on_trial=on_trial,
    )
    params, every = best_params(spec, outcome)
    return params, every, split, outcome


def _equal_weight(spec: BacktestSpec, data: JobData, result: BacktestResult, end: date, every: int) -> BacktestResult:
    """The equal-weight book from the strategy's first signal, so both cover the same sessions."""
    first = pd.Timestamp(result.signal_dates.iloc[0])
    schedule = Schedule(every, first, pd.Timestamp(end), spec.execution_lag)
    return equal_weight_book(
        data.close,
        costs=trade_costs(spec, data),
        schedule=schedule,
        liquidity=data.liquidity,
        book_aud=spec.costs.book_aud,
    )


def run_job(
    job_id: str,
    tenant: str,
    spec: BacktestSpec,
    *,
    record: Progress,
    data_dir: Path,
    storage: str,
    clock: Callable[[], datetime],
) -> tuple[dict[str, Any], str]:
    """The job's result (JSON-ready) and its HTML tear sheet.

    Raises:
        TrainingError: data, parameters or a window the strategy cannot trade (named).
    """
    tickers = sorted(set(spec.universe))
    record.progress(0.0, "loading data")
    data = load_job_data(data_dir, tickers, spec.end, adv_sessions=spec.costs.adv_sessions)
    record.progress(LOADED, "data loaded")
    params, every, start, outcome = spec.params, spec.rebalance_every, spec.start, None
    if spec.search is not None:
        params, every, start, outcome = _search(
            job_id, tenant, spec=spec, data=data, data_dir=data_dir, storage=storage, record=record
        )

    def on_rebalance(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            record.progress(SEARCHED + (RAN - SEARCHED) * done / total, f"rebalance {done}/{total}")

    result = run_window(spec, params, data, Window(start, spec.end, every), data_dir=data_dir, progress=on_rebalance)
    record.progress(RAN, "comparing with equal weight")
    baseline = _equal_weight(spec, data, result, spec.end, every)
    columns = list(data.close.columns)
    books = [
        strategy_result(spec.strategy, result, columns, every, data.label),
        strategy_result("equal_weight_book", baseline, columns, every, data.label),
    ]
    trials = 1 + (outcome.trials if outcome else 0)
    table = comparison(books, trials)
    notes = [
        data.label,
        f"costs: {cost_model(spec, data)}",
    ]
    if outcome is not None:
        notes.append(
            f"parameters tuned by Optuna study {outcome.study} ({outcome.trials} trials) before {start}; "
            "the figures here are from the held-out sessions after it"
        )
    report = tear_sheet(books, table, f"Backtest {job_id}: {spec.strategy}", notes, clock())
    answer = {
        "strategy": spec.strategy,
        "label": data.label,
        "cost_model": cost_model(spec, data),
        "params": params.model_dump(mode="json"),
        "rebalance_every": every,
        "first_session": result.returns.index[0].date().isoformat(),
        "last_session": result.returns.index[-1].date().isoformat(),
        "sessions": len(result.returns),
        "metrics": finite(result.metrics()),
        "equal_weight_metrics": finite(baseline.metrics()),
        "deflated_sharpe": finite({"dsr": table.loc[spec.strategy, "dsr"]})["dsr"],
        "equity": equity_points(result),
        "search": None
        if outcome is None
        else {
            "study": outcome.study,
            "trials": outcome.trials,
            "pruned": outcome.pruned,
            "resumed_from": outcome.resumed_from,
            "best_params": outcome.best_params,
            "best_in_sample": finite({"v": outcome.best_value})["v"],
            "holdout_start": start.isoformat(),
        },
    }
    return answer, report
