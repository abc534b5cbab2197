"""Ray Tune search for a signal model's hyper-parameters, on purged walk-forward folds.

The search's metric is the mean out-of-fold rank IC (the per-date Spearman correlation of the model's
score with the realised excess return, averaged over the fold's dates, then over folds); its
spread across folds is reported beside it. A trial's training iteration is one fold, in time
order, so ASHA can stop a trial that is already poor on the early folds. The searcher is Optuna's
TPE (model-based), seeded. The data go to the object store once (``tune.with_parameters``), and
every trial trains single-threaded with one CPU, so local Ray runs as many trials as cores.

The LightGBM objective is either fixed (``base.objective``) or, with ``objective="auto"``, one more
searched dimension (regression or lambdarank): both are then measured on the same folds, and the
best trial that ran every fold decides. :attr:`TuningResult.by_objective` keeps the best finished
trial of each objective, so the comparison is reported whatever wins. Trials fit one booster; the
seed average is for the final model only.

With ``max_concurrent_trials > 1`` the searcher sees trials complete in an order that depends on
timing, so the suggestions (not the models) can differ between runs; set it to 1 for a run that
is reproducible end to end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from training.ic import mean_rank_ic
from training.models.signal import SignalModel, SignalModelParams, relevance_grades
from training.ray_runtime import ray_cpus
from training.signals.config import TuningConfig
from training.validation import Fold

METRIC: Final = "rank_ic_mean"
AUTO_OBJECTIVES: Final = ("regression", "lambdarank")


@dataclass(frozen=True, eq=False)
class TuningData:
    """What every trial needs, shipped to the Ray object store once.

    ``y`` is the binary label, ``target`` the raw excess return the rank IC is measured against,
    ``label`` the cross-sectional label regression learns and ``grades`` lambdarank's relevance
    grades (None when no objective needs them). Rows are sorted by date.
    """

    X: pd.DataFrame
    y: pd.Series
    target: pd.Series
    dates: pd.Series
    folds: list[Fold]
    label: pd.Series | None = None
    grades: pd.Series | None = None

    def labels_for(self, objective: str) -> pd.Series:
        """The training labels ``objective`` learns.

        Raises:
            ValueError: the data carry no label for that objective.
        """
        chosen = {"binary": self.y, "regression": self.label, "lambdarank": self.grades}.get(objective)
        if chosen is None:
            raise ValueError(f"the tuning data carry no label for the '{objective}' objective")
        return chosen


def tuning_data(
    X: pd.DataFrame,
    y: pd.Series,
    target: pd.Series,
    dates: pd.Series,
    folds: list[Fold],
    *,
    label: pd.Series | None,
    grades: int,
) -> TuningData:
    """:class:`TuningData` with lambdarank's within-date grades derived from ``label``."""
    ranked = None if label is None else pd.Series(relevance_grades(label, dates, grades), name="grade")
    return TuningData(X, y, target, dates, folds, label=label, grades=ranked)


@dataclass(frozen=True, eq=False)
class TuningResult:
    """The search's outcome.

    Attributes:
        best_params: the winning hyper-parameters, as model parameters.
        rank_ic_mean: the best trial's mean out-of-fold rank IC.
        rank_ic_std: its standard deviation across folds.
        fold_rank_ics: the best trial's rank IC per fold, in time order.
        trials: one row per trial: its parameters, folds completed and metrics.
        seconds: wall time of the search.
        cpus: CPUs Ray had.
        stopped_early: trials ASHA stopped before the last fold.
        by_objective: the best mean out-of-fold rank IC per objective among trials that ran every fold.
    """

    best_params: SignalModelParams
    rank_ic_mean: float
    rank_ic_std: float
    fold_rank_ics: list[float]
    trials: pd.DataFrame
    seconds: float
    cpus: int
    stopped_early: int = field(default=0)
    by_objective: dict[str, float] = field(default_factory=dict)

    @property
    def trials_per_minute(self) -> float:
        return len(self.trials) / self.seconds * 60 if self.seconds > 0 else float("nan")


def search_space(objective: str = "binary") -> dict[str, Any]:
    """The hyper-parameter distributions searched (ranges suit weak, noisy daily signals).

    With ``objective="auto"`` the objective itself is searched too (:data:`AUTO_OBJECTIVES`).
    """
    from ray import tune

    space = {
        "num_leaves": tune.randint(4, 64),
        "learning_rate": tune.loguniform(0.005, 0.2),
        "n_estimators": tune.randint(50, 400),
        "min_child_samples": tune.lograndint(20, 2000),
        "feature_fraction": tune.uniform(0.4, 1.0),
        "bagging_fraction": tune.uniform(0.5, 1.0),
        "lambda_l2": tune.loguniform(1e-3, 30.0),
    }
    if objective == "auto":
        space["objective"] = tune.choice(list(AUTO_OBJECTIVES))
    return space


def evaluate_folds(params: SignalModelParams, data: TuningData) -> list[float]:
    """Train on each fold's purged rows and return its test rank IC (outside Ray: tests, smoke)."""
    return [_fold_rank_ic(params, data, fold) for fold in data.folds]


def fold_scores(params: SignalModelParams, data: TuningData, fold: Fold) -> np.ndarray:
    """Train on the fold's purged rows and score its test rows (raw scores)."""
    train = fold.train_index
    labels = data.labels_for(params.objective)
    model = SignalModel(params).fit(data.X.iloc[train], labels.iloc[train], dates=data.dates.iloc[train])
    return model.score(data.X.iloc[fold.test_index])


def _fold_rank_ic(params: SignalModelParams, data: TuningData, fold: Fold) -> float:
    scores = fold_scores(params, data, fold)
    return mean_rank_ic(
        scores, data.target.iloc[fold.test_index].to_numpy(), data.dates.iloc[fold.test_index].to_numpy()
    )


def signal_trainable(config: dict[str, Any], data: TuningData, base: SignalModelParams) -> None:
    """One Tune trial: report the running mean rank IC after each fold (ASHA's time axis)."""
    from ray import tune

    params = base.model_copy(update=_cast(config))
    ics: list[float] = []
    for number, fold in enumerate(data.folds):
        ic = _fold_rank_ic(params, data, fold)
        ics.append(ic if np.isfinite(ic) else 0.0)
        tune.report(
            {
                METRIC: float(np.mean(ics)),
                "rank_ic_std": float(np.std(ics, ddof=1)) if len(ics) > 1 else 0.0,
                "fold": number,
                "fold_rank_ic": ics[-1],
                "fold_rank_ics": list(ics),
            }
        )


def _cast(config: Mapping[str, Any]) -> dict[str, Any]:
    ints = {"num_leaves", "n_estimators", "min_child_samples"}
    return {k: v if k == "objective" else int(v) if k in ints else float(v) for k, v in config.items()}


def run_search(
    data: TuningData,
    tuning: TuningConfig,
    *,
    name: str,
    storage_dir: Path,
    base: SignalModelParams | None = None,
    progress: bool = False,
    objective: str | None = None,
) -> TuningResult:
    """Search the space with ASHA + Optuna on an already started Ray (see :mod:`training.ray_runtime`).

    Args:
        data: the training rows and their walk-forward folds.
        tuning: budget and seeds; ``smoke_test`` runs one trial on the first fold only.
        name: the experiment's name (a folder under ``storage_dir``).
        storage_dir: where Tune keeps its trial records.
        base: parameters not searched (seed, threads, patience); model defaults when None.
        progress: show a progress bar of completed trials.
        objective: ``auto`` searches regression against lambdarank; another objective is fixed;
            None keeps ``base``'s.

    Returns:
        The best trial's parameters and figures, and a row per trial.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    base = (base or SignalModelParams()).model_copy(update={"seed": tuning.seed, "num_threads": 1, "n_seeds": 1})
    if objective is not None and objective != "auto":
        base = base.model_copy(update={"objective": objective})
    if tuning.smoke_test:
        data = replace(data, folds=data.folds[:1])
    num_samples = 1 if tuning.smoke_test else tuning.num_samples
    max_t = max(1, min(tuning.max_t, len(data.folds)))
    scheduler = ASHAScheduler(
        time_attr="training_iteration", max_t=max_t, grace_period=min(tuning.grace_period, max_t), reduction_factor=2
    )
    searcher = OptunaSearch(seed=tuning.seed)
    trainable = tune.with_resources(tune.with_parameters(signal_trainable, data=data, base=base), {"cpu": 1})
    callbacks = [_progress_callback(num_samples, name)] if progress else []
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(objective or base.objective),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=num_samples,
            max_concurrent_trials=tuning.max_concurrent_trials,
            scheduler=scheduler,
            search_alg=searcher,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage_dir.resolve()), verbose=0, callbacks=callbacks),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    return _summarise(grid, base, max_t, seconds, ray_cpus())


def _summarise(grid: Any, base: SignalModelParams, max_t: int, seconds: float, cpus: int) -> TuningResult:
    errors = [r.error for r in grid if r.error is not None]
    if len(errors) == len(grid):
        raise RuntimeError(f"every tuning trial failed; the first error: {errors[0]}")
    best = _best_of_the_finished(grid, max_t)
    rows = []
    for result in grid:
        if result.metrics is None or METRIC not in result.metrics:
            continue
        rows.append(
            {
                **_cast(result.config),
                **{k: result.metrics[k] for k in (METRIC, "rank_ic_std")},
                "folds": int(result.metrics["training_iteration"]),
            }
        )
    trials = pd.DataFrame(rows).sort_values(METRIC, ascending=False, ignore_index=True)
    return TuningResult(
        best_params=base.model_copy(update=_cast(best.config)),
        rank_ic_mean=float(best.metrics[METRIC]),
        rank_ic_std=float(best.metrics["rank_ic_std"]),
        fold_rank_ics=[float(v) for v in best.metrics["fold_rank_ics"]],
        trials=trials,
        seconds=seconds,
        cpus=cpus,
        stopped_early=int((trials["folds"] < max_t).sum()) if len(trials) else 0,
        by_objective=_best_by_objective(trials, base, max_t),
    )


def _best_by_objective(trials: pd.DataFrame, base: SignalModelParams, max_t: int) -> dict[str, float]:
    """The best mean rank IC of each objective among the trials that ran every fold."""
    if trials.empty:
        return {}
    finished = trials[trials["folds"] >= max_t]
    objective = finished["objective"] if "objective" in finished else pd.Series(base.objective, index=finished.index)
    return {str(k): float(v) for k, v in finished[METRIC].groupby(objective).max().items()}


def _best_of_the_finished(grid: Any, max_t: int) -> Any:
    """The best trial among those that ran every fold (ASHA's survivors).

    A trial ASHA stopped after its first fold carries a one-fold mean; picking the best ``last``
    result over all trials would let a lucky single fold beat trials measured on every fold. So
    only trials with ``max_t`` folds compete; when none finished (a failed search), all do.
    """
    finished = [r for r in grid if r.error is None and r.metrics and r.metrics.get("training_iteration", 0) >= max_t]
    if not finished:
        return grid.get_best_result(metric=METRIC, mode="max", scope="last")
    return max(finished, key=lambda r: float(r.metrics[METRIC]))


def _progress_callback(total: int, name: str) -> Any:
    """A Tune callback advancing a tqdm bar as trials finish (Tune's own console table is off).

    Built on call because ray is imported lazily: importing this module must stay cheap.
    """
    from ray.tune import Callback
    from tqdm.auto import tqdm

    class ProgressBar(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bar = tqdm(total=total, desc=f"  tuning {name}", leave=False)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.bar.update(1)

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            self.bar.close()

    return ProgressBar()
