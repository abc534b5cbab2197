"""Stage ``sentiment``: fine-tune the text model, compare it with the lexicon, register it, score documents.

1. The registry is checked first (an unreachable registry fails in seconds, not after the fine-tune).
2. The labelled corpus (the project's set, or the configured ``sentence,label`` / PhraseBank files)
   is split by family; the Loughran-McDonald lexicon and the fine-tuned all-MiniLM-L6-v2 are scored on
   the held-out families; the table and both confusion matrices are printed and written to
   ``<data>/reports/sentiment-*.md``.
3. The model is registered as ``sentiment_text`` (challenger) and promoted to champion when its
   validation macro-F1 beats the champion's on the same validation sentences by the margin.
4. The champion, loaded from the registry exactly as a model server loads it, scores every stored
   document it has not scored yet into ``scored_documents``; the ``features`` stage then turns them
   into the per-ticker daily sentiment features that Feast serves and model C trains on. With no
   stored document and ``synthetic_documents: when_none`` the generator's announcements for the
   stored tickers and sessions are stored first, flagged synthetic, and the output says so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from feature_repo.tables import DATE, TICKER
from training.audit import AuditLog
from training.context import RunContext
from training.registry import PromotionDecision, RunRecord, SignalRegistry, code_version
from training.run_config import RegistryConfig
from training.sentiment import LABELS
from training.sentiment.card import TextCardFacts, comparison_rows, render_text_card
from training.sentiment.config import SentimentRunConfig
from training.sentiment.corpus import Corpus, load_labelled, load_project_corpus
from training.sentiment.documents import score_documents, unscored, write_active_version
from training.sentiment.finetune import FineTuneResult, fine_tune
from training.sentiment.lexicon import LoughranMcDonald
from training.sentiment.metrics import ClassificationReport, classification_report, label_indices, render_confusion
from training.sentiment.runtimes import export_onnx
from training.sentiment.split import Split, split_by_family
from training.sentiment.text_classifier import ONNX_FILE, TextClassifier
from training.stages.train import quiet_libraries
from training.store import OfflineStore

NAME = "sentiment_text"
SMOKE_SENTENCES = 48
# Synthetic announcements per ticker per year when no news is stored: enough for daily aggregates to
# be exercised, few enough that scoring them (about 100 documents/s here) stays within the demo's budget.
SYNTHETIC_RATE_PER_YEAR = 8.0


@dataclass(frozen=True)
class _Evaluation:
    corpus: Corpus
    split: Split
    model: ClassificationReport
    lexicon: ClassificationReport
    tuned: FineTuneResult


def run(ctx: RunContext) -> dict[str, object]:
    """Fine-tune, evaluate, register and score (see the module docstring)."""
    cfg = ctx.config.sentiment
    if cfg is None or not cfg.enabled:
        print(f"  skipped: the run config '{ctx.config.name}' has no enabled 'sentiment' section", file=ctx.out)
        return {"skipped": "no sentiment section"}
    quiet_libraries()
    registry_cfg = ctx.config.signals.registry if ctx.config.signals is not None else RegistryConfig()
    registry = SignalRegistry(
        registry_cfg.resolve_tracking_uri(ctx.data_dir), registry_cfg, AuditLog(ctx.data_dir / "registry_audit.jsonl")
    )
    registry.check_reachable()
    corpus = _corpus(cfg)  # a bad corpus fails here, before the model is loaded
    classifier = TextClassifier.from_base(max_length=cfg.max_length, seed=cfg.seed)
    evaluation = _fine_tune_and_evaluate(ctx, cfg, classifier, corpus)
    decision = _register(ctx, cfg, registry, classifier, evaluation)
    print(
        f"  registry: {NAME} v{decision.version} {'PROMOTED' if decision.promoted else 'kept as challenger'}: "
        f"{decision.reason}",
        file=ctx.out,
    )
    scored = _score_stored_documents(ctx, cfg, registry)
    return {
        "val_macro_f1": round(evaluation.model.macro_f1, 3),
        "lexicon_macro_f1": round(evaluation.lexicon.macro_f1, 3),
        "version": decision.version,
        "promoted": decision.promoted,
        "documents_scored": scored,
    }


def _corpus(cfg: SentimentRunConfig) -> Corpus:
    return load_labelled(cfg.corpus) if cfg.corpus else load_project_corpus()


def _smoke(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A few sentences of every label: the wiring runs end to end in seconds."""
    per_label = SMOKE_SENTENCES // len(LABELS)
    parts = [rows.sample(min(per_label, len(rows)), random_state=seed) for _, rows in frame.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


def _fine_tune_and_evaluate(
    ctx: RunContext, cfg: SentimentRunConfig, classifier: TextClassifier, corpus: Corpus
) -> _Evaluation:
    split = split_by_family(corpus.frame, valid_fraction=cfg.valid_fraction, seed=cfg.seed)
    if cfg.smoke_test:
        split = Split(_smoke(split.train, cfg.seed), _smoke(split.valid, cfg.seed))
    print(f"  corpus: {corpus.description}", file=ctx.out)
    for side, part in (("train", split.train), ("validation", split.valid)):
        counts = part["label"].value_counts()
        shares = ", ".join(f"{lb} {int(counts.get(lb, 0)):,}" for lb in LABELS)
        print(f"  {side:<10} {len(part):>6,} sentences, {part['family'].nunique():,} families ({shares})", file=ctx.out)
    valid_texts = split.valid["sentence"].tolist()
    valid_true = label_indices(split.valid["label"].tolist())
    lexicon = classification_report(valid_true, LoughranMcDonald().predict(valid_texts))

    def validate() -> float:
        return classification_report(valid_true, _predict(classifier, valid_texts, cfg)).macro_f1

    tuned = fine_tune(
        classifier,
        split.train["sentence"].tolist(),
        label_indices(split.train["label"].tolist()),
        cfg.finetune(),
        on_epoch=validate,
        progress=ctx.progress,
    )
    curve = ", ".join(f"{v:.3f}" for v in tuned.epoch_metric)
    print(
        f"  fine-tune: {tuned.steps} steps in {tuned.seconds:.0f} s; validation macro-F1 by epoch "
        f"(for the log; the epoch count is fixed): {curve}",
        file=ctx.out,
    )
    model = classification_report(valid_true, _predict(classifier, valid_texts, cfg))
    evaluation = _Evaluation(corpus, split, model, lexicon, tuned)
    _report(ctx, evaluation)
    return evaluation


def _predict(classifier: TextClassifier, texts: Sequence[str], cfg: SentimentRunConfig) -> np.ndarray:
    predicted: np.ndarray = classifier.predict_proba(texts, batch_size=cfg.score_batch_size).argmax(axis=1)
    return predicted


def _report(ctx: RunContext, ev: _Evaluation) -> None:
    rows = comparison_rows({"sentiment_text": ev.model, "loughran_mcdonald": ev.lexicon})
    text = "\n".join(
        [
            f"Validation on held-out families ({ev.corpus.description})",
            *rows,
            "",
            "Confusion, sentiment_text:",
            render_confusion(ev.model),
            "",
            "Confusion, Loughran-McDonald lexicon:",
            render_confusion(ev.lexicon),
        ]
    )
    print("\n  " + text.replace("\n", "\n  "), file=ctx.out)
    reports = ctx.data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = reports / f"sentiment-{stamp}.md"
    path.write_text(f"# Sentiment: validation\n\n```\n{text}\n```\n")
    print(f"  report: {path}", file=ctx.out)


def _register(
    ctx: RunContext,
    cfg: SentimentRunConfig,
    registry: SignalRegistry,
    classifier: TextClassifier,
    ev: _Evaluation,
) -> PromotionDecision:
    code = code_version()
    params: dict[str, Any] = {
        "epochs": cfg.finetune().epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "max_length": cfg.max_length,
        "freeze_embeddings": cfg.freeze_embeddings,
        "freeze_layers": cfg.freeze_layers,
        "seed": cfg.seed,
        "runtime": cfg.runtime,
    }
    facts = TextCardFacts(
        corpus=ev.corpus.description + (" — SMOKE TEST subset" if cfg.smoke_test else ""),
        label_counts={
            side: {str(k): int(v) for k, v in part["label"].value_counts().items()}
            for side, part in (("train", ev.split.train), ("validation", ev.split.valid))
        },
        families={"train": ev.split.train["family"].nunique(), "validation": ev.split.valid["family"].nunique()},
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        params=params,
        model=ev.model,
        lexicon=ev.lexicon,
        fine_tune_seconds=ev.tuned.seconds,
        code_version=code,
        project_set=not cfg.corpus,
    )
    record = RunRecord(
        name=NAME,
        params=params | {"train_sentences": len(ev.split.train), "validation_sentences": len(ev.split.valid)},
        metrics=ev.model.as_metrics("val")
        | ev.lexicon.as_metrics("lexicon_val")
        | {"fine_tune_seconds": ev.tuned.seconds},
        tags={"task": "sentiment_text", "code_version": code, "corpus": ev.corpus.description[:250]},
        card=render_text_card(facts),
    )
    champion = _champion_macro_f1(ctx, registry, ev)
    model_config = {
        "labels": list(LABELS),
        "max_length": cfg.max_length,
        "batch_size": cfg.score_batch_size,
        "runtime": cfg.runtime,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "text_model"  # the artifact's folder name in the registry
        classifier.save(folder)
        if cfg.runtime == "onnx":
            export_onnx(classifier, folder / ONNX_FILE)
        version = registry.log_sentiment_text(record, folder, model_config)
    return registry.promote_if_better(
        NAME, version, ev.model.macro_f1, champion, metric="macro_f1", margin=cfg.promotion_margin
    )


def _champion_macro_f1(ctx: RunContext, registry: SignalRegistry, ev: _Evaluation) -> float | None:
    """The champion's macro-F1 on this run's validation sentences (None: no champion, or it cannot score)."""
    version = registry.champion_version(NAME)
    if version is None:
        return None
    try:
        champion, _ = registry.load_pyfunc(NAME, version)
        answer = champion.predict(pd.DataFrame({"text": ev.split.valid["sentence"].tolist()}))
    except Exception as e:  # a broken champion must not block a working challenger; the reason is printed
        print(f"  champion v{version} could not be scored on this validation set: {e}", file=ctx.out)
        return None
    predicted = answer[list(LABELS)].to_numpy().argmax(axis=1)
    return classification_report(label_indices(ev.split.valid["label"].tolist()), predicted).macro_f1


def _score_stored_documents(ctx: RunContext, cfg: SentimentRunConfig, registry: SignalRegistry) -> int:
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
