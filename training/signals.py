"""Signal models end to end: point-in-time frames, Ray Tune search, final fit, test evaluation.

Per model: its Feast feature service's frame over the three segments; walk-forward folds inside
the train segment for the search; a final fit on the train segment with early stopping on the
valid segment; scores on valid (out of sample, used for the ensemble's trailing weights) and on
test (used once, for the evaluation and the promotion gate). Registration is
:mod:`training.stages.train`'s job; this module never talks to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.store import FeatureRepo
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import cross_sectional_labels, forward_outcomes, label_column
from feature_repo.transforms.panel import link_across_breaks
from training.calendar import on_sessions, run_sessions
from training.datasets import TrainingFrame, build_training_frame
from training.errors import TrainingError
from training.evaluation.baselines import momentum_12_1, short_term_reversal
from training.evaluation.metrics import SignalMetrics, signal_metrics
from training.evaluation.topk import BacktestResult, equal_weight_backtest, topk_backtest
from training.horizons import HorizonResult, horizon_report
from training.models.ensemble import blend_point_in_time, trailing_weights
from training.models.signal import SignalModel
from training.run_config import ModelSpec, SignalRunConfig, check_history, check_universe
from training.store import OfflineStore
from training.tuning import TuningResult, run_search, tuning_data
from training.universe import Universe, check_member_counts, refresh_universe, restrict_to_members
from training.validation import SegmentMasks, segment_masks, walk_forward_folds

KEYS = [DATE, TICKER]


@dataclass(frozen=True, eq=False)
class SignalInputs:
    """The data every model of a run shares."""

    config: SignalRunConfig
    repo: FeatureRepo
    outcomes: pd.DataFrame
    close: pd.DataFrame
    universe: Universe | None = None  # a point-in-time rule's membership; None for a list or 'all'
    # The members' outcomes at each of learning.report_horizons, with their cross-sectional labels.
    report_outcomes: dict[int, pd.DataFrame] = field(default_factory=dict)

    @property
    def members(self) -> pd.DataFrame | None:
        """The daily member mask (sessions x tickers ever members), or None when every name counts."""
        return None if self.universe is None else self.universe.mask

    @property
    def test_window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The test segment cut at the last labelled date: every row of the table covers the same days."""
        first, last = (pd.Timestamp(d) for d in self.config.segments.test)
        return first, min(last, pd.Timestamp(self.outcomes[DATE].max()))


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """One trained signal model with its out-of-sample scores and test evaluation."""

    name: str
    spec: ModelSpec
    frame: TrainingFrame
    masks: SegmentMasks
    tuning: TuningResult
    model: SignalModel
    scores: pd.DataFrame  # date, ticker, score, segment ("valid" | "test")
    metrics: SignalMetrics
    backtest: BacktestResult
    horizons: list[HorizonResult] = field(default_factory=list)


def load_inputs(
    config: SignalRunConfig, offline_store: Path, repo: FeatureRepo, *, exchange: str | None = None
) -> SignalInputs:
    """Prices, outcomes and the close panel of the configured universe, checked against the config.

    Outcomes count the sessions of ``exchange`` (None: the data's own dates) and never span a
    stored series break. The cross-sectional labels (per-date rank and z-score of the excess
    return) are computed after the universe cut, over the members of each date only.

    With a point-in-time universe rule, its membership is recomputed from the stored prices and
    written to the store (:func:`point_in_time_universe`), and only the outcomes of (ticker, date)
    pairs that are members on that date remain: they are the training and evaluation samples.

    Raises:
        TrainingError: unknown tickers or benchmark, too little history for the segments, or a
            universe rule leaving fewer members than ``evaluation.top_k`` on some date.
    """
    prices, bench = read_universe(config, offline_store)
    check_history(config, pd.DatetimeIndex(prices[DATE]))
    breaks = read_series_breaks(offline_store)
    sessions = run_sessions(exchange, prices[DATE])
    prices = on_sessions(prices, sessions)  # a bar on a day the exchange was closed is no session
    universe = point_in_time_universe(config, offline_store, prices, config.evaluation.top_k, "evaluation.top_k")

    def member_outcomes(h: int) -> pd.DataFrame:
        outcomes = forward_outcomes(prices, bench, horizon=h, sessions=sessions, breaks=breaks)
        if universe is not None:
            outcomes = restrict_to_members(outcomes, universe.mask)
        return cross_sectional_labels(outcomes, h)

    report = {h: member_outcomes(h) for h in config.learning.report_horizons if h != config.horizon}
    outcomes = member_outcomes(config.horizon)
    if config.learning.report_horizons and config.horizon in config.learning.report_horizons:
        report[config.horizon] = outcomes
    return SignalInputs(config, repo, outcomes, close_panel(prices, breaks), universe, report)


def point_in_time_universe(
    config: SignalRunConfig, offline_store: Path, prices: pd.DataFrame, need: int, what: str
) -> Universe | None:
    """The universe rule's membership, recomputed from ``prices`` and stored; None without a rule.

    It is computed here, where the prices are read for training, rather than in the features stage:
    it depends on the run's rule (the ``signals`` section), not on the features, takes seconds, and
    is rewritten with ``OfflineStore.replace`` so a re-run reports 0 new, 0 changed.

    Raises:
        TrainingError: fewer than ``need`` members on a reconstitution date governing the segments.
    """
    rule = config.universe
    if isinstance(rule, tuple) or rule == "all":
        return None
    breaks = read_series_breaks(offline_store)
    with OfflineStore(offline_store) as store:
        universe = refresh_universe(store, prices, rule, breaks=breaks)
    seg = config.segments
    check_member_counts(universe, start=seg.train[0], end=seg.test[1], need=need, what=what)
    return universe


def read_series_breaks(offline_store: Path) -> pd.DataFrame:
    """Every stored series break (all reasons): the transforms split tickers' histories at them."""
    with OfflineStore(offline_store, read_only=True) as store:
        return store.read("series_breaks")


def read_universe(config: SignalRunConfig, offline_store: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The configured universe's price rows and its benchmark's closes (indexed by date), checked.

    Raises:
        TrainingError: no prices, or tickers or a benchmark the data do not hold.
    """
    with OfflineStore(offline_store, read_only=True) as store:
        prices = store.read("prices")
        benchmark = store.read("benchmark")
    if prices.empty:
        raise TrainingError("the offline store holds no prices: run the ingest stage first")
    check_universe(config, set(prices[TICKER]), set(benchmark["symbol"]))
    if isinstance(config.universe, tuple):
        prices = prices[prices[TICKER].isin(config.universe)]
    bench = benchmark[benchmark["symbol"] == config.benchmark].set_index(DATE)["close"]
    return prices, bench


def close_panel(prices: pd.DataFrame, breaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide adjusted closes: sessions (a DatetimeIndex, ascending) x tickers.

    With series ``breaks``, each ticker's closes before a break are rescaled so the return across
    it is 0 (:func:`feature_repo.transforms.panel.link_across_breaks`): a book holding the name over
    a reused code or a masked corporate action earns nothing there, never the jump.
    """
    close = prices.pivot(index=DATE, columns=TICKER, values="adj_close").sort_index()
    close.index = pd.DatetimeIndex(close.index)
    return link_across_breaks(close, breaks)


def train_model(name: str, spec: ModelSpec, inputs: SignalInputs, storage: Path, progress: bool) -> TrainedModel:
    """Tune, fit and evaluate one model (see the module docstring)."""
    cfg = inputs.config
    frame = model_frame(inputs, spec)
    masks = segment_masks(
        frame.dates, frame.label_end, cfg.segments, embargo_sessions=cfg.walk_forward.embargo_sessions
    )
    train = _rows(frame, masks.train)
    folds = walk_forward_folds(train.dates, train.label_end, cfg.walk_forward)
    learning = cfg.learning
    data = tuning_data(
        train.X, train.y, train.target, train.dates, folds, label=train.label, grades=learning.relevance_grades
    )
    tuning = run_search(
        data, cfg.tuning, name=name, storage_dir=storage, progress=progress, objective=learning.objective
    )
    valid = _rows(frame, masks.valid)
    # The searched round count is the one the folds chose; early stopping on the valid log-loss
    # would pick the base rate (one tree) because the signal is weak. Valid stays out of sample.
    params = tuning.best_params.model_copy(update={"n_seeds": learning.seeds})
    model = SignalModel(params).fit(train.X, data.labels_for(params.objective), dates=train.dates)
    horizons = horizon_report(frame, inputs.report_outcomes, tuning.best_params, cfg) if inputs.report_outcomes else []
    scores = pd.concat([_scored(model, valid, "valid"), _scored(model, _rows(frame, masks.test), "test")])
    test = scores[scores["segment"] == "test"]
    return TrainedModel(
        name=name,
        spec=spec,
        frame=frame,
        masks=masks,
        tuning=tuning,
        model=model,
        scores=scores,
        metrics=evaluate_scores(test, inputs),
        backtest=backtest_scores(test, inputs),
        horizons=horizons,
    )


def evaluate_scores(scores: pd.DataFrame, inputs: SignalInputs) -> SignalMetrics:
    """Signal metrics of long ``date, ticker, score`` rows against the realised outcomes."""
    h = inputs.config.horizon
    outcomes = inputs.outcomes[[*KEYS, f"fwd_excess_{h}d", f"label_{h}d"]].rename(
        columns={f"fwd_excess_{h}d": "target", f"label_{h}d": "label"}
    )
    joined = scores[[*KEYS, "score"]].merge(outcomes, on=KEYS, how="inner")
    return signal_metrics(joined, h)


def backtest_scores(scores: pd.DataFrame, inputs: SignalInputs) -> BacktestResult:
    """The top-k long-only book of the scores over the test segment, net of costs (members only)."""
    cfg = inputs.config
    if inputs.members is not None:
        scores = restrict_to_members(scores, inputs.members)
    return topk_backtest(
        scores[[*KEYS, "score"]],
        inputs.close,
        k=cfg.evaluation.top_k,
        rebalance_every=cfg.evaluation.rebalance_every,
        cost_per_side=cfg.costs.per_side_fraction,
        start=inputs.test_window[0],
        end=inputs.test_window[1],
        execution_lag=cfg.evaluation.execution_lag,
    )


def baselines(inputs: SignalInputs) -> dict[str, tuple[SignalMetrics | None, BacktestResult]]:
    """12-1 momentum, short-term reversal and equal weight over the test segment."""
    cfg = inputs.config
    first, last = inputs.test_window
    rows: dict[str, tuple[SignalMetrics | None, BacktestResult]] = {}
    for name, scorer in (("momentum_12_1", momentum_12_1), ("reversal_1m", short_term_reversal)):
        scores = scorer(inputs.close)
        scores = scores[(scores[DATE] >= first) & (scores[DATE] <= last)]
        rows[name] = (evaluate_scores(scores, inputs), backtest_scores(scores, inputs))
    rows["equal_weight"] = (
        None,
        equal_weight_backtest(
            inputs.close,
            rebalance_every=cfg.evaluation.rebalance_every,
            cost_per_side=cfg.costs.per_side_fraction,
            start=first,
            end=last,
            execution_lag=cfg.evaluation.execution_lag,
            members=inputs.members,
        ),
    )
    return rows


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    """The ensemble's point-in-time test scores, its weights through time and its final weights."""

    scores: pd.DataFrame
    components: pd.DataFrame  # test rows: date, ticker and one score column per component
    weights_by_date: pd.DataFrame
    final_weights: dict[str, float]
    metrics: SignalMetrics
    backtest: BacktestResult


def ensemble(models: list[TrainedModel], inputs: SignalInputs) -> EnsembleResult:
    """Blend the components with weights from their trailing rank IC (valid + test scores)."""
    h = inputs.config.horizon
    wide = _component_scores(models)
    joined = wide.merge(inputs.outcomes[[*KEYS, "known_at", f"fwd_excess_{h}d"]], on=KEYS, how="inner")
    names = [m.name for m in models]
    weights = trailing_weights(
        joined[names],
        joined[f"fwd_excess_{h}d"],
        joined[DATE],
        joined["known_at"],
        window=inputs.config.evaluation.ensemble_ic_window,
    )
    blended = blend_point_in_time(joined[names], joined[DATE], weights)
    scores = pd.concat([joined[[*KEYS, "segment"]], blended], axis=1)
    test = scores[scores["segment"] == "test"]
    last = weights.iloc[-1]
    return EnsembleResult(
        scores=test,
        components=joined.loc[joined["segment"] == "test", [*KEYS, *names]],
        weights_by_date=weights,
        final_weights={n: float(last[n]) for n in names},
        metrics=evaluate_scores(test, inputs),
        backtest=backtest_scores(test, inputs),
    )


def _component_scores(models: list[TrainedModel]) -> pd.DataFrame:
    wide: pd.DataFrame | None = None
    for m in models:
        part = m.scores.rename(columns={"score": m.name})
        wide = part if wide is None else wide.merge(part, on=[*KEYS, "segment"], how="outer")
    if wide is None:
        raise TrainingError("the ensemble needs at least one trained model")
    return wide.sort_values(KEYS, ignore_index=True)


def model_frame(inputs: SignalInputs, spec: ModelSpec) -> TrainingFrame:
    """The model's training frame over the three segments (its service, or its subset of features)."""
    cfg = inputs.config
    frame = build_training_frame(
        inputs.repo,
        spec.feature_service,
        inputs.outcomes,
        start=cfg.segments.train[0],
        end=cfg.segments.test[1],
        horizon=cfg.horizon,
        label_column=label_column(cfg.learning.label, cfg.horizon),
    )
    if spec.features is not None:
        X = frame.X[list(spec.features)]
        frame = replace(frame, X=X, feature_names=list(X.columns))
    return frame


@dataclass(frozen=True, eq=False)
class _Rows:
    X: pd.DataFrame
    y: pd.Series
    target: pd.Series
    dates: pd.Series
    label_end: pd.Series
    tickers: pd.Series
    label: pd.Series | None


def _rows(frame: TrainingFrame, mask: npt.NDArray[np.bool_]) -> _Rows:
    def pick(s: pd.Series) -> pd.Series:
        return s[mask].reset_index(drop=True)

    return _Rows(
        frame.X[mask].reset_index(drop=True),
        pick(frame.y),
        pick(frame.target),
        pick(frame.dates),
        pick(frame.label_end),
        pick(frame.tickers),
        None if frame.label is None else pick(frame.label),
    )


def _scored(model: SignalModel, rows: _Rows, segment: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            DATE: rows.dates.to_numpy(),
            TICKER: rows.tickers.to_numpy(),
            "score": model.predict(rows.X),
            "segment": segment,
        }
    )
