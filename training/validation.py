"""Walk-forward folds and fixed date segments that cannot leak labels across the split.

A sample is a ``(ticker, date)`` row whose label is computed from the sessions ``[date, label_end]``;
``label_end`` is the outcome's ``known_at`` (the session h sessions later, see
:mod:`feature_repo.transforms.outcomes`). Adjacent rows' labels overlap, so a model trained on a row
whose label window reaches into the test window has seen part of the test answers. The rules here
follow López de Prado (*Advances in Financial Machine Learning*, ch. 7), counted in sessions:

* **Sessions** are the sorted unique sample dates (the market calendar of the samples), compared by
  calendar day. A ``label_end`` that is not itself a session counts as the next session, and one
  past the last session as one past the end: when in doubt a row is purged, never kept.
* **Purging**: a training row is dropped when its label window ``[date, label_end]`` overlaps the
  test window ``[test_start, test_end]``.
* **Embargo after the test window**: training rows dated within ``embargo_sessions`` sessions after
  ``test_end`` are dropped too, because their features look back into the test window.
  Walk-forward training never comes after its test window, so this side only matters to
  :func:`purged_train_mask` callers that train on both sides of a test window.
* **Gap before the test window**: in addition, every training label must close at least
  ``embargo_sessions`` whole sessions before ``test_start`` (its ``label_end`` session position is
  at most ``test_start``'s minus ``embargo_sessions + 1``), so serial correlation between the last
  training labels and the first test features has a buffer. With an embargo of 0 this is exactly
  purging: every training ``label_end`` < ``test_start``.

Everything is vectorised over rows (``searchsorted`` on the session calendar); only folds loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.errors import TrainingError

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
DateLike = pd.Series | pd.DatetimeIndex | np.ndarray


class WalkForwardConfig(BaseModel):
    """How :func:`walk_forward_folds` lays out its folds (all sizes in sessions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_folds: int = Field(5, ge=1, description="Number of consecutive test windows.")
    min_train_sessions: int = Field(
        252, ge=1, description="Sessions of usable (purged) training rows the first fold needs at least."
    )
    test_sessions: int | None = Field(
        None,
        ge=1,
        description="Sessions per test window; None splits what follows the first training window evenly.",
    )
    embargo_sessions: int = Field(5, ge=0, description="Buffer between training labels and each test window.")
    expanding: bool = Field(True, description="True: train on all history; False: a rolling window.")
    max_train_sessions: int | None = Field(
        None, ge=1, description="Rolling window only: the most recent usable sessions each fold trains on."
    )

    @model_validator(mode="after")
    def _window_is_consistent(self) -> Self:
        if self.expanding and self.max_train_sessions is not None:
            raise ValueError("max_train_sessions applies to a rolling window only: set expanding=False or drop it")
        if not self.expanding and self.max_train_sessions is None:
            raise ValueError("a rolling window (expanding=False) needs max_train_sessions")
        if self.max_train_sessions is not None and self.max_train_sessions < self.min_train_sessions:
            raise ValueError(
                f"max_train_sessions ({self.max_train_sessions}) is below min_train_sessions "
                f"({self.min_train_sessions}): no fold could train on enough history"
            )
        return self


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward split: row positions to train and test on, and its dates for reporting.

    Attributes:
        train_index: positions (into the rows given) of the purged training rows, ascending.
        test_index: positions of the rows dated inside the test window, ascending.
        train_start: first date among the training rows.
        train_end: last date among the training rows.
        test_start: first session of the test window.
        test_end: last session of the test window.
    """

    train_index: IntArray
    test_index: IntArray
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


class Segments(BaseModel):
    """Fixed train/valid/test date segments of a run config, each ``(first day, last day)`` inclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: tuple[date, date] = Field(description="First and last day of the training segment.")
    valid: tuple[date, date] = Field(description="First and last day of the validation segment.")
    test: tuple[date, date] = Field(description="First and last day of the test segment.")

    @model_validator(mode="after")
    def _ordered_and_disjoint(self) -> Self:
        named = (("train", self.train), ("valid", self.valid), ("test", self.test))
        for name, (start, end) in named:
            if start > end:
                raise ValueError(f"segment '{name}' is empty: it starts on {start}, after it ends on {end}")
        for (before, (b0, b1)), (after, (a0, a1)) in itertools.pairwise(named):
            if a0 < b0:
                raise ValueError(
                    f"segment '{after}' ({a0}..{a1}) starts before segment '{before}' ({b0}..{b1}); "
                    "segments must run train, valid, test in time"
                )
            if a0 <= b1:
                raise ValueError(
                    f"segments '{before}' ({b0}..{b1}) and '{after}' ({a0}..{a1}) overlap; "
                    f"'{after}' must start after {b1}"
                )
        return self


@dataclass(frozen=True, eq=False)
class SegmentMasks:
    """Boolean row masks of :func:`segment_masks`; a row is in at most one of them."""

    train: BoolArray
    valid: BoolArray
    test: BoolArray


def walk_forward_folds(dates: DateLike, label_end: DateLike, config: WalkForwardConfig) -> list[Fold]:
    """Time-ordered walk-forward folds, purged and embargoed (see the module docstring).

    The test windows are contiguous, do not overlap, and the last one ends on the last session;
    sessions left over before the first test window go to the training history. Each fold trains on
    rows dated before its test window whose labels close at least ``embargo_sessions`` sessions
    before it: all of them (expanding) or those in the last ``max_train_sessions`` sessions that
    hold any (rolling).

    Args:
        dates: the date of each row (one per sample; several tickers share a date).
        label_end: the last session each row's label depends on (``known_at``), same length.
        config: fold layout.

    Returns:
        ``config.n_folds`` folds in time order.

    Raises:
        TrainingError: on malformed dates, or when the samples hold too few sessions for the folds.
    """
    sessions, date_pos, end_pos = _positions(dates, label_end)
    span = int((end_pos - date_pos).max())
    first_test, test_len = fold_layout(len(sessions), span, config)
    folds = []
    for k in range(config.n_folds):
        test_first = first_test + k * test_len
        test_last = test_first + test_len - 1
        train = (date_pos < test_first) & _keep(date_pos, end_pos, test_first, test_last, config.embargo_sessions)
        if config.max_train_sessions is not None:
            train &= date_pos > date_pos[train].max() - config.max_train_sessions
        train_index = np.flatnonzero(train).astype(np.int64)
        test_index = np.flatnonzero((date_pos >= test_first) & (date_pos <= test_last)).astype(np.int64)
        folds.append(
            Fold(
                train_index=train_index,
                test_index=test_index,
                train_start=sessions[date_pos[train_index].min()],
                train_end=sessions[date_pos[train_index].max()],
                test_start=sessions[test_first],
                test_end=sessions[test_last],
            )
        )
    return folds


def purged_train_mask(
    dates: DateLike, label_end: DateLike, test_start: date, test_end: date, embargo_sessions: int = 0
) -> BoolArray:
    """Rows that may train a model tested on ``[test_start, test_end]``, from either side of it.

    A row is refused when its label window overlaps the test window, when its label closes within
    ``embargo_sessions`` sessions before ``test_start``, or when it is dated within
    ``embargo_sessions`` sessions after ``test_end`` (rows inside the test window always overlap).

    Args:
        dates: the date of each row.
        label_end: the last session each row's label depends on, same length.
        test_start: first day of the test window (inclusive).
        test_end: last day of the test window (inclusive).
        embargo_sessions: the buffer on each side, in sessions.

    Returns:
        One boolean per row, True where the row may be used for training.

    Raises:
        TrainingError: on malformed dates, a negative embargo or an empty test window.
    """
    if embargo_sessions < 0:
        raise TrainingError(f"embargo_sessions must be >= 0, got {embargo_sessions}")
    sessions, date_pos, end_pos = _positions(dates, label_end)
    first = int(sessions.searchsorted(_day(test_start, sessions), side="left"))
    last = int(sessions.searchsorted(_day(test_end, sessions), side="right")) - 1
    if last < first:
        raise TrainingError(f"test window {test_start}..{test_end} holds no session of the samples")
    return _keep(date_pos, end_pos, first, last, embargo_sessions)


def segment_masks(
    dates: DateLike, label_end: DateLike, segments: Segments, *, embargo_sessions: int = 0
) -> SegmentMasks:
    """Rows of each fixed segment, with train purged against valid/test and valid against test.

    A training row is dropped when its label window reaches into the validation segment or later
    (its ``label_end`` is not at least ``embargo_sessions`` sessions before the first session of
    ``valid``); a validation row likewise against ``test``. Test rows are kept as they are.

    Args:
        dates: the date of each row.
        label_end: the last session each row's label depends on, same length.
        segments: the train/valid/test date segments.
        embargo_sessions: extra buffer, in sessions, between a segment's labels and the next segment.

    Returns:
        The three boolean row masks.

    Raises:
        TrainingError: on malformed dates, a negative embargo, or a segment left without samples.
    """
    if embargo_sessions < 0:
        raise TrainingError(f"embargo_sessions must be >= 0, got {embargo_sessions}")
    sessions, date_pos, end_pos = _positions(dates, label_end)
    days = sessions[date_pos]
    inside = {
        name: np.asarray((days >= _day(start, sessions)) & (days <= _day(end, sessions)))
        for name, (start, end) in (("train", segments.train), ("valid", segments.valid), ("test", segments.test))
    }
    valid_first = int(sessions.searchsorted(_day(segments.valid[0], sessions), side="left"))
    test_first = int(sessions.searchsorted(_day(segments.test[0], sessions), side="left"))
    masks = SegmentMasks(
        train=inside["train"] & (end_pos + embargo_sessions < valid_first),
        valid=inside["valid"] & (end_pos + embargo_sessions < test_first),
        test=inside["test"],
    )
    for name in ("train", "valid", "test"):
        if not getattr(masks, name).any():
            start, end = getattr(segments, name)
            raise TrainingError(f"segment '{name}' ({start}..{end}) holds no samples after purging")
    return masks


def _keep(date_pos: IntArray, end_pos: IntArray, test_first: int, test_last: int, embargo: int) -> BoolArray:
    """Rows neither purged against session positions ``[test_first, test_last]`` nor embargoed."""
    # Before or inside the window: the label (plus the gap) must close before the window opens.
    # After it: the row must be dated more than ``embargo`` sessions after the window closes.
    reaches_in = end_pos + embargo >= test_first
    too_close_after = date_pos <= test_last + embargo
    return np.asarray(~(reaches_in & too_close_after))


def fold_layout(n_sessions: int, span: int, config: WalkForwardConfig) -> tuple[int, int]:
    """First test session position and test window length, or a TrainingError naming the shortfall."""
    # The first fold keeps sessions [0, first_test - embargo - span), so this many precede its test window.
    lead = config.min_train_sessions + span + config.embargo_sessions
    test_len = config.test_sessions or max((n_sessions - lead) // config.n_folds, 1)
    need = lead + config.n_folds * test_len
    if n_sessions < need:
        raise TrainingError(
            f"universe has {n_sessions} sessions, folds need {need}: min_train_sessions "
            f"{config.min_train_sessions} + label span {span} + embargo_sessions {config.embargo_sessions} "
            f"+ {config.n_folds} test window(s) of {test_len} session(s)"
        )
    return n_sessions - config.n_folds * test_len, test_len


def _positions(dates: DateLike, label_end: DateLike) -> tuple[pd.DatetimeIndex, IntArray, IntArray]:
    """The session calendar, and each row's date and ``label_end`` as positions in it."""
    start = _as_days(dates, "dates")
    end = _as_days(label_end, "label_end")
    if len(start) != len(end):
        raise TrainingError(f"dates has {len(start)} rows but label_end has {len(end)}")
    if len(start) == 0:
        raise TrainingError("no samples: dates is empty")
    if str(start.tz) != str(end.tz):
        raise TrainingError(f"dates (tz {start.tz}) and label_end (tz {end.tz}) must share a time zone")
    early = np.flatnonzero(np.asarray(end < start))
    if early.size:
        row = int(early[0])
        raise TrainingError(
            f"{early.size} row(s) have label_end before date, first at row {row}: {end[row]} < {start[row]}"
        )
    sessions = pd.DatetimeIndex(start.unique()).sort_values()
    date_pos = np.asarray(sessions.searchsorted(start), dtype=np.int64)
    end_pos = np.asarray(sessions.searchsorted(end, side="left"), dtype=np.int64)
    return sessions, date_pos, end_pos


def _as_days(values: DateLike, name: str) -> pd.DatetimeIndex:
    """``values`` as a nanosecond DatetimeIndex of calendar days, refusing gaps and non-dates."""
    try:
        index = pd.DatetimeIndex(pd.to_datetime(values))
    except (TypeError, ValueError) as e:
        raise TrainingError(f"{name} could not be read as dates: {e}") from e
    missing = int(np.count_nonzero(index.isna()))
    if missing:
        raise TrainingError(f"{name} has {missing} missing value(s)")
    return index.normalize().as_unit("ns")


def _day(day: date, sessions: pd.DatetimeIndex) -> pd.Timestamp:
    """A calendar day as a Timestamp comparable with ``sessions`` (same time zone)."""
    stamp = pd.Timestamp(day)
    return stamp if sessions.tz is None else stamp.tz_localize(sessions.tz)
