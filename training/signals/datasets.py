"""Training frames: a feature service's point-in-time features joined to realised outcomes.

This is the bridge from features to models. A sample is a ``(ticker, t)`` row of the outcomes
frame (:func:`feature_repo.transforms.outcomes.forward_outcomes`). Its features come only through
Feast's point-in-time join at t (the newest feature row at or before t within the view's TTL), so
no feature can look ahead. Its labels are outcomes, which look forward by definition; each carries
``label_end`` (the outcome's ``known_at``) so walk-forward validation can purge and embargo by it
(:func:`training.validation.walk_forward_folds`).

Feast returns rows in an order of its own, so features are joined back on ``(ticker, date)``
explicitly, never by position. The frame's :attr:`TrainingFrame.snapshot_hash` identifies its
exact content and is what the training pipeline logs to MLflow as the data snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_repo.definitions import EVENT_TIMESTAMP
from feature_repo.schema import OUTCOME_HORIZON
from feature_repo.store import FeatureRepo, service_feature_names
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.outcomes import KNOWN_AT
from training.errors import TrainingError

DateBound = date | datetime | str | pd.Timestamp | None


@dataclass(frozen=True, eq=False)
class TrainingFrame:
    """Model inputs and labels, one row per ``(ticker, date)``, sorted by date then ticker.

    Attributes:
        X: float64 feature columns, in the feature service's declared order.
        y: binary label (``label_{h}d``), int64.
        target: continuous forward excess return (``fwd_excess_{h}d``).
        dates: the sample date t (tz-naive, midnight).
        label_end: the session the label becomes known (``known_at``), always after ``dates``.
        tickers: the ticker of each row.
        feature_names: ``list(X.columns)``, the order a model's signature must record.
        service: the Feast feature service the features came from.
        snapshot_hash: sha256 hex digest of keys, features and labels (see :func:`snapshot_hash`).
        horizon: the label horizon in sessions.
        dropped: rows of the window dropped because every feature was missing at t.
        label: the continuous training label (e.g. ``xs_rank_{h}d``, the per-date rank among the
            universe's members) when one was asked for, else None.
    """

    X: pd.DataFrame
    y: pd.Series
    target: pd.Series
    dates: pd.Series
    label_end: pd.Series
    tickers: pd.Series
    feature_names: list[str]
    service: str
    snapshot_hash: str
    horizon: int
    dropped: int
    label: pd.Series | None = None

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask: npt.NDArray[np.bool_]) -> TrainingFrame:
        """The rows under ``mask`` (a segment), index reset.

        The frame-level facts (``feature_names``, ``service``, ``horizon``, ``snapshot_hash``,
        ``dropped``) stay those of the whole frame: a segment is trained on, never registered alone.
        """

        def pick(s: pd.Series) -> pd.Series:
            return s[mask].reset_index(drop=True)

        return replace(
            self,
            X=self.X[mask].reset_index(drop=True),
            y=pick(self.y),
            target=pick(self.target),
            dates=pick(self.dates),
            label_end=pick(self.label_end),
            tickers=pick(self.tickers),
            label=None if self.label is None else pick(self.label),
        )


def build_training_frame(
    repo: FeatureRepo,
    service: str,
    outcomes: pd.DataFrame,
    *,
    start: DateBound = None,
    end: DateBound = None,
    horizon: int = OUTCOME_HORIZON,
    drop_all_nan: bool = True,
    label_column: str | None = None,
) -> TrainingFrame:
    """Join a feature service point-in-time onto the outcome rows dated in ``[start, end]``.

    Args:
        repo: an applied Feast repo whose offline store holds the service's feature files.
        service: the feature service name (one per model version).
        outcomes: the frame of :func:`~feature_repo.transforms.outcomes.forward_outcomes`, with
            ``ticker``, ``date``, ``known_at``, ``fwd_excess_{h}d`` and ``label_{h}d``.
        start: first sample date (inclusive); None for the first outcome.
        end: last sample date (inclusive); None for the last outcome.
        horizon: h, selecting the outcome columns.
        drop_all_nan: drop rows where every feature is missing at t (counted in ``dropped``).
        label_column: an outcome column to carry as :attr:`TrainingFrame.label` (e.g.
            ``xs_rank_{h}d`` of :func:`~feature_repo.transforms.outcomes.cross_sectional_labels`).

    Returns:
        The training frame, sorted by date then ticker.

    Raises:
        TrainingError: unknown service, outcomes without the horizon's columns, missing or
            duplicated labels, or no sample in the window.
    """
    feature_names = _service_features(repo, service)
    samples = _window(_labelled(outcomes, horizon, label_column), start, end)
    entity = pd.DataFrame(
        {TICKER: samples[TICKER].to_numpy(), EVENT_TIMESTAMP: samples[DATE].dt.tz_localize("UTC").to_numpy()}
    )
    joined = _join_features(samples, repo.historical(service, entity), feature_names)
    missing_all = joined[feature_names].isna().all(axis=1).to_numpy()
    dropped = int(missing_all.sum()) if drop_all_nan else 0
    if drop_all_nan:
        joined = joined.loc[~missing_all]
    if joined.empty:
        raise TrainingError(
            f"service '{service}' has no features for any of the {len(samples)} sample(s) in the window; "
            "were its feature files written and applied?"
        )
    return _assemble(joined, feature_names, service=service, horizon=horizon, dropped=dropped, label=label_column)


def _assemble(
    joined: pd.DataFrame,
    feature_names: list[str],
    *,
    service: str,
    horizon: int,
    dropped: int,
    label: str | None = None,
) -> TrainingFrame:
    """Sort the joined rows by date then ticker and split them into a :class:`TrainingFrame`."""
    joined = joined.sort_values([DATE, TICKER], kind="stable").reset_index(drop=True)
    tickers = joined[TICKER].astype(str).rename(TICKER)
    dates = joined[DATE].rename(DATE)
    features = joined[feature_names].astype("float64")
    y = joined[f"label_{horizon}d"].astype("int64").rename("label")
    target = joined[f"fwd_excess_{horizon}d"].astype("float64").rename("target")
    label_end = joined[KNOWN_AT].rename("label_end")
    return TrainingFrame(
        X=features,
        y=y,
        target=target,
        dates=dates,
        label_end=label_end,
        tickers=tickers,
        feature_names=list(feature_names),
        service=service,
        snapshot_hash=snapshot_hash(
            tickers=tickers, dates=dates, features=features, y=y, target=target, label_end=label_end
        ),
        horizon=horizon,
        dropped=dropped,
        label=None if label is None else joined[label].astype("float64").rename("xs_label"),
    )


def snapshot_hash(
    *,
    tickers: pd.Series,
    dates: pd.Series,
    features: pd.DataFrame,
    y: pd.Series,
    target: pd.Series,
    label_end: pd.Series,
) -> str:
    """sha256 of the rows' keys, feature names and values, and labels, in row order.

    Deterministic for identical inputs; any changed key, feature value or label changes it. NaNs
    are canonicalised (a NaN's sign and payload bits depend on how it was produced) and ``-0.0``
    hashes as ``0.0``, so equal-looking frames hash equally.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(features.columns.astype(str)).encode())
    digest.update(b"\x1e" + "\x1f".join(tickers.astype(str)).encode())
    for stamps in (dates, label_end):
        digest.update(pd.DatetimeIndex(stamps).as_unit("ns").asi8.tobytes())
    for values in (features.to_numpy(dtype="float64"), target.to_numpy(dtype="float64")):
        canonical = np.where(np.isnan(values), np.nan, values + 0.0)
        digest.update(np.ascontiguousarray(canonical).tobytes())
    digest.update(y.to_numpy(dtype="int64").tobytes())
    return digest.hexdigest()


def _service_features(repo: FeatureRepo, service: str) -> list[str]:
    """The service's feature names in declared order, or a TrainingError listing the known ones."""
    known = {s.name: s for s in repo.store.list_feature_services()}
    if service not in known:
        names = ", ".join(sorted(known)) or "none (was the repo applied?)"
        raise TrainingError(f"unknown feature service '{service}'; known services: {names}")
    return service_feature_names(known[service])


def _labelled(outcomes: pd.DataFrame, horizon: int, label_column: str | None = None) -> pd.DataFrame:
    """The key, ``known_at`` and horizon columns of ``outcomes``, checked and with tz-naive dates."""
    needed = [TICKER, DATE, KNOWN_AT, f"fwd_excess_{horizon}d", f"label_{horizon}d"]
    if label_column is not None and label_column not in needed:
        needed.append(label_column)
    absent = [c for c in needed if c not in outcomes.columns]
    if absent:
        raise TrainingError(
            f"outcomes lack column(s) {absent} for a {horizon}-session horizon; "
            f"they have {list(outcomes.columns)} (compute them with forward_outcomes(horizon={horizon}), "
            "the xs_ labels with cross_sectional_labels)"
        )
    frame = outcomes[needed].copy()
    for column in (DATE, KNOWN_AT):
        stamps = pd.to_datetime(frame[column])
        frame[column] = (stamps.dt.tz_convert(None) if stamps.dt.tz is not None else stamps).astype("datetime64[ns]")
    holes = frame[needed[2:]].isna().any(axis=1)
    if holes.any():
        raise TrainingError(f"{int(holes.sum())} outcome row(s) have a missing known_at, target or label")
    duplicated = frame.duplicated([TICKER, DATE])
    if duplicated.any():
        first = frame.loc[duplicated].iloc[0]
        raise TrainingError(
            f"{int(duplicated.sum())} duplicated (ticker, date) outcome row(s), first {first[TICKER]} {first[DATE]}"
        )
    return frame


def _window(frame: pd.DataFrame, start: DateBound, end: DateBound) -> pd.DataFrame:
    """Rows dated in ``[start, end]`` (inclusive, calendar days), or a TrainingError when none are."""
    first = pd.Timestamp(start).normalize() if start is not None else None
    last = pd.Timestamp(end).normalize() if end is not None else None
    if first is not None and last is not None and first > last:
        raise TrainingError(f"empty window: start {first.date()} is after end {last.date()}")
    keep = pd.Series(True, index=frame.index)
    if first is not None:
        keep &= frame[DATE] >= first
    if last is not None:
        keep &= frame[DATE] < last + pd.Timedelta(days=1)
    if not keep.any():
        span = f"{frame[DATE].min()}..{frame[DATE].max()}" if len(frame) else "nothing"
        raise TrainingError(f"empty window: no outcome dated in [{start}, {end}]; the outcomes cover {span}")
    return frame.loc[keep].reset_index(drop=True)


def _join_features(samples: pd.DataFrame, features: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """Attach Feast's rows to the samples by ``(ticker, date)``; Feast does not keep row order."""
    stamps = pd.to_datetime(features[EVENT_TIMESTAMP])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(None)
    keyed = features[[TICKER, *feature_names]].reset_index(drop=True)
    keyed.insert(1, DATE, stamps.astype("datetime64[ns]").to_numpy())
    if len(keyed) != len(samples):
        raise TrainingError(f"Feast returned {len(keyed)} row(s) for {len(samples)} sample(s)")
    return samples.merge(keyed, on=[TICKER, DATE], how="left", validate="one_to_one")
