"""An Optuna study over a backtest strategy's parameters, stored in the gateway database (resumable).

Trials are scored on the window's first part (net of costs); the best parameters are then run
once on the held-out rest, and those are the figures reported as out-of-sample. The study lives in
Optuna's RDB storage on the gateway's database URL under a per-tenant name, so a job that dies (or a
later job naming the same study) resumes it: only the trials still missing are run, and TPE
learns from those already stored. A trial whose parameters cannot trade (fewer eligible names than
k on some date...) is pruned with its reason, not counted as a score.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import optuna

from feature_repo.backtests import SEARCHABLE, BacktestSpec, SearchSpec, StrategyParams
from training.errors import TrainingError

REBALANCE_CHOICES: Final = (1, 5, 10, 21)
STRATEGY_ATTR: Final = "strategy"
SPEC_ATTR: Final = "spec"
# Score one parameter set on the search window; returns the objective (higher is better).
Score = Callable[[StrategyParams, int], float]


@dataclass(frozen=True)
class SearchOutcome:
    """The best trial of the study and how many trials it holds."""

    study: str
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    resumed_from: int


def spec_key(spec: BacktestSpec) -> str:
    """What a study's trials depend on: the spec but the search's budget, seed and name (a digest)."""
    assert spec.search is not None
    kept = spec.model_dump(mode="json", exclude={"search"})
    kept["search"] = spec.search.model_dump(mode="json", include={"objective", "holdout_fraction"})
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def split_date(sessions: list[date], spec: SearchSpec) -> date:
    """The first session of the held-out part: the last ``holdout_fraction`` of the sessions."""
    if len(sessions) < 4:
        raise TrainingError(f"a search needs at least 4 sessions in the window, got {len(sessions)}")
    index = min(len(sessions) - 2, max(1, math.floor(len(sessions) * (1.0 - spec.holdout_fraction))))
    return sessions[index]


def suggest(trial: optuna.Trial, spec: BacktestSpec, names: int) -> tuple[StrategyParams, int]:
    """One trial's parameters within the universe's size, from the strategy's searchable ones."""
    space = SEARCHABLE[spec.strategy]
    update: dict[str, Any] = {}
    if "k" in space:
        update["k"] = trial.suggest_int("k", 1, max(1, min(names - 1, 50)))
    k = int(update.get("k", spec.params.held()))
    if "buffer" in space:
        update["buffer"] = trial.suggest_int("buffer", 0, max(0, min(names - k, 20)))
    if "max_replace" in space:
        update["max_replace"] = trial.suggest_int("max_replace", 1, k)
    if "min_hold" in space:
        update["min_hold"] = trial.suggest_int("min_hold", 0, 4)
    if "n_drop" in space:
        update["n_drop"] = trial.suggest_int("n_drop", 0, k)
    if "lookback" in space:
        update["lookback"] = trial.suggest_int("lookback", 20, 252)
    every = trial.suggest_categorical("rebalance_every", REBALANCE_CHOICES)
    return spec.params.model_copy(update=update), int(every)


FINISHED: Final = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _open_study(spec: BacktestSpec, *, storage: str, study: str) -> optuna.Study:
    """Create or load ``study``, refusing one made for another strategy or backtest; stamp it with this one.

    Raises:
        TrainingError: the stored study was made for another strategy, or another backtest.
    """
    assert spec.search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.search.seed)
    handle = optuna.create_study(
        study_name=study, storage=storage, direction="maximize", sampler=sampler, load_if_exists=True
    )
    stored = handle.user_attrs.get(STRATEGY_ATTR)
    if stored is not None and stored != spec.strategy:
        raise TrainingError(f"study {study!r} was made for strategy {stored!r}, not {spec.strategy!r}")
    # Trials scored on another universe, window, signal, costs or objective would mislead the sampler.
    made_for = handle.user_attrs.get(SPEC_ATTR)
    if made_for is not None and made_for != spec_key(spec):
        raise TrainingError(
            f"study {study!r} was made for another backtest (universe, dates, signal, costs, fixed parameters or "
            "objective differ): name a new study to search this one"
        )
    handle.set_user_attr(STRATEGY_ATTR, spec.strategy)
    handle.set_user_attr(SPEC_ATTR, spec_key(spec))
    return handle


def _objective(spec: BacktestSpec, names: int, score: Score) -> Callable[[optuna.Trial], float]:
    """One trial: suggest, score; a set that cannot trade (or scores no finite value) is pruned with its reason."""

    def objective(trial: optuna.Trial) -> float:
        params, every = suggest(trial, spec, names)
        try:
            value = score(params, every)
        except TrainingError as e:
            trial.set_user_attr("reason", str(e))
            raise optuna.TrialPruned(str(e)) from e
        if not math.isfinite(value):
            raise optuna.TrialPruned("the objective is not finite (a flat book)")
        return value

    return objective


def _outcome(handle: optuna.Study, study: str, resumed_from: int) -> SearchOutcome:
    """The study's best trial and counts.

    Raises:
        TrainingError: no trial could trade (the reasons named).
    """
    trials = handle.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        reasons = {str(t.user_attrs.get("reason", "")) for t in trials} - {""}
        raise TrainingError(f"no trial of study {study!r} could trade: {'; '.join(sorted(reasons)[:3])}")
    best = handle.best_trial
    return SearchOutcome(
        study=study,
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else math.nan),
        trials=len(trials),
        pruned=len(trials) - len(complete),
        resumed_from=resumed_from,
    )


def run_search(
    spec: BacktestSpec,
    *,
    storage: str,
    study: str,
    names: int,
    score: Score,
    on_trial: Callable[[int, int], None],
) -> SearchOutcome:
    """Create or resume ``study`` and run the trials still missing (module docstring).

    Raises:
        TrainingError: the stored study was made for another strategy, or no trial could trade.
    """
    assert spec.search is not None
    total = spec.search.trials
    handle = _open_study(spec, storage=storage, study=study)
    done = len(handle.get_trials(deepcopy=False, states=FINISHED))

    def progress(_study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        on_trial(len(_study.get_trials(deepcopy=False, states=FINISHED)), total)

    if total > done:
        handle.optimize(_objective(spec, names, score), n_trials=total - done, callbacks=[progress], catch=())
    return _outcome(handle, study, done)


def best_params(spec: BacktestSpec, outcome: SearchOutcome) -> tuple[StrategyParams, int]:
    """The spec's parameters with the best trial's applied, and its rebalance spacing."""
    chosen = {k: v for k, v in outcome.best_params.items() if k != "rebalance_every"}
    every = int(outcome.best_params.get("rebalance_every", spec.rebalance_every))
    return spec.params.model_copy(update=chosen), every
