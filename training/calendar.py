"""The exchange calendar: the sessions an exchange was open, from the maintained ``exchange_calendars``.

Without a configured exchange the pipeline keeps its old calendar, the union of the data's own
dates (plus the benchmark's), which cannot see a session missing for every ticker at once. With
``calendar: {exchange: XASX}`` the sessions come from the exchange's published holiday rules, so
a week the vendor never delivered is a hole the health check names and the feature windows count.

``exchange_calendars`` is imported only when an exchange is configured: the import alone takes
seconds and most runs and tests never need it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.errors import TrainingError

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

__all__ = ["CalendarConfig", "exchange_sessions", "on_sessions", "run_sessions"]


class CalendarConfig(BaseModel):
    """Which exchange's sessions the run counts in (``None``: the union of the data's dates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange: str | None = Field(
        None,
        description="ISO 10383 MIC of the exchange as exchange_calendars names it (XASX, XNYS, XLON, ...). "
        "None keeps the data's own dates as the calendar.",
    )

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import exchange_calendars as xc

        names = xc.get_calendar_names(include_aliases=True)
        if value not in names:
            raise ValueError(f"unknown exchange {value!r}; exchange_calendars knows e.g. XASX, XNYS, XLON, XTKS")
        return value


def exchange_sessions(exchange: str, start: date | pd.Timestamp, end: date | pd.Timestamp) -> pd.DatetimeIndex:
    """The exchange's sessions from ``start`` to ``end`` inclusive, as midnight dates without timezone.

    Raises:
        TrainingError: unknown exchange, or a range the library's calendar does not cover.
    """
    first, last = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if last < first:
        return pd.DatetimeIndex([], dtype="datetime64[ns]", name="date")
    calendar = _calendar(exchange, first, last)
    sessions = calendar.sessions_in_range(max(first, calendar.first_session), min(last, calendar.last_session))
    naive = sessions.tz_localize(None) if sessions.tz is not None else sessions
    # A plain index (no business-day frequency attached), like the dates read from the store.
    return pd.DatetimeIndex(naive.to_numpy(dtype="datetime64[ns]"), name="date")


def run_sessions(exchange: str | None, dates: Any) -> pd.DatetimeIndex | None:
    """The configured exchange's sessions over the span of ``dates``; ``None`` when no exchange is set.

    ``None`` is what the transforms and checks take as "the data's own dates", so a run without
    an exchange behaves exactly as before.
    """
    if exchange is None:
        return None
    index = pd.DatetimeIndex(dates)
    if index.empty:
        return pd.DatetimeIndex([], dtype="datetime64[ns]", name="date")
    return exchange_sessions(exchange, index.min(), index.max())


def on_sessions(frame: pd.DataFrame, sessions: pd.DatetimeIndex | None, column: str = "date") -> pd.DataFrame:
    """The rows of ``frame`` dated on one of ``sessions``; all of them when ``sessions`` is None.

    Some vendors fill an exchange holiday with a copy of the day before: bars with a zero return
    that would count as a session in every window. The health check names those days
    (``off_calendar_dates``); the transforms leave them out.
    """
    if sessions is None:
        return frame
    keep = pd.DatetimeIndex(frame[column]).isin(sessions)
    return frame if keep.all() else frame[keep]


def _calendar(exchange: str, first: pd.Timestamp, last: pd.Timestamp) -> ExchangeCalendar:
    import exchange_calendars as xc
    from exchange_calendars.errors import InvalidCalendarName

    try:
        # The library builds calendars 20 years back by default; ask for the range the data spans.
        return xc.get_calendar(exchange, start=first, end=last)
    except InvalidCalendarName as e:
        raise TrainingError(f"unknown exchange {exchange!r} for the calendar: {e}") from e
    except ValueError as e:
        raise TrainingError(f"exchange calendar {exchange} cannot cover {first.date()}..{last.date()}: {e}") from e
