"""Date windows (inclusive) of feature rows: the champion's training window and a recent window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from feature_repo.definitions import EVENT_TIMESTAMP
from monitoring.errors import MonitoringError


@dataclass(frozen=True)
class Window:
    """Sessions from ``start`` to ``end``, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise MonitoringError(f"window ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``YYYY-MM-DD:YYYY-MM-DD``."""
        try:
            start, end = text.split(":")
            return cls(date.fromisoformat(start), date.fromisoformat(end))
        except ValueError as e:
            raise MonitoringError(f"a window looks like 2005-01-01:2006-12-31, not {text!r}") from e

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a feature-view frame whose event date falls inside the window."""
        days = _event_dates(frame)
        return frame.loc[(days >= pd.Timestamp(self.start)) & (days <= pd.Timestamp(self.end))]

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def last_sessions(frame: pd.DataFrame, sessions: int) -> Window:
    """The window of the newest ``sessions`` distinct event dates of ``frame``."""
    days = pd.Series(_event_dates(frame).unique()).sort_values()
    if days.empty or sessions < 1:
        raise MonitoringError("no rows to take a recent window from")
    tail = days.iloc[-sessions:]
    return Window(tail.iloc[0].date(), tail.iloc[-1].date())


def _event_dates(frame: pd.DataFrame) -> pd.Series:
    # Feature files store UTC midnight timestamps; compare on the naive date.
    ts = pd.to_datetime(frame[EVENT_TIMESTAMP])
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.dt.normalize()
