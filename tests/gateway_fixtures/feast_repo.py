"""A real Feast repo (SQLite online store) built from a small SYNTHETIC universe, for gateway tests.

Prices, fundamentals and documents come from ``training.ingest.synthetic`` (labelled synthetic;
no quality figure is computed on them); document scores are seeded random numbers. The features
are the real transforms' output, materialised exactly as in tests/test_feast_repo.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.files import read_feature_file, write_feature_file, write_market_file
from feature_repo.market import REGIME_VIEW, RETURN_WINDOW_VIEW, regime_view_frame, return_window_frame
from feature_repo.settings import FeatureStoreSettings
from feature_repo.store import FeatureRepo, full_window
from feature_repo.transforms.fundamental import fundamental_features
from feature_repo.transforms.sentiment import sentiment_features
from feature_repo.transforms.technical import technical_features


def build_feature_repo(data_dir: Path, n_tickers: int = 6) -> list[str]:
    """Materialise every view for ``n_tickers`` synthetic tickers under ``data_dir``; return the tickers."""
    from training.ingest.synthetic import generate_universe

    universe = generate_universe(n_tickers=n_tickers, n_months=14, seed=11)
    prices = universe.prices
    benchmark = universe.benchmark.set_index("date")["close"]
    rng = np.random.default_rng(5)
    documents = universe.documents[["ticker", "published_at"]].assign(score=rng.uniform(-1, 1, len(universe.documents)))
    documents["published_at"] = pd.to_datetime(documents["published_at"], utc=True)
    views = {
        "technical_features": technical_features(prices, benchmark),
        "fundamental_features": fundamental_features(prices, universe.fundamentals),
        "sentiment_features": sentiment_features(prices, documents),
    }
    for view, frame in views.items():
        write_feature_file(data_dir, view, frame)
    # The market views the regime and forecast routes read (feature_repo.market), as the features stage writes them.
    technical = views["technical_features"]
    write_market_file(data_dir, REGIME_VIEW, regime_view_frame(benchmark, "SYNTH-INDEX"))
    write_market_file(data_dir, RETURN_WINDOW_VIEW, return_window_frame(technical[["ticker", "date", "ret_1d"]]))
    repo = FeatureRepo.open(FeatureStoreSettings(data_dir=str(data_dir)))
    repo.apply()
    for view in [*views, REGIME_VIEW, RETURN_WINDOW_VIEW]:
        start, end = full_window(read_feature_file(data_dir, view)["event_timestamp"])
        repo.materialize(start, end, [view])
    _sentinel_and_briefing(data_dir)
    return sorted(prices["ticker"].unique().tolist())


def _sentinel_and_briefing(data_dir: Path) -> None:
    """The data-quality sentinel over the synthetic features (data_quality view online) and the briefing facts.

    Fitted on the first two thirds of the sessions, as ``python -m monitoring sentinel`` would be; the
    briefing facts of the last sessions come from ``python -m monitoring briefing-facts``'s own code.
    """
    from datetime import UTC, datetime

    from monitoring.briefing.job import run as write_briefing_facts
    from monitoring.sentinel.job import materialize_view, score_inputs, write_outputs
    from monitoring.sentinel.statistics import load_inputs
    from monitoring.windows import Window

    inputs = load_inputs(data_dir)
    sessions = sorted(inputs["date"].unique())
    reference = Window(pd.Timestamp(sessions[0]).date(), pd.Timestamp(sessions[len(sessions) * 2 // 3]).date())
    write_outputs(data_dir, score_inputs(inputs, reference), datetime(2026, 1, 1, tzinfo=UTC))
    materialize_view(data_dir)
    write_briefing_facts(data_dir, last=5, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
