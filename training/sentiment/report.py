"""What the ``sentiment`` stage prints and writes: the corpus sides, every validation, the report files.

Reports go to ``<data>/reports/sentiment-<stamp>.{json,md}`` (:func:`training.sentiment.realtext.write_reports`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from training.sentiment import LABELS
from training.sentiment.config import SentimentRunConfig
from training.sentiment.corpus import Corpus, HeldOutCorpus
from training.sentiment.realtext import as_markdown, write_reports
from training.sentiment.split import Split

if TYPE_CHECKING:  # evaluation prints through this module
    from training.sentiment.evaluation import Evaluation


def print_sides(out: TextIO, corpus: Corpus, held: HeldOutCorpus | None, split: Split) -> None:
    """Sentences, families and labels of each side: train, the carved validation, the real validation."""
    print(f"  corpus: {corpus.description}", file=out)
    sides = [("train", split.train), ("validation", split.valid)]  # validation: the split carved from training
    if held is not None:
        print(
            f"  real text: {held.train.description}; {held.leaked} training row(s) repeated in validation dropped",
            file=out,
        )
        sides.append(("real valid", held.valid.frame))
    for side, part in sides:
        counts = part["label"].value_counts()
        shares = ", ".join(f"{lb} {int(counts.get(lb, 0)):,}" for lb in LABELS)
        print(f"  {side:<10} {len(part):>6,} sentences, {part['family'].nunique():,} families ({shares})", file=out)


def report_evaluation(out: TextIO, reports: Path, cfg: SentimentRunConfig, ev: Evaluation, max_length: int) -> None:
    """Print every validation (model against lexicon) and write the JSON and Markdown reports."""
    for v in ev.validations:
        print("\n  " + as_markdown(v).replace("\n", "\n  "), file=out)
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
    json_path, md_path = write_reports(reports, ev.validations, facts)
    print(f"  report: {md_path} (and {json_path.name})", file=out)
