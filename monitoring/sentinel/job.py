"""``python -m monitoring sentinel``: fit on a reference window, score the sessions after it, store and publish.

Outputs under the data folder:

* ``reports/sentinel/anomalies.parquet``: every flagged (ticker, session) with its ticker class,
  score, statistics, standardised deviations and reasons (the largest deviations);
* ``reports/sentinel/latest.json``: the run's summary, what the exporter serves
  (``portfolio_os_data_anomalies{ticker_class}`` counts the newest session's anomalies);
* ``features/data_quality.parquet``: one row per scored (ticker, session), the Feast
  ``data_quality`` view, materialised online so the gateway flags tickers without scikit-learn.

It runs after the features are written (the CronJob after materialisation, or by hand); only the
sessions after the reference window are scored, so no flag comes from a model fitted on its future.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_repo.data_quality import DATA_QUALITY_VIEW, DEVIATION_PREFIX, STATISTIC_NAMES, TICKER_CLASSES, reasons
from feature_repo.tables import DATE, TICKER
from monitoring import reports
from monitoring.errors import MonitoringError
from monitoring.exporter import SENTINEL_SUMMARY
from monitoring.sentinel.model import SentinelParams, fit
from monitoring.sentinel.statistics import daily_statistics, load_inputs, ticker_classes
from monitoring.windows import Window

SENTINEL: Final = "sentinel"
TICKER_CLASS: Final = "ticker_class"


def anomalies_file(reports_dir: Path) -> Path:
    return reports_dir / SENTINEL / "anomalies.parquet"


def latest_sentinel_file(reports_dir: Path) -> Path:
    """The summary the exporter serves (:data:`monitoring.exporter.SENTINEL_SUMMARY`)."""
    return reports_dir / SENTINEL_SUMMARY


@dataclass(frozen=True)
class SentinelResult:
    """What one run found: the view rows, the anomalies and the summary."""

    view: pd.DataFrame
    anomalies: pd.DataFrame
    summary: dict[str, Any]


def score_inputs(
    inputs: pd.DataFrame,
    reference: Window,
    *,
    current: Window | None = None,
    params: SentinelParams | None = None,
) -> SentinelResult:
    """Statistics, fit on ``reference``, score ``current`` (default: every session after the reference).

    Raises:
        MonitoringError: the scored window starts inside the reference window, or either is empty.
    """
    params = params or SentinelParams()
    if current is not None and current.start <= reference.end:
        raise MonitoringError(
            f"the scored window starts {current.start}, inside the reference window (ends {reference.end}): "
            "a flag would come from a model fitted on its own future"
        )
    started = time.perf_counter()
    statistics = daily_statistics(inputs)
    ref_start, ref_end = pd.Timestamp(reference.start), pd.Timestamp(reference.end)
    in_reference = (statistics[DATE] >= ref_start) & (statistics[DATE] <= ref_end)
    model = fit(statistics.loc[in_reference], params)
    after = statistics[DATE] > ref_end
    if current is not None:
        after &= (statistics[DATE] >= pd.Timestamp(current.start)) & (statistics[DATE] <= pd.Timestamp(current.end))
    scored_rows = statistics.loc[after].reset_index(drop=True)
    if scored_rows.empty:
        raise MonitoringError(f"no sessions to score after the reference window (ends {reference.end})")
    scored = model.score(scored_rows)
    classes = ticker_classes(inputs, ref_start, ref_end)
    deviations = scored.deviations.add_prefix(DEVIATION_PREFIX)
    view = pd.concat(
        [
            scored_rows[[TICKER, DATE]],
            pd.DataFrame({"anomaly": scored.flags.astype("int64"), "anomaly_score": scored.scores}),
            deviations,
        ],
        axis=1,
    )
    rule = np.where(scored.forest & scored.envelope, "both", np.where(scored.forest, "isolation_forest", "envelope"))
    flagged = pd.concat([view, scored_rows[list(STATISTIC_NAMES)]], axis=1).assign(rule=rule).loc[scored.flags].copy()
    flagged.insert(2, TICKER_CLASS, flagged[TICKER].map(classes).fillna(TICKER_CLASSES[-1]).to_numpy())
    flagged["reasons"] = [
        "; ".join(r.text() for r in reasons({s: row[f"{DEVIATION_PREFIX}{s}"] for s in STATISTIC_NAMES}))
        for _, row in flagged.iterrows()
    ]
    summary = _summary(view, flagged, classes, reference, threshold=model.threshold, params=params)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return SentinelResult(
        view=view, anomalies=flagged.drop(columns=["anomaly"]).reset_index(drop=True), summary=summary
    )


def _summary(
    view: pd.DataFrame,
    flagged: pd.DataFrame,
    classes: pd.Series,
    reference: Window,
    *,
    threshold: float,
    params: SentinelParams,
) -> dict[str, Any]:
    newest = view[DATE].max()
    on_newest = view.loc[view[DATE] == newest, TICKER].map(classes).fillna(TICKER_CLASSES[-1])
    flagged_newest = flagged.loc[flagged[DATE] == newest, TICKER_CLASS]
    return {
        "reference": reference.to_dict(),
        "scored": {"start": view[DATE].min().date().isoformat(), "end": newest.date().isoformat()},
        "newest_date": newest.date().isoformat(),
        "threshold": threshold,
        "contamination": params.contamination,
        "rows_scored": len(view),
        "anomalies_total": len(flagged),
        "tickers_by_class": {c: int((on_newest == c).sum()) for c in TICKER_CLASSES},
        "anomalies_by_class": {c: int((flagged_newest == c).sum()) for c in TICKER_CLASSES},
    }


def write_outputs(data_dir: Path, result: SentinelResult, run_at: datetime) -> list[Path]:
    """The anomalies table, the view's feature file and the summary (last: the exporter reads it)."""
    from feature_repo.files import write_feature_file

    reports_dir = data_dir / "reports"
    table = anomalies_file(reports_dir)
    table.parent.mkdir(parents=True, exist_ok=True)
    partial = table.with_suffix(".partial")
    result.anomalies.to_parquet(partial, index=False)
    partial.replace(table)
    view_file = write_feature_file(data_dir, DATA_QUALITY_VIEW, result.view)
    summary = write_json_summary(reports_dir, {**result.summary, "run_at": run_at.timestamp()})
    return [table, view_file, summary]


def write_json_summary(reports_dir: Path, summary: dict[str, Any]) -> Path:
    return reports.write_json(latest_sentinel_file(reports_dir), summary)


def materialize_view(data_dir: Path) -> None:
    """Register the views and load the data_quality rows into the online store (newest per ticker)."""
    from feature_repo.files import read_feature_file
    from feature_repo.settings import FeatureStoreSettings
    from feature_repo.store import FeatureRepo, full_window

    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))  # type: ignore[call-arg]
    repo.apply()
    start, end = full_window(read_feature_file(data_dir, DATA_QUALITY_VIEW)["event_timestamp"])
    repo.materialize(start, end, [DATA_QUALITY_VIEW])


def run(
    data_dir: Path,
    reference: Window,
    *,
    current: Window | None = None,
    params: SentinelParams | None = None,
    materialize: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SentinelResult:
    """Load the inputs, score, write the outputs and (by default) materialise the view online."""
    result = score_inputs(load_inputs(data_dir), reference, current=current, params=params)
    write_outputs(data_dir, result, clock())
    if materialize:
        materialize_view(data_dir)
    return result
