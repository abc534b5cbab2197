"""Stage ``sentiment``: fine-tune the text model, compare it with the lexicon, register it, score documents.

1. The registry is checked first (an unreachable registry fails in seconds, not after the fine-tune).
2. The labelled corpus (the project's set, or the configured ``sentence,label`` / PhraseBank files),
   plus the training rows of a real corpus when ``real_text`` says so, is split by family into
   training and a *carved* split. The fine-tune keeps its best epoch on the carved split (early
   stopping) and a temperature is fitted there (calibration). The Loughran-McDonald lexicon and the
   model are reported on the carved split and, when configured, on the real corpus's own validation
   rows, which no choice ever reads; JSON and Markdown reports go to ``<data>/reports/sentiment-*``.
3. The model is registered as ``sentiment_text`` (challenger) with its temperature and runtime in
   ``model_config`` (static int8 ONNX only when it holds macro-F1 on real text) and promoted to
   champion when its carved-split macro-F1 beats the champion's on the same sentences by the margin.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from feature_repo.tables import DATE, TICKER
from training.context import RunContext
from training.registry.model_registry import ModelRegistry, PromotionDecision, RunRecord, code_version
from training.sentiment import LABELS
from training.sentiment.calibration import fit_temperature
from training.sentiment.card import TextCardFacts, render_text_card
from training.sentiment.config import SentimentRunConfig
from training.sentiment.corpus import Corpus, HeldOutCorpus, load_held_out, load_labelled, load_project_corpus
from training.sentiment.documents import score_documents, unscored, write_active_version
from training.sentiment.finetune import FineTuneResult, fine_tune
from training.sentiment.lexicon import LoughranMcDonald
from training.sentiment.metrics import ClassificationReport, classification_report, label_indices
from training.sentiment.realtext import Validation, as_markdown, validate, write_reports
from training.sentiment.runtimes import export_for_runtime, export_onnx
from training.sentiment.split import Split, split_by_family
from training.sentiment.text_classifier import ONNX_FILE, TextClassifier, softmax
from training.stages.common import open_registry, quiet_libraries
from training.store import OfflineStore

NAME = "sentiment_text"
CARVED = "carved"
REAL_TEXT = "real_text"
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
    temperature: float
    validations: list[Validation]
    held: HeldOutCorpus | None


def run(ctx: RunContext) -> dict[str, object]:
    """Fine-tune, evaluate, register and score (see the module docstring)."""
    cfg = ctx.config.sentiment
    if cfg is None or not cfg.enabled:
        print(f"  skipped: the run config '{ctx.config.name}' has no enabled 'sentiment' section", file=ctx.out)
        return {"skipped": "no sentiment section"}
    quiet_libraries()
    registry = open_registry(ctx)
    corpus = _corpus(cfg)  # a bad corpus fails here, before the model is loaded
    held = _held_out(cfg)
    classifier = TextClassifier.from_base(max_length=cfg.max_length, seed=cfg.seed)
    evaluation = _fine_tune_and_evaluate(ctx, cfg, classifier, corpus, held)
    decision = _register(ctx, cfg, registry, classifier, evaluation)
    print(
        f"  registry: {NAME} v{decision.version} {'PROMOTED' if decision.promoted else 'kept as challenger'}: "
        f"{decision.reason}",
        file=ctx.out,
    )
    scored = _score_stored_documents(ctx, cfg, registry)
    summary: dict[str, object] = {
        "val_macro_f1": round(evaluation.model.macro_f1, 3),
        "lexicon_macro_f1": round(evaluation.lexicon.macro_f1, 3),
        "temperature": round(evaluation.temperature, 3),
        "version": decision.version,
        "promoted": decision.promoted,
        "documents_scored": scored,
    }
    real = [v for v in evaluation.validations if v.name == REAL_TEXT]
    if real:
        summary |= {
            "real_text_macro_f1": round(real[0].model.macro_f1, 3),
            "real_text_ece": round(real[0].ece_after, 3),
        }
    return summary


def _corpus(cfg: SentimentRunConfig) -> Corpus:
    return load_labelled(cfg.corpus) if cfg.corpus else load_project_corpus()


def _held_out(cfg: SentimentRunConfig) -> HeldOutCorpus | None:
    real = cfg.real_text
    return None if real is None else load_held_out(real.path, train_rows=real.train_rows, valid_rows=real.valid_rows)


def _training_frame(cfg: SentimentRunConfig, corpus: Corpus, held: HeldOutCorpus | None) -> pd.DataFrame:
    """The labelled set plus, when configured, the real corpus's training rows (each post its own family)."""
    frame = corpus.frame
    if held is not None and cfg.real_text is not None and cfg.real_text.train:
        frame = pd.concat([frame, held.train.frame.assign(topic=REAL_TEXT)], ignore_index=True)
    if held is not None:  # no reported sentence is ever trained on, whichever file it came from
        frame = frame.loc[~frame["sentence"].str.lower().isin(set(held.valid.frame["sentence"].str.lower()))]
    return frame.loc[~frame["sentence"].str.lower().duplicated()].reset_index(drop=True)


def _smoke(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A few sentences of every label: the wiring runs end to end in seconds."""
    per_label = SMOKE_SENTENCES // len(LABELS)
    parts = [rows.sample(min(per_label, len(rows)), random_state=seed) for _, rows in frame.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


def choose_max_length(lengths: Sequence[int], quantile: float, cap: int) -> int:
    """The token length at ``quantile`` of ``lengths``, rounded up to a multiple of 8, at most ``cap``."""
    at = int(np.ceil(np.quantile(np.asarray(lengths), quantile)))
    return int(min(cap, max(8, -(-at // 8) * 8)))


def _fine_tune_and_evaluate(
    ctx: RunContext, cfg: SentimentRunConfig, classifier: TextClassifier, corpus: Corpus, held: HeldOutCorpus | None
) -> _Evaluation:
    frame = _training_frame(cfg, corpus, held)
    split = split_by_family(frame, valid_fraction=cfg.valid_fraction, seed=cfg.seed)
    if cfg.smoke_test:
        split = Split(_smoke(split.train, cfg.seed), _smoke(split.valid, cfg.seed))
        held = held if held is None else replace(held, valid=replace(held.valid, frame=_smoke(held.valid.frame, 0)))
    _print_sides(ctx, corpus, held, split)
    train_texts = split.train["sentence"].tolist()
    if cfg.max_length_quantile is not None:
        lengths = [len(ids) for ids in classifier.encode(train_texts)]
        classifier.max_length = choose_max_length(lengths, cfg.max_length_quantile, cfg.max_length)
        print(f"  max_length {classifier.max_length} (the {cfg.max_length_quantile:.0%} token length)", file=ctx.out)
    valid_texts = split.valid["sentence"].tolist()
    valid_true = label_indices(split.valid["label"].tolist())
    tuned = fine_tune(
        classifier,
        train_texts,
        label_indices(split.train["label"].tolist()),
        cfg.finetune(),
        valid=(valid_texts, valid_true),
        progress=ctx.progress,
    )
    curve = ", ".join(f"{v:.3f}" for v in tuned.epoch_metric)
    print(
        f"  fine-tune: {tuned.steps} steps in {tuned.seconds:.0f} s; carved-split macro-F1 by epoch: {curve}; "
        f"kept epoch {tuned.best_epoch}{' (stopped early)' if tuned.stopped_early else ''}",
        file=ctx.out,
    )
    raw = softmax(tuned.valid_logits) if tuned.valid_logits is not None else _raw(classifier, valid_texts, cfg)
    temperature = fit_temperature(np.log(np.clip(raw, 1e-12, 1.0)), valid_true) if cfg.temperature_scaling else 1.0
    classifier.temperature = temperature
    lexicon = LoughranMcDonald()
    carved = validate(
        CARVED,
        "split carved from the training rows (picks the epoch, fits T: in-sample for both)",
        truth=valid_true,
        raw_probabilities=raw,
        lexicon_predicted=lexicon.predict(valid_texts),
        temperature=temperature,
    )
    validations = [carved]
    if held is not None:
        texts = held.valid.frame["sentence"].tolist()
        validations.append(
            validate(
                REAL_TEXT,
                f"{held.valid.description} (never used for a choice)",
                truth=label_indices(held.valid.frame["label"].tolist()),
                raw_probabilities=_raw(classifier, texts, cfg),
                lexicon_predicted=lexicon.predict(texts),
                temperature=temperature,
            )
        )
    evaluation = _Evaluation(corpus, split, carved.model, carved.lexicon, tuned, temperature, validations, held)
    _report(ctx, cfg, evaluation, classifier.max_length)
    return evaluation


def _raw(classifier: TextClassifier, texts: Sequence[str], cfg: SentimentRunConfig) -> np.ndarray:
    """Probabilities at temperature 1 (the calibration figures need the uncalibrated ones)."""
    kept, classifier.temperature = classifier.temperature, 1.0
    try:
        return classifier.predict_proba(texts, batch_size=cfg.score_batch_size)
    finally:
        classifier.temperature = kept


def _print_sides(ctx: RunContext, corpus: Corpus, held: HeldOutCorpus | None, split: Split) -> None:
    print(f"  corpus: {corpus.description}", file=ctx.out)
    sides = [("train", split.train), ("validation", split.valid)]  # validation: the split carved from training
    if held is not None:
        print(
            f"  real text: {held.train.description}; {held.leaked} training row(s) repeated in validation dropped",
            file=ctx.out,
        )
        sides.append(("real valid", held.valid.frame))
    for side, part in sides:
        counts = part["label"].value_counts()
        shares = ", ".join(f"{lb} {int(counts.get(lb, 0)):,}" for lb in LABELS)
        print(f"  {side:<10} {len(part):>6,} sentences, {part['family'].nunique():,} families ({shares})", file=ctx.out)


def _report(ctx: RunContext, cfg: SentimentRunConfig, ev: _Evaluation, max_length: int) -> None:
    for v in ev.validations:
        print("\n  " + as_markdown(v).replace("\n", "\n  "), file=ctx.out)
    facts = {
        "corpus": ev.corpus.description,
        "real_text": ev.held.valid.description if ev.held is not None else None,
        "trained_on_real_text": bool(cfg.real_text and cfg.real_text.train),
        "train_sentences": len(ev.split.train),
        "carved_sentences": len(ev.split.valid),
        "max_length": max_length,
        "epochs_run": len(ev.tuned.epoch_loss),
        "best_epoch": ev.tuned.best_epoch,
        "fine_tune_seconds": round(ev.tuned.seconds, 1),
        "temperature": round(ev.temperature, 4),
        "smoke_test": cfg.smoke_test,
    }
    json_path, md_path = write_reports(ctx.data_dir / "reports", ev.validations, facts)
    print(f"  report: {md_path} (and {json_path.name})", file=ctx.out)


def _register(
    ctx: RunContext,
    cfg: SentimentRunConfig,
    registry: ModelRegistry,
    classifier: TextClassifier,
    ev: _Evaluation,
) -> PromotionDecision:
    code = code_version()
    params: dict[str, Any] = {
        "epochs": cfg.finetune().epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "schedule": cfg.schedule,
        "max_length": classifier.max_length,
        "freeze_embeddings": cfg.freeze_embeddings,
        "freeze_layers": cfg.freeze_layers,
        "best_epoch": ev.tuned.best_epoch,
        "temperature": ev.temperature,  # logged again from model_config by MLflow: the same value, unrounded
        "real_text_trained": bool(cfg.real_text and cfg.real_text.train),
        "seed": cfg.seed,
        "runtime": cfg.runtime,
    }
    metrics = {"fine_tune_seconds": ev.tuned.seconds}
    for v in ev.validations:
        metrics |= {f"{v.name}_ece_before": v.ece_before, f"{v.name}_ece_after": v.ece_after}
        metrics |= v.model.as_metrics(f"{v.name}") | v.lexicon.as_metrics(f"{v.name}_lexicon")
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
        metrics=ev.model.as_metrics("val") | ev.lexicon.as_metrics("lexicon_val") | metrics,
        tags={"task": "sentiment_text", "code_version": code, "corpus": ev.corpus.description[:250]},
        card=render_text_card(facts)
        + f"\n## Calibration and real text (temperature {ev.temperature:.3f})\n\n"
        + "\n".join(as_markdown(v) for v in ev.validations),
    )
    champion = _champion_macro_f1(ctx, registry, ev)
    model_config: dict[str, Any] = {
        "labels": list(LABELS),
        "max_length": classifier.max_length,
        "batch_size": cfg.score_batch_size,
        "temperature": ev.temperature,
        "runtime": cfg.runtime,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "text_model"  # the artifact's folder name in the registry
        classifier.save(folder)
        if cfg.runtime == "onnx":
            export_onnx(classifier, folder / ONNX_FILE)
        if cfg.runtime == "onnx-int8":
            model_config["runtime"] = _export_int8(ctx, cfg, classifier, ev, folder)
        version = registry.log_sentiment_text(record, folder, model_config)
    return registry.promote_if_better(
        NAME, version, ev.model.macro_f1, champion, metric="macro_f1", margin=cfg.promotion_margin
    )


def _export_int8(
    ctx: RunContext, cfg: SentimentRunConfig, classifier: TextClassifier, ev: _Evaluation, folder: Path
) -> str:
    """Export fp32 and static int8 ONNX; the runtime to serve: ``onnx-int8`` if it held its macro-F1, else ``onnx``.

    Calibration reads real text (the real corpus's training rows) when configured; the check is the
    real validation rows when present (the acceptance rule of the issue), else the carved split.
    """
    held = ev.held
    source = held.train.frame if held is not None else ev.split.train
    calibration = source["sentence"].sample(
        min(len(source), cfg.real_text.calibration_sentences if cfg.real_text else 512), random_state=cfg.seed
    )
    check_frame = held.valid.frame if held is not None else ev.split.valid
    check = (
        REAL_TEXT if held is not None else CARVED,
        check_frame["sentence"].tolist(),
        label_indices(check_frame["label"].tolist()),
    )
    decision = export_for_runtime(
        classifier, folder, calibration_texts=calibration.tolist(), check=check, tolerance=cfg.int8_tolerance
    )
    print(f"  runtime: {decision.describe()}", file=ctx.out)
    return "onnx-int8" if decision.accepted else "onnx"


def _champion_macro_f1(ctx: RunContext, registry: ModelRegistry, ev: _Evaluation) -> float | None:
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


def _score_stored_documents(ctx: RunContext, cfg: SentimentRunConfig, registry: ModelRegistry) -> int:
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
