"""The text model's fine-tune and evaluation: corpus, family split, early stopping, calibration, validations.

The labelled corpus (the project's set, or the configured ``sentence,label`` / PhraseBank files),
plus the training rows of a real corpus when ``real_text`` says so, is split by family into
training and a *carved* split. The fine-tune keeps its best epoch on the carved split (early
stopping) and a temperature is fitted there (calibration). The Loughran-McDonald lexicon and the
model are reported on the carved split and, when configured, on the real corpus's own validation
rows, which no choice ever reads (:mod:`training.sentiment.report` prints and writes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import pandas as pd

from training.context import RunContext
from training.sentiment import LABELS
from training.sentiment.calibration import fit_temperature
from training.sentiment.config import SentimentRunConfig
from training.sentiment.corpus import Corpus, HeldOutCorpus, load_held_out, load_labelled, load_project_corpus
from training.sentiment.finetune import FineTuneResult, fine_tune
from training.sentiment.lexicon import LoughranMcDonald
from training.sentiment.metrics import ClassificationReport, label_indices
from training.sentiment.realtext import Validation, validate
from training.sentiment.report import print_sides
from training.sentiment.split import Split, split_by_family
from training.sentiment.text_classifier import TextClassifier, softmax

CARVED: Final = "carved"
REAL_TEXT: Final = "real_text"
SMOKE_SENTENCES: Final = 48


@dataclass(frozen=True)
class Evaluation:
    """The fine-tune's outcome and every validation of it."""

    corpus: Corpus
    split: Split
    model: ClassificationReport
    lexicon: ClassificationReport
    tuned: FineTuneResult
    temperature: float
    validations: list[Validation]
    held: HeldOutCorpus | None


def load_corpus(cfg: SentimentRunConfig) -> Corpus:
    """The configured labelled files, or the project's set."""
    return load_labelled(cfg.corpus) if cfg.corpus else load_project_corpus()


def load_held_out_corpus(cfg: SentimentRunConfig) -> HeldOutCorpus | None:
    """The real corpus of ``real_text`` (its training and validation rows), or None."""
    real = cfg.real_text
    return None if real is None else load_held_out(real.path, train_rows=real.train_rows, valid_rows=real.valid_rows)


def training_frame(cfg: SentimentRunConfig, corpus: Corpus, held: HeldOutCorpus | None) -> pd.DataFrame:
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


def split_for_training(
    cfg: SentimentRunConfig, corpus: Corpus, held: HeldOutCorpus | None
) -> tuple[Split, HeldOutCorpus | None]:
    """Training and carved rows split by family (a few of each label for a smoke test, the real ones too)."""
    split = split_by_family(training_frame(cfg, corpus, held), valid_fraction=cfg.valid_fraction, seed=cfg.seed)
    if cfg.smoke_test:
        split = Split(_smoke(split.train, cfg.seed), _smoke(split.valid, cfg.seed))
        held = held if held is None else replace(held, valid=replace(held.valid, frame=_smoke(held.valid.frame, 0)))
    return split, held


def fine_tune_and_evaluate(
    ctx: RunContext, cfg: SentimentRunConfig, classifier: TextClassifier, corpus: Corpus, held: HeldOutCorpus | None
) -> Evaluation:
    """Fine-tune ``classifier`` (best epoch on the carved split), fit its temperature, validate it and the lexicon."""
    split, held = split_for_training(cfg, corpus, held)
    print_sides(ctx.out, corpus, held, split)
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
    raw = (
        softmax(tuned.valid_logits)
        if tuned.valid_logits is not None
        else raw_probabilities(classifier, valid_texts, cfg)
    )
    temperature = fit_temperature(np.log(np.clip(raw, 1e-12, 1.0)), valid_true) if cfg.temperature_scaling else 1.0
    classifier.temperature = temperature
    validations = _validations(cfg, classifier, split, held, raw=raw, temperature=temperature)
    carved = validations[0]
    return Evaluation(corpus, split, carved.model, carved.lexicon, tuned, temperature, validations, held)


def _validations(
    cfg: SentimentRunConfig,
    classifier: TextClassifier,
    split: Split,
    held: HeldOutCorpus | None,
    *,
    raw: np.ndarray,
    temperature: float,
) -> list[Validation]:
    """The carved split's validation (it picked the epoch and T) and, when configured, the real text's."""
    lexicon = LoughranMcDonald()
    valid_texts = split.valid["sentence"].tolist()
    validations = [
        validate(
            CARVED,
            "split carved from the training rows (picks the epoch, fits T: in-sample for both)",
            truth=label_indices(split.valid["label"].tolist()),
            raw_probabilities=raw,
            lexicon_predicted=lexicon.predict(valid_texts),
            temperature=temperature,
        )
    ]
    if held is not None:
        texts = held.valid.frame["sentence"].tolist()
        validations.append(
            validate(
                REAL_TEXT,
                f"{held.valid.description} (never used for a choice)",
                truth=label_indices(held.valid.frame["label"].tolist()),
                raw_probabilities=raw_probabilities(classifier, texts, cfg),
                lexicon_predicted=lexicon.predict(texts),
                temperature=temperature,
            )
        )
    return validations


def raw_probabilities(classifier: TextClassifier, texts: Sequence[str], cfg: SentimentRunConfig) -> np.ndarray:
    """Probabilities at temperature 1 (the calibration figures need the uncalibrated ones)."""
    kept, classifier.temperature = classifier.temperature, 1.0
    try:
        return classifier.predict_proba(texts, batch_size=cfg.score_batch_size)
    finally:
        classifier.temperature = kept
