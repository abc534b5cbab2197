"""Stored documents scored by the text model's champion, loaded from the registry as a model server loads it.

Every stored document the champion has not scored yet goes to ``scored_documents``; the
``features`` stage then turns them into the per-ticker daily sentiment features that Feast serves
and model C trains on. With no stored document and ``synthetic_documents: when_none`` the
generator's announcements for the stored tickers and sessions are stored first, flagged synthetic,
and the output says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from feature_repo.tables import DATE, TICKER
from training.context import RunContext
from training.registry.model_registry import ModelRegistry
from training.sentiment import LABELS
from training.sentiment.config import SentimentRunConfig
from training.sentiment.documents import score_documents, unscored, write_active_version
from training.sentiment.registration import NAME
from training.store import OfflineStore

# Synthetic announcements per ticker per year when no news is stored: enough for daily aggregates to
# be exercised, few enough that scoring them (about 100 documents/s here) stays within the demo's budget.
SYNTHETIC_RATE_PER_YEAR = 8.0


def score_stored_documents(ctx: RunContext, cfg: SentimentRunConfig, registry: ModelRegistry) -> int:
    """Score what the champion has not scored yet into ``scored_documents``; return how many were scored."""
    version = registry.champion_version(NAME)
    if version is None:
        print("  no champion: documents not scored", file=ctx.out)
        return 0
    with OfflineStore(ctx.offline_store_path) as store:
        documents = store.read("documents")
        if documents.empty and cfg.synthetic_documents == "when_none":
            documents = _store_synthetic_announcements(ctx, store, cfg.seed)
        todo = unscored(documents, store.read("scored_documents"), version)
        if todo.empty:
            write_active_version(ctx.data_dir, version)
            print(f"  documents: {len(documents):,} stored, all scored by v{version} already", file=ctx.out)
            return 0
        champion, _ = registry.load_pyfunc(NAME, version)

        def scorer(texts: Sequence[str]) -> np.ndarray:
            answer: np.ndarray = champion.predict(pd.DataFrame({"text": list(texts)}))[list(LABELS)].to_numpy()
            return answer

        started = time.perf_counter()
        with tqdm(total=len(todo), desc="  scoring", unit="doc", disable=ctx.progress_disabled, file=ctx.out) as bar:
            scored = score_documents(todo, scorer, version, on_progress=lambda done: bar.update(done - bar.n))
        seconds = time.perf_counter() - started
        result = store.upsert("scored_documents", scored)
    write_active_version(ctx.data_dir, version)
    synthetic = bool(todo["synthetic"].any()) if "synthetic" in todo else False
    label = "SYNTHETIC documents (flagged synthetic in the store)" if synthetic else "documents"
    print(
        f"  scored {len(todo):,} {label} with {NAME} v{version} in {seconds:.0f} s "
        f"({len(todo) / max(seconds, 1e-9):,.0f}/s): {result.inserted:,} new, {result.updated:,} changed",
        file=ctx.out,
    )
    return len(todo)


def _store_synthetic_announcements(ctx: RunContext, store: OfflineStore, seed: int) -> pd.DataFrame:
    """The generator's announcements for the stored tickers and sessions, flagged synthetic, stored."""
    from training.ingest.synthetic import announcements_for

    prices = store.read("prices")
    if prices.empty:
        return store.read("documents")
    dates = pd.DatetimeIndex(sorted(prices[DATE].unique()))
    tickers = sorted(prices[TICKER].unique())
    documents = announcements_for(tickers, dates, seed=seed, rate=SYNTHETIC_RATE_PER_YEAR)
    store.upsert("documents", documents)
    print(
        f"  no document is stored: generated {len(documents):,} SYNTHETIC announcements for {len(tickers)} tickers "
        "(flagged synthetic; bring real news with data.documents). Sentiment features from them are wiring, "
        "not signal, and no model C figure on them is a quality figure.",
        file=ctx.out,
    )
    return store.read("documents")
