"""Per-ticker daily sentiment aggregates from scored documents.

A document counts towards the first session whose close is at or after its publication time: a
release after the close (or on a weekend) informs the *next* session, never the one before. The
daily sums and counts then roll forward per ticker; a session without documents contributes a
count of zero, which is a fact about that ticker, not a fill from elsewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.schema import SENTIMENT_FEATURES
from feature_repo.tables import DATE, TICKER
from feature_repo.transforms.panel import grid, restore_tickers, split_at_breaks, to_long, to_wide

# US equities close at 16:00 New York, 21:00 UTC in winter; pass the market's own close.
DEFAULT_SESSION_CLOSE_UTC = pd.Timedelta(hours=21)


def assign_sessions(
    documents: pd.DataFrame, calendar: pd.DatetimeIndex, session_close_utc: pd.Timedelta
) -> pd.DataFrame:
    """Attach to each document the session it can first inform; drop those after the calendar."""
    # Both sides in nanoseconds: merge_asof refuses keys of different resolutions.
    close_at = (calendar + session_close_utc).tz_localize("UTC").astype("datetime64[ns, UTC]")
    closes = pd.DataFrame({DATE: calendar, "close_at": close_at})
    published = pd.to_datetime(documents["published_at"], utc=True).astype("datetime64[ns, UTC]")
    docs = documents.assign(published_at=published)
    docs = docs.sort_values("published_at", kind="stable")
    joined = pd.merge_asof(docs, closes, left_on="published_at", right_on="close_at", direction="forward")
    return joined.dropna(subset=[DATE])


def sentiment_features(
    prices: pd.DataFrame,
    scored_documents: pd.DataFrame,
    *,
    session_close_utc: pd.Timedelta = DEFAULT_SESSION_CLOSE_UTC,
    sessions: pd.Index | None = None,
    breaks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Daily sentiment features for every (ticker, date) bar in ``prices``.

    Args:
        prices: rows with ``ticker`` and ``date`` (the sessions to produce features for).
        scored_documents: rows with ``ticker``, ``published_at`` (UTC) and ``score`` in [-1, 1].
        session_close_utc: time of day (UTC) of the market close.
        sessions: the exchange's sessions, added to the calendar (``None``: the prices' dates).
        breaks: series breaks: a ticker's documents before a break never count towards the
            windows after it (a reused code is another company).

    Returns:
        One row per price bar, sorted by ticker and date, with the features of
        :data:`feature_repo.schema.SENTIMENT_FEATURES`.
    """
    segments = split_at_breaks(prices, breaks)
    dates, tickers = grid(segments.frame, sessions)
    present = to_wide(segments.frame.assign(_one=1.0), "_one", dates, tickers).notna()
    docs = assign_sessions(scored_documents[[TICKER, "published_at", "score"]], dates, session_close_utc)
    # The same breaks give a ticker's documents the same segment labels as its bars.
    docs = split_at_breaks(docs, breaks).frame
    daily = docs.groupby([TICKER, DATE])["score"].agg(["sum", "count"]).reset_index()
    sums = to_wide(daily, "sum", dates, tickers).fillna(0.0)
    counts = to_wide(daily, "count", dates, tickers).fillna(0.0)

    daily_mean = sums / counts.where(counts > 0)
    count_21 = counts.rolling(21, min_periods=1).sum()
    mean_21 = sums.rolling(21, min_periods=1).sum() / count_21.where(count_21 > 0)
    decayed_sum = sums.ewm(halflife=5, adjust=False).mean()
    decayed_count = counts.ewm(halflife=5, adjust=False).mean()
    history = daily_mean.rolling(252, min_periods=20)
    surprise = (mean_21 - history.mean()) / history.std().replace(0.0, np.nan)
    columns = {
        "sent_score_1d": daily_mean,
        "sent_count_1d": counts,
        "sent_count_21d": count_21,
        "sent_mean_21d": mean_21,
        "sent_decay_5d": decayed_sum / decayed_count.where(decayed_count > 1e-9),
        "sent_surprise": surprise,
    }
    return restore_tickers(to_long(columns, present, {s.name: s.dtype for s in SENTIMENT_FEATURES}), segments)
