"""Feature drift per Feast feature view with Evidently's ``DataDriftPreset``.

**Reference and current.** The reference is the champion model's training window (dates given by
the caller, e.g. from the model card); the current window is recent data. Both are rows of the
view's offline feature file (``<data>/features/<view>.parquet``), the same rows Feast serves.

**The test per column, and why.** Feature rows are a ticker x date panel: thousands of rows that
are far from independent (overlapping windows, a shared market). A p-value test such as KS then
flags almost any difference as significant, and its p-value shrinks with the row count alone. So:

* continuous (float) features: **normed Wasserstein distance** (in units of the reference's
  standard deviation: an effect size that does not grow with n), drift when distance >= 0.25.
  Evidently's default threshold above 1,000 rows is 0.1, but persistent financial features move
  that much between calm neighbouring years: on the bundled S&P 500 sample, 2005 vs 2006 scored
  0.04-0.24 on every technical feature (12 of 17 >= 0.1, so the view would "drift" every year),
  while 2005-2006 vs 2008 scored 0.27-2.2. 0.25 separates a regime change from ordinary wander.
* integer counts (``sent_count_*``, ``days_since_report``): **PSI**, drift when PSI >= 0.2 (the
  conventional "significant shift" level; 0.1 is only "moderate").
* cross-sectional ranks and z-scores (``*_csrank``, ``*_csz``) are **not tested**: they are
  standardised within each date, so their distribution is the same by construction and a drift
  test on them can only dilute the drifted share.

A view drifts when the share of drifted tested features is >= ``drift_share`` (0.5 by default, as
in Evidently). Columns missing on every row of either window (e.g. volume features on close-only
prices) are skipped and reported as such.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from feature_repo.definitions import EVENT_TIMESTAMP, feature_file
from feature_repo.schema import FEATURES_BY_VIEW, FeatureSpec
from feature_repo.tables import DATE, TICKER
from monitoring import reports
from monitoring.errors import MonitoringError
from monitoring.windows import Window, last_sessions

# Evidently scores are p-values for these methods (drift when below the threshold) ...
P_VALUE_METHODS: Final = frozenset({"ks", "chisquare", "z", "t_test", "anderson", "mannw", "cramer_von_mises"})
# ... and distances for these (drift when at or above the threshold).
DISTANCE_METHODS: Final = frozenset({"wasserstein", "psi", "jensenshannon", "hellinger", "kl_div", "ed"})
UNTESTED_SUFFIXES: Final = ("_csrank", "_csz")
WASSERSTEIN_THRESHOLD: Final = 0.25
PSI_THRESHOLD: Final = 0.2


@dataclass(frozen=True)
class ColumnTest:
    """The Evidently method and threshold of one column."""

    method: str
    threshold: float

    def __post_init__(self) -> None:
        if self.method not in P_VALUE_METHODS | DISTANCE_METHODS:
            raise MonitoringError(f"unknown drift method {self.method!r}")

    def detected(self, score: float) -> bool:
        """Whether ``score`` means drift for this method (direction depends on the method)."""
        if math.isnan(score):
            return False
        return score < self.threshold if self.method in P_VALUE_METHODS else score >= self.threshold


def default_column_test(spec: FeatureSpec) -> ColumnTest | None:
    """The test of one feature per the module docstring; None for a feature that is not tested."""
    if spec.name.endswith(UNTESTED_SUFFIXES):
        return None
    if spec.dtype == "int64":
        return ColumnTest("psi", PSI_THRESHOLD)
    return ColumnTest("wasserstein", WASSERSTEIN_THRESHOLD)


def view_tests(view: str) -> dict[str, ColumnTest]:
    """The tested features of ``view`` (in schema order) with their tests."""
    if view not in FEATURES_BY_VIEW:
        raise MonitoringError(f"unknown feature view {view!r}; known: {sorted(FEATURES_BY_VIEW)}")
    tests = {s.name: default_column_test(s) for s in FEATURES_BY_VIEW[view]}
    return {name: test for name, test in tests.items() if test is not None}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift score and verdict."""

    feature: str
    method: str
    threshold: float
    score: float
    detected: bool


@dataclass(frozen=True)
class ViewDrift:
    """The drift of one feature view between a reference and a current window."""

    view: str
    reference: dict[str, str]
    current: dict[str, str]
    n_reference: int
    n_current: int
    share: float
    detected: bool
    features: list[FeatureDrift]
    skipped: dict[str, str] = field(default_factory=dict)
    run_at: float = 0.0
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ViewDrift:
        data = dict(raw)
        data["features"] = [FeatureDrift(**f) for f in raw["features"]]
        return cls(**data)


def load_view(data_dir: Path, view: str) -> pd.DataFrame:
    """The view's offline feature rows (event timestamp and features)."""
    path = Path(feature_file(str(data_dir), view))
    if not path.exists():
        raise MonitoringError(f"no feature file for {view} at {path}: run the features stage first")
    return pd.read_parquet(path)


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    view: str,
    *,
    drift_share: float = 0.5,
    tests: Mapping[str, ColumnTest] | None = None,
) -> tuple[ViewDrift, Any]:
    """Run Evidently on the tested features of ``view``; returns the verdict and Evidently's snapshot.

    Raises:
        MonitoringError: a window is empty, or no tested column has data in both windows.
    """
    with warnings.catch_warnings():
        # Evidently's import emits numpy and litestar deprecation notices (and resets filters on the
        # way): they say nothing about the user's data, so they are silenced for the import only.
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise MonitoringError(f"{view}: the {'reference' if reference.empty else 'current'} window has no rows")
    chosen = dict(tests if tests is not None else view_tests(view))
    skipped = _unusable_columns(reference, current, list(chosen))
    columns = [c for c in chosen if c not in skipped]
    if not columns:
        raise MonitoringError(f"{view}: no tested feature has data in both windows ({skipped})")
    definition = DataDefinition(numerical_columns=columns)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=drift_share,
        per_column_method={c: chosen[c].method for c in columns},
        per_column_threshold={c: chosen[c].threshold for c in columns},
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current[columns].astype("float64"), data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns].astype("float64"), data_definition=definition),
    )
    scores = _value_drift_scores(snapshot.dict())
    features = [
        FeatureDrift(c, chosen[c].method, chosen[c].threshold, scores[c], chosen[c].detected(scores[c]))
        for c in columns
    ]
    share = sum(f.detected for f in features) / len(features)
    result = ViewDrift(
        view=view,
        reference=_span(reference),
        current=_span(current),
        n_reference=len(reference),
        n_current=len(current),
        share=share,
        detected=share >= drift_share,
        features=features,
        skipped=skipped,
    )
    return result, snapshot


def _unusable_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    skipped: dict[str, str] = {}
    for c in columns:
        if c not in reference.columns or c not in current.columns:
            skipped[c] = "column missing from the feature file"
        elif reference[c].notna().sum() == 0 or current[c].notna().sum() == 0:
            skipped[c] = "no values in one of the windows"
    return skipped


def _value_drift_scores(report: Mapping[str, Any]) -> dict[str, float]:
    """Per-column scores from the ``ValueDrift`` metrics of an Evidently 0.7 snapshot dict."""
    scores: dict[str, float] = {}
    for metric in report["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            value = metric["value"]
            scores[config["column"]] = float(value) if value is not None else math.nan
    return scores


def _span(frame: pd.DataFrame) -> dict[str, str]:
    ts = pd.to_datetime(frame[EVENT_TIMESTAMP])
    return {"start": ts.min().date().isoformat(), "end": ts.max().date().isoformat()}


def run_view(
    data_dir: Path,
    view: str,
    reference: Window,
    current: Window,
    *,
    reports_dir: Path,
    drift_share: float = 0.5,
    frame: pd.DataFrame | None = None,
) -> ViewDrift:
    """Drift of one view: load, window, compare, write the HTML/JSON reports and the latest summary."""
    started = time.perf_counter()
    rows = frame if frame is not None else load_view(data_dir, view)
    result, snapshot = compare(reference.select(rows), current.select(rows), view, drift_share=drift_share)
    now = datetime.now(UTC)
    result = replace(result, run_at=now.timestamp(), duration_seconds=time.perf_counter() - started)
    run_dir = reports.drift_run_dir(reports_dir, now)
    snapshot.save_html(str(run_dir / f"{view}.html"))
    snapshot.save_json(str(run_dir / f"{view}.evidently.json"))
    reports.write_json(run_dir / f"{view}.summary.json", result.to_dict())
    reports.write_json(reports.latest_drift_file(reports_dir, view), result.to_dict())
    return result


PREDICTIONS_VIEW: Final = "predictions"


def predictions_frame(log: pd.DataFrame) -> pd.DataFrame:
    """The predictions log (``date, ticker, model, score``) wide: one score column per model."""
    missing = {DATE, TICKER, "model", "score"} - set(log.columns)
    if missing:
        raise MonitoringError(f"the predictions log lacks column(s) {sorted(missing)}")
    wide = log.pivot_table(index=[DATE, TICKER], columns="model", values="score", aggfunc="last").reset_index()
    wide.columns = [str(c) for c in wide.columns]
    wide[EVENT_TIMESTAMP] = pd.to_datetime(wide[DATE])
    return wide


def run_predictions(
    log: pd.DataFrame, *, current_sessions: int, reports_dir: Path, drift_share: float = 0.5
) -> ViewDrift:
    """Drift of each model's score distribution: the newest sessions against every earlier logged date.

    The same normed Wasserstein test and threshold as the numeric features (the scores are
    probabilities or blends of them). A model without scores in one of the windows (the ensemble
    before its first test date) is skipped and named, as an empty feature column is.
    """
    started = time.perf_counter()
    frame = predictions_frame(log)
    models = [c for c in frame.columns if c not in (DATE, TICKER, EVENT_TIMESTAMP)]
    current = last_sessions(frame, current_sessions)
    days = pd.to_datetime(frame[EVENT_TIMESTAMP]).dt.normalize()
    reference_rows = frame.loc[days < pd.Timestamp(current.start)]
    tests = {m: ColumnTest("wasserstein", WASSERSTEIN_THRESHOLD) for m in models}
    result, snapshot = compare(
        reference_rows, current.select(frame), PREDICTIONS_VIEW, drift_share=drift_share, tests=tests
    )
    now = datetime.now(UTC)
    result = replace(result, run_at=now.timestamp(), duration_seconds=time.perf_counter() - started)
    run_dir = reports.drift_run_dir(reports_dir, now)
    snapshot.save_html(str(run_dir / f"{PREDICTIONS_VIEW}.html"))
    reports.write_json(run_dir / f"{PREDICTIONS_VIEW}.summary.json", result.to_dict())
    reports.write_json(reports.latest_drift_file(reports_dir, PREDICTIONS_VIEW), result.to_dict())
    return result
