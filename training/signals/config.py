"""The ``signals:`` section of a run configuration: what the signal models train on and how.

One block declares the universe, benchmark and label horizon once, the fixed train/valid/test date
segments and the walk-forward folds (from :mod:`training.validation`), which feature service each
model reads, the trading costs (:mod:`training.evaluation.config`) and the tuning budget. The
registry's settings are the run's top-level ``registry:`` section (:mod:`training.registry.config`),
since they serve every model family. Everything that can be checked from the file alone is checked
at load time; what needs the data (enough sessions, tickers that exist) is checked by
:func:`check_history` and :func:`check_universe` before training.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Literal, Self

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from feature_repo import contract
from training.errors import TrainingError
from training.evaluation.config import CostConfig, EvaluationConfig
from training.validation import Segments, WalkForwardConfig, fold_layout


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def service_features(service: str) -> tuple[str, ...]:
    """The features a feature service serves, in serving order (:func:`feature_repo.contract.service_features`).

    Raises:
        TrainingError: when ``service`` is not a service of :mod:`feature_repo.contract`.
    """
    try:
        return contract.service_features(service)
    except KeyError:
        raise TrainingError(contract.unknown_service(service)) from None


class ModelSpec(_Strict):
    """One signal model: the feature service it reads and, optionally, a subset of its features."""

    feature_service: str = Field(description="A Feast feature service, e.g. technical_model_v1.")
    features: tuple[str, ...] | None = Field(
        None, min_length=1, description="Subset of the service's features to train on; None means all of them."
    )
    enabled: bool = Field(True, description="False keeps the entry documented but skips training it.")

    @field_validator("feature_service")
    @classmethod
    def _known_service(cls, value: str) -> str:
        try:
            service_features(value)
        except TrainingError as e:
            raise ValueError(str(e)) from e
        return value

    @model_validator(mode="after")
    def _known_features(self) -> Self:
        if self.features is None:
            return self
        served = service_features(self.feature_service)
        for feature in self.features:
            if feature not in served:
                close = difflib.get_close_matches(feature, served, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; it serves {', '.join(served)}"
                raise ValueError(f"unknown feature '{feature}': not served by '{self.feature_service}'{hint}")
        repeated = [f for f, n in Counter(self.features).items() if n > 1]
        if repeated:
            raise ValueError(f"feature(s) listed twice: {', '.join(repeated)}")
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features this model trains on, in the order given (or the service's order)."""
        return self.features if self.features is not None else service_features(self.feature_service)


class TuningConfig(_Strict):
    """The hyper-parameter search budget (Ray Tune with an ASHA scheduler)."""

    num_samples: int = Field(8, ge=1, description="Trials per model.")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    seed: int = Field(0, ge=0, description="Seed of the search algorithm and of every trial.")
    grace_period: int = Field(1, ge=1, description="ASHA: iterations a trial runs before it can be stopped.")
    max_t: int = Field(10, ge=1, description="ASHA: the most iterations a trial runs.")
    smoke_test: bool = Field(False, description="A tiny search (one trial, one fold) to prove the wiring.")

    @model_validator(mode="after")
    def _grace_within_max_t(self) -> Self:
        if self.grace_period > self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) exceeds max_t ({self.max_t})")
        return self


class LearningConfig(_Strict):
    """What the signal models learn (issue 18): label, objective, seed averaging, horizons reported."""

    objective: Literal["auto", "binary", "regression", "lambdarank"] = Field(
        "binary",
        description="binary: P(excess > 0) (the first models); regression on the cross-sectional label; "
        "lambdarank with one query per date; auto: the search picks regression or lambdarank by "
        "out-of-fold rank IC.",
    )
    label: Literal["rank", "zscore", "raw"] = Field(
        "rank",
        description="Regression target and lambdarank grades' source: the per-date rank or z-score "
        "of the forward excess return among the date's universe members, or the raw excess return.",
    )
    relevance_grades: int = Field(5, ge=2, le=31, description="lambdarank: within-date quantile grades 0..n-1.")
    seeds: int = Field(1, ge=1, le=32, description="Boosters with different seeds averaged in the final model.")
    report_horizons: tuple[int, ...] = Field(
        (), description="Horizons (sessions) whose out-of-fold rank IC is reported beside the trained one."
    )

    @field_validator("report_horizons")
    @classmethod
    def _horizons_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [h for h in value if not 1 <= h <= 252]
        if bad:
            raise ValueError(f"report_horizons must lie in 1..252 sessions, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"report_horizons lists a horizon twice: {list(value)}")
        return value


class UniverseRule(_Strict):
    """A point-in-time universe: on each reconstitution date, the ``top_n`` most traded eligible names.

    Decided by :func:`training.universe.compute_membership` from data before the date only, so a
    name that delists later is a member until it delists (survivorship-free by construction).
    """

    rule: Literal["liquidity"] = Field(description="How names are ranked: by traded value (close x volume).")
    top_n: int = Field(ge=1, description="Members chosen on each reconstitution date.")
    lookback_sessions: int = Field(
        60, ge=1, description="Sessions of traded value ranked, ending at the session before the date."
    )
    statistic: Literal["median", "mean"] = Field(
        "median", description="How the lookback's daily traded values are summarised (a session without a bar is 0)."
    )
    min_price: float = Field(0.0, ge=0, description="Lowest raw close on the session before the date.")
    min_history_sessions: int = Field(252, ge=1, description="Bars a name must have had before the date.")
    reconstitute: Literal["monthly", "quarterly"] = Field(
        "monthly", description="Reconstitution dates: the first session of each month (or of each quarter)."
    )

    @property
    def name(self) -> str:
        """A stable id of the rule's parameters: the ``universe`` column of the membership table."""
        return (
            f"{self.rule}-top{self.top_n}-{self.statistic}{self.lookback_sessions}-"
            f"p{self.min_price:g}-h{self.min_history_sessions}-{self.reconstitute}"
        )


class SignalRunConfig(_Strict):
    """The ``signals:`` section of a run: universe, labels, segments, models, costs, tuning."""

    universe: tuple[str, ...] | Literal["all"] | UniverseRule = Field(
        "all",
        description="Tickers to train on, 'all' for every ticker of the data, or a point-in-time rule "
        "(e.g. {rule: liquidity, top_n: 300}).",
    )
    benchmark: str = Field("SP500", min_length=1, description="Benchmark symbol of the data source.")
    horizon: int = Field(21, ge=1, le=252, description="Label horizon in sessions.")
    segments: Segments
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    models: dict[str, ModelSpec] = Field(min_length=1, description="Model name -> its specification.")
    costs: CostConfig = Field(default_factory=CostConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)

    @field_validator("universe", mode="before")
    @classmethod
    def _rule_errors_named(cls, value: object) -> object:
        # A mapping can only be a rule: validate it as one, so its errors are not buried under the
        # union's "not a list, not 'all'" alternatives.
        if not isinstance(value, Mapping):
            return value
        try:
            return UniverseRule.model_validate(value)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in e.errors()
            )
            known = ", ".join(UniverseRule.model_fields)
            raise ValueError(f"universe rule is invalid ({problems}); its keys are {known}") from None

    @field_validator("universe")
    @classmethod
    def _tickers_listed_once(
        cls, value: tuple[str, ...] | Literal["all"] | UniverseRule
    ) -> tuple[str, ...] | Literal["all"] | UniverseRule:
        if value == "all" or isinstance(value, UniverseRule):
            return value
        if not value:
            raise ValueError("universe is empty: list tickers or write 'all'")
        blank = [t for t in value if not t.strip()]
        if blank:
            raise ValueError("universe holds an empty ticker")
        repeated = [t for t, n in Counter(value).items() if n > 1]
        if repeated:
            raise ValueError(f"ticker(s) listed twice in universe: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _some_model_enabled(self) -> Self:
        if not any(spec.enabled for spec in self.models.values()):
            raise ValueError(f"every model is disabled ({', '.join(self.models)}): enable at least one")
        return self

    @property
    def enabled_models(self) -> dict[str, ModelSpec]:
        """The models to train, in the order the file lists them."""
        return {name: spec for name, spec in self.models.items() if spec.enabled}


def check_universe(config: SignalRunConfig, tickers: Collection[str], benchmarks: Collection[str]) -> None:
    """Refuse a universe or benchmark the data does not hold.

    Args:
        config: the signals section.
        tickers: the tickers present in the data.
        benchmarks: the benchmark symbols present in the data.

    Raises:
        TrainingError: naming the missing tickers or benchmark.
    """
    if isinstance(config.universe, tuple):
        missing = [t for t in config.universe if t not in tickers]
        if missing:
            raise TrainingError(f"universe tickers not in the data: {', '.join(missing)}")
    if config.benchmark not in benchmarks:
        have = ", ".join(sorted(benchmarks)) or "none"
        raise TrainingError(f"benchmark '{config.benchmark}' is not in the data (it holds: {have})")


def check_history(config: SignalRunConfig, sessions: pd.DatetimeIndex) -> None:
    """Refuse segments the data's sessions cannot fill, before any training starts.

    Each segment must lie within the sessions and hold more than ``horizon + embargo_sessions`` of
    them (fewer would leave no row after purging against the next segment), and the walk-forward
    tuning folds, laid out inside the train segment, must fit there.

    Args:
        config: the signals section.
        sessions: the universe's session calendar (any order; duplicates ignored).

    Raises:
        TrainingError: "universe has N sessions between first and last; the segments need ...".
    """
    days = pd.DatetimeIndex(sessions).normalize().unique().sort_values()
    if days.tz is not None:
        days = days.tz_localize(None)
    seg = config.segments
    if len(days) == 0:
        raise TrainingError(f"universe has 0 sessions; the segments need {seg.train[0]}..{seg.test[1]}")
    first, last = days[0].date(), days[-1].date()
    have = f"universe has {len(days)} sessions between {first} and {last}"
    if seg.train[0] < first or seg.test[1] > last:
        raise TrainingError(f"{have}; the segments need {seg.train[0]}..{seg.test[1]}")
    embargo = config.walk_forward.embargo_sessions
    floor = config.horizon + embargo
    counts = {
        name: int(((days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))).sum())
        for name, (start, end) in (("train", seg.train), ("valid", seg.valid), ("test", seg.test))
    }
    for name, count in counts.items():
        if count <= floor:
            start, end = getattr(seg, name)
            raise TrainingError(
                f"{have}; the segments need more than horizon {config.horizon} + embargo_sessions {embargo} "
                f"= {floor} sessions in segment '{name}' ({start}..{end}), which holds {count}"
            )
    try:
        # The same arithmetic walk_forward_folds applies, so a config passing here lays out its folds.
        fold_layout(counts["train"], config.horizon, config.walk_forward)
    except TrainingError as e:
        raise TrainingError(
            f"{have}; walk_forward inside segment 'train' ({seg.train[0]}..{seg.train[1]}) needs more: {e}"
        ) from e
