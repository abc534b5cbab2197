"""Sentiment spikes as Prometheus gauges, read at scrape time from the ``sentiment_features`` file.

A spike is what the daily briefing calls one (:func:`monitoring.briefing.facts.sentiment_facts`,
called here unchanged): a ticker whose daily sentiment on the session is at least
:data:`~monitoring.briefing.facts.SPIKE_Z` standard deviations from its own earlier daily scores.
The session is the newest one in the file. Series (no per-ticker label: the briefing names them):
``portfolio_os_sentiment_spikes`` (tickers with a spike), ``portfolio_os_sentiment_tickers``
(tickers with a daily score that session), ``portfolio_os_sentiment_spike_largest_zscore`` (the
signed z-score of the largest move; absent without a spike) and
``portfolio_os_sentiment_session_timestamp_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import pandas as pd
from prometheus_client.core import GaugeMetricFamily, Metric

from feature_repo.briefing import SentimentSpike
from feature_repo.definitions import EVENT_TIMESTAMP, feature_file
from feature_repo.tables import DATE, TICKER
from monitoring.briefing.facts import SPIKE_LOOKBACK, sentiment_facts

PREFIX: Final = "portfolio_os_sentiment"
SENTIMENT_VIEW: Final = "sentiment_features"
SCORE: Final = "sent_score_1d"
CHUNK: Final = 32  # tickers per call of the briefing's rule (its cost grows with tickers x rows)
SENTIMENT_METRICS: Final[frozenset[str]] = frozenset(
    {
        f"{PREFIX}_spikes",
        f"{PREFIX}_tickers",
        f"{PREFIX}_spike_largest_zscore",
        f"{PREFIX}_session_timestamp_seconds",
    }
)


@dataclass(frozen=True)
class SentimentSpikes:
    """The newest session's spikes: how many, among how many tickers, and the largest move."""

    session: pd.Timestamp
    tickers: int
    spikes: int
    largest_zscore: float | None


def read_sentiment(data_dir: Path) -> pd.DataFrame | None:
    """Ticker, session (naive midnight) and daily score of the view's file; None without the file."""
    path = sentiment_file(data_dir)
    return _read_file(path) if path.exists() else None


def sentiment_file(data_dir: Path) -> Path:
    """Where the ``sentiment_features`` view's file lives under ``data_dir``."""
    return Path(feature_file(str(data_dir), SENTIMENT_VIEW))


def _read_file(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path, columns=[TICKER, EVENT_TIMESTAMP, SCORE])
    stamps = pd.to_datetime(frame[EVENT_TIMESTAMP])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({TICKER: frame[TICKER], DATE: stamps.dt.normalize(), SCORE: frame[SCORE]})


def latest_spikes(sentiment: pd.DataFrame) -> SentimentSpikes | None:
    """The briefing's sentiment spikes on the newest session of ``sentiment`` (ticker, date, score).

    The rule judges each ticker against its own history alone, so it runs on groups of
    :data:`CHUNK` tickers and the answers add up: the same count and largest move as one call on
    the whole frame, without its cost growing with the square of the tickers. Only rows the rule
    reads are passed on: scored rows of the tickers scored on the session, each ticker's last
    ``SPIKE_LOOKBACK`` before it and the session's own (it looks no further back).

    Returns:
        None for a frame without rows.
    """
    if sentiment.empty:
        return None
    session = pd.Timestamp(sentiment[DATE].max())
    scored = sentiment.loc[sentiment[SCORE].notna() & (sentiment[DATE] <= session), [TICKER, DATE, SCORE]]
    on_day = sorted(scored.loc[scored[DATE] == session, TICKER].unique())
    scored = scored.loc[scored[TICKER].isin(on_day)].sort_values([TICKER, DATE], kind="stable")
    recent = scored.groupby(TICKER, sort=False).tail(SPIKE_LOOKBACK + 1)
    tickers = spikes = 0
    top: list[SentimentSpike] = []
    for start in range(0, len(on_day), CHUNK):
        chunk = recent.loc[recent[TICKER].isin(on_day[start : start + CHUNK])]
        facts = sentiment_facts(chunk, session)
        if facts is not None:
            tickers, spikes = tickers + facts.tickers_with_documents, spikes + facts.spikes_total
            top += facts.spikes[:1]
    largest = min(top, key=lambda s: (-abs(s.z), s.ticker)) if top else None  # the briefing's own order
    return SentimentSpikes(session, tickers, spikes, largest.z if largest is not None else None)


@lru_cache(maxsize=4)
def _file_spikes(path: str, identity: tuple[int, ...]) -> SentimentSpikes | None:
    """The spikes of one version of the file: ``identity`` changes whenever the file is replaced."""
    return latest_spikes(_read_file(Path(path)))


def file_spikes(data_dir: Path) -> SentimentSpikes | None:
    """The newest session's spikes of the file under ``data_dir``; None without the file or a row.

    Computed once per version of the file (its inode, size, mtime and ctime: feature files are
    replaced atomically, so a new version is a new inode), not on every scrape.
    """
    path = sentiment_file(data_dir)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _file_spikes(str(path), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def sentiment_families(data_dir: Path) -> Iterator[Metric]:
    """The sentiment-spike gauges (empty families without the view's file or a row)."""
    spikes = GaugeMetricFamily(
        f"{PREFIX}_spikes", "Tickers whose daily sentiment on the newest session spiked against their own history."
    )
    tickers = GaugeMetricFamily(f"{PREFIX}_tickers", "Tickers with a daily sentiment score on the newest session.")
    largest = GaugeMetricFamily(
        f"{PREFIX}_spike_largest_zscore", "Signed z-score of the largest sentiment spike on the newest session."
    )
    session = GaugeMetricFamily(f"{PREFIX}_session_timestamp_seconds", "Unix time of the newest sentiment session.")
    found = file_spikes(data_dir)
    if found is not None:
        spikes.add_metric([], float(found.spikes))
        tickers.add_metric([], float(found.tickers))
        if found.largest_zscore is not None:
            largest.add_metric([], found.largest_zscore)
        session.add_metric([], found.session.timestamp())
    yield from (spikes, tickers, largest, session)
