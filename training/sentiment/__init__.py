"""Financial text sentiment: the labelled corpus, a fine-tuned transformer, a lexicon baseline.

Modules, each with one job: :mod:`~training.sentiment.corpus` (labelled sentences and their loaders),
:mod:`~training.sentiment.split` (train/validation by template family), :mod:`~training.sentiment.lexicon`
(the Loughran-McDonald baseline), :mod:`~training.sentiment.text_classifier` (batched scoring),
:mod:`~training.sentiment.finetune` (the training loop), :mod:`~training.sentiment.runtimes` (quantised
and ONNX Runtime paths), :mod:`~training.sentiment.metrics` and :mod:`~training.sentiment.documents`
(stored documents scored into ``scored_documents``); the stage's steps: :mod:`~training.sentiment.evaluation`
(fine-tune, calibrate, validate), :mod:`~training.sentiment.report` (what it prints and writes),
:mod:`~training.sentiment.registration` (record, card and champion score for the registry's gate) and
:mod:`~training.sentiment.scoring` (the champion scores the stored documents). None of them imports
mlflow: tracking belongs to :mod:`training.registry`.
"""

from __future__ import annotations

from typing import Final

LABELS: Final[tuple[str, str, str]] = ("negative", "neutral", "positive")
