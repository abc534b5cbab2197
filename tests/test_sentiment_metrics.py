"""Sentiment-spike gauges read the sentiment_features file with the briefing's rule (SYNTHETIC scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feature_repo.files import write_feature_file
from feature_repo.tables import DATE, TICKER
from monitoring import sentiment_metrics
from monitoring.briefing.facts import SPIKE_LOOKBACK, SPIKE_Z, sentiment_facts
from monitoring.briefing.job import load_sources
from monitoring.exporter import EXPORTED_METRICS, MonitoringCollector
from monitoring.sentiment_metrics import SENTIMENT_METRICS, file_spikes, latest_spikes, read_sentiment

SESSIONS = pd.bdate_range("2023-01-02", periods=500)  # ~350 days with documents each: more than SPIKE_LOOKBACK
TICKERS = [f"SYN{i:02d}" for i in range(10)]
OTHER = ("sent_count_1d", "sent_count_21d", "sent_mean_21d", "sent_decay_5d", "sent_surprise")


def _write(data_dir: Path, sentiment: pd.DataFrame) -> None:
    """A sentiment_features file from (ticker, date, sent_score_1d) rows; the other columns are empty."""
    columns = dict.fromkeys(OTHER[:2], 0) | dict.fromkeys(OTHER[2:], np.nan)
    write_feature_file(
        data_dir, "sentiment_features", sentiment.assign(**columns)[[TICKER, DATE, "sent_score_1d", *OTHER]]
    )


def _synthetic(seed: int = 11) -> pd.DataFrame:
    """SYNTHETIC daily scores: ~70% of days with documents; three spikes on the last session.

    SYN04's days with documents before its last ``SPIKE_LOOKBACK`` sit far from the recent ones:
    only the rule's window may count, so a reader that used more would find a different z-score.
    """
    rng = np.random.default_rng(seed)
    grid = pd.MultiIndex.from_product([SESSIONS, TICKERS], names=[DATE, TICKER]).to_frame(index=False)
    scores = np.where(rng.uniform(size=len(grid)) < 0.7, rng.normal(0, 0.15, len(grid)), np.nan)
    frame = grid.assign(sent_score_1d=scores)
    last = frame[DATE] == SESSIONS[-1]
    frame.loc[last, "sent_score_1d"] = rng.normal(0, 0.05, len(TICKERS))  # every ticker has documents today...
    for ticker, score in (("SYN01", 0.95), ("SYN02", -0.9), ("SYN05", 0.7), ("SYN08", 0.05)):
        frame.loc[last & (frame[TICKER] == ticker), "sent_score_1d"] = score
    frame.loc[last & (frame[TICKER] == "SYN09"), "sent_score_1d"] = np.nan  # ...but SYN09
    scored = frame.index[(frame[TICKER] == "SYN04") & frame["sent_score_1d"].notna() & ~last]
    frame.loc[scored[:-SPIKE_LOOKBACK], "sent_score_1d"] = 0.8
    frame.loc[last & (frame[TICKER] == "SYN04"), "sent_score_1d"] = 0.8
    young = (frame[TICKER] == "SYN07") & (frame[DATE] < SESSIONS[-10])  # ten days of history: too few
    frame.loc[young, "sent_score_1d"] = np.nan
    frame.loc[last & (frame[TICKER] == "SYN07"), "sent_score_1d"] = 0.99
    return frame


def _scrape(data_dir: Path) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(data_dir))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {s.name: s.value for f in families for s in f.samples if s.name in SENTIMENT_METRICS}


def _z(frame: pd.DataFrame, ticker: str) -> float:
    """The spike rule written out for one ticker on the last session."""
    rows = frame[(frame[TICKER] == ticker) & frame["sent_score_1d"].notna()].sort_values(DATE)
    history = rows.loc[rows[DATE] < SESSIONS[-1], "sent_score_1d"].to_numpy()[-SPIKE_LOOKBACK:]
    today = rows.loc[rows[DATE] == SESSIONS[-1], "sent_score_1d"].item()
    return float((today - history.mean()) / history.std(ddof=1))


def test_the_newest_sessions_spikes_are_exported(tmp_path: Path) -> None:
    frame = _synthetic()
    _write(tmp_path, frame)
    samples = _scrape(tmp_path)
    by_hand = {t: _z(frame, t) for t in TICKERS if t not in ("SYN07", "SYN09")}
    spiked = {t: z for t, z in by_hand.items() if abs(z) >= SPIKE_Z}
    assert {"SYN01", "SYN02", "SYN05", "SYN04"} <= set(spiked) and "SYN08" not in spiked
    assert samples["portfolio_os_sentiment_spikes"] == len(spiked)
    assert samples["portfolio_os_sentiment_tickers"] == 9  # SYN09 had no documents on the session
    largest = max(spiked.values(), key=abs)
    assert samples["portfolio_os_sentiment_spike_largest_zscore"] == pytest.approx(largest)
    assert pd.Timestamp(samples["portfolio_os_sentiment_session_timestamp_seconds"], unit="s") == SESSIONS[-1]
    assert SENTIMENT_METRICS <= EXPORTED_METRICS


@pytest.mark.parametrize("chunk", [3, 32], ids=["chunks-of-3", "one-chunk"])
def test_the_answer_is_the_briefings_rule_on_the_whole_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Trimming to the rule's window and splitting the tickers change nothing: same count, same largest move."""
    monkeypatch.setattr(sentiment_metrics, "CHUNK", chunk)
    _write(tmp_path, _synthetic())
    briefing = sentiment_facts(load_sources(tmp_path).sentiment, SESSIONS[-1])
    frame = read_sentiment(tmp_path)
    assert briefing is not None and frame is not None
    found = latest_spikes(frame)
    assert found is not None and found.session == SESSIONS[-1]
    assert (found.spikes, found.tickers) == (briefing.spikes_total, briefing.tickers_with_documents)
    assert found.largest_zscore == briefing.spikes[0].z


def test_a_session_without_spikes_exports_zero_and_no_largest_move(tmp_path: Path) -> None:
    frame = _synthetic()
    frame.loc[frame[DATE] == SESSIONS[-1], "sent_score_1d"] = 0.0  # every ticker on its usual mean
    frame.loc[(frame[DATE] == SESSIONS[-1]) & frame[TICKER].isin(["SYN04", "SYN07"]), "sent_score_1d"] = np.nan
    _write(tmp_path, frame)
    samples = _scrape(tmp_path)
    assert samples["portfolio_os_sentiment_spikes"] == 0 and samples["portfolio_os_sentiment_tickers"] == 8
    assert "portfolio_os_sentiment_spike_largest_zscore" not in samples


def test_a_session_without_documents_counts_no_tickers(tmp_path: Path) -> None:
    frame = _synthetic()
    frame.loc[frame[DATE] == SESSIONS[-1], "sent_score_1d"] = np.nan
    _write(tmp_path, frame)
    samples = _scrape(tmp_path)
    assert samples["portfolio_os_sentiment_spikes"] == samples["portfolio_os_sentiment_tickers"] == 0
    assert pd.Timestamp(samples["portfolio_os_sentiment_session_timestamp_seconds"], unit="s") == SESSIONS[-1]


def test_no_file_means_no_sentiment_series(tmp_path: Path) -> None:
    assert _scrape(tmp_path) == {}


def test_each_version_of_the_file_is_read_once(tmp_path: Path) -> None:
    frame = _synthetic()
    _write(tmp_path, frame)
    first = file_spikes(tmp_path)
    assert first is not None and file_spikes(tmp_path) is first  # unchanged file: the cached answer
    frame.loc[frame[DATE] == SESSIONS[-1], "sent_score_1d"] = np.nan  # a new version: no documents today
    _write(tmp_path, frame)
    second = file_spikes(tmp_path)
    assert second is not None and (second.spikes, second.tickers) == (0, 0) and first.spikes > 0
