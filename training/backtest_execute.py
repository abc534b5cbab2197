"""What a backtest job computes: the optional search, the strategy's run, the equal-weight comparison, the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from feature_repo.backtests import BacktestSpec, StrategyParams, study_name
from training.backtest_allocator import allocator_inputs, champion_for
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


@dataclass(frozen=True)
class Tuned:
    """What the final run uses: the parameters, the rebalance spacing, its first session and the search (if any)."""

    params: StrategyParams
    every: int
    start: date
    outcome: SearchOutcome | None


def _load(spec: BacktestSpec, data_dir: Path, record: Progress) -> JobData:
    """The job's data; for ``allocator``, the champion first (a refusal comes before any data is read)."""
    record.progress(0.0, "loading data")
    champion = champion_for(data_dir, spec.universe) if spec.strategy == "allocator" else None
    data = load_job_data(data_dir, sorted(set(spec.universe)), spec.end, adv_sessions=spec.costs.adv_sessions)
    if champion is not None:
        record.progress(LOADED / 2, f"loading the features of {champion.describe()}")
        data = replace(data, allocator=allocator_inputs(data_dir, champion, data.close, spec.start, spec.end))
    record.progress(LOADED, "data loaded")
    return data


def _tune(
    job_id: str, tenant: str, *, spec: BacktestSpec, data: JobData, data_dir: Path, storage: str, record: Progress
) -> Tuned:
    """The spec's own parameters, or the search's best with the held-out sessions it leaves."""
    if spec.search is None:
        return Tuned(spec.params, spec.rebalance_every, spec.start, None)
    params, every, start, outcome = _search(
        job_id, tenant, spec=spec, data=data, data_dir=data_dir, storage=storage, record=record
    )
    return Tuned(params, every, start, outcome)


def _final_run(spec: BacktestSpec, data: JobData, tuned: Tuned, data_dir: Path, record: Progress) -> BacktestResult:
    """The strategy over the reported window (the held-out rest after a search)."""

    def on_rebalance(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            record.progress(SEARCHED + (RAN - SEARCHED) * done / total, f"rebalance {done}/{total}")

    window = Window(tuned.start, spec.end, tuned.every)
    return run_window(spec, tuned.params, data, window, data_dir=data_dir, progress=on_rebalance)


def _model(data: JobData) -> str | None:
    return None if data.allocator is None else data.allocator.champion.describe()


def _notes(spec: BacktestSpec, data: JobData, tuned: Tuned) -> list[str]:
    """The tear sheet's notes: the data's label, the costs, the model run and the search."""
    notes = [data.label, f"costs: {cost_model(spec, data)}"]
    model = _model(data)
    if model is not None:
        notes.append(f"strategy: the registered {model}, at every rebalance on the features of the signal close")
    if tuned.outcome is not None:
        notes.append(
            f"parameters tuned by Optuna study {tuned.outcome.study} ({tuned.outcome.trials} trials) before "
            f"{tuned.start}; the figures here are from the held-out sessions after it"
        )
    return notes


def _search_answer(tuned: Tuned) -> dict[str, Any] | None:
    outcome = tuned.outcome
    if outcome is None:
        return None
    return {
        "study": outcome.study,
        "trials": outcome.trials,
        "pruned": outcome.pruned,
        "resumed_from": outcome.resumed_from,
        "best_params": outcome.best_params,
        "best_in_sample": finite({"v": outcome.best_value})["v"],
        "holdout_start": tuned.start.isoformat(),
    }


def _answer(
    spec: BacktestSpec,
    data: JobData,
    tuned: Tuned,
    result: BacktestResult,
    *,
    baseline: BacktestResult,
    table: pd.DataFrame,
) -> dict[str, Any]:
    """The job's JSON result (api/backtest_schemas.py ``BacktestResultPublic``)."""
    return {
        "strategy": spec.strategy,
        "label": data.label,
        "cost_model": cost_model(spec, data),
        "model": _model(data),
        "params": tuned.params.model_dump(mode="json"),
        "rebalance_every": tuned.every,
        "first_session": result.returns.index[0].date().isoformat(),
        "last_session": result.returns.index[-1].date().isoformat(),
        "sessions": len(result.returns),
        "metrics": finite(result.metrics()),
        "equal_weight_metrics": finite(baseline.metrics()),
        "deflated_sharpe": finite({"dsr": table.loc[spec.strategy, "dsr"]})["dsr"],
        "equity": equity_points(result),
        "search": _search_answer(tuned),
    }


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
    """The job's result (JSON-ready) and its HTML tear sheet: load, tune, run, compare, report.

    Raises:
        TrainingError: data, parameters, a window the strategy cannot trade, or (``allocator``) no
            champion or a universe it does not cover (named).
    """
    data = _load(spec, data_dir, record)
    tuned = _tune(job_id, tenant, spec=spec, data=data, data_dir=data_dir, storage=storage, record=record)
    result = _final_run(spec, data, tuned, data_dir, record)
    record.progress(RAN, "comparing with equal weight")
    baseline = _equal_weight(spec, data, result, spec.end, tuned.every)
    columns = list(data.close.columns)
    books = [
        strategy_result(spec.strategy, result, columns, tuned.every, data.label),
        strategy_result("equal_weight_book", baseline, columns, tuned.every, data.label),
    ]
    table = comparison(books, 1 + (tuned.outcome.trials if tuned.outcome else 0))
    report = tear_sheet(books, table, f"Backtest {job_id}: {spec.strategy}", _notes(spec, data, tuned), clock())
    return _answer(spec, data, tuned, result, baseline=baseline, table=table), report
